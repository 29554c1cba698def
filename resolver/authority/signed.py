"""What a signed zone adds to an answer when the query sets DO (RFC 4035 3.1), as NSD does
for a pre-signed zone: the RRSIGs over each RRset given, and the NSEC or NSEC3 records (with
their RRSIGs) that prove a name or type absent, a wildcard expansion right, or a delegation
unsigned. The zone file brings the records; nothing is signed here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from resolver.authority.zone import TYPE_DS, Key, Zone
from resolver.wire import RR

__all__ = [
    "no_ds_proof",
    "nodata_proof",
    "nxdomain_proof",
    "signatures",
    "wildcard_proof",
]

_TYPE_NSEC = 47


def signatures(zone: Zone, owner: Key, rtype: int, qname: Any, synthesized: bool) -> list[Any]:
    """The RRSIGs over ``owner``'s ``rtype`` RRset, owned by ``qname`` when the RRset was
    synthesized from a wildcard (their labels field still tells the wildcard apart)."""
    sigs = zone.signatures(owner, rtype)
    if not synthesized:
        return sigs
    return [RR(qname, rr.rtype, rr.rclass, rr.ttl, rr.rdata) for rr in sigs]


def _nsec(zone: Zone, owner: Key | None) -> list[Any]:
    if owner is None:
        return []
    return zone.rrset(owner, _TYPE_NSEC) + zone.signatures(owner, _TYPE_NSEC)


def _unique(groups: Iterable[list[Any]]) -> list[Any]:
    """The records of ``groups`` once each: one NSEC may prove two things."""
    records: list[Any] = []
    seen: set[int] = set()
    for group in groups:
        for rr in group:
            if id(rr) not in seen:  # the zone's own record objects: the same one, or another
                seen.add(id(rr))
                records.append(rr)
    return records


def _closest_provable(zone: Zone, key: Key) -> Key:
    """The closest ancestor of ``key`` (``key`` itself excluded) that owns an NSEC3: the
    closest encloser an NSEC3 proof can show."""
    for start in range(1, len(key) - len(zone.apex) + 1):
        if zone.nsec3_matching(key[start:]) is not None:
            return key[start:]
    return zone.apex


def _nsec3_encloser_proof(zone: Zone, key: Key) -> tuple[Key, list[list[Any]]]:
    """The closest encloser proof of ``key`` (RFC 5155 7.2.1): the NSEC3 matching the closest
    encloser and the one covering the next closer name."""
    encloser = _closest_provable(zone, key)
    next_closer = key[len(key) - len(encloser) - 1 :]
    matching = zone.nsec3_matching(encloser)
    groups = [zone.nsec3_records(matching)] if matching is not None else []
    groups.append(zone.nsec3_records(zone.nsec3_covering(next_closer)))
    return encloser, groups


def nxdomain_proof(zone: Zone, key: Key, encloser: Key) -> list[Any]:
    """NSEC: the NSEC covering ``key`` and the one covering the wildcard at its closest
    encloser. NSEC3: the closest encloser proof and the NSEC3 covering the wildcard."""
    if zone.nsec3_params is not None:
        encloser, groups = _nsec3_encloser_proof(zone, key)
        groups.append(zone.nsec3_records(zone.nsec3_covering((b"*", *encloser))))
        return _unique(groups)
    return _unique(
        [
            _nsec(zone, zone.nsec_covering(key)),
            _nsec(zone, zone.nsec_covering((b"*", *encloser))),
        ]
    )


def nodata_proof(zone: Zone, key: Key, owner: Key) -> list[Any]:
    """The proof that ``key`` has no data of the type asked: the NSEC (NSEC3) at the name;
    for an empty non-terminal without one, the NSEC covering it (the closest encloser proof);
    for a wildcard NODATA (``owner`` the wildcard), also the wildcard's own."""
    if zone.nsec3_params is not None:
        if owner != key:
            groups = _nsec3_encloser_proof(zone, key)[1]
            matching = zone.nsec3_matching(owner)
            if matching is not None:
                groups.append(zone.nsec3_records(matching))
            return _unique(groups)
        matching = zone.nsec3_matching(key)
        if matching is not None:
            groups = [zone.nsec3_records(matching)]
            parent = zone.nsec3_matching(key[1:]) if key and key[0] == b"*" else None
            if parent is not None:
                # The wildcard asked by its own name: NSD proves it as a wildcard NODATA,
                # with the closest encloser's NSEC3 too.
                groups.append(zone.nsec3_records(parent))
            return _unique(groups)
        return _unique(_nsec3_encloser_proof(zone, key)[1])
    if owner != key:
        return _unique([_nsec(zone, zone.nsec_covering(key)), _nsec(zone, owner)])
    return _nsec(zone, zone.nsec_covering(key))


def wildcard_proof(zone: Zone, key: Key, encloser: Key) -> list[Any]:
    """The proof that ``key`` itself does not exist, sent with an answer synthesized from
    the wildcard at ``encloser``: the NSEC covering it, or the NSEC3 covering the next closer
    name (RFC 5155 7.2.6)."""
    if zone.nsec3_params is not None:
        next_closer = key[len(key) - len(encloser) - 1 :]
        return zone.nsec3_records(zone.nsec3_covering(next_closer))
    return _nsec(zone, zone.nsec_covering(key))


def no_ds_proof(zone: Zone, cut: Key) -> list[Any]:
    """With a referral: the DS set at ``cut`` and its RRSIGs, or the proof there is none (the
    NSEC at the cut; the NSEC3 matching it, or for an opt-out delegation without one the
    closest encloser proof)."""
    ds = zone.rrset(cut, TYPE_DS)
    if ds:
        return ds + zone.signatures(cut, TYPE_DS)
    if zone.nsec3_params is not None:
        matching = zone.nsec3_matching(cut)
        if matching is not None:
            return zone.nsec3_records(matching)
        return _unique(_nsec3_encloser_proof(zone, cut)[1])
    return _nsec(zone, zone.nsec_covering(cut))
