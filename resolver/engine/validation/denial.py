"""Authenticated denial of existence: what NSEC (RFC 4035 5.4, RFC 6840 4) and NSEC3
(RFC 5155 8) records prove about a name, once their signatures have been checked.

Each function takes the NSEC or NSEC3 RRsets of a reply (already verified by the caller, all
from one zone) and answers a `Denial`: proven, proven only up to an opt-out span (which
makes the answer insecure, RFC 5155 9.2), NSEC3 iterations above the limit (insecure, EDE 27,
RFC 9276 3.2), or not proven (bogus, EDE 12).
"""

from __future__ import annotations

import base64
import enum
from collections.abc import Sequence
from dataclasses import dataclass

import dns.dnssec
import dns.name
import dns.rdatatype
import dns.rrset

__all__ = [
    "NSEC3_ITERATION_LIMIT",
    "Denial",
    "Proof",
    "deny_closer_match",
    "deny_ds",
    "deny_nodata",
    "deny_nxdomain",
]

NSEC3_ITERATION_LIMIT = 150
"""NSEC3 records with more additional hash iterations make the answer insecure with EDE 27
(RFC 9276 3.2); 150 is Unbound's limit (its ``val-nsec3-keysize-iterations`` default)."""

_A_NS = 2
_A_CNAME = 5
_A_SOA = 6
_A_DS = 43
_A_DNAME = 39
_SHA1 = 1  # the one NSEC3 hash algorithm (RFC 5155 11)
_OPT_OUT = 0x01
_WILD = dns.name.Name((b"*",))


class Proof(enum.Enum):
    PROVEN = "proven"
    OPT_OUT = "opt-out"
    ITERATIONS = "iterations"
    MISSING = "missing"


@dataclass(frozen=True, slots=True)
class Denial:
    """What the records prove; ``delegation`` (for `deny_ds` only) says the name is a zone
    cut without DS, rather than no zone cut at all."""

    proof: Proof
    reason: str
    delegation: bool = False


def _types(rdata: object) -> frozenset[int]:
    found: set[int] = set()
    for window, bitmap in rdata.windows:  # type: ignore[attr-defined]
        for index, byte in enumerate(bitmap):
            for bit in range(8):
                if byte & (0x80 >> bit):
                    found.add(window * 256 + index * 8 + bit)
    return frozenset(found)


def _wild(name: dns.name.Name) -> dns.name.Name:
    return _WILD.concatenate(name)


def _is_cut(types: frozenset[int]) -> bool:
    return _A_NS in types and _A_SOA not in types


# --- NSEC ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Nsec:
    owner: dns.name.Name
    next: dns.name.Name
    types: frozenset[int]

    def covers(self, name: dns.name.Name) -> bool:
        """True if ``name`` falls strictly between the owner and the next name."""
        if self.owner < self.next:
            return bool(self.owner < name < self.next)
        return bool(name > self.owner or name < self.next)  # the zone's last NSEC wraps

    def blocks(self, name: dns.name.Name) -> bool:
        """True if this NSEC is at a cut or DNAME above ``name``, so it proves nothing about
        names below it (RFC 6840 4.1)."""
        return (
            name.is_subdomain(self.owner)
            and name != self.owner
            and (_is_cut(self.types) or _A_DNAME in self.types)
        )


def _nsecs(rrsets: Sequence[dns.rrset.RRset]) -> list[_Nsec]:
    return [_Nsec(r.name, rd.next, _types(rd)) for r in rrsets for rd in r]


def _covering(nsecs: list[_Nsec], name: dns.name.Name) -> _Nsec | None:
    return next((n for n in nsecs if n.covers(name) and not n.blocks(name)), None)


def _encloser(name: dns.name.Name, nsec: _Nsec) -> dns.name.Name:
    """The closest encloser of ``name`` a covering NSEC implies: the longest ancestor it
    shares with the NSEC's owner or next name."""
    common = max(name.fullcompare(nsec.owner)[2], name.fullcompare(nsec.next)[2])
    return name.split(common)[1]


def _nsec_nxdomain(qname: dns.name.Name, nsecs: list[_Nsec]) -> Denial:
    cover = _covering(nsecs, qname)
    if cover is None:
        return Denial(Proof.MISSING, f"no NSEC proves {qname} does not exist")
    if cover.next.is_subdomain(qname):
        return Denial(Proof.MISSING, f"the NSEC shows a name below {qname}: it exists")
    wild = _wild(_encloser(qname, cover))
    if any(n.owner == wild for n in nsecs):
        return Denial(Proof.MISSING, f"the NSEC shows {wild} exists")
    if _covering(nsecs, wild) is None:
        return Denial(Proof.MISSING, f"no NSEC proves {wild} does not exist")
    return Denial(Proof.PROVEN, f"NSEC proves {qname} does not exist")


def _nsec_nodata(qname: dns.name.Name, qtype: int, nsecs: list[_Nsec]) -> Denial:
    match = next((n for n in nsecs if n.owner == qname), None)
    if match is not None:
        return _lacks(qname, qtype, match.types, "NSEC")
    cover = _covering(nsecs, qname)
    if cover is None:
        return Denial(Proof.MISSING, f"no NSEC proves {qname} has no {_text(qtype)}")
    if cover.next.is_subdomain(qname) and cover.next != qname:
        return Denial(Proof.PROVEN, f"NSEC proves {qname} is an empty non-terminal")
    wild = _wild(_encloser(qname, cover))
    wild_match = next((n for n in nsecs if n.owner == wild), None)
    if wild_match is None:
        return Denial(Proof.MISSING, f"no NSEC proves {wild} has no {_text(qtype)}")
    return _lacks(wild, qtype, wild_match.types, "NSEC")


def _lacks(name: dns.name.Name, qtype: int, types: frozenset[int], kind: str) -> Denial:
    if qtype in types or _A_CNAME in types:
        return Denial(Proof.MISSING, f"the {kind} at {name} lists {_text(qtype)} or CNAME")
    if qtype != _A_DS and _is_cut(types):
        return Denial(Proof.MISSING, f"the {kind} at {name} is the parent side of a cut")
    if qtype == _A_DS and _A_SOA in types and name != dns.name.root:
        return Denial(Proof.MISSING, f"the {kind} at {name} is the child side of a cut")
    return Denial(Proof.PROVEN, f"{kind} proves {name} has no {_text(qtype)}")


# --- NSEC3 -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Nsec3:
    owner_hash: str
    next_hash: str
    types: frozenset[int]
    opt_out: bool

    def covers(self, hashed: str) -> bool:
        if self.owner_hash < self.next_hash:
            return self.owner_hash < hashed < self.next_hash
        return hashed > self.owner_hash or hashed < self.next_hash


class _Hashed:
    """The NSEC3 records of one zone with one parameter set, and the hashing they need."""

    def __init__(self, rrsets: Sequence[dns.rrset.RRset]) -> None:
        first = next(rd for r in rrsets for rd in r if rd.algorithm == _SHA1)
        self.salt: bytes = first.salt
        self.iterations: int = first.iterations
        self.zone: dns.name.Name = rrsets[0].name.parent()
        self.records: list[_Nsec3] = []
        for rrset in rrsets:
            for rd in rrset:
                if (rd.algorithm, rd.salt, rd.iterations) != (_SHA1, self.salt, self.iterations):
                    continue  # RFC 5155 8.2: only the zone's one parameter set counts
                self.records.append(
                    _Nsec3(
                        rrset.name[0].decode("ascii").upper(),
                        base64.b32hexencode(rd.next).decode("ascii"),
                        _types(rd),
                        bool(rd.flags & _OPT_OUT),
                    )
                )
        self._hashes: dict[dns.name.Name, str] = {}

    def hash(self, name: dns.name.Name) -> str:
        if name not in self._hashes:
            self._hashes[name] = dns.dnssec.nsec3_hash(name, self.salt, self.iterations, _SHA1)
        return self._hashes[name]

    def match(self, name: dns.name.Name) -> _Nsec3 | None:
        hashed = self.hash(name)
        return next((r for r in self.records if r.owner_hash == hashed), None)

    def cover(self, name: dns.name.Name) -> _Nsec3 | None:
        hashed = self.hash(name)
        return next((r for r in self.records if r.covers(hashed)), None)

    def closest_encloser(self, qname: dns.name.Name) -> tuple[dns.name.Name, _Nsec3] | Denial:
        """The closest encloser proof (RFC 5155 8.3): the closest encloser and the NSEC3
        covering the next closer name, or the Denial saying why there is none."""
        next_closer = qname
        name = qname
        while self.match(name) is None:
            if name == self.zone or not name.is_subdomain(self.zone) or name == dns.name.root:
                return Denial(Proof.MISSING, f"no NSEC3 matches an ancestor of {qname}")
            next_closer, name = name, name.parent()
        if name == qname:
            return Denial(Proof.MISSING, f"an NSEC3 shows {qname} exists")
        encloser = self.match(name)
        assert encloser is not None
        if _A_DNAME in encloser.types or _is_cut(encloser.types):
            return Denial(Proof.MISSING, f"the closest encloser {name} is a cut or a DNAME")
        cover = self.cover(next_closer)
        if cover is None:
            return Denial(Proof.MISSING, f"no NSEC3 covers the next closer name {next_closer}")
        return name, cover


def _hashed(rrsets: Sequence[dns.rrset.RRset], limit: int) -> _Hashed | Denial:
    if not any(rd.algorithm == _SHA1 for r in rrsets for rd in r):
        return Denial(Proof.MISSING, "no NSEC3 record with a known hash algorithm")
    hashed = _Hashed(rrsets)
    if hashed.iterations > limit:
        return Denial(
            Proof.ITERATIONS,
            f"NSEC3 of {hashed.zone} uses {hashed.iterations} iterations, above {limit}",
        )
    return hashed


def _nsec3_nxdomain(qname: dns.name.Name, h: _Hashed) -> Denial:
    proof = h.closest_encloser(qname)
    if isinstance(proof, Denial):
        return proof
    encloser, next_closer = proof
    wild = _wild(encloser)
    if h.cover(wild) is None:
        return Denial(Proof.MISSING, f"no NSEC3 proves {wild} does not exist")
    if next_closer.opt_out:
        return Denial(Proof.OPT_OUT, f"{qname} falls in an NSEC3 opt-out span")
    return Denial(Proof.PROVEN, f"NSEC3 proves {qname} does not exist")


def _nsec3_nodata(qname: dns.name.Name, qtype: int, h: _Hashed) -> Denial:
    match = h.match(qname)
    if match is not None:
        return _lacks(qname, qtype, match.types, "NSEC3")
    proof = h.closest_encloser(qname)
    if isinstance(proof, Denial):
        return proof
    encloser, next_closer = proof
    if qtype == _A_DS and next_closer.opt_out:
        return Denial(Proof.OPT_OUT, f"{qname} falls in an NSEC3 opt-out span")
    wild = _wild(encloser)
    wild_match = h.match(wild)
    if wild_match is None:
        return Denial(Proof.MISSING, f"no NSEC3 matches {qname} or {wild}")
    return _lacks(wild, qtype, wild_match.types, "NSEC3")


# --- the questions ---------------------------------------------------------------------


def _text(rdtype: int) -> str:
    return dns.rdatatype.to_text(dns.rdatatype.RdataType.make(rdtype))


def _pick(
    nsecs: Sequence[dns.rrset.RRset], nsec3s: Sequence[dns.rrset.RRset], limit: int
) -> list[_Nsec] | _Hashed | Denial:
    if nsecs:
        return _nsecs(nsecs)
    if nsec3s:
        return _hashed(nsec3s, limit)
    return Denial(Proof.MISSING, "no NSEC or NSEC3 records")


def deny_nxdomain(
    qname: dns.name.Name,
    nsecs: Sequence[dns.rrset.RRset],
    nsec3s: Sequence[dns.rrset.RRset],
    limit: int = NSEC3_ITERATION_LIMIT,
) -> Denial:
    """Prove ``qname`` does not exist and no wildcard could have made it."""
    records = _pick(nsecs, nsec3s, limit)
    if isinstance(records, Denial):
        return records
    if isinstance(records, _Hashed):
        return _nsec3_nxdomain(qname, records)
    return _nsec_nxdomain(qname, records)


def deny_nodata(
    qname: dns.name.Name,
    qtype: int,
    nsecs: Sequence[dns.rrset.RRset],
    nsec3s: Sequence[dns.rrset.RRset],
    limit: int = NSEC3_ITERATION_LIMIT,
) -> Denial:
    """Prove ``qname`` has no ``qtype`` (nor CNAME): at the name, at an empty non-terminal,
    or at the wildcard that would have matched it (wildcard NODATA)."""
    records = _pick(nsecs, nsec3s, limit)
    if isinstance(records, Denial):
        return records
    if isinstance(records, _Hashed):
        return _nsec3_nodata(qname, qtype, records)
    return _nsec_nodata(qname, qtype, records)


def deny_closer_match(
    qname: dns.name.Name,
    encloser: dns.name.Name,
    nsecs: Sequence[dns.rrset.RRset],
    nsec3s: Sequence[dns.rrset.RRset],
    limit: int = NSEC3_ITERATION_LIMIT,
) -> Denial:
    """Prove that an answer synthesized from ``*.encloser`` was right to be: ``qname`` does
    not exist and no name between it and ``encloser`` does (RFC 4035 5.3.4, RFC 5155 8.8)."""
    records = _pick(nsecs, nsec3s, limit)
    if isinstance(records, Denial):
        return records
    if isinstance(records, _Hashed):
        next_closer = qname.split(len(encloser) + 1)[1]
        if records.cover(next_closer) is None:
            return Denial(Proof.MISSING, f"no NSEC3 covers {next_closer}")
        return Denial(Proof.PROVEN, f"NSEC3 proves {qname} came from the wildcard")
    cover = _covering(records, qname)
    if cover is None or _encloser(qname, cover) != encloser:
        return Denial(Proof.MISSING, f"no NSEC proves {qname} came from *.{encloser}")
    return Denial(Proof.PROVEN, f"NSEC proves {qname} came from the wildcard")


def deny_ds(
    zone: dns.name.Name,
    nsecs: Sequence[dns.rrset.RRset],
    nsec3s: Sequence[dns.rrset.RRset],
    limit: int = NSEC3_ITERATION_LIMIT,
) -> Denial:
    """Prove there is no DS at ``zone``: ``delegation`` is True when it is a cut without DS
    (an insecure delegation), False when it is no cut at all (the parent's keys go on)."""
    records = _pick(nsecs, nsec3s, limit)
    if isinstance(records, Denial):
        return records
    if isinstance(records, _Hashed):
        match = records.match(zone)
        if match is None:
            proof = records.closest_encloser(zone)
            if isinstance(proof, Denial):
                return proof
            if proof[1].opt_out:
                return Denial(Proof.OPT_OUT, f"{zone} falls in an NSEC3 opt-out span", True)
            return Denial(Proof.PROVEN, f"NSEC3 proves {zone} does not exist")
        types = match.types
    else:
        found = next((n for n in records if n.owner == zone), None)
        if found is None:
            if _covering(records, zone) is None:
                return Denial(Proof.MISSING, f"no NSEC proves {zone} has no DS")
            return Denial(Proof.PROVEN, f"NSEC proves {zone} is no zone cut")
        types = found.types
    denial = _lacks(zone, _A_DS, types, "NSEC3" if isinstance(records, _Hashed) else "NSEC")
    if denial.proof is not Proof.PROVEN:
        return denial
    return Denial(Proof.PROVEN, denial.reason, _A_NS in types)
