"""Zones: master-file records checked as a zone and indexed by owner name and type.

`masterfile` reads the text (with dnspython); this module checks what makes a set of records a
zone, blaming the line at fault, and holds each record as a dnslib RR for the responder.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import logging
import os
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from resolver.authority.masterfile import Entry, read_master
from resolver.errors import ConfigError, WireError
from resolver.wire import CLASS_IN, RR, TYPE_A, TYPE_CNAME, TYPE_NS, TYPE_SOA, DNSLabel, parse

__all__ = [
    "TYPE_DNAME",
    "TYPE_DS",
    "Key",
    "Zone",
    "load_zone",
    "make_rr",
    "name_key",
    "parse_zone",
    "wire_labels",
    "wire_name",
]

Key = tuple[bytes, ...]
"""A domain name as its lowercased labels, leftmost first: the index key of a zone."""

TYPE_DNAME = 39
TYPE_DS = 43
_TYPE_AAAA = 28
_TYPE_RRSIG = 46
_TYPE_NSEC = 47
_TYPE_NSEC3 = 50
_TYPE_NSEC3PARAM = 51
# Types whose dnslib form the responder reads (targets, SOA timers) or that dnslib may compress
# (RFC 3597 4); every other type is held opaque, so dnslib's view of it cannot alter its bytes.
_STRUCTURED = frozenset({TYPE_A, TYPE_NS, TYPE_CNAME, TYPE_SOA, 12, 15, 16, _TYPE_AAAA})
_OPAQUE_CARRIER = 65534  # a private-use type dnslib has no class for: its rdata stays bytes
_BESIDE_CNAME = frozenset({TYPE_CNAME, _TYPE_RRSIG, _TYPE_NSEC})  # RFC 4035 2.5
_HEADER_ONE_ANSWER = struct.pack("!6H", 0, 0, 0, 1, 0, 0)
_RR_FIXED = struct.Struct("!HHIH")

_log = logging.getLogger("resolver.authority")


def name_key(name: Any) -> Key:
    """Return the lookup key of a DNSLabel (or of text dnslib accepts as a name)."""
    label = name if isinstance(name, DNSLabel) else DNSLabel(name)
    return tuple(part.lower() for part in label.label)


def wire_labels(name: bytes) -> tuple[bytes, ...]:
    """The labels of an uncompressed wire name, leftmost first, root excluded."""
    labels: list[bytes] = []
    pos = 0
    while pos < len(name) and name[pos]:
        labels.append(name[pos + 1 : pos + 1 + name[pos]])
        pos += 1 + name[pos]
    return tuple(labels)


class Zone:
    """One zone's records, indexed by owner name and type.

    The apex is the owner of the zone's one SOA; ``origin`` is it as text with a trailing dot.
    ``delegations`` are the names below the apex that own NS records (zone cuts); records at or
    below a cut are glue, served only in referrals; ``dnames`` maps each DNAME owner to its
    target. Construction checks the records as a zone and raises ConfigError whose ``field`` is
    the ``file:line`` at fault: no SOA or more than one, no NS at the apex, a record outside
    the zone, a duplicate record, a CNAME beside other data or two at one name, two DNAMEs at
    one name or data below a DNAME. Records of one RRset that disagree on their TTL all take
    the first one's, as BIND does (RFC 2181 5.2 wants them equal).
    """

    def __init__(self, entries: Sequence[Entry], *, source: str = "<zone>") -> None:
        self.source = source
        soa_entry = _single_soa(entries, source)
        self.apex: Key = tuple(label.lower() for label in soa_entry.owner)
        self.origin: str = str(DNSLabel(soa_entry.owner))
        self._nodes: dict[Key, dict[int, list[Any]]] = {}
        self._where: dict[tuple[Key, int], str] = {}
        self.dnames: dict[Key, tuple[bytes, ...]] = {}
        # NSEC3 records (and their RRSIGs) by the hash label of their owner: their owner
        # names are no names of the zone's tree (RFC 5155 7.2.8).
        self._nsec3: dict[bytes, dict[int, list[Any]]] = {}
        seen: dict[tuple[Key, int, bytes], str] = {}
        for entry in entries:
            self._add(entry, seen)
        self._fill_empty_non_terminals()
        self.soa: Any = self._nodes[self.apex][TYPE_SOA][0]
        if not self.rrset(self.apex, TYPE_NS):
            raise ConfigError(soa_entry.where, f"the zone {self.origin} has no NS at its apex")
        self.delegations: frozenset[Key] = frozenset(
            key for key, types in self._nodes.items() if key != self.apex and TYPE_NS in types
        )
        self._check_below_dnames()
        self._nsec_owners: list[Key] = sorted(
            (key for key, types in self._nodes.items() if _TYPE_NSEC in types), key=_canonical
        )
        self._nsec3_hashes: list[bytes] = sorted(self._nsec3)
        self.nsec3_params: tuple[bytes, int] | None = self._read_nsec3_params()

    def __repr__(self) -> str:
        return (
            f"<Zone {self.origin} names={len(self._nodes)} records={self.records} "
            f"delegations={len(self.delegations)}>"
        )

    @property
    def records(self) -> int:
        """How many records the zone holds."""
        nodes = list(self._nodes.values()) + list(self._nsec3.values())
        return sum(len(rrs) for types in nodes for rrs in types.values())

    @property
    def serial(self) -> int:
        """The SOA serial."""
        return int(self.soa.rdata.times[0])

    def _add(self, entry: Entry, seen: dict[tuple[Key, int, bytes], str]) -> None:
        key = tuple(label.lower() for label in entry.owner)
        if not self.contains(key):
            raise ConfigError(entry.where, f"{entry.owner_text} is outside the zone {self.origin}")
        identity = (key, entry.rtype, entry.canonical)
        if identity in seen:
            raise ConfigError(
                entry.where,
                f"{entry.owner_text} {entry.type_text} repeats the record of {seen[identity]}",
            )
        seen[identity] = entry.where
        if entry.rtype == _TYPE_NSEC3 or (
            entry.rtype == _TYPE_RRSIG and entry.rdata[:2] == _TYPE_NSEC3.to_bytes(2, "big")
        ):
            if len(key) != len(self.apex) + 1:
                raise ConfigError(entry.where, f"{entry.owner_text} NSEC3 is not below the apex")
            node = self._nsec3.setdefault(key[0], {})
            node.setdefault(entry.rtype, []).append(_to_rr(entry, entry.ttl))
            return
        types = self._nodes.setdefault(key, {})
        self._check_cname(entry, types)
        rrset = types.setdefault(entry.rtype, [])
        ttl = entry.ttl
        if rrset and entry.rtype != _TYPE_RRSIG and rrset[0].ttl != ttl:
            ttl = int(rrset[0].ttl)
            _log.warning(
                "%s: TTL %d of %s %s differs from its RRset's; using %d",
                entry.where,
                entry.ttl,
                entry.owner_text,
                entry.type_text,
                ttl,
            )
        rr = _to_rr(entry, ttl)
        rrset.append(rr)
        self._where.setdefault((key, entry.rtype), entry.where)
        if entry.rtype == TYPE_DNAME:
            if key in self.dnames:
                raise ConfigError(entry.where, f"{entry.owner_text} has more than one DNAME")
            self.dnames[key] = wire_labels(entry.rdata)

    def _check_cname(self, entry: Entry, types: Mapping[int, list[Any]]) -> None:
        if entry.rtype == TYPE_CNAME and TYPE_CNAME in types:
            raise ConfigError(entry.where, f"{entry.owner_text} has more than one CNAME")
        if (entry.rtype == TYPE_CNAME and TYPE_DNAME in types) or (
            entry.rtype == TYPE_DNAME and TYPE_CNAME in types
        ):
            raise ConfigError(entry.where, f"{entry.owner_text} has both a CNAME and a DNAME")
        others = set(types) - _BESIDE_CNAME
        if (entry.rtype == TYPE_CNAME and others) or (
            TYPE_CNAME in types and entry.rtype not in _BESIDE_CNAME
        ):
            raise ConfigError(
                entry.where,
                f"{entry.owner_text} has a CNAME and other data; a CNAME must stand alone",
            )

    def _check_below_dnames(self) -> None:
        # A DNAME redirects every name below its owner (RFC 6672 2.4): data there could never
        # be reached, which is a mistake in the file.
        for key in self._nodes:
            for depth in range(len(self.apex), len(key)):
                owner = key[len(key) - depth :]
                if owner in self.dnames and self._nodes[key]:
                    first_type = next(iter(self._nodes[key]))
                    raise ConfigError(
                        self._where[(key, first_type)],
                        f"{DNSLabel(key)} is below the DNAME at {DNSLabel(owner)} and could"
                        " never be served",
                    )

    def _fill_empty_non_terminals(self) -> None:
        # An ancestor of an owner name exists even without records (RFC 4592 2.2.2): it must
        # answer NODATA, never NXDOMAIN, and it blocks wildcard matching below it.
        for key in list(self._nodes):
            for start in range(1, len(key) - len(self.apex) + 1):
                self._nodes.setdefault(key[start:], {})

    def contains(self, key: Key) -> bool:
        """True if the name ``key`` is at or below this zone's apex."""
        return key[len(key) - len(self.apex) :] == self.apex if self.apex else True

    def exists(self, key: Key) -> bool:
        """True if ``key`` owns records or is an empty non-terminal of this zone."""
        return key in self._nodes

    def names(self) -> list[Key]:
        """Every name of the zone: owners and empty non-terminals, glue included."""
        return list(self._nodes)

    def rrset(self, key: Key, rtype: int) -> list[Any]:
        """The records of type ``rtype`` owned by ``key`` (empty if none), glue included."""
        return list(self._nodes.get(key, {}).get(rtype, ()))

    def types_at(self, key: Key) -> Mapping[int, list[Any]]:
        """Every rrset owned by ``key``, by type (empty for missing names)."""
        return self._nodes.get(key, {})

    def cut_above(self, key: Key) -> Key | None:
        """The highest delegation point at or above ``key``, or None when ``key`` is ours."""
        for depth in range(len(self.apex) + 1, len(key) + 1):
            candidate = key[len(key) - depth :]
            if candidate in self.delegations:
                return candidate
        return None

    @property
    def signed(self) -> bool:
        """True if the zone holds a DNSSEC chain (NSEC or NSEC3): DO gets its proofs."""
        return bool(self._nsec_owners or self._nsec3_hashes)

    def signatures(self, key: Key, rtype: int) -> list[Any]:
        """The RRSIGs owned by ``key`` that cover ``rtype``."""
        covered = rtype.to_bytes(2, "big")
        return [rr for rr in self.rrset(key, _TYPE_RRSIG) if rr.rdata.data[:2] == covered]

    def nsec_covering(self, key: Key) -> Key | None:
        """The owner of the NSEC that matches ``key`` or, failing that, covers it (the one
        before it in canonical order, the last one wrapping around); None without NSEC."""
        if not self._nsec_owners:
            return None
        index = bisect.bisect_right(self._nsec_owners, _canonical(key), key=_canonical)
        return self._nsec_owners[index - 1]

    def nsec3_hash(self, key: Key) -> bytes:
        """The NSEC3 hash of ``key`` with the zone's parameters, as a lowercase label."""
        assert self.nsec3_params is not None
        salt, iterations = self.nsec3_params
        digest = hashlib.sha1(wire_name(key) + salt).digest()
        for _ in range(iterations):
            digest = hashlib.sha1(digest + salt).digest()
        return base64.b32hexencode(digest).lower()

    def nsec3_matching(self, key: Key) -> bytes | None:
        """The hash label of the NSEC3 matching ``key``, or None."""
        hashed = self.nsec3_hash(key)
        return hashed if hashed in self._nsec3 else None

    def nsec3_covering(self, key: Key) -> bytes:
        """The hash label of the NSEC3 that matches or covers ``key``."""
        hashed = self.nsec3_hash(key)
        index = bisect.bisect_right(self._nsec3_hashes, hashed)
        return self._nsec3_hashes[index - 1]

    def nsec3_records(self, hashed: bytes) -> list[Any]:
        """The NSEC3 record owned by the hash label ``hashed`` and its RRSIGs."""
        node = self._nsec3.get(hashed, {})
        return node.get(_TYPE_NSEC3, []) + node.get(_TYPE_RRSIG, [])

    def _read_nsec3_params(self) -> tuple[bytes, int] | None:
        params = self.rrset(self.apex, _TYPE_NSEC3PARAM)
        if params:
            data = params[0].rdata.data
        elif self._nsec3:
            data = next(iter(self._nsec3.values()))[_TYPE_NSEC3][0].rdata.data
        else:
            return None
        iterations = int.from_bytes(data[2:4], "big")
        return bytes(data[5 : 5 + data[4]]), iterations

    def addresses(self, key: Key) -> list[Any]:
        """The A and AAAA records of ``key`` in this zone's data, glue included."""
        return self.rrset(key, TYPE_A) + self.rrset(key, _TYPE_AAAA)

    def negative_soa(self) -> Any:
        """The SOA for a negative answer: TTL min(SOA TTL, SOA minimum) (RFC 2308 3)."""
        soa = self.soa
        ttl = min(int(soa.ttl), int(soa.rdata.times[4]))
        return RR(soa.rname, rtype=TYPE_SOA, rclass=CLASS_IN, ttl=ttl, rdata=soa.rdata)


def _canonical(key: Key) -> Key:
    """The RFC 4034 6.1 sort key of a name: its labels from the rightmost."""
    return key[::-1]


def _single_soa(entries: Sequence[Entry], source: str) -> Entry:
    if not entries:
        raise ConfigError(source, "the zone file has no records")
    soas = [entry for entry in entries if entry.rtype == TYPE_SOA]
    if not soas:
        raise ConfigError(entries[0].where, "the zone has no SOA record; its apex needs one")
    if len(soas) > 1:
        raise ConfigError(soas[1].where, f"a second SOA; the first is at {soas[0].where}")
    return soas[0]


def _to_rr(entry: Entry, ttl: int) -> Any:
    try:
        return make_rr(entry.owner, entry.rtype, ttl, entry.rdata)
    except WireError as exc:
        # dnslib, which builds every reply, holds labels as UTF-8 text.
        if not all(_is_utf8(label) for label in entry.owner):
            what = f"the name {entry.owner_text} is"
        else:
            what = f"the {entry.type_text} data holds a name that is"
        raise ConfigError(entry.where, f"{what} not UTF-8, which this server cannot serve") from exc


def _is_utf8(label: bytes) -> bool:
    try:
        label.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def wire_name(labels: Sequence[bytes]) -> bytes:
    """The uncompressed wire form of the name with ``labels`` (leftmost first, no root)."""
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"


def make_rr(owner: Sequence[bytes], rtype: int, ttl: int, rdata: bytes) -> Any:
    """A dnslib RR of class IN from its owner's labels and its wire-form rdata.

    Types the responder reads (or that may be compressed) get dnslib's structured form, the
    rest opaque bytes. Raises WireError if dnslib cannot read the rdata as that type.
    """
    carrier = rtype if rtype in _STRUCTURED else _OPAQUE_CARRIER
    # dnslib refuses to parse an empty rdata: carry one byte and empty it after.
    carried = rdata or b"\x00"
    fixed = _RR_FIXED.pack(carrier, CLASS_IN, ttl, len(carried))
    rr = parse(_HEADER_ONE_ANSWER + wire_name(owner) + fixed + carried).rr[0]
    if not rdata:
        rr.rdata.data = b""
    rr.rtype = rtype
    return rr


def load_zone(path: str | os.PathLike[str]) -> Zone:
    """Read and parse the zone file at ``path``.

    ``$INCLUDE`` paths are relative to the file's directory. Raises ConfigError naming the
    file and line at fault (the file alone when it cannot be read).
    """
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, f"cannot read zone file: {exc}") from exc
    return parse_zone(text, source=source, directory=Path(source).parent)


def parse_zone(
    text: str,
    *,
    source: str = "<zone>",
    origin: str | None = None,
    directory: Path | None = None,
) -> Zone:
    """Parse master-file ``text`` into a Zone; ``origin`` is the starting ``$ORIGIN`` if given.

    The zone's apex is the owner of its SOA. ``$INCLUDE`` paths are relative to ``directory``
    (the current directory if None). Raises ConfigError with field ``source:line``.
    """
    return Zone(read_master(text, source=source, origin=origin, directory=directory), source=source)
