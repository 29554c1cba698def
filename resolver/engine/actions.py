"""The actions the engine's decisions answer with, which its driver performs.

``Send`` asks a configured upstream (forwarding); ``Query`` asks a server by address
(iteration in recursive mode); ``Done`` ends the query with a reply, or without one and the
Extended DNS Error (RFC 8914) that says why.
"""

from __future__ import annotations

from typing import NamedTuple

from resolver.config import Address
from resolver.engine.validation import Outcome
from resolver.wire.view import ReplyView

__all__ = [
    "EDE_NETWORK_ERROR",
    "EDE_NO_REACHABLE_AUTHORITY",
    "EDE_STALE_ANSWER",
    "Done",
    "Query",
    "Send",
]

# Extended DNS Error info codes (RFC 8914 section 4).
EDE_STALE_ANSWER = 3
EDE_NO_REACHABLE_AUTHORITY = 22
EDE_NETWORK_ERROR = 23


class Send(NamedTuple):
    """Ask upstream ``upstream`` (an index) by ``deadline`` the client's question, or
    ``question`` (a DS or DNSKEY set the validator needs), with DO and CD when ``dnssec``."""

    upstream: int
    tcp: bool
    edns: bool
    deadline: float
    failover: bool  # another upstream than the previous attempt's
    dnssec: bool = False  # DO and CD set whatever the client asked (validation)
    question: tuple[bytes, int] | None = None  # (name, type) instead of the client's


class Query(NamedTuple):
    """Ask the server at ``server`` the question ``name qtype`` (class IN, RD clear) by
    ``deadline``, over TCP or UDP, with or without EDNS and 0x20. ``lookups``: questions
    (name, type) for name servers' addresses to resolve meanwhile, each as a question of its
    own (Unbound's parallel target fetches): what they learn reaches the iteration through
    the RRset cache. ``do``: the EDNS DO bit (RRSIGs, NSEC and NSEC3 wanted)."""

    server: Address
    name: bytes
    qtype: int
    tcp: bool
    edns: bool
    randomize_case: bool
    deadline: float
    lookups: tuple[tuple[bytes, int], ...] = ()
    do: bool = False


class Done(NamedTuple):
    """The query is over: answer with the reply ``reply`` is the view of, in the form the
    engine stores and serves (no OPT, RA set, AA clear: ``wire.view.normalize``), or fail with
    ``ede``."""

    reply: ReplyView | None
    ede: int | None
    verdict: Outcome | None = None  # the DNSSEC verdict on the reply; None: not validated
    synthesised: bool = False  # made from the validated cache, no server asked (RFC 8198)
