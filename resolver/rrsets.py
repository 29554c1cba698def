"""The RRset cache of recursive mode: every record set the iteration has learnt, by owner,
type and class, with how far it is believed and how long.

Credibility follows RFC 2181 section 5.4.1, in the order Unbound's iterator uses
(:class:`Rank`): glue and other additional data, below the authority section of a
non-authoritative reply (a referral's NS set), below the answer of a non-authoritative reply,
below the authority section of an authoritative reply, below an authoritative answer. Data of
lower rank never replaces data of higher rank until that expires; data of the same or a higher
rank replaces what is there. Only answer data (``Rank.ANSWER`` and above) may be given to a
client; the rest only guides the iteration (section 5.4.1's "should not be cached in such a
way that they would ever be returned as answers").

Each RRset carries a DNSSEC security status (:class:`Security`), ``UNCHECKED`` until a
validator says otherwise, and an RRset with no records says that the name has no data of that
type (a NODATA learnt without an SOA, or a name server found to have no address).

Plain code: the time is passed in (``now``, seconds on any monotonic clock); no I/O. Names are
lowercase wire form. At most ``max_entries`` RRsets are kept; the least recently used goes
first.

The secure NSEC RRsets of each zone (stored with ``zone``) are also kept in the zone's
canonical order (RFC 4034 section 6.1), so that ``covering`` finds the one whose span holds a
name: what aggressive use of the validated cache (RFC 8198) reads. An RRset may carry the
RRSIG rdatas over it (``sigs``), so that data answered from it can go to a client with DO.
"""

from __future__ import annotations

import bisect
import enum
from collections import OrderedDict
from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["RRset", "RRsetCache", "RRsetStatistics", "Rank", "Security", "canonical_key"]

CLASS_IN = 1
TYPE_NSEC = 47


def canonical_key(name: bytes) -> tuple[bytes, ...]:
    """A lowercase wire-form name as a key that sorts in DNSSEC canonical order (RFC 4034
    section 6.1): its labels from the root down, each compared as octets."""
    labels: list[bytes] = []
    pos = 0
    while name[pos]:
        end = pos + 1 + name[pos]
        labels.append(name[pos + 1 : end])
        pos = end
    labels.reverse()
    return tuple(labels)


class Rank(enum.IntEnum):
    """How far an RRset is believed, by where it was read (RFC 2181 section 5.4.1)."""

    ADDITIONAL = 1  # the additional section (glue), of any reply
    AUTHORITY = 2  # the authority section of a reply without AA (a referral's NS set)
    ANSWER = 3  # the answer section of a reply without AA
    AUTHORITY_AA = 4  # the authority section of an authoritative reply
    ANSWER_AA = 5  # the answer section of an authoritative reply


class Security(enum.IntEnum):
    """The DNSSEC status of an RRset (RFC 4035 section 4.3); ``UNCHECKED`` until validated."""

    UNCHECKED = 0
    INSECURE = 1
    SECURE = 2
    BOGUS = 3
    INDETERMINATE = 4


class RRset(NamedTuple):
    """One record set: owner ``name`` (lowercase wire form), type, class, the records' rdata
    (self-contained, as ``wire.records.Record`` holds it; empty: the name has no data of this
    type), the TTL it was stored with, its expiry on the caller's clock, its rank, its
    security status, and the RRSIG rdatas over it (self-contained; none when not kept)."""

    name: bytes
    rtype: int
    rclass: int
    rdatas: tuple[bytes, ...]
    ttl: int
    expires: float
    rank: Rank
    security: Security
    sigs: tuple[bytes, ...] = ()

    def remaining(self, now: float) -> int:
        """The TTL left at ``now``, in whole seconds (0 once expired)."""
        left = self.expires - now
        return int(left) if left > 0 else 0


@dataclass(frozen=True, slots=True)
class RRsetStatistics:
    entries: int
    hits: int
    misses: int
    stored: int
    refused: int  # a store of lower rank than the unexpired RRset already there
    evicted: int  # pushed out by the size bound
    expired: int  # found expired and dropped


class RRsetCache:
    """RRsets by (name, type, class) with rank, expiry and security status (see the module).
    TTLs above ``max_ttl`` are stored as ``max_ttl`` (Unbound's cache-max-ttl)."""

    __slots__ = (
        "_by_type",
        "_entries",
        "_evicted",
        "_expired",
        "_hits",
        "_max",
        "_max_ttl",
        "_misses",
        "_nsec_chains",
        "_nsec_zone",
        "_refused",
        "_stored",
    )

    def __init__(self, max_entries: int = 100_000, *, max_ttl: int = 86_400) -> None:
        if max_entries < 1:
            raise ValueError("an RRset cache holds at least one RRset")
        self._max = max_entries
        self._max_ttl = max_ttl
        self._entries: OrderedDict[tuple[bytes, int, int], RRset] = OrderedDict()
        self._by_type: dict[int, int] = {}
        # The secure NSEC owners of each zone in canonical order, and each owner's zone.
        self._nsec_chains: dict[bytes, list[tuple[tuple[bytes, ...], bytes]]] = {}
        self._nsec_zone: dict[bytes, bytes] = {}
        self._hits = self._misses = self._stored = 0
        self._refused = self._evicted = self._expired = 0

    def get(
        self,
        name: bytes,
        rtype: int,
        now: float,
        rclass: int = CLASS_IN,
        *,
        min_rank: Rank = Rank.ADDITIONAL,
    ) -> RRset | None:
        """The unexpired RRset ``name rtype rclass`` of at least ``min_rank``, or None."""
        key = (name, rtype, rclass)
        entries = self._entries
        rrset = entries.get(key)
        if rrset is None:
            self._misses += 1
            return None
        if rrset.expires <= now:
            del entries[key]
            self._by_type[rtype] -= 1
            self._expired += 1
            self._misses += 1
            if rtype == TYPE_NSEC:
                self._unchain(name)
            return None
        entries.move_to_end(key)  # least recently used goes first
        if rrset.rank < min_rank:
            self._misses += 1
            return None
        self._hits += 1
        return rrset

    def put(
        self,
        name: bytes,
        rtype: int,
        rdatas: tuple[bytes, ...],
        ttl: int,
        rank: Rank,
        now: float,
        rclass: int = CLASS_IN,
        *,
        security: Security = Security.UNCHECKED,
        sigs: tuple[bytes, ...] = (),
        zone: bytes | None = None,
    ) -> RRset | None:
        """Store an RRset for ``ttl`` seconds (at most ``max_ttl``) unless an unexpired one of
        higher rank is there, with the RRSIG rdatas ``sigs`` over it. A secure NSEC RRset
        stored with its ``zone`` (lowercase wire form) joins that zone's chain (``covering``).
        Returns the RRset stored, or None when refused."""
        name = name.lower()
        key = (name, rtype, rclass)
        entries = self._entries
        old = entries.get(key)
        if old is not None:
            if old.expires > now and old.rank > rank:
                self._refused += 1
                return None
            del entries[key]
        else:
            if len(entries) >= self._max:
                # An OrderedDict, not a dict: taking the first of a dict whose front was
                # deleted over and over walks every deleted slot (75 us at 40,000 entries).
                oldest, _ = entries.popitem(last=False)
                self._by_type[oldest[1]] -= 1
                self._evicted += 1
                if oldest[1] == TYPE_NSEC:
                    self._unchain(oldest[0])
            self._by_type[rtype] = self._by_type.get(rtype, 0) + 1
        ttl = max(0, min(ttl, self._max_ttl))
        rrset = RRset(name, rtype, rclass, tuple(rdatas), ttl, now + ttl, rank, security, sigs)
        entries[key] = rrset
        self._stored += 1
        if rtype == TYPE_NSEC and rclass == CLASS_IN:
            self._unchain(name)
            if security is Security.SECURE and zone is not None and rdatas:
                self._chain(name, zone.lower())
        return rrset

    def _chain(self, owner: bytes, zone: bytes) -> None:
        chain = self._nsec_chains.setdefault(zone, [])
        bisect.insort(chain, (canonical_key(owner), owner))
        self._nsec_zone[owner] = zone

    def _unchain(self, owner: bytes) -> None:
        zone = self._nsec_zone.pop(owner, None)
        if zone is None:
            return
        chain = self._nsec_chains[zone]
        item = (canonical_key(owner), owner)
        index = bisect.bisect_left(chain, item)
        if index < len(chain) and chain[index] == item:
            del chain[index]
        if not chain:
            del self._nsec_chains[zone]

    def covering(self, zone: bytes, name: bytes, now: float) -> RRset | None:
        """The unexpired secure NSEC RRset of ``zone`` whose owner comes last in canonical
        order before ``name`` (lowercase wire forms), or None: the only one of the zone's
        cached chain that may cover ``name`` (the caller checks its next name)."""
        chain = self._nsec_chains.get(zone)
        if not chain:
            return None
        key = canonical_key(name)
        while chain:
            index = bisect.bisect_left(chain, (key, b""))
            if index == 0:
                return None
            owner = chain[index - 1][1]
            rrset = self.get(owner, TYPE_NSEC, now)
            if rrset is not None and rrset.security is Security.SECURE:
                return rrset
            self._unchain(owner)
            chain = self._nsec_chains.get(zone, [])
        return None

    def chained(self, zone: bytes) -> int:
        """How many secure NSEC RRsets of ``zone`` are in its chain."""
        return len(self._nsec_chains.get(zone, ()))

    def set_security(
        self, name: bytes, rtype: int, security: Security, rclass: int = CLASS_IN
    ) -> bool:
        """Record a validator's verdict on a stored RRset; False when it is not there."""
        key = (name, rtype, rclass)
        rrset = self._entries.get(key)
        if rrset is None:
            return False
        self._entries[key] = rrset._replace(security=security)
        if rtype == TYPE_NSEC and security is not Security.SECURE:
            self._unchain(name)
        return True

    def remove(self, name: bytes, rtype: int, rclass: int = CLASS_IN) -> None:
        """Forget the RRset ``name rtype rclass`` whatever its rank (a validator's bogus
        data, say)."""
        if self._entries.pop((name, rtype, rclass), None) is not None:
            self._by_type[rtype] -= 1
            if rtype == TYPE_NSEC:
                self._unchain(name)

    def count(self, rtype: int) -> int:
        """How many RRsets of type ``rtype`` are kept (expired ones until found)."""
        return self._by_type.get(rtype, 0)

    def __len__(self) -> int:
        return len(self._entries)

    def statistics(self) -> RRsetStatistics:
        return RRsetStatistics(
            entries=len(self._entries),
            hits=self._hits,
            misses=self._misses,
            stored=self._stored,
            refused=self._refused,
            evicted=self._evicted,
            expired=self._expired,
        )

    def __repr__(self) -> str:
        return (
            f"<RRsetCache entries={len(self._entries)}/{self._max} hits={self._hits} "
            f"misses={self._misses} refused={self._refused} evicted={self._evicted}>"
        )
