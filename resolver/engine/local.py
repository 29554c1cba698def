"""Answers we give ourselves, without I/O: special-use names and a hosts file's names.

:class:`LocalAnswers` holds, for every name it answers, the finished reply for each type, and,
for every zone it serves, the reply for the names below the zone that it does not list; the
engine asks it before the cache. A question is answered here when its name is

* listed: the hosts file's names (A and AAAA) and reverse names (PTR, the first valid name given
  for the address), ``localhost.``, the reverse names of 127.0.0.1 and ::1, and the apex of every
  local zone (SOA and NS). A type the name lacks gets NODATA;
* below a local zone, unlisted: NXDOMAIN for the reverse zones of RFC 6303, ``invalid.``
  (RFC 6761 section 6.4) and ``onion.`` (RFC 7686), 127.0.0.1 and ::1 below ``localhost.``
  (RFC 6761 section 6.3).

Negative answers carry the zone's SOA, as Unbound's built-in local zones do (same SOA, same
TTL of three hours), so that clients cache them. Replies are in the engine's normalized form
(no OPT, RA set) with AA set: the data is ours. The hosts file's names outside any local zone
have no SOA to give: their NODATA goes without one.

A domain forwarded elsewhere (``[[forwarder.domains]]``) at or below a local zone takes that
part of the zone out of it (the longest name wins, as it does between forwarded domains), so
``168.192.in-addr.arpa`` can be sent to a home router; names from the hosts file stay.

Only class IN is answered. The lookup on every query is one dict lookup and, for a name ending
in a label that some local zone ends in (``arpa``, ``localhost``, ...), a walk over its labels.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Sequence
from typing import NamedTuple, Protocol

from resolver.cache import CacheKey
from resolver.config import LocalConfig
from resolver.errors import WireError
from resolver.wire.message import name_to_wire
from resolver.wire.raw import (
    AA,
    CLASS_IN,
    NOERROR,
    NXDOMAIN,
    QR,
    RA,
    TYPE_A,
    TYPE_NS,
    TYPE_SOA,
    ancestors,
)

__all__ = ["HOSTS_TTL", "LOCAL_TTL", "LocalAnswers", "LocalStatistics", "Question"]

TYPE_AAAA = 28
TYPE_PTR = 12

# Unbound's values for its built-in local zones: records and the SOA live three hours, and
# the SOA is "localhost. nobody.invalid. 1 3600 1200 604800 10800".
LOCAL_TTL = 10_800
# The hosts file is re-read on reload: a minute bounds how long clients keep an old answer.
HOSTS_TTL = 60
_SOA_TIMERS = struct.Struct("!5I").pack(1, 3600, 1200, 604_800, LOCAL_TTL)
_HEADER = struct.Struct("!6H")
_RR_FIXED = struct.Struct("!HHIH")  # type, class, ttl, rdlength
_TYPE_CLASS = struct.Struct("!HH")
_QUESTION_POINTER = b"\xc0\x0c"  # the question's name, at offset 12

_V4_LOOPBACK = ipaddress.ip_address("127.0.0.1").packed
_V6_LOOPBACK = ipaddress.ip_address("::1").packed

_LOCALHOST_ZONES = ("127.in-addr.arpa.", "1." + "0." * 31 + "ip6.arpa.")
_PRIVATE_REVERSE = (
    "10.in-addr.arpa.",
    *(f"{octet}.172.in-addr.arpa." for octet in range(16, 32)),
    "168.192.in-addr.arpa.",
    *(f"{octet}.100.in-addr.arpa." for octet in range(64, 128)),  # RFC 6598, RFC 7793
    "d.f.ip6.arpa.",  # fd00::/8, RFC 4193
)
_SPECIAL_REVERSE = (
    "0.in-addr.arpa.",
    "254.169.in-addr.arpa.",
    "2.0.192.in-addr.arpa.",
    "100.51.198.in-addr.arpa.",
    "113.0.203.in-addr.arpa.",
    "255.255.255.255.in-addr.arpa.",
    "0." * 32 + "ip6.arpa.",
    "8.e.f.ip6.arpa.",
    "9.e.f.ip6.arpa.",
    "a.e.f.ip6.arpa.",
    "b.e.f.ip6.arpa.",
    "8.b.d.0.1.0.0.2.ip6.arpa.",
)
_SPECIAL_NAMES = ("invalid.", "onion.")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class Question(Protocol):
    """What ``LocalAnswers.answer`` reads of a question (``driver.Ask`` is one)."""

    @property
    def key(self) -> CacheKey: ...  # its name lowercased

    @property
    def name(self) -> bytes: ...  # as asked, uncompressed wire form

    @property
    def qtype(self) -> int: ...

    @property
    def qclass(self) -> int: ...


class _Reply(NamedTuple):
    """A reply without its question: ``head + name + type and class + tail`` is whole."""

    head: bytes
    tail: bytes


class _Node(NamedTuple):
    """What a name (or the unlisted names below a zone) answers: ``answers`` by type, the
    ``otherwise`` reply for every other type."""

    answers: dict[int, _Reply]
    otherwise: _Reply


class LocalStatistics(NamedTuple):
    names: int  # listed names
    zones: int  # local zones
    forwarded: int  # domains inside them forwarded elsewhere
    distinct: int  # distinct sets of answers among the names (names with equal data share)


def _wire(name: str) -> bytes:
    return name_to_wire(name).lower()


def _last_label(key: bytes) -> bytes:
    """The top-level label of a name below the root, with the root: ``b"\\x04arpa\\x00"``."""
    last = key
    for last in ancestors(key):  # noqa: B007
        pass
    return last


def _record(owner: bytes, rtype: int, ttl: int, rdata: bytes) -> bytes:
    return owner + _RR_FIXED.pack(rtype, CLASS_IN, ttl, len(rdata)) + rdata


class _Builder:
    """Collects records by name and type, then makes the finished nodes (shared where equal,
    so a blocklist of many names with one address costs one node)."""

    def __init__(self) -> None:
        self.zones: dict[bytes, bool] = {}  # apex -> below it, every name is the localhost
        self.records: dict[bytes, dict[int, list[tuple[int, bytes]]]] = {}
        self.from_hosts: set[tuple[bytes, int]] = set()
        self.forwarded: set[bytes] = set()
        self._replies: dict[tuple[int, tuple[bytes, ...], bytes], _Reply] = {}
        self._nodes: dict[tuple[tuple[tuple[int, _Reply], ...], _Reply], _Node] = {}

    def zone(self, apex: str, *, redirect: bool = False) -> None:
        key = _wire(apex)
        self.zones[key] = redirect
        self.add(key, TYPE_SOA, LOCAL_TTL, self._soa_rdata())
        self.add(key, TYPE_NS, LOCAL_TTL, _wire("localhost."))

    def add(self, key: bytes, rtype: int, ttl: int, rdata: bytes) -> None:
        self.records.setdefault(key, {}).setdefault(rtype, []).append((ttl, rdata))

    def add_hosts(self, key: bytes, rtype: int, rdata: bytes) -> None:
        """A hosts record: the first for a name and type replaces the built-in ones; a PTR
        keeps only the first name."""
        types = self.records.setdefault(key, {})
        if (key, rtype) not in self.from_hosts:
            self.from_hosts.add((key, rtype))
            types[rtype] = []
        elif rtype == TYPE_PTR:
            return
        if (HOSTS_TTL, rdata) not in types[rtype]:
            types[rtype].append((HOSTS_TTL, rdata))

    @staticmethod
    def _soa_rdata() -> bytes:
        return _wire("localhost.") + _wire("nobody.invalid.") + _SOA_TIMERS

    def zone_of(self, key: bytes) -> bytes | None:
        """The closest local zone or forwarded domain at or above ``key``."""
        for suffix in ancestors(key):
            if suffix in self.zones or suffix in self.forwarded:
                return suffix
        return None

    def forward(self, domain: str) -> None:
        """Take ``domain`` and the names below it out of the local zones (not the hosts')."""
        key = _wire(domain)
        if not any(zone in self.zones for zone in ancestors(key)):
            return  # outside every local zone: nothing here to give way
        self.forwarded.add(key)
        self.zones.pop(key, None)
        for name in [name for name in self.records if key in ancestors(name)]:
            types = self.records[name]
            for rtype in [t for t in types if (name, t) not in self.from_hosts]:
                del types[rtype]
            if not types:
                del self.records[name]

    def reply(self, rcode: int, answers: Sequence[bytes], soa_owner: bytes | None) -> _Reply:
        key = (rcode, tuple(answers), soa_owner or b"")
        found = self._replies.get(key)
        if found is None:
            authority = b""
            if soa_owner is not None:
                authority = _record(soa_owner, TYPE_SOA, LOCAL_TTL, self._soa_rdata())
            head = _HEADER.pack(0, QR | AA | RA | rcode, 1, len(answers), 1 if authority else 0, 0)
            found = self._replies[key] = _Reply(head, b"".join(answers) + authority)
        return found

    def node(self, answers: dict[int, _Reply], otherwise: _Reply) -> _Node:
        key = (tuple(sorted(answers.items())), otherwise)
        found = self._nodes.get(key)
        if found is None:
            found = self._nodes[key] = _Node(answers, otherwise)
        return found

    def build(self) -> LocalAnswers:
        # Empty non-terminals: a listed name's ancestors inside a zone exist (RFC 8020).
        for name in list(self.records):
            zone = self.zone_of(name)
            if zone is None or zone in self.forwarded or self.zones[zone]:
                continue
            for ancestor in ancestors(name):
                if ancestor == zone:
                    break
                self.records.setdefault(ancestor, {})
        names: dict[bytes, _Node] = {}
        for name, types in self.records.items():
            zone = self.zone_of(name)
            soa = zone if zone is not None and zone not in self.forwarded else None
            answers = {
                rtype: self.reply(
                    NOERROR,
                    [_record(_QUESTION_POINTER, rtype, ttl, rdata) for ttl, rdata in records],
                    None,
                )
                for rtype, records in types.items()
                if records
            }
            names[name] = self.node(answers, self.reply(NOERROR, (), soa))
        zones: dict[bytes, _Node | None] = dict.fromkeys(self.forwarded)
        for apex, redirect in self.zones.items():
            if redirect:
                loopback = {
                    TYPE_A: self.reply(
                        NOERROR, [_record(_QUESTION_POINTER, TYPE_A, LOCAL_TTL, _V4_LOOPBACK)], None
                    ),
                    TYPE_AAAA: self.reply(
                        NOERROR,
                        [_record(_QUESTION_POINTER, TYPE_AAAA, LOCAL_TTL, _V6_LOOPBACK)],
                        None,
                    ),
                }
                zones[apex] = self.node(loopback, self.reply(NOERROR, (), apex))
            else:
                zones[apex] = self.node({}, self.reply(NXDOMAIN, (), apex))
        return LocalAnswers(names, zones)


class LocalAnswers:
    """The questions answered here (see the module). Immutable once built; a reload builds a
    new one and puts it in the engine's place."""

    __slots__ = ("_endings", "_names", "_zones")

    def __init__(self, names: dict[bytes, _Node], zones: dict[bytes, _Node | None]) -> None:
        self._names = names
        self._zones = zones
        # The last label (and the root) of every zone: a name ending otherwise is in none.
        self._endings = tuple(sorted({_last_label(apex) for apex in zones}))

    @classmethod
    def build(
        cls,
        config: LocalConfig,
        hosts: Iterable[tuple[Address, Sequence[str]]] = (),
        *,
        forwarded: Iterable[str] = (),
    ) -> LocalAnswers:
        """The answers ``config`` switches on, plus ``hosts`` (address and names, as
        ``resolver.hosts`` reads them), minus the domains ``forwarded`` elsewhere. A name that
        is not a valid domain name is skipped. Raises nothing else."""
        builder = _Builder()
        if config.localhost:
            builder.zone("localhost.", redirect=True)
            builder.add(_wire("localhost."), TYPE_A, LOCAL_TTL, _V4_LOOPBACK)
            builder.add(_wire("localhost."), TYPE_AAAA, LOCAL_TTL, _V6_LOOPBACK)
            for apex in _LOCALHOST_ZONES:
                builder.zone(apex)
            for loopback in ("127.0.0.1", "::1"):
                reverse = _wire(ipaddress.ip_address(loopback).reverse_pointer + ".")
                builder.add(reverse, TYPE_PTR, LOCAL_TTL, _wire("localhost."))
        if config.private_reverse:
            for apex in _PRIVATE_REVERSE:
                builder.zone(apex)
        if config.special_reverse:
            for apex in _SPECIAL_REVERSE:
                builder.zone(apex)
        if config.special_names:
            for apex in _SPECIAL_NAMES:
                builder.zone(apex)
        for domain in forwarded:
            builder.forward(domain)
        named: set[Address] = set()  # addresses with their PTR: only the first name counts
        for address, host_names in hosts:
            rtype = TYPE_A if address.version == 4 else TYPE_AAAA
            packed = address.packed
            for text in host_names:
                try:
                    wire = name_to_wire(text if text.endswith(".") else text + ".")
                except WireError:
                    continue
                builder.add_hosts(wire.lower(), rtype, packed)
                if address not in named:
                    named.add(address)
                    builder.add_hosts(_wire(address.reverse_pointer + "."), TYPE_PTR, wire)
        return builder.build()

    def answer(self, question: Question) -> bytes | None:
        """The reply to ``question``, with its name as asked, or None when it is not ours to
        answer."""
        # The common case, a name that is not ours, costs one dict lookup and one endswith.
        key = question.key.name
        node = self._names.get(key)
        if node is None:
            if not key.endswith(self._endings):
                return None
            node = self._below(key)
            if node is None:
                return None
        qtype, qclass = question.qtype, question.qclass
        if qclass != CLASS_IN:
            return None
        reply = node.answers.get(qtype) or node.otherwise
        return reply.head + question.name + _TYPE_CLASS.pack(qtype, qclass) + reply.tail

    def _below(self, key: bytes) -> _Node | None:
        """The zone's answer for an unlisted name: the closest zone (or forwarded domain,
        None) at or above it."""
        zones = self._zones
        for suffix in ancestors(key):
            if suffix in zones:
                return zones[suffix]
        return None

    def statistics(self) -> LocalStatistics:
        forwarded = sum(1 for node in self._zones.values() if node is None)
        distinct = len({id(node) for node in self._names.values()})
        return LocalStatistics(len(self._names), len(self._zones) - forwarded, forwarded, distinct)

    def __repr__(self) -> str:
        s = self.statistics()
        return (
            f"<LocalAnswers names={s.names} zones={s.zones} forwarded={s.forwarded} "
            f"distinct={s.distinct}>"
        )
