"""Zone files: parsing master-file text into a validated, indexed `Zone`.

dnslib's ``RR.fromZone`` parses each record; this module splits the text into logical records
first (comments, quotes, parentheses), so that an error can name its line, and handles the
``$ORIGIN`` and ``$TTL`` directives itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from resolver.errors import ConfigError
from resolver.wire import CLASS_IN, RR, TYPE_A, TYPE_CNAME, TYPE_NS, TYPE_SOA, DNSLabel, DNSRecord

__all__ = ["Key", "Zone", "load_zone", "name_key", "parse_zone"]

Key = tuple[bytes, ...]
"""A domain name as its lowercased labels, leftmost first: the index key of a zone."""

_TYPE_AAAA = 28
_TIME_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def name_key(name: Any) -> Key:
    """Return the lookup key of a DNSLabel (or of text dnslib accepts as a name)."""
    label = name if isinstance(name, DNSLabel) else DNSLabel(name)
    return tuple(part.lower() for part in label.label)


class Zone:
    """One zone's records, indexed by owner name and type.

    ``origin`` is the apex as text with a trailing dot. ``delegations`` are the names below the
    apex that own NS records (zone cuts); records at or below a cut are glue, served only in
    referrals. Construction validates the data and raises ConfigError (``field`` is
    ``source``) when there is not exactly one SOA at the apex, no NS at the apex, a record
    outside the origin, a class other than IN, or a CNAME beside other data.
    """

    def __init__(self, origin: str, records: Iterable[Any], *, source: str = "<zone>") -> None:
        self.origin: str = str(DNSLabel(origin))
        self.apex: Key = name_key(origin)
        self.source = source
        self._nodes: dict[Key, dict[int, list[Any]]] = {}
        for rr in records:
            self._add(rr)
        self._fill_empty_non_terminals()
        self.soa: Any = self._single_soa()
        if not self.rrset(self.apex, TYPE_NS):
            raise ConfigError(source, f"zone {self.origin} has no NS records at its apex")
        self.delegations: frozenset[Key] = frozenset(
            key for key, types in self._nodes.items() if key != self.apex and TYPE_NS in types
        )
        self._check_cnames()

    def __repr__(self) -> str:
        records = sum(len(rrs) for types in self._nodes.values() for rrs in types.values())
        return (
            f"<Zone {self.origin} names={len(self._nodes)} records={records} "
            f"delegations={len(self.delegations)}>"
        )

    def _add(self, rr: Any) -> None:
        key = name_key(rr.rname)
        if not self.contains(key):
            raise ConfigError(self.source, f"{rr.rname} is outside the zone {self.origin}")
        if rr.rclass != CLASS_IN:
            raise ConfigError(self.source, f"{rr.rname}: only class IN is served")
        self._nodes.setdefault(key, {}).setdefault(int(rr.rtype), []).append(rr)

    def _fill_empty_non_terminals(self) -> None:
        # An ancestor of an owner name exists even without records (RFC 4592 2.2.2): it must
        # answer NODATA, never NXDOMAIN, and it blocks wildcard matching below it.
        for key in list(self._nodes):
            for start in range(1, len(key) - len(self.apex) + 1):
                self._nodes.setdefault(key[start:], {})

    def _single_soa(self) -> Any:
        soas = [rr for types in self._nodes.values() for rr in types.get(TYPE_SOA, [])]
        if len(soas) != 1 or name_key(soas[0].rname) != self.apex:
            raise ConfigError(self.source, f"zone {self.origin} needs exactly one SOA, at its apex")
        return soas[0]

    def _check_cnames(self) -> None:
        for types in self._nodes.values():
            if TYPE_CNAME in types and (len(types) > 1 or len(types[TYPE_CNAME]) > 1):
                name = types[TYPE_CNAME][0].rname
                raise ConfigError(self.source, f"{name}: a CNAME must be the only record")

    def contains(self, key: Key) -> bool:
        """True if the name ``key`` is at or below this zone's apex."""
        return key[len(key) - len(self.apex) :] == self.apex if self.apex else True

    def exists(self, key: Key) -> bool:
        """True if ``key`` owns records or is an empty non-terminal of this zone."""
        return key in self._nodes

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

    def addresses(self, key: Key) -> list[Any]:
        """The A and AAAA records of ``key`` in this zone's data, glue included."""
        return self.rrset(key, TYPE_A) + self.rrset(key, _TYPE_AAAA)

    def negative_soa(self) -> Any:
        """The SOA for a negative answer: TTL min(SOA TTL, SOA minimum) (RFC 2308 3)."""
        soa = self.soa
        ttl = min(int(soa.ttl), int(soa.rdata.times[4]))
        return RR(soa.rname, rtype=TYPE_SOA, rclass=CLASS_IN, ttl=ttl, rdata=soa.rdata)


def load_zone(path: str | os.PathLike[str]) -> Zone:
    """Read and parse the zone file at ``path``.

    The origin is the last ``$ORIGIN`` before the first record, else the absolute owner of the
    SOA, which must then be the first record. Raises ConfigError naming the file (and the line
    where one is to blame) when the file cannot be read, a record cannot be parsed, or the zone
    fails Zone's checks.
    """
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, f"cannot read zone file: {exc}") from exc
    return parse_zone(text, source=source)


def parse_zone(text: str, *, source: str = "<zone>", origin: str | None = None) -> Zone:
    """Parse zone-file ``text`` into a Zone; ``origin`` is the starting ``$ORIGIN`` if given.

    Raises ConfigError with field ``"{source}:{line}"`` for a malformed line, or ``source``
    for a zone-level problem.
    """
    default_ttl = 3600
    current = DNSLabel(origin) if origin is not None else None
    previous_owner: str | None = None
    records: list[Any] = []
    for line, body, blank_owner in _logical_records(text, source):
        where = f"{source}:{line}"
        words = body.split()
        if words[0].startswith("$"):
            if words[0] == "$ORIGIN" and len(words) == 2:
                current = DNSLabel(words[1]) if current is None else _absolute(words[1], current)
            elif words[0] == "$TTL" and len(words) == 2:
                default_ttl = _parse_ttl(words[1], where)
            else:
                raise ConfigError(where, f"unsupported directive {body!r}")
            continue
        if blank_owner:
            if previous_owner is None:
                raise ConfigError(where, "record without an owner name and no previous owner")
            body = f"{previous_owner} {body}"
        if current is None:
            current = _origin_from_soa(words, where)
        rr = _parse_record(body, current, default_ttl, where)
        previous_owner = str(rr.rname)
        records.append(rr)
    if current is None:
        raise ConfigError(source, "the zone file has no records")
    return Zone(str(current), records, source=source)


def _absolute(name: str, origin: Any) -> Any:
    return DNSLabel(name) if name.endswith(".") else origin.add(name)


def _parse_ttl(word: str, where: str) -> int:
    unit = _TIME_UNITS.get(word[-1].lower(), 1)
    digits = word[:-1] if word[-1].lower() in _TIME_UNITS else word
    if not digits.isdigit():
        raise ConfigError(where, f"invalid TTL {word!r}")
    return int(digits) * unit


def _origin_from_soa(words: list[str], where: str) -> Any:
    if "SOA" not in words[1:4] or not words[0].endswith("."):
        raise ConfigError(
            where, "no $ORIGIN and the first record is not an SOA with an absolute owner"
        )
    return DNSLabel(words[0])


def _parse_record(body: str, origin: Any, default_ttl: int, where: str) -> Any:
    try:
        parsed = RR.fromZone(body, origin=origin, ttl=default_ttl)
        if len(parsed) != 1:
            raise ValueError(f"expected one record, parsed {len(parsed)}")
        rr = parsed[0]
        # Packing once proves the rdata encodes, so a bad field fails here, not in a reply.
        DNSRecord(rr=[rr]).pack()
    except Exception as exc:
        # dnslib raises its own DNSError (not re-exported by resolver.wire) as well as
        # ValueError, IndexError and others for bad input; all of them mean a bad line here.
        raise ConfigError(where, f"cannot parse record: {exc}") from exc
    return rr


def _logical_records(text: str, source: str) -> Iterator[tuple[int, str, bool]]:
    """Yield (first line, text without comments, owner left blank) per logical record."""
    parts: list[str] = []
    depth = 0
    start = 0
    blank_owner = False
    for number, line in enumerate(text.splitlines(), start=1):
        body, delta = _strip_comment(line, f"{source}:{number}")
        if depth == 0:
            if not body.strip():
                continue
            start, blank_owner = number, line[:1] in (" ", "\t")
        parts.append(body)
        depth += delta
        if depth < 0:
            raise ConfigError(f"{source}:{number}", "unbalanced ')'")
        if depth == 0:
            yield start, " ".join(parts).strip(), blank_owner
            parts = []
    if depth > 0:
        raise ConfigError(f"{source}:{start}", "'(' is never closed")


def _strip_comment(line: str, where: str) -> tuple[str, int]:
    """Return ``line`` without its comment, and its net count of parentheses outside quotes."""
    quoted = False
    escaped = False
    depth = 0
    for index, char in enumerate(line):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif not quoted and char == ";":
            return line[:index], depth
        elif not quoted and char in "()":
            depth += 1 if char == "(" else -1
    if quoted:
        raise ConfigError(where, "unterminated quoted string")
    return line, depth
