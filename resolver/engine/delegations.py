"""What recursive mode remembers about the servers of the DNS, besides answers.

``Delegations``: zone cuts learnt from referrals (a zone's NS names, for the TTL of its NS
records) and the addresses of name servers (from glue or from looking them up, for their TTL),
so that the next question under a known zone goes straight to its servers. The root comes from
the root hints and never expires. Names are lowercase wire form.

``ServerTimes``: each server address's round-trip time estimate (``rtt.RoundTrip``, the rule
upstreams are measured by too), as Unbound's infrastructure cache keeps it: faster servers are
asked first, a server that timed out looks slow (its estimate at least doubles) and so is asked
last, and one not heard of for 15 minutes is forgotten (and so tried afresh). Plain code: time
is passed in, nothing is sent.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from resolver.engine.hints import RootHints
from resolver.engine.rtt import RoundTrip
from resolver.wire.raw import ancestors

__all__ = ["Delegations", "ServerTimes", "Zone"]

_ROOT = b"\x00"
# Unbound's figure for a server never measured: asked before servers known to be slower.
UNKNOWN_RTT = 0.376
_FORGET_AFTER = 900.0
_MAX_SERVERS = 100_000


class Zone(NamedTuple):
    """A zone cut: the zone's name and its name servers' names (lowercase wire form)."""

    name: bytes
    servers: tuple[bytes, ...]
    expires: float


class Delegations:
    """Zone cuts and name server addresses with their expiry (see the module). At most
    ``max_zones`` of each are kept; the oldest learnt goes first."""

    def __init__(self, hints: RootHints, max_zones: int = 10_000) -> None:
        self._root = Zone(_ROOT, hints.servers, math.inf)
        self._hint_addresses = dict(hints.addresses)
        self._max = max_zones
        self._zones: dict[bytes, Zone] = {}
        self._addresses: dict[bytes, tuple[tuple[str, ...], float]] = {}

    @property
    def root(self) -> Zone:
        return self._root

    def closest(self, name: bytes, now: float) -> Zone:
        """The deepest known, unexpired zone that holds ``name`` (itself or an ancestor);
        the root when none is known."""
        zones = self._zones
        if zones:
            for suffix in ancestors(name):
                zone = zones.get(suffix)
                if zone is not None:
                    if zone.expires > now:
                        return zone
                    del zones[suffix]
        return self._root

    def learn_zone(self, name: bytes, servers: tuple[bytes, ...], ttl: int, now: float) -> Zone:
        """Remember that ``name`` is a zone served by ``servers`` for ``ttl`` seconds."""
        zone = Zone(name, servers, now + ttl)
        if name == _ROOT:
            return zone  # the hints stay the root: a referral to the root is lame anyway
        zones = self._zones
        zones.pop(name, None)
        if len(zones) >= self._max:
            del zones[next(iter(zones))]
        zones[name] = zone
        return zone

    def addresses(self, server: bytes, now: float) -> tuple[str, ...] | None:
        """The known addresses of the name server ``server`` (empty when it is known to have
        none), or None when unknown or expired."""
        entry = self._addresses.get(server)
        if entry is not None:
            if entry[1] > now:
                return entry[0]
            del self._addresses[server]
        return self._hint_addresses.get(server)

    def learn_addresses(
        self, server: bytes, addresses: tuple[str, ...], ttl: int, now: float
    ) -> None:
        """Remember ``server``'s addresses (empty: it has none) for ``ttl`` seconds."""
        table = self._addresses
        table.pop(server, None)
        if len(table) >= self._max:
            del table[next(iter(table))]
        table[server] = (addresses, now + ttl)

    def statistics(self) -> tuple[int, int]:
        """How many zone cuts and name server address sets are kept."""
        return len(self._zones), len(self._addresses)

    def __repr__(self) -> str:
        zones, servers = self.statistics()
        return f"<Delegations zones={zones} servers={servers}>"


class ServerTimes:
    """Round-trip time estimates per server address (see the module)."""

    def __init__(self) -> None:
        self._times: dict[str, tuple[RoundTrip, float]] = {}  # address -> (rtt, last heard of)

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
                del times[next(iter(times))]  # the first measured: about the oldest
            rtt = RoundTrip()
        else:
            rtt = entry[0]
        times[address] = (rtt, now)
        return rtt

    def __len__(self) -> int:
        return len(self._times)

    def __repr__(self) -> str:
        return f"<ServerTimes servers={len(self._times)}>"
