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
import dns.rdata
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.RRSIG import RRSIG

from resolver.errors import WireError
from resolver.wire.records import Record

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
    "name_of",
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

_RRSIG = 46


class Security(enum.IntEnum):
    """RFC 4033 section 5's four states; a larger value is a worse one."""

    SECURE = 0
    INSECURE = 1
    INDETERMINATE = 2
    BOGUS = 3


@dataclass(frozen=True, slots=True)
class SignedRRset:
    """One RRset of a reply and the RRSIG records over it (possibly none); ``raw``, when
    the records came as bytes (`Reply.from_records`), their rdata as they came, sorted: a
    key to the data finer than its canonical form (case kept), cheap to compare."""

    rrset: dns.rrset.RRset
    sigs: tuple[RRSIG, ...] = ()
    raw: tuple[bytes, ...] | None = field(default=None, compare=False)

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

    @classmethod
    def from_records(
        cls,
        qname: bytes,
        qtype: int,
        rcode: int,
        answer: Iterable[Record],
        authority: Iterable[Record],
        zone: dns.name.Name | None = None,
        *,
        server: str = "",
    ) -> Reply:
        """Group records already read (``wire.records``: names in wire form, rdata
        self-contained) as `from_wire` groups a message, without reading the message again;
        raises WireError for a name or rdata that does not parse."""
        try:
            return cls(
                qname=name_of(qname),
                qtype=qtype,
                rcode=rcode,
                answer=tuple(_grouped(answer)),
                authority=tuple(_grouped(authority)),
                zone=zone,
                server=server,
            )
        except (dns.exception.DNSException, ValueError) as exc:
            raise WireError(f"cannot read the reply to validate: {exc}") from exc


_PARSED_MAX = 8192
# dnspython's rdata objects and names, by what they were read from: they are immutable, and
# the same records (a wildcard's RRset and RRSIG, an NSEC) and owners come again in reply
# after reply; building one costs more than the rest of grouping it. Bounded: emptied when
# full.
_parsed: dict[tuple[int, int, bytes], dns.rdata.Rdata] = {}
_names: dict[bytes, dns.name.Name] = {}


def _rdata(rclass: int, rtype: int, wire: bytes) -> dns.rdata.Rdata:
    key = (rclass, rtype, wire)
    rdata = _parsed.get(key)
    if rdata is None:
        if len(_parsed) >= _PARSED_MAX:
            _parsed.clear()
        rdata = _parsed[key] = dns.rdata.from_wire(rclass, rtype, wire, 0, len(wire))  # type: ignore[arg-type]
    return rdata


def name_of(wire: bytes) -> dns.name.Name:
    """The dnspython name of ``wire`` (an uncompressed wire-form name), kept for the next
    reply that names it."""
    name = _names.get(wire)
    if name is None:
        if len(_names) >= _PARSED_MAX:
            _names.clear()
        name = _names[wire] = dns.name.from_wire(wire, 0)[0]
    return name


def _grouped(records: Iterable[Record]) -> list[SignedRRset]:
    """The records as `group` makes them of a parsed section: each RRset (in the order its
    owner and type first came, its TTL the least of its records') with the RRSIGs of the
    same owner over its type, and its rdata as it came, sorted."""
    data: dict[tuple[bytes, int, int], tuple[bytes, dict[bytes, None], list[int]]] = {}
    sigs: dict[tuple[bytes, int], dict[tuple[int, bytes], None]] = {}
    for record in records:
        owner = record.name.lower()
        rtype = record.rtype
        if rtype == _RRSIG:
            if len(record.rdata) >= 2:
                covered = int.from_bytes(record.rdata[:2], "big")
                sigs.setdefault((owner, covered), {})[(record.rclass, record.rdata)] = None
            continue
        key = (owner, rtype, record.rclass)
        entry = data.get(key)
        if entry is None:
            data[key] = (record.name, {record.rdata: None}, [record.ttl])
        else:
            entry[1][record.rdata] = None
            entry[2].append(record.ttl)
    grouped: list[SignedRRset] = []
    for (owner, rtype, rclass), (name, rdatas, ttls) in data.items():
        rrset = dns.rrset.RRset(name_of(name), rclass, rtype)  # type: ignore[arg-type]
        ttl = min(ttls)
        for raw in rdatas:
            rrset.add(_rdata(rclass, rtype, raw), ttl)
        over = sigs.get((owner, rtype), {})
        signatures = tuple(_rdata(c, _RRSIG, raw) for c, raw in over)
        grouped.append(SignedRRset(rrset, signatures, tuple(sorted(rdatas))))  # type: ignore[arg-type]
    return grouped


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
