"""What recursive mode remembers about the servers of the DNS, besides answers.

``Delegations``: zone cuts (a zone's NS set) and the addresses of name servers (A and AAAA
sets), kept in the RRset cache (``resolver.rrsets``) with the rank of where they were read, so
that the next question under a known zone goes straight to its servers. What is learnt in one
place is used everywhere: an address learnt as glue in one referral serves the same name
server in every zone it serves, and glue never replaces an address learnt from an answer, nor
a parent's NS set (a referral) the child's own (RFC 2181 section 5.4.1). The root comes from
the root hints and never expires. Names are lowercase wire form.

``ServerTimes``: each server address's round-trip time estimate (``rtt.RoundTrip``, the rule
upstreams are measured by too), as Unbound's infrastructure cache keeps it: faster servers are
asked first, a server that timed out looks slow (its estimate at least doubles) and so is asked
last, and one not heard of for 15 minutes is forgotten (and so tried afresh). Plain code: time
is passed in, nothing is sent.
"""

from __future__ import annotations

import math
import socket
from collections import OrderedDict
from typing import NamedTuple

from resolver.engine.hints import RootHints
from resolver.engine.rtt import RoundTrip
from resolver.rrsets import Rank, RRset, RRsetCache
from resolver.wire.raw import ancestors

__all__ = ["Delegations", "ServerTimes", "Zone"]

_ROOT = b"\x00"
_TYPE_A = 1
_TYPE_NS = 2
_TYPE_AAAA = 28
# Unbound's figure for a server never measured: asked before servers known to be slower.
UNKNOWN_RTT = 0.376
_FORGET_AFTER = 900.0
_MAX_SERVERS = 100_000
# RRsets kept per zone cut allowed: its NS set, its servers' A and AAAA sets, and answers.
_RRSETS_PER_ZONE = 4


class Zone(NamedTuple):
    """A zone cut: the zone's name and its name servers' names (lowercase wire form)."""

    name: bytes
    servers: tuple[bytes, ...]
    expires: float


def _text_address(rtype: int, rdata: bytes) -> str | None:
    if rtype == _TYPE_A and len(rdata) == 4:
        return socket.inet_ntop(socket.AF_INET, rdata)
    if rtype == _TYPE_AAAA and len(rdata) == 16:
        return socket.inet_ntop(socket.AF_INET6, rdata)
    return None


class Delegations:
    """Zone cuts and name server addresses with their expiry and rank (see the module), in
    ``rrsets`` (a new RRsetCache of ``_RRSETS_PER_ZONE * max_zones`` RRsets when None)."""

    def __init__(
        self, hints: RootHints, max_zones: int = 10_000, *, rrsets: RRsetCache | None = None
    ) -> None:
        self._root = Zone(_ROOT, hints.servers, math.inf)
        self._hint_addresses = dict(hints.addresses)
        self.rrsets = rrsets if rrsets is not None else RRsetCache(_RRSETS_PER_ZONE * max_zones)
        # A name server's addresses as text, with the RRsets they were read from.
        self._texts: dict[bytes, tuple[RRset | None, RRset | None, tuple[str, ...]]] = {}

    @property
    def root(self) -> Zone:
        return self._root

    def closest(self, name: bytes, now: float) -> Zone:
        """The deepest known, unexpired zone that holds ``name`` (itself or an ancestor);
        the root when none is known."""
        get = self.rrsets.get
        for suffix in ancestors(name):
            if suffix == _ROOT:
                break
            rrset = get(suffix, _TYPE_NS, now)
            if rrset is not None and rrset.rdatas:
                return Zone(suffix, rrset.rdatas, rrset.expires)
        return self._root

    def cuts(self, name: bytes, now: float) -> list[Zone]:
        """Every known, unexpired zone cut on the way to ``name`` (itself or an ancestor),
        the deepest first, the root excluded: the zones a resolution of ``name`` follows
        from what is known now (the response policy's name server triggers read them)."""
        get = self.rrsets.get
        found: list[Zone] = []
        for suffix in ancestors(name):
            if suffix == _ROOT:
                break
            rrset = get(suffix, _TYPE_NS, now)
            if rrset is not None and rrset.rdatas:
                found.append(Zone(suffix, rrset.rdatas, rrset.expires))
        return found

    def zone(self, name: bytes, now: float) -> Zone | None:
        """The unexpired zone cut at exactly ``name``, None when unknown."""
        if name == _ROOT:
            return self._root
        rrset = self.rrsets.get(name, _TYPE_NS, now)
        if rrset is None or not rrset.rdatas:
            return None
        return Zone(name, rrset.rdatas, rrset.expires)

    def learn_zone(
        self,
        name: bytes,
        servers: tuple[bytes, ...],
        ttl: int,
        now: float,
        rank: Rank = Rank.AUTHORITY,
    ) -> Zone:
        """Remember that ``name`` is a zone served by ``servers`` for ``ttl`` seconds, as
        believed as ``rank`` says; returns the zone as now known (the one already known when
        it outranks what was learnt)."""
        if name == _ROOT or not servers:
            return self._root  # the hints stay the root: a referral to the root is lame anyway
        stored = self.rrsets.put(name, _TYPE_NS, servers, ttl, rank, now)
        if stored is None:
            # Refused for an unexpired RRset of higher rank: that one stands, unless it says
            # the name has no NS records (an answer's NODATA), when this cut is followed once.
            known = self.zone(name, now)
            return known if known is not None else Zone(name, servers, now + ttl)
        return Zone(name, stored.rdatas, stored.expires)

    def addresses(self, server: bytes, now: float) -> tuple[str, ...] | None:
        """The known addresses of the name server ``server`` (empty when it is known to have
        none), or None when unknown or expired."""
        get = self.rrsets.get
        v4 = get(server, _TYPE_A, now)
        v6 = get(server, _TYPE_AAAA, now)
        if v4 is None and v6 is None:
            return self._hint_addresses.get(server)
        memo = self._texts.get(server)
        if memo is not None and memo[0] is v4 and memo[1] is v6:
            return memo[2]  # the same RRsets as last time: their addresses as text
        found: list[str] = []
        for rrset in (v4, v6):
            if rrset is not None:
                for rdata in rrset.rdatas:
                    text = _text_address(rrset.rtype, rdata)
                    if text is not None:
                        found.append(text)
        addresses = tuple(found)
        if len(self._texts) >= _MAX_SERVERS:
            self._texts.clear()
        self._texts[server] = (v4, v6, addresses)
        return addresses

    def learn_addresses(
        self,
        server: bytes,
        addresses: tuple[str, ...],
        ttl: int,
        now: float,
        rank: Rank = Rank.ANSWER,
    ) -> None:
        """Remember ``server``'s addresses (empty: it has none) for ``ttl`` seconds, unless
        addresses of higher rank are known (glue never replaces an answer)."""
        v4 = tuple(socket.inet_pton(socket.AF_INET, a) for a in addresses if ":" not in a)
        v6 = tuple(socket.inet_pton(socket.AF_INET6, a) for a in addresses if ":" in a)
        put = self.rrsets.put
        if v4 or not addresses:
            put(server, _TYPE_A, v4, ttl, rank, now)
        if v6 or not addresses:
            put(server, _TYPE_AAAA, v6, ttl, rank, now)

    def learn_rrset(
        self,
        name: bytes,
        rtype: int,
        rdatas: tuple[bytes, ...],
        ttl: int,
        now: float,
        rank: Rank,
    ) -> None:
        """Store one RRset (an answer, an address) in the RRset cache by its rank."""
        self.rrsets.put(name, rtype, rdatas, ttl, rank, now)

    def statistics(self) -> tuple[int, int]:
        """How many zone cuts and name server address sets are kept (expired ones included
        until found expired)."""
        count = self.rrsets.count
        return count(_TYPE_NS), count(_TYPE_A) + count(_TYPE_AAAA)

    def __repr__(self) -> str:
        zones, servers = self.statistics()
        return f"<Delegations zones={zones} servers={servers} rrsets={len(self.rrsets)}>"


class ServerTimes:
    """Round-trip time estimates per server address (see the module)."""

    def __init__(self) -> None:
        # address -> (rtt, last heard of); an OrderedDict, whose first entry is found at
        # once however many were deleted before it (a dict's is not, see rrsets.py).
        self._times: OrderedDict[str, tuple[RoundTrip, float]] = OrderedDict()

    def estimate(self, address: str, now: float) -> float | None:
        """The RTT estimate of ``address`` in seconds, None when unknown or forgotten."""
        entry = self._times.get(address)
        if entry is None:
            return None
        if now - entry[1] > _FORGET_AFTER:
            del self._times[address]
            return None
        return entry[0].value

    def score(self, address: str, now: float) -> float:
        """What choosing ``address`` is expected to cost: its estimate, or Unbound's figure
        for a server never measured."""
        estimate = self.estimate(address, now)
        return UNKNOWN_RTT if estimate is None else estimate

    def timeout(self, address: str, ceiling: float, now: float) -> float:
        """How long to wait for ``address``: four times its estimate, at least 0.3 s (a busy
        machine delays replies it has already received), at most ``ceiling``; the ceiling
        for a server never measured or one that timed out."""
        estimate = self.estimate(address, now)
        if estimate is None:
            return ceiling
        return min(ceiling, max(0.3, 4 * estimate))

    def succeeded(self, address: str, rtt: float, now: float) -> None:
        self._heard(address, now).succeeded(rtt)

    def failed(self, address: str, waited: float, now: float) -> None:
        """``address`` did not answer in ``waited`` seconds (or could not be reached): its
        estimate becomes at least twice that, doubling on each failure in a row."""
        self._heard(address, now).failed(max(waited, UNKNOWN_RTT / 2))

    def _heard(self, address: str, now: float) -> RoundTrip:
        times = self._times
        entry = times.get(address)
        if entry is None or now - entry[1] > _FORGET_AFTER:
            if len(times) >= _MAX_SERVERS and address not in times:
                times.popitem(last=False)  # the first measured: about the oldest
            rtt = RoundTrip()
        else:
            rtt = entry[0]
        times[address] = (rtt, now)
        return rtt

    def __len__(self) -> int:
        return len(self._times)

    def __repr__(self) -> str:
        return f"<ServerTimes servers={len(self._times)}>"
