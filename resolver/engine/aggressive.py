"""Aggressive use of the DNSSEC-validated cache (RFC 8198): answers made from secure NSEC
records already validated, without asking the zone's servers; plain code on the RRset cache,
no I/O.

What is learnt (``learn``): from a secure negative or wildcard answer, its NSEC RRsets with
their RRSIGs, each kept for the least of its TTL, the zone's SOA minimum when the reply
carried the SOA (RFC 8198 5.4) and the validator's cap (the signatures' validity); the SOA of
a negative answer with its RRSIGs; and the RRset a wildcard answer was expanded from, under
the wildcard's own name (``*.closest-encloser``) with its RRSIGs: the signature over an
expanded RRset is the signature over the wildcard's (RFC 4035 5.3.2). All of it goes to the
RRset cache, security secure; NSEC RRsets join their zone's chain there.

What is made (``synthesise``), for a name in a zone the validator holds secure:

- NODATA: a secure NSEC at the name whose type bitmap has neither the type asked nor CNAME
  (and that is no parent side of a zone cut);
- NXDOMAIN: an NSEC covering the name and one covering the wildcard at its closest encloser;
- a wildcard answer: an NSEC covering the name and the secure RRset of the type asked at the
  wildcard, with its RRSIGs (which prove the wildcard exists); the answer carries the RRSIGs
  and the covering NSEC (for a client with DO), as the authority would have sent it;
- a wildcard NODATA: an NSEC covering the name, and the wildcard's NSEC without the type.

Anything short of that (an empty non-terminal, a wildcard CNAME, a wildcard whose data of
that type is not cached, no SOA for a negative answer) is asked of the servers as before.
NSEC3 is not used: as Unbound's ``aggressive-nsec``, only NSEC chains are, so no answer is
ever made from an NSEC3 opt-out span; an NSEC3 zone would need every name hashed against a
chain kept in hash order for what it saves.
"""

from __future__ import annotations

from typing import NamedTuple

from resolver.rrsets import Rank, RRset, RRsetCache, Security, canonical_key
from resolver.wire.records import Record

__all__ = ["Synthesis", "expanded", "learn", "synthesise"]

_CLASS_IN = 1
_TYPE_NS = 2
_TYPE_CNAME = 5
_TYPE_SOA = 6
_TYPE_DNAME = 39
_TYPE_DS = 43
_TYPE_RRSIG = 46
_TYPE_NSEC = 47
_WILD = b"\x01*"


class Synthesis(NamedTuple):
    """An answer made from the validated cache: rcode, the answer records, the authority
    records without DNSSEC (the SOA of a negative answer), the RRSIG and NSEC records a
    client with DO gets (answer side, authority side), and what made it (for the log)."""

    rcode: int
    answer: list[Record]
    authority: list[Record]
    answer_sigs: list[Record]
    proofs: list[Record]
    what: str


def _covered(rdata: bytes) -> int:
    return int.from_bytes(rdata[:2], "big") if len(rdata) >= 2 else -1


def _signer(rdata: bytes) -> bytes | None:
    """The signer's name of an RRSIG rdata (uncompressed, RFC 4034 3.1.7), lowercased."""
    pos = 18
    end = len(rdata)
    while pos < end and rdata[pos]:
        pos += rdata[pos] + 1
    if pos >= end:
        return None
    return rdata[18 : pos + 1].lower()


def _labels(name: bytes) -> int:
    """The RRSIG label count of a wire-form name: its labels, root and a leading ``*`` not
    counted (RFC 4034 3.1.3)."""
    count = 0
    pos = 0
    while name[pos]:
        count += 1
        pos += name[pos] + 1
    if name.startswith(_WILD):
        count -= 1
    return count


def _suffix(name: bytes, labels: int) -> bytes:
    """The last ``labels`` labels of ``name`` (with the root)."""
    cuts: list[int] = []
    pos = 0
    while name[pos]:
        cuts.append(pos)
        pos += name[pos] + 1
    if labels >= len(cuts):
        return name
    return name[cuts[len(cuts) - labels] :]


def _under(name: bytes, zone: bytes) -> bool:
    if name == zone or zone == b"\x00":
        return True
    start = len(name) - len(zone)
    if start <= 0 or not name.endswith(zone):
        return False
    pos = 0
    while pos < start:
        pos += name[pos] + 1
    return pos == start


def _nsec(rdata: bytes) -> tuple[bytes, frozenset[int]] | None:
    """An NSEC rdata's next name (lowercased) and the types of its bitmap; None when it
    does not parse."""
    pos = 0
    end = len(rdata)
    while pos < end and rdata[pos]:
        pos += rdata[pos] + 1
    if pos >= end:
        return None
    next_name = rdata[: pos + 1].lower()
    pos += 1
    types: set[int] = set()
    while pos + 2 <= end:
        window, size = rdata[pos], rdata[pos + 1]
        bitmap = rdata[pos + 2 : pos + 2 + size]
        if len(bitmap) != size:
            return None
        for index, byte in enumerate(bitmap):
            if byte:
                for bit in range(8):
                    if byte & (0x80 >> bit):
                        types.add(window * 256 + index * 8 + bit)
        pos += 2 + size
    return next_name, frozenset(types)


class _Span(NamedTuple):
    """One NSEC record read: its owner's and next name's canonical keys, the next name and
    the types of its bitmap."""

    low: tuple[bytes, ...]
    high: tuple[bytes, ...]
    next_name: bytes
    types: frozenset[int]

    def covers(self, key: tuple[bytes, ...]) -> bool:
        """Whether the name of canonical ``key`` falls strictly between owner and next."""
        low, high = self.low, self.high
        if low < high:
            return low < key < high
        return key > low or key < high  # the zone's last NSEC points back to its apex

    def encloser(self, key: tuple[bytes, ...]) -> int:
        """How many labels the closest encloser of a covered name has: the most it shares
        with the owner or the next name."""
        common = 0
        for other in (self.low, self.high):
            shared = 0
            for mine, theirs in zip(key, other, strict=False):
                if mine != theirs:
                    break
                shared += 1
            common = max(common, shared)
        return common


_SPANS_MAX = 4096
# NSEC records read, by owner and rdata: the same few cover name after name.
_spans: dict[tuple[bytes, bytes], _Span | None] = {}


def _span(rrset: RRset) -> _Span | None:
    """The NSEC RRset's (first) record read, or None when it does not parse."""
    key = (rrset.name, rrset.rdatas[0])
    if key in _spans:
        return _spans[key]
    read = _nsec(rrset.rdatas[0])
    span = None
    if read is not None:
        span = _Span(canonical_key(rrset.name), canonical_key(read[0]), read[0], read[1])
    if len(_spans) >= _SPANS_MAX:
        _spans.clear()
    _spans[key] = span
    return span


def _cut(types: frozenset[int]) -> bool:
    return _TYPE_NS in types and _TYPE_SOA not in types


def _secure(rrset: RRset | None) -> RRset | None:
    if rrset is None or rrset.security is not Security.SECURE or not rrset.sigs:
        return None
    return rrset


def _records(rrset: RRset, name: bytes, ttl: int) -> list[Record]:
    return [Record(name, rrset.rtype, _CLASS_IN, ttl, rdata) for rdata in rrset.rdatas]


def _sigs(rrset: RRset, name: bytes, ttl: int) -> list[Record]:
    return [Record(name, _TYPE_RRSIG, _CLASS_IN, ttl, rdata) for rdata in rrset.sigs]


def _proof(rrset: RRset, ttl: int) -> list[Record]:
    return [*_records(rrset, rrset.name, ttl), *_sigs(rrset, rrset.name, ttl)]


def synthesise(
    rrsets: RRsetCache, name: bytes, qtype: int, zone: bytes, now: float
) -> Synthesis | None:
    """The answer to ``name qtype`` (lowercase wire form) made from the secure NSEC records
    of ``zone`` (the deepest zone known to hold the name, which the caller checked is
    secure) in ``rrsets``, or None when they do not prove one (see the module)."""
    get = rrsets.get
    exact = _secure(get(name, _TYPE_NSEC, now))
    if exact is not None:
        span = _span(exact)
        if span is None:
            return None
        types = span.types
        if qtype in types or _TYPE_CNAME in types or _cut(types):
            return None
        return _negative(rrsets, zone, 0, [exact], now, f"the NSEC at the name lacks {qtype}")
    cover = _secure(rrsets.covering(zone, name, now))
    if cover is None:
        return None
    span = _span(cover)
    key = canonical_key(name)
    if span is None or not span.covers(key):
        return None
    if _under(name, cover.name) and (_cut(span.types) or _TYPE_DNAME in span.types):
        return None  # the NSEC of a cut or DNAME above the name proves nothing below it
    if _under(span.next_name, name):
        return None  # an empty non-terminal: asked, not made
    common = span.encloser(key)
    wild = _WILD + _suffix(name, common)
    if len(wild) > 255 or common < len(canonical_key(zone)):
        return None
    data = _secure(get(wild, qtype, now, min_rank=Rank.ANSWER))
    if data is not None and data.rdatas:
        # The wildcard's own validated RRset proves it exists (RFC 8198 5.3).
        ttl = min(data.remaining(now), cover.remaining(now))
        if ttl <= 0:
            return None
        return Synthesis(
            0,
            _records(data, name, ttl),
            [],
            _sigs(data, name, ttl),
            _proof(cover, ttl),
            "wildcard answer from the NSEC covering the name",
        )
    wild_nsec = _secure(get(wild, _TYPE_NSEC, now))
    if wild_nsec is None:
        wild_key = (*key[:common], b"*")
        wild_cover = cover
        if not span.covers(wild_key):
            found = _secure(rrsets.covering(zone, wild, now))
            found_span = _span(found) if found is not None else None
            if found is None or found_span is None or not found_span.covers(wild_key):
                return None
            wild_cover = found
        proofs = [cover] if wild_cover is cover else [cover, wild_cover]
        return _negative(rrsets, zone, 3, proofs, now, "NSEC covers the name and the wildcard")
    wild_span = _span(wild_nsec)
    if wild_span is None:
        return None
    if qtype in wild_span.types or _TYPE_CNAME in wild_span.types:
        return None  # the wildcard has the data, but it is not cached: asked
    return _negative(
        rrsets, zone, 0, [cover, wild_nsec], now, "NSEC covers the name; the wildcard lacks it"
    )


def _negative(
    rrsets: RRsetCache, zone: bytes, rcode: int, nsecs: list[RRset], now: float, what: str
) -> Synthesis | None:
    """A negative answer: the zone's secure SOA (its TTL no longer than its minimum or
    the NSEC records'), and for DO the NSEC records with their RRSIGs."""
    soa = _secure(rrsets.get(zone, _TYPE_SOA, now))
    if soa is None or not soa.rdatas or len(soa.rdatas[0]) < 20:
        return None
    minimum = int.from_bytes(soa.rdatas[0][-4:], "big")
    ttl = min(soa.remaining(now), minimum, *(n.remaining(now) for n in nsecs))
    if ttl <= 0:
        return None
    proofs = [*_sigs(soa, zone, ttl)]
    for nsec in dict.fromkeys(nsecs):
        proofs += _proof(nsec, ttl)
    return Synthesis(rcode, [], _records(soa, zone, ttl), [], proofs, what)


def learn(rrsets: RRsetCache, records: list[Record], cap: int | None, now: float) -> int:
    """Keep what a secure answer's ``records`` (its answer and authority records inside the
    zone, RRSIGs with them) offer for synthesis: NSEC RRsets, the SOA, and a wildcard-expanded
    RRset under the wildcard's name (see the module); ``cap`` the validator's TTL cap.
    Returns how many NSEC RRsets were stored."""
    sets: dict[tuple[bytes, int], list[Record]] = {}
    sigs: dict[tuple[bytes, int], list[Record]] = {}
    for record in records:
        if record.rclass != _CLASS_IN:
            continue
        owner = record.name.lower()
        if record.rtype == _TYPE_RRSIG:
            sigs.setdefault((owner, _covered(record.rdata)), []).append(record)
        else:
            sets.setdefault((owner, record.rtype), []).append(record)
    minimum: int | None = None
    for (_, rtype), found in sets.items():
        if rtype == _TYPE_SOA and len(found[0].rdata) >= 20:
            minimum = int.from_bytes(found[0].rdata[-4:], "big")
    stored = 0
    for (owner, rtype), found in sets.items():
        over = sigs.get((owner, rtype))
        if not over:
            continue
        signer = _signer(over[0].rdata)
        if signer is None or not _under(owner, signer):
            continue
        ttl = min(r.ttl for r in found)
        if cap is not None:
            ttl = min(ttl, cap)
        rdatas = tuple(dict.fromkeys(r.rdata for r in found))
        signatures = tuple(dict.fromkeys(r.rdata for r in over))
        if rtype == _TYPE_NSEC:
            if minimum is not None:
                ttl = min(ttl, minimum)  # RFC 8198 5.4
            else:
                soa = rrsets.get(signer, _TYPE_SOA, now)
                if soa is not None and soa.rdatas and len(soa.rdatas[0]) >= 20:
                    ttl = min(ttl, int.from_bytes(soa.rdatas[0][-4:], "big"))
            rrsets.put(
                owner,
                rtype,
                rdatas,
                ttl,
                Rank.AUTHORITY_AA,
                now,
                security=Security.SECURE,
                sigs=signatures,
                zone=signer,
            )
            stored += 1
        elif rtype == _TYPE_SOA:
            if owner == signer:
                rrsets.put(
                    owner, rtype, rdatas, ttl, Rank.AUTHORITY_AA, now,
                    security=Security.SECURE, sigs=signatures,
                )  # fmt: skip
        elif rtype != _TYPE_DS:
            labels = over[0].rdata[3] if len(over[0].rdata) > 3 else 0
            if labels < _labels(owner) and all(len(s.rdata) > 3 for s in over):
                # Expanded from a wildcard: the same RRset and signatures, under its name.
                source = _WILD + _suffix(owner, labels)
                if len(source) <= 255 and _under(source, signer):
                    rrsets.put(
                        source, rtype, rdatas, ttl, Rank.ANSWER_AA, now,
                        security=Security.SECURE, sigs=signatures,
                    )  # fmt: skip
    return stored


def expanded(records: list[Record]) -> bool:
    """Whether an RRSIG among ``records`` shows its RRset expanded from a wildcard (fewer
    labels than its owner has, RFC 4035 5.3.4)."""
    return any(
        r.rtype == _TYPE_RRSIG and len(r.rdata) > 3 and r.rdata[3] < _labels(r.name.lower())
        for r in records
    )
