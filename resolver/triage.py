"""What to do with one client query, decided on raw bytes without I/O.

``triage`` sorts a datagram into: drop it, answer it locally at once (FORMERR, NOTIMP, BADVERS,
REFUSED, the RFC 8482 answer to ANY), or resolve it. Access control comes first: a client
outside the allowed networks learns nothing but REFUSED, whatever it sent.

``for_client`` and ``fit`` turn a normalized reply (no OPT, RA set, AA clear) into the one this
client gets: its ID, its RD, its question case, our OPT when it used EDNS, truncated to its UDP
size.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import NamedTuple

from resolver.errors import WireError
from resolver.wire.message import minimal_any_reply, opt_record
from resolver.wire.raw import (
    FORMERR,
    HEADER_SIZE,
    NOTIMP,
    OPCODE_QUERY,
    QR,
    REFUSED,
    SERVFAIL,
    TYPE_ANY,
    TYPE_AXFR,
    TYPE_IXFR,
    QueryEdns,
    Question,
    as_bytes,
    error_reply,
    read_query_edns,
    read_question,
    truncated_reply,
)

__all__ = ["OUR_UDP_SIZE", "Local", "Parsed", "fit", "for_client", "servfail", "triage"]

# What we advertise to clients and the most we send over UDP (the DNS flag day 2020 value).
OUR_UDP_SIZE = 1232
_BADVERS_HIGH = 1  # rcode 16 = extended rcode 1 << 4 | 0
_RD_HIGH = 0x01  # RD in the first flags byte (message byte 2)
_QR_HIGH = QR >> 8
_CD_LOW = 0x10  # CD in the second flags byte (message byte 3)
_AD_LOW = 0x20  # AD in the second flags byte
_EDE_OPTION = 15  # RFC 8914


class Parsed(NamedTuple):
    """A query to resolve: its question, its OPT record (if any) and its CD bit."""

    question: Question
    edns: QueryEdns | None
    cd: bool

    @property
    def do(self) -> bool:
        return self.edns.do if self.edns is not None else False


class Local(NamedTuple):
    """A query answered (or dropped, when ``reply`` is None) without resolving; ``outcome``
    names the server statistic it counts toward."""

    reply: bytes | None
    outcome: str


# Our OPT record as most replies carry it (no extended rcode, no option), without and with DO.
_OUR_OPT = (opt_record(OUR_UDP_SIZE, False), opt_record(OUR_UDP_SIZE, True))


def _opt(udp_size: int, do: bool, ext_rcode: int = 0, ede: int | None = None) -> bytes:
    if ede is None:
        if not ext_rcode and udp_size == OUR_UDP_SIZE:
            return _OUR_OPT[do]
        return opt_record(udp_size, do, ext_rcode)
    # One Extended DNS Error option: code, length, info code, no extra text.
    return opt_record(udp_size, do, ext_rcode, options=struct.pack("!HHH", _EDE_OPTION, 2, ede))


def with_opt(
    reply: bytes, edns: QueryEdns | None, ext_rcode: int = 0, ede: int | None = None
) -> bytes:
    """Append our OPT record to a reply that has none, when the client used EDNS; with
    ``ede``, the OPT carries that Extended DNS Error info code (RFC 8914)."""
    if edns is None:
        return reply
    arcount = int.from_bytes(reply[10:12], "big") + 1
    return (
        reply[:10]
        + arcount.to_bytes(2, "big")
        + reply[12:]
        + _opt(OUR_UDP_SIZE, edns.do, ext_rcode, ede)
    )


def triage(query: bytes, allowed: Callable[[], bool]) -> Local | Parsed:
    """Sort one raw query. ``allowed`` says whether the client may be served; it is asked
    before anything else is read, and a client it refuses gets REFUSED with the header and (if
    well-formed) the question only, counted as "denied" (no NOTIMP, FORMERR or BADVERS: those
    would tell what the server would do for it). Never raises for bad input: that is what
    FORMERR is for."""
    if len(query) < HEADER_SIZE:
        return Local(None, "dropped")
    flags = query[2]  # QR, opcode, AA, TC, RD
    if flags & _QR_HIGH:
        return Local(None, "dropped")  # a response sent to us: answering could loop
    if not allowed():
        return Local(error_reply(query, REFUSED), "denied")
    if (flags >> 3) & 0x0F != OPCODE_QUERY:
        return Local(error_reply(query, NOTIMP), "notimp")
    try:
        question = read_question(query)
        edns = read_query_edns(query, question.end)
    except WireError:
        return Local(error_reply(query, FORMERR), "formerr")
    if edns is not None and edns.version > 0:
        # RFC 6891 section 6.1.3: BADVERS for an EDNS version we do not implement.
        return Local(with_opt(error_reply(query, 0), edns, _BADVERS_HIGH), "formerr")
    if question.qtype == TYPE_ANY:
        return Local(with_opt(minimal_any_reply(query), edns), "answered")
    if question.qtype in (TYPE_AXFR, TYPE_IXFR):
        return Local(with_opt(error_reply(query, REFUSED), edns), "refused")
    return Parsed(question, edns, bool(query[3] & _CD_LOW))


def for_client(
    reply: bytes | bytearray, query: bytes | bytearray, parsed: Parsed, ede: int | None = None
) -> bytes:
    """A normalized reply made this client's: its ID, its RD and CD, its question case, our OPT
    (carrying ``ede`` if given), AD only if the client asked with AD or DO (RFC 6840 section
    5.8). ``reply`` is the engine's answer to this very question (its question was matched
    where the reply was read, and is not compared again here: its name is replaced by the
    client's, as read from the query: same case, and uncompressed whatever the query did)."""
    reply, query = as_bytes(reply), as_bytes(query)
    name = parsed.question.name
    edns = parsed.edns
    flags = (reply[2] & ~_RD_HIGH) | (query[2] & _RD_HIGH)
    # CD is the client's, copied from its query (RFC 4035 section 3.2.2, RFC 6840 5.9).
    low = (reply[3] & ~_CD_LOW) | (query[3] & _CD_LOW)
    if not query[3] & _AD_LOW and (edns is None or not edns.do):
        low &= ~_AD_LOW
    rest = reply[HEADER_SIZE + len(name) :]
    if edns is None:
        return b"".join((query[:2], bytes((flags, low)), reply[4:12], name, rest))
    # One assembly with our OPT appended (what with_opt does), counted in ARCOUNT.
    arcount = ((reply[10] << 8) | reply[11]) + 1
    return b"".join(
        (
            query[:2],
            bytes((flags, low)),
            reply[4:10],
            arcount.to_bytes(2, "big"),
            name,
            rest,
            _opt(OUR_UDP_SIZE, edns.do, 0, ede),
        )
    )


def servfail(query: bytes, parsed: Parsed, ede: int | None = None) -> bytes:
    """SERVFAIL for a triaged query, with our OPT (carrying ``ede``) if it used EDNS."""
    return with_opt(error_reply(query, SERVFAIL), parsed.edns, 0, ede)


def fit(reply: bytes, edns: QueryEdns | None, tcp: bool) -> tuple[bytes, bool]:
    """The reply cut to the client's UDP size (TC, header and question only) if it exceeds it:
    512 without EDNS, else the client's size bounded by ours. Returns (reply, truncated)."""
    if tcp:
        return reply, False
    limit = 512 if edns is None else max(512, min(edns.udp_size, OUR_UDP_SIZE))
    if len(reply) <= limit:
        return reply, False
    return with_opt(truncated_reply(reply), edns), True
