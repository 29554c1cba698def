"""The cache: the one home of what the engine knows about a question.

Plain synchronous code with an injected clock (monotonic seconds), so every decision is tested
without a loop or a sleep. One entry per question (``CacheKey``), found with one lookup, holds
whichever of these the engine learnt last:

* a positive answer, kept for its smallest record TTL, clamped to ``ttl_floor``..``ttl_ceiling``;
* a negative answer (NXDOMAIN, NODATA), kept for min(SOA TTL, SOA MINIMUM) as RFC 2308 section 5
  asks, capped by ``negative_ttl_max`` and ``ttl_ceiling``; without an SOA it is not kept;
* a failure (RFC 9520): a SERVFAIL relayed from upstream, or a resolution that got no usable
  reply at all (every server silent or unreachable), with the Extended DNS Error that said why;
  kept ``servfail_ttl`` seconds (at most 30), never served stale, and never stored over an
  answer that can still be served stale;
* never: truncated replies, other rcodes, anything whose lifetime comes out as 0.

Expired answers stay ``stale_max`` seconds more for serve-stale (RFC 8767): ``get`` reports them
as STALE and ``serve`` gives them ``stale_ttl`` (30 s, RFC 8767 section 4). When a refresh of
such an answer fails, ``hold`` marks it: for ``STALE_RECHECK`` seconds ``get`` reports it HELD,
to be served at once without asking again (RFC 8767 section 5). A fresh hit in the last
``prefetch_fraction`` of its lifetime asks for a refresh once per entry.

Beside the entries: recursive mode's RRsets with their credibility and security status
(``rrsets``, a ``resolver.rrsets.RRsetCache``), and the finished replies the server sent for
recent hits (``Rendered``), keyed by
the query's bytes after its ID, so that an exact repeat is answered at the listener with one
lookup; each is valid only until the moment the engine gave for it (at most the end of the
current second of its entry's age), and they go with ``clear``. They are kept apart by the
kind of reply (``RENDERED_DATAGRAM``, ``RENDERED_STREAM``, ``RENDERED_PADDED``), one dict
each: the same query gets a truncated reply over UDP, a whole one over TCP and a padded one
over TLS, and a repeat finds only a reply of its own kind.
"""

from __future__ import annotations

import enum
import os
import struct
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from resolver.config import CacheConfig
from resolver.errors import WireError
from resolver.rrsets import RRsetCache
from resolver.wire.raw import HEADER_SIZE, NOERROR, NXDOMAIN, SERVFAIL
from resolver.wire.ttl import decrement_ttls_into, set_ttls_into
from resolver.wire.view import ReplyView, scan

_ONE = b"\x00\x01"
_TYPE_CLASS = struct.Struct("!HH")

__all__ = [
    "RENDERED_DATAGRAM",
    "RENDERED_PADDED",
    "RENDERED_STREAM",
    "STALE_RECHECK",
    "Cache",
    "CacheConfig",
    "CacheEntry",
    "CacheHit",
    "CacheKey",
    "CacheStatistics",
    "Freshness",
    "Rendered",
]

STALE_RECHECK = 30.0
"""Seconds a stale answer whose refresh failed is served without asking again (RFC 8767
section 5, its example value)."""

_RENDERED_MAX = 10_000  # finished replies kept for repeats, per kind; each lives a second at most
# Bytes of queries and replies rendered (per kind) before they are all dropped: a stream's
# reply may be 64 KiB, and 10 000 of them would be far more than UDP's few kilobytes each.
_RENDERED_BYTES = 16 << 20

RENDERED_DATAGRAM = 0
"""The kind of a rendered UDP reply (truncated to the client's UDP size)."""
RENDERED_STREAM = 1
"""The kind of a rendered reply sent over a stream unpadded (plain TCP)."""
RENDERED_PADDED = 2
"""The kind of a rendered reply sent over an encrypted stream, padded (RFC 8467)."""

# The cache file (``Cache.save``): this line, then per entry its fixed part and then the key's
# name and the stored reply. Times are wall-clock seconds: the monotonic clock restarts.
_FILE_MAGIC = b"resolver cache file 2\n"
# name length, qtype, qclass, do | cd << 1, stored, length, the entry's EDE plus one (0: none)
_FILE_ENTRY = struct.Struct("!BHHBdIH")

_U16 = struct.Struct("!H")

# CacheEntry._flags: the kind in the low bits, then whether a prefetch was already requested,
# then the whole second of age of the entry's last FRESH hit (modulo 16, plus one; 0: none),
# then the Extended DNS Error info code plus one (0: none): a failure's reason, or what an
# answer proven insecure carries (RFC 8914 codes 1, 2 and 27, issue 19). The flags of an
# entry without an EDE stay below 256, an int Python shares: they cost no memory per entry.
_POSITIVE = 0
_NEGATIVE = 1
_FAILURE = 2
_KIND_MASK = 0x3
_PREFETCHED = 0x4
_HIT_SHIFT = 3
_HIT_MASK = 0x1F << _HIT_SHIFT
_EDE_SHIFT = 8


class CacheKey(NamedTuple):
    """What an answer is cached under; build it with ``CacheKey.of`` to get the name lowercased.

    ``do`` is the query's EDNS DO bit and ``cd`` its CD header bit: both change what a
    validating upstream returns (RRSIGs, bogus data), so answers to them are kept apart.
    """

    name: bytes
    qtype: int
    qclass: int
    do: bool
    cd: bool

    @classmethod
    def of(cls, name: bytes, qtype: int, qclass: int, *, do: bool, cd: bool) -> CacheKey:
        """The key for a question whose ``name`` is uncompressed wire form in any case."""
        # Length bytes are at most 63, below b"A", so lower() only touches label bytes.
        return cls(name.lower(), qtype, qclass, do, cd)


class Freshness(enum.Enum):
    """How a cached entry stands when looked up."""

    FRESH = "fresh"
    """Within its lifetime: serve it (a failure entry: fail at once, without asking)."""
    STALE = "stale"
    """Past its TTL but within ``stale_max``: refresh it, and serve it only if that fails."""
    HELD = "held"
    """Stale, and a refresh failed less than ``STALE_RECHECK`` seconds ago: serve it at once."""


class CacheEntry:
    """One cached reply. Read-only to callers; hand it back to ``Cache.serve``.

    Kept small because there may be a million: the reply bytes with TTLs already clamped, the
    TTL field offsets packed as native uint16, the store time, the lifetime and a flags int.
    """

    __slots__ = ("_flags", "_held_until", "_lifetime", "_offsets", "_reply", "_stored_at")

    def __init__(
        self, reply: bytes, offsets: bytes, stored_at: float, lifetime: int, flags: int
    ) -> None:
        self._reply = reply
        self._offsets = offsets
        self._stored_at = stored_at
        self._lifetime = lifetime
        self._flags = flags
        self._held_until = 0.0

    @property
    def reply(self) -> bytes | None:
        """The reply as stored: upstream ID and question case, TTLs as of ``stored_at``; None
        for a failure that got no reply at all."""
        return self._reply or None

    @property
    def ttl_offsets(self) -> tuple[int, ...]:
        """Offsets in ``reply`` of every TTL field to patch (OPT excluded)."""
        return tuple(memoryview(self._offsets).cast("H"))

    @property
    def stored_at(self) -> float:
        """Clock time at which the entry was stored."""
        return self._stored_at

    @property
    def lifetime(self) -> int:
        """Seconds the entry is fresh for, counted from ``stored_at``."""
        return self._lifetime

    @property
    def expires(self) -> float:
        """Clock time at which the entry stops being fresh."""
        return self._stored_at + self._lifetime

    @property
    def negative(self) -> bool:
        """True for a cached NXDOMAIN or NODATA answer."""
        return self._flags & _KIND_MASK == _NEGATIVE

    @property
    def failure(self) -> bool:
        """True for a remembered failure: a SERVFAIL reply, or a resolution without one."""
        return self._flags & _KIND_MASK == _FAILURE

    @property
    def ede(self) -> int | None:
        """The Extended DNS Error info code (RFC 8914) that goes with the entry, or None: a
        failure's reason, or the information an insecure answer carries (an unsupported
        algorithm or digest, too many NSEC3 iterations), served with it from the cache."""
        code = self._flags >> _EDE_SHIFT
        return code - 1 if code else None

    def __repr__(self) -> str:
        kind = ("positive", "negative", "servfail")[self._flags & _KIND_MASK]
        return (
            f"<CacheEntry {kind} {len(self._reply)} bytes ttls={len(self._offsets) // 2}"
            f" stored_at={self._stored_at:.3f} lifetime={self._lifetime}>"
        )


class CacheHit(NamedTuple):
    """A lookup that found an entry: its freshness and whether to refresh it ahead of time.

    ``until``, for the second FRESH hit (or a later one) within the same whole second of the
    entry's age, is the moment until which what ``serve`` makes of the entry stays
    byte-identical: the end of that second (its TTLs then drop by one), the start of its
    prefetch window (hits there must reach the cache, or no refresh is asked), or its expiry.
    The reply made from it may then be rendered for exact repeats (``render``). It is 0.0 for
    the first hit in a second, where a repeat is not likely (rendering every hit of a cache of
    many names would keep replies that no query repeats), and for other hits. Hits are told
    apart by their second of age modulo 16: one 16 seconds after the last also counts as a
    second hit (only a rendering that may go unused)."""

    entry: CacheEntry
    freshness: Freshness
    needs_prefetch: bool
    until: float = 0.0


class Rendered:
    """A finished reply the server sent for a question, kept so that an exact repeat of the
    query is answered with one lookup: the reply's bytes after its ID, until when they stay
    the answer (cache clock), the question's name (as asked) and type, and ``tag``, an int of
    the server's own (what it counts the reply as)."""

    __slots__ = ("name", "qtype", "reply_tail", "tag", "until")

    def __init__(self, reply_tail: bytes, until: float, name: bytes, qtype: int, tag: int) -> None:
        self.reply_tail = reply_tail
        self.until = until
        self.name = name
        self.qtype = qtype
        self.tag = tag


@dataclass(frozen=True, slots=True)
class CacheStatistics:
    """Counts since the cache was made. Each ``get`` adds one to hits, stale_hits or misses.

    ``evictions`` counts entries pushed out by ``max_entries``, ``expired`` those dropped
    because they were past their stale window when looked up, ``inserts`` stored replies,
    ``failures`` failures stored without a reply, ``holds`` stale answers held after a failed
    refresh; ``repeats`` queries answered from a rendered reply, ``rendered`` how many are
    kept now.
    """

    entries: int
    hits: int
    misses: int
    stale_hits: int
    evictions: int
    expired: int
    inserts: int
    failures: int = 0
    holds: int = 0
    repeats: int = 0
    rendered: int = 0


class Cache:
    """An LRU-bounded cache of whole DNS replies keyed by ``CacheKey``.

    ``clock`` returns monotonic seconds; every method taking ``now`` reads it when ``now`` is
    None, so one query can pass a single reading to ``get`` and ``serve``.
    """

    def __init__(
        self, config: CacheConfig | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._config = config if config is not None else CacheConfig()
        self._clock = clock
        self._entries: OrderedDict[CacheKey, CacheEntry] = OrderedDict()
        # Rendered replies, one dict per kind (RENDERED_DATAGRAM, _STREAM, _PADDED), and the
        # bytes rendered into each since it was last emptied.
        self._rendered: tuple[dict[bytes, Rendered], ...] = ({}, {}, {})
        self._rendered_bytes = [0, 0, 0]
        # Recursive mode's records, each with the rank of where it was read (RFC 2181 section
        # 5.4.1) and its security status: NS sets and name-server addresses among them. Kept
        # here, with the answers, so that they outlive an engine replaced by a reload.
        self.rrsets = RRsetCache(self._config.max_entries, max_ttl=self._config.ttl_ceiling)
        self._hits = 0
        self._misses = 0
        self._stale_hits = 0
        self._evictions = 0
        self._expired = 0
        self._inserts = 0
        self._failures = 0
        self._holds = 0
        self._repeats = 0

    @property
    def config(self) -> CacheConfig:
        return self._config

    def reconfigure(self, config: CacheConfig) -> None:
        """Apply ``config`` without a flush (a reload). Entries already stored keep the
        lifetimes and TTLs they were stored with; the stale window, stale TTL and prefetch
        fraction apply to them from now on, and a smaller ``max_entries`` evicts the least
        recently used entries at once (counted as evictions); the rendered replies are dropped
        (what they were made from may have changed with the reload). ``enabled`` is not
        looked at."""
        self._config = config
        self._drop_rendered()
        entries = self._entries
        while len(entries) > config.max_entries:
            entries.popitem(last=False)
            self._evictions += 1

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        """Whether an entry is held for ``key`` (fresh or stale); counts nothing, moves nothing."""
        return key in self._entries

    def now(self) -> float:
        """The cache's clock: the time entries age by."""
        return self._clock()

    @property
    def clock(self) -> Callable[[], float]:
        return self._clock

    def get(self, key: CacheKey, now: float | None = None) -> CacheHit | None:
        """Look ``key`` up; None on a miss.

        A hit is FRESH within the entry's lifetime, STALE after it for up to ``stale_max``
        seconds (never for a failure), HELD instead of STALE while ``hold`` is in force; beyond
        that the entry is dropped and this is a miss. A hit marks the entry most recently used.
        ``needs_prefetch`` is True on the first FRESH hit in the last ``prefetch_fraction`` of a
        positive or negative entry's lifetime, and never again for that entry. Raises nothing.
        """
        entry = self._entries.get(key)
        if entry is None:
            self._misses += 1
            return None
        if now is None:
            now = self._clock()
        age = now - entry._stored_at
        lifetime = entry._lifetime
        if age < lifetime:
            self._hits += 1
            self._entries.move_to_end(key)
            second = int(age)
            flags = entry._flags
            mark = ((second & 0xF) + 1) << _HIT_SHIFT
            stored = entry._stored_at
            until = 0.0
            if flags & _HIT_MASK == mark:
                until = stored + min(second + 1, lifetime)
            else:
                flags = flags & ~_HIT_MASK | mark
            fraction = self._config.prefetch_fraction
            if fraction:
                if until:
                    until = min(until, max(now, stored + lifetime * (1 - fraction)))
                if not flags & (_PREFETCHED | _FAILURE) and lifetime - age <= lifetime * fraction:
                    # Reported once: the forwarder refreshes on this hit, concurrent hits keep
                    # serving.
                    entry._flags = flags | _PREFETCHED
                    return CacheHit(entry, Freshness.FRESH, True, until)
            entry._flags = flags
            return CacheHit(entry, Freshness.FRESH, False, until)
        flags = entry._flags
        if flags & _KIND_MASK == _FAILURE or age >= lifetime + self._config.stale_max:
            del self._entries[key]
            self._expired += 1
            self._misses += 1
            return None
        self._stale_hits += 1
        self._entries.move_to_end(key)
        if entry._held_until > now:
            return CacheHit(entry, Freshness.HELD, False)
        return CacheHit(entry, Freshness.STALE, False)

    def put(
        self, key: CacheKey, view: ReplyView, now: float | None = None, ede: int | None = None
    ) -> CacheEntry | None:
        """Store the reply ``view`` is of (the whole reply to the query ``key`` came from, read
        once where it was matched: its question is the key's) if cacheable, with ``ede``, the
        Extended DNS Error that goes with it whenever it is served (None: none).

        Returns the new entry, or None when the reply is not cached: truncated, an rcode other
        than NOERROR, NXDOMAIN or SERVFAIL, a negative answer without an SOA, a lifetime of 0,
        or a SERVFAIL while a still-servable entry exists for ``key`` (it is kept for
        serve-stale). Record TTLs are clamped in the stored copy: positive ones to
        ``ttl_floor``..``ttl_ceiling``, negative ones to the entry's lifetime. Storing replaces
        any entry for ``key`` (and so resets its prefetch flag) and may evict the least
        recently used entry. Raises WireError if the reply has not exactly one question, or
        one of another length than the key's (the question itself is not compared again).
        """
        info = view
        reply = view.message
        if reply[4:6] != _ONE or info.question_end != HEADER_SIZE + len(key.name) + 4:
            raise WireError("the reply's question is not the one the cache key was made from")
        if now is None:
            now = self._clock()
        kind, lifetime = self._lifetime(info.rcode, info.negative, info.negative_ttl, info.min_ttl)
        if info.truncated or lifetime <= 0:
            return None
        if kind == _FAILURE and self._servable(key, now):
            return None
        ttls = info.ttls
        stored = bytes(reply)  # no copy for bytes; a caller's bytearray must not change it
        if kind == _POSITIVE:
            floor, ceiling = self._config.ttl_floor, self._config.ttl_ceiling
            if ttls and (min(ttls) < floor or max(ttls) > ceiling):  # else all stay as they are
                buf = bytearray(reply)
                set_ttls_into(buf, info.offsets, [max(floor, min(t, ceiling)) for t in ttls])
                stored = bytes(buf)
        elif ttls and max(ttls) > lifetime:
            # The whole reply states something true for `lifetime` seconds (RFC 2308 section 5
            # has the SOA's TTL lowered the same way), so no record may outlive it downstream.
            buf = bytearray(reply)
            set_ttls_into(buf, info.offsets, [min(t, lifetime) for t in ttls])
            stored = bytes(buf)
        flags = kind if ede is None else kind | (ede + 1) << _EDE_SHIFT
        entry = CacheEntry(stored, array("H", info.offsets).tobytes(), now, lifetime, flags)
        self._store(key, entry)
        self._inserts += 1
        return entry

    def _store(self, key: CacheKey, entry: CacheEntry) -> None:
        entries = self._entries
        entries[key] = entry
        entries.move_to_end(key)
        while len(entries) > self._config.max_entries:
            entries.popitem(last=False)
            self._evictions += 1

    def _lifetime(
        self, rcode: int, negative: bool, negative_ttl: int | None, min_ttl: int | None
    ) -> tuple[int, int]:
        """The entry kind and its lifetime in seconds (0: do not cache)."""
        config = self._config
        if rcode == SERVFAIL:
            return _FAILURE, config.servfail_ttl
        if rcode not in (NOERROR, NXDOMAIN):
            # REFUSED, FORMERR, NOTIMP and the EDNS rcodes say something about one upstream
            # and one query, not about the name: the forwarder should try elsewhere.
            return _POSITIVE, 0
        if negative:
            if negative_ttl is None or min_ttl is None:
                return _NEGATIVE, 0  # RFC 2308 section 5: no SOA, no negative caching
            # No floor: holding a negative answer longer than its zone says hides new names.
            cap = min(config.negative_ttl_max, config.ttl_ceiling)
            return _NEGATIVE, min(negative_ttl, min_ttl, cap)
        assert min_ttl is not None, "a positive answer has at least one answer record"
        # The reply is served whole, so it lives as long as its shortest-lived record.
        return _POSITIVE, max(config.ttl_floor, min(min_ttl, config.ttl_ceiling))

    def _servable(self, key: CacheKey, now: float) -> bool:
        """Whether ``key`` has an entry, other than a SERVFAIL, still fresh or stale-servable."""
        entry = self._entries.get(key)
        if entry is None or entry._flags & _KIND_MASK == _FAILURE:
            return False
        return now - entry._stored_at < entry._lifetime + self._config.stale_max

    def fail(self, key: CacheKey, ede: int | None, now: float | None = None) -> CacheEntry | None:
        """Remember that resolving ``key`` got no usable reply (RFC 9520), with the Extended
        DNS Error that says why, for ``servfail_ttl`` seconds: ``get`` then reports a FRESH
        failure entry without a reply. Returns the entry, or None when nothing is stored:
        ``servfail_ttl`` is 0, or ``key`` has an answer that can still be served (``hold``
        is what applies to it). Raises nothing."""
        if now is None:
            now = self._clock()
        ttl = self._config.servfail_ttl
        if ttl <= 0 or self._servable(key, now):
            return None
        flags = _FAILURE | ((ede + 1) << _EDE_SHIFT if ede is not None else 0)
        entry = CacheEntry(b"", b"", now, ttl, flags)
        self._store(key, entry)
        self._failures += 1
        return entry

    def hold(self, key: CacheKey, now: float | None = None) -> CacheEntry | None:
        """A refresh of ``key`` failed: if it has an expired answer still within ``stale_max``,
        mark it HELD for ``STALE_RECHECK`` seconds (served at once, not asked again) and return
        it; else None. Raises nothing."""
        if now is None:
            now = self._clock()
        entry = self._entries.get(key)
        if entry is None or entry._flags & _KIND_MASK == _FAILURE:
            return None
        age = now - entry._stored_at
        if not entry._lifetime <= age < entry._lifetime + self._config.stale_max:
            return None
        entry._held_until = now + STALE_RECHECK
        self._holds += 1
        return entry

    def render(self, query_tail: bytes, rendered: Rendered, kind: int = RENDERED_DATAGRAM) -> None:
        """Keep ``rendered``, the finished reply of ``kind`` (``RENDERED_DATAGRAM``,
        ``RENDERED_STREAM``, ``RENDERED_PADDED``) to the query whose bytes after the ID are
        ``query_tail``, until ``rendered.until``. Per kind at most 10 000 are kept, and 16 MiB
        of queries and replies rendered (all of that kind are dropped when either is reached:
        none lives longer than a second). Raises nothing."""
        kept = self._rendered[kind]
        size = len(query_tail) + len(rendered.reply_tail)
        total = self._rendered_bytes[kind] + size
        if len(kept) >= _RENDERED_MAX or total > _RENDERED_BYTES:
            kept.clear()
            total = size
        self._rendered_bytes[kind] = total
        kept[query_tail] = rendered

    def repeat(
        self, query_tail: bytes, now: float, kind: int = RENDERED_DATAGRAM
    ) -> Rendered | None:
        """The rendered reply of ``kind`` for the query whose bytes after the ID are
        ``query_tail``, if one is kept and still valid at ``now``; counted as a repeat.
        Replies of other kinds are never looked at. Raises nothing."""
        kept = self._rendered[kind]
        rendered = kept.get(query_tail)
        if rendered is None:
            return None
        if rendered.until <= now:
            del kept[query_tail]
            return None
        self._repeats += 1
        return rendered

    def _drop_rendered(self) -> None:
        for kept in self._rendered:
            kept.clear()
        self._rendered_bytes = [0, 0, 0]

    def serve(
        self,
        entry: CacheEntry,
        query_id: int,
        question_name: bytes,
        now: float | None = None,
    ) -> bytes:
        """The cached reply ready to send to a client: the copy + patch hot path.

        The ID becomes ``query_id``; the question name becomes ``question_name`` (the client's
        name in wire form, restoring its case; it must be the entry's name up to case); each TTL
        loses the whole seconds elapsed since the entry was stored, stopping at 0, or, once the
        entry is past its lifetime, becomes ``stale_ttl``. Counts nothing. Raises ValueError if
        ``query_id`` is not 0-65535.
        """
        if not 0 <= query_id <= 0xFFFF:
            raise ValueError(f"message ID {query_id} is not in 0-65535")
        if now is None:
            now = self._clock()
        buf = bytearray(entry._reply)
        _U16.pack_into(buf, 0, query_id)
        end = HEADER_SIZE + len(question_name)
        assert buf[HEADER_SIZE:end].lower() == question_name.lower(), "question name mismatch"
        buf[HEADER_SIZE:end] = question_name
        offsets = memoryview(entry._offsets).cast("H")
        age = now - entry._stored_at
        if age < entry._lifetime:
            decrement_ttls_into(buf, offsets, int(age))
        else:
            set_ttls_into(buf, offsets, self._config.stale_ttl)
        return bytes(buf)

    def save(self, path: Path, wall_now: float | None = None) -> int:
        """Write every answer that could still be served (fresh or stale; not failures, holds
        or rendered replies) to ``path``, least recently used first, with its store time on the
        wall clock (``wall_now``: time.time() when None); written beside it and renamed over
        it, so a reader sees the old file or the new one. Returns how many were written.
        Raises OSError."""
        if wall_now is None:
            wall_now = time.time()
        now = self._clock()
        stale_max = self._config.stale_max
        parts = [_FILE_MAGIC]
        count = 0
        for key, entry in self._entries.items():
            if entry._flags & _KIND_MASK == _FAILURE:
                continue
            age = now - entry._stored_at
            if age >= entry._lifetime + stale_max:
                continue
            flags = int(key.do) | int(key.cd) << 1
            fixed = _FILE_ENTRY.pack(
                len(key.name),
                key.qtype,
                key.qclass,
                flags,
                wall_now - age,
                len(entry._reply),
                entry._flags >> _EDE_SHIFT,
            )
            parts += (fixed, key.name, entry._reply)
            count += 1
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with temporary.open("wb") as file:
                file.write(b"".join(parts))
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return count

    def restore(self, path: Path, wall_now: float | None = None) -> int:
        """Read the answers ``save`` wrote to ``path``, each aged by the wall-clock time since
        it was stored (``wall_now``: time.time() when None); those past their stale window are
        left out, and the rest are stored as ``put`` stores a reply (checked the same way).
        Returns how many were stored. Raises OSError when the file cannot be read, WireError
        when it is not a cache file or is damaged; nothing of it is kept then."""
        data = path.read_bytes()
        if not data.startswith(_FILE_MAGIC):
            raise WireError(f"{path} is not a cache file of this version")
        if wall_now is None:
            wall_now = time.time()
        now = self._clock()
        stale_max = self._config.stale_max
        restored: list[CacheKey] = []
        pos = len(_FILE_MAGIC)
        try:
            while pos < len(data):
                if pos + _FILE_ENTRY.size > len(data):
                    raise WireError(f"{path} is cut off at byte {pos}")
                name_length, qtype, qclass, flags, stored, length, ede = _FILE_ENTRY.unpack_from(
                    data, pos
                )
                pos += _FILE_ENTRY.size
                end = pos + name_length + length
                if end > len(data):
                    raise WireError(f"{path} is cut off at byte {pos}")
                name, reply = data[pos : pos + name_length], data[pos + name_length : end]
                pos = end
                key = CacheKey.of(name, qtype, qclass, do=bool(flags & 1), cd=bool(flags & 2))
                age = max(0.0, wall_now - stored)  # a clock set back ages nothing
                question_end = HEADER_SIZE + len(name)
                if reply[HEADER_SIZE:question_end].lower() != key.name or reply[
                    question_end : question_end + 4
                ] != _TYPE_CLASS.pack(qtype, qclass):
                    raise WireError(f"{path}: an entry does not match its key")
                entry = self.put(key, scan(reply), now - age, ede - 1 if ede else None)
                if entry is None:
                    continue
                if age >= entry._lifetime + stale_max:
                    del self._entries[key]
                    continue
                restored.append(key)
        except WireError:
            for key in restored:
                self._entries.pop(key, None)
            raise
        return len(restored)

    def remove(self, key: CacheKey) -> bool:
        """Drop the entry for ``key``; return whether there was one. Counts nothing."""
        return self._entries.pop(key, None) is not None

    def clear(self) -> None:
        """Drop every entry and rendered reply; the counters keep counting."""
        self._entries.clear()
        self._drop_rendered()

    def statistics(self) -> CacheStatistics:
        """A snapshot of the counters and the current number of entries."""
        return CacheStatistics(
            entries=len(self._entries),
            hits=self._hits,
            misses=self._misses,
            stale_hits=self._stale_hits,
            evictions=self._evictions,
            expired=self._expired,
            inserts=self._inserts,
            failures=self._failures,
            holds=self._holds,
            repeats=self._repeats,
            rendered=sum(len(kept) for kept in self._rendered),
        )

    def __repr__(self) -> str:
        return (
            f"<Cache entries={len(self._entries)}/{self._config.max_entries}"
            f" hits={self._hits} misses={self._misses} stale_hits={self._stale_hits}"
            f" evictions={self._evictions} expired={self._expired} inserts={self._inserts}>"
        )
