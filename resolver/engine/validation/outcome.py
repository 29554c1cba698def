"""The values the validator speaks in: security states, Extended DNS Error codes, what it is
given (a reply's RRsets with their signatures) and what it answers (an outcome, or the DS or
DNSKEY set it needs first).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import dns.exception
import dns.message
import dns.name
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.RRSIG import RRSIG

from resolver.errors import WireError

__all__ = [
    "EDE_DNSKEY_MISSING",
    "EDE_DNSSEC_BOGUS",
    "EDE_NSEC3_ITERATIONS",
    "EDE_NSEC_MISSING",
    "EDE_RRSIGS_MISSING",
    "EDE_SIGNATURE_EXPIRED",
    "EDE_SIGNATURE_NOT_YET_VALID",
    "EDE_UNSUPPORTED_ALGORITHM",
    "EDE_UNSUPPORTED_DIGEST",
    "Need",
    "NeedDNSKEY",
    "NeedDS",
    "Outcome",
    "Reply",
    "Security",
    "SignedRRset",
    "worst",
]

# RFC 8914 section 4.
EDE_UNSUPPORTED_ALGORITHM = 1
EDE_UNSUPPORTED_DIGEST = 2
EDE_DNSSEC_BOGUS = 6
EDE_SIGNATURE_EXPIRED = 7
EDE_SIGNATURE_NOT_YET_VALID = 8
EDE_DNSKEY_MISSING = 9
EDE_RRSIGS_MISSING = 10
EDE_NSEC_MISSING = 12
EDE_NSEC3_ITERATIONS = 27  # "Unsupported NSEC3 Iterations Value" (RFC 9276 3.2)


class Security(enum.IntEnum):
    """RFC 4033 section 5's four states; a larger value is a worse one."""

    SECURE = 0
    INSECURE = 1
    INDETERMINATE = 2
    BOGUS = 3


@dataclass(frozen=True, slots=True)
class SignedRRset:
    """One RRset of a reply and the RRSIG records over it (possibly none)."""

    rrset: dns.rrset.RRset
    sigs: tuple[RRSIG, ...] = ()

    @property
    def name(self) -> dns.name.Name:
        return self.rrset.name

    @property
    def rdtype(self) -> int:
        return int(self.rrset.rdtype)

    def signers(self) -> list[dns.name.Name]:
        """The distinct signer names of the RRSIGs, in the order they came."""
        seen: list[dns.name.Name] = []
        for sig in self.sigs:
            if sig.signer not in seen:
                seen.append(sig.signer)
        return seen


@dataclass(frozen=True, slots=True)
class Reply:
    """What one reply says, as the validator reads it.

    ``qname``/``qtype`` the question, ``rcode`` the reply's; ``answer`` and ``authority`` the
    RRsets of those sections, each with its RRSIGs (the additional section is never validated:
    glue is not signed). ``zone`` is the zone the reply came from as the iteration knows it
    (the delegation it followed), or None; it decides whose keys judge unsigned data.
    ``server`` is the address of the server that sent it ("" when unknown), for the reason
    a bogus verdict gives ("from 192.0.2.1", as Unbound says it).
    """

    qname: dns.name.Name
    qtype: int
    rcode: int = 0
    answer: tuple[SignedRRset, ...] = ()
    authority: tuple[SignedRRset, ...] = ()
    zone: dns.name.Name | None = None
    server: str = ""

    @classmethod
    def from_message(cls, message: dns.message.Message, zone: dns.name.Name | None = None) -> Reply:
        """Group a parsed message's RRSIGs with the RRsets they cover."""
        (question,) = message.question
        return cls(
            qname=question.name,
            qtype=int(question.rdtype),
            rcode=int(message.rcode()),
            answer=tuple(group(message.answer)),
            authority=tuple(group(message.authority)),
            zone=zone,
        )

    @classmethod
    def from_wire(cls, wire: bytes, zone: dns.name.Name | None = None) -> Reply:
        """Parse ``wire`` (a reply with one question) and group it; raises WireError for a
        message that does not parse or does not hold exactly one question."""
        try:
            message = dns.message.from_wire(wire)
        except (dns.exception.DNSException, ValueError) as exc:
            raise WireError(f"cannot read the reply to validate: {exc}") from exc
        if len(message.question) != 1:
            raise WireError(f"a reply with {len(message.question)} questions")
        return cls.from_message(message, zone)


def group(rrsets: Iterable[dns.rrset.RRset]) -> list[SignedRRset]:
    """Pair each RRset with the RRSIGs of the same owner that cover its type.

    RRSIGs covering a type absent from ``rrsets`` are dropped; so are RRSIG RRsets asked for
    on purpose, which this validator never judges.
    """
    data: list[dns.rrset.RRset] = []
    sigs: dict[tuple[dns.name.Name, int], list[RRSIG]] = {}
    for rrset in rrsets:
        if rrset.rdtype == dns.rdatatype.RRSIG:
            for sig in rrset:
                sigs.setdefault((rrset.name, int(sig.type_covered)), []).append(sig)
        else:
            data.append(rrset)
    return [
        SignedRRset(rrset, tuple(sigs.get((rrset.name, int(rrset.rdtype)), ()))) for rrset in data
    ]


@dataclass(frozen=True, slots=True)
class Outcome:
    """The validator's verdict on a reply (or on one zone's keys).

    ``ede`` is the RFC 8914 code that goes with a bogus verdict (and with an insecure one
    reached through an unsupported algorithm or digest, or too many NSEC3 iterations);
    ``reason`` says why in words a log can carry: for a bogus verdict, the words Unbound logs
    at ``val-log-level: 2`` (what failed, from which server, for which RRset or key). ``ttl``
    is the longest the validated data may be cached (RFC 4035 5.3.3: no longer than any
    RRset's original TTL or its signature's expiry), or None when nothing capped it.
    """

    security: Security
    ede: int | None = None
    reason: str = ""
    ttl: int | None = None
    checked: tuple[tuple[dns.name.Name, int, Security], ...] = field(default=(), compare=False)

    @property
    def secure(self) -> bool:
        return self.security is Security.SECURE

    @property
    def bogus(self) -> bool:
        return self.security is Security.BOGUS


@dataclass(frozen=True, slots=True)
class NeedDS:
    """Validation needs the DS set of ``zone`` (asked of its parent) before it can go on."""

    zone: dns.name.Name


@dataclass(frozen=True, slots=True)
class NeedDNSKEY:
    """Validation needs the DNSKEY set of ``zone`` (asked of the zone) before it can go on."""

    zone: dns.name.Name


Need = NeedDS | NeedDNSKEY


def worst(outcomes: Sequence[Outcome]) -> Outcome:
    """Combine verdicts: the worst state wins, with the first EDE and reason of that state;
    TTL caps combine by minimum."""
    assert outcomes
    state = max(outcome.security for outcome in outcomes)
    first = next(outcome for outcome in outcomes if outcome.security is state)
    caps = [outcome.ttl for outcome in outcomes if outcome.ttl is not None]
    ede = first.ede
    if ede is None:
        ede = next((o.ede for o in outcomes if o.security is state and o.ede is not None), None)
    return Outcome(
        state,
        ede,
        first.reason,
        min(caps) if caps else None,
        tuple(item for outcome in outcomes for item in outcome.checked),
    )
