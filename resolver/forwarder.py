"""Forwarding: cache, then upstreams chosen by policy, with failover inside one deadline.

The selection and health bookkeeping (``selection.Selector``) is plain code with an injected
clock; :class:`Forwarder` is the short async loop around it, plus the cache's companions: coalescing
(identical questions in flight share one upstream query), prefetch (an entry asked for in the
last tenth of its TTL is refreshed once in the background) and serve-stale (RFC 8767: when the
upstreams fail or are slow, an expired answer is served with TTL 30 while the refresh goes on).
An answer is never invented: when every attempt fails and nothing stale is at hand the caller
gets ResolutionFailed and answers SERVFAIL, never NXDOMAIN.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from resolver.cache import Cache, CacheEntry, CacheKey, CacheStatistics, Freshness
from resolver.config import ForwarderConfig, TransportConfig
from resolver.errors import ResolutionFailed, UpstreamError, UpstreamUnreachable, WireError
from resolver.inflight import Ask, FastQuery, Shared, normalize
from resolver.selection import Selector
from resolver.transport import Upstream, UpstreamStatistics
from resolver.wire.raw import REFUSED, SERVFAIL

__all__ = ["Forwarder", "ForwarderStatistics"]

# Tries per upstream within one client query: a lost datagram deserves one retry.
_ROUNDS = 2
# RFC 8767 section 5 suggests answering from stale data after 1.8 s of trying to refresh.
_STALE_ANSWER_AFTER = 1.8


@dataclass(frozen=True, slots=True)
class ForwarderStatistics:
    queries: int
    answered: int
    failed: int
    failovers: int
    cache_answers: int
    coalesced: int
    prefetches: int
    stale_answers: int
    upstream_queries: int
    upstreams: tuple[UpstreamStatistics, ...]
    cache: CacheStatistics | None


class Forwarder:
    """Answers questions by asking upstreams (see :class:`Selector` for the order).

    A SERVFAIL or REFUSED from one upstream moves on to the next; if that was the best any
    upstream could do, that reply is returned. Raises ResolutionFailed (carrying each attempt's
    error) when no upstream replied before the deadline.
    """

    def __init__(
        self,
        config: ForwarderConfig,
        transport: TransportConfig | None = None,
        *,
        upstreams: Sequence[Upstream] | None = None,
        cache: Cache | None = None,
        clock: Callable[[], float] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        if upstreams is None:
            upstreams = [Upstream(address, transport) for address in config.upstreams]
        if not upstreams:
            raise ValueError("a forwarder needs at least one upstream")
        self.upstreams = list(upstreams)
        self.selector = Selector(len(self.upstreams), config, rng=rng)
        self.cache = cache
        self._clock = clock
        self._inflight: dict[CacheKey, Shared] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._background: set[asyncio.Task[object]] = set()
        self._queries = 0
        self._answered = 0
        self._failed = 0
        self._failovers = 0
        self._cache_answers = 0
        self._coalesced = 0
        self._prefetches = 0
        self._stale_answers = 0
        self._upstream_queries = 0

    def _now(self) -> float:
        if self._clock is not None:
            return self._clock()
        return (self._loop or asyncio.get_running_loop()).time()

    async def start(self) -> None:
        """Open every upstream's socket pool. Raises UpstreamUnreachable."""
        self._loop = asyncio.get_running_loop()
        async with asyncio.TaskGroup() as group:
            for upstream in self.upstreams:
                group.create_task(upstream.start())

    async def aclose(self) -> None:
        """Cancel background refreshes, close every upstream's sockets. Idempotent."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await asyncio.gather(*(u.aclose() for u in self.upstreams))

    # ----------------------------------------------------------------- answering

    def answer_cached(
        self, name: bytes, qtype: int, qclass: int, *, do: bool, cd: bool
    ) -> bytes | None:
        """A fresh cached reply for the question, TTLs counted down, or None. Never awaits:
        the server calls it on the hot path. Starts a background prefetch when one is due."""
        found = self.answer_cached_until(name, qtype, qclass, do=do, cd=cd)
        return found[0] if found is not None else None

    def answer_cached_until(
        self, name: bytes, qtype: int, qclass: int, *, do: bool, cd: bool
    ) -> tuple[bytes, float] | None:
        """As ``answer_cached``, with the moment (on the ``now`` clock) until which exactly
        these bytes remain the answer: the end of the entry's current whole second of age (its
        TTLs then drop by one), the start of its prefetch window, or its expiry."""
        cache = self.cache
        if cache is None:
            return None
        ask = Ask.of(name, qtype, qclass, do, cd)
        now = cache.now()
        hit = cache.get(ask.key, now)
        if hit is None or hit.freshness is not Freshness.FRESH:
            return None
        if hit.needs_prefetch:
            self._prefetch(ask)
        self._queries += 1
        self._cache_answers += 1
        entry = hit.entry
        stored, lifetime = entry.stored_at, entry.lifetime
        age = now - stored
        until = stored + min(int(age) + 1, lifetime)
        fraction = cache.config.prefetch_fraction
        if fraction:
            # Hits inside the prefetch window must reach the cache, or no refresh is asked.
            until = min(until, max(now, stored + lifetime * (1 - fraction)))
        return cache.serve(entry, 0, name, now), until

    def now(self) -> float:
        """The clock that cached answers age by."""
        return self.clock()()

    def clock(self) -> Callable[[], float]:
        """That clock itself, for callers that read it on every query."""
        if self.cache is not None:
            return self.cache.clock
        return (self._loop or asyncio.get_running_loop()).time

    def _lookup(self, ask: Ask) -> tuple[bytes | None, CacheEntry | None]:
        """(a fresh reply to serve, or None; a stale entry to fall back on, or None)."""
        cache = self.cache
        hit = cache.get(ask.key) if cache is not None else None
        if hit is None:
            return None, None
        if hit.freshness is not Freshness.FRESH:
            return None, hit.entry
        if hit.needs_prefetch:
            self._prefetch(ask)
        self._queries += 1
        self._cache_answers += 1
        assert cache is not None
        return cache.serve(hit.entry, 0, ask.name), None

    def resolve_nowait(
        self,
        name: bytes,
        qtype: int,
        qclass: int,
        *,
        do: bool,
        cd: bool,
        deadline: float,
        done: Callable[[bytes | None, BaseException | None], None],
    ) -> bool:
        """The common case of ``resolve`` without a task of its own: nothing cached (not even
        stale), nothing in flight for the question, the first upstream healthy, an idle
        socket at hand. Then the query goes out at once and ``done(reply, None)`` or
        ``done(None, ResolutionFailed)`` is called later; anything unusual on the way (a
        timeout, TC, SERVFAIL, a failure) continues in a task with the full failover logic.
        Returns False, having done nothing, when the caller must use ``resolve``."""
        loop = self._loop
        if loop is None:
            return False
        ask = Ask.of(name, qtype, qclass, do, cd)
        if ask.key in self._inflight or (self.cache is not None and ask.key in self.cache):
            return False
        now = loop.time()
        index = self.selector.order(now)[0]
        if self.selector.is_down(index, now):
            return False
        query = FastQuery(self, ask, deadline, index, now, done)
        started = self.upstreams[index].exchange_nowait(
            name,
            qtype,
            qclass,
            deadline=min(deadline, now + self.config.upstream_timeout),
            on_reply=query.on_reply,
            cd=cd,
            do=do,
        )
        if started:
            self._inflight[ask.key] = query.shared
            self._queries += 1
            self._upstream_queries += 1
        return started

    def _settle(
        self,
        key: CacheKey,
        shared: Shared,
        done: Callable[[bytes | None, BaseException | None], None],
        reply: bytes | None,
        exc: BaseException | None,
    ) -> None:
        """Conclude a task-free query: count it, settle its followers, tell the caller."""
        if reply is not None:
            self._answered += 1
        else:
            self._failed += 1
        self._conclude(key, shared, reply, exc)
        done(reply, exc)

    def _conclude(
        self, key: CacheKey, shared: Shared, reply: bytes | None, exc: BaseException | None
    ) -> None:
        """A question's upstream query is over: it leaves the in-flight table and whoever
        followed it gets the outcome."""
        if self._inflight.get(key) is shared:
            del self._inflight[key]
        if reply is not None:
            shared.succeed(reply)
        else:
            assert exc is not None
            shared.fail(exc)

    async def _continue(self, query: FastQuery) -> None:
        """A task-free query that hit something unusual, finished by the full logic."""
        try:
            reply = await self._fetch_shared(query.ask, query.shared, query.deadline)
        except ResolutionFailed as exc:
            query.done(None, exc)
        except BaseException as exc:
            query.done(None, ResolutionFailed("the query was abandoned", [exc]))
            raise
        else:
            query.done(reply, None)

    async def resolve(
        self, name: bytes, qtype: int, qclass: int, *, do: bool, cd: bool, deadline: float
    ) -> bytes:
        """The reply to one question, in normalized form (see ``normalize``), from the cache
        or the upstreams; its ID is arbitrary and its question case may differ from ``name``.

        Raises ResolutionFailed when no upstream answered by ``deadline`` and nothing stale
        could be served instead."""
        ask = Ask.of(name, qtype, qclass, do, cd)
        cached, stale = self._lookup(ask)
        if cached is not None:
            return cached
        self._queries += 1
        shared = self._inflight.get(ask.key)
        if shared is None and stale is None:
            return await self._lead(ask, deadline)
        if shared is None:
            shared = self._start_background(ask, deadline)
        else:
            self._coalesced += 1
        loop = self._loop or asyncio.get_running_loop()
        wait_until = deadline if stale is None else min(deadline, loop.time() + _STALE_ANSWER_AFTER)
        try:
            async with asyncio.timeout_at(wait_until):
                reply = await asyncio.shield(shared.follow(loop))
        except (ResolutionFailed, TimeoutError) as exc:
            stale = stale or self._stale_entry(ask.key)
            if stale is not None and self.cache is not None:
                self._stale_answers += 1
                return self.cache.serve(stale, 0, name)
            self._failed += 1
            if isinstance(exc, ResolutionFailed):
                raise
            raise ResolutionFailed("no upstream answered before the deadline") from exc
        self._answered += 1
        return reply

    async def _lead(self, ask: Ask, deadline: float) -> bytes:
        """Ask upstream in this client's own task (no extra task or timer on the common
        path); identical questions arriving meanwhile wait for this one's outcome."""
        shared = Shared()
        self._inflight[ask.key] = shared
        return await self._fetch_shared(ask, shared, deadline)

    async def _fetch_shared(self, ask: Ask, shared: Shared, deadline: float) -> bytes:
        """``_fetch``, counted, its outcome concluding ``shared``. Raises ResolutionFailed."""
        try:
            reply = await self._fetch(ask, deadline)
        except ResolutionFailed as exc:
            self._failed += 1
            self._conclude(ask.key, shared, None, exc)
            raise
        except BaseException as exc:  # cancelled, or a bug: followers must not wait for nothing
            failure = ResolutionFailed("the query was abandoned", [exc])
            self._conclude(ask.key, shared, None, failure)
            raise
        self._answered += 1
        self._conclude(ask.key, shared, reply, None)
        return reply

    def _stale_entry(self, key: CacheKey) -> CacheEntry | None:
        if self.cache is None:
            return None
        hit = self.cache.get(key)
        return hit.entry if hit is not None and hit.freshness is Freshness.STALE else None

    def _prefetch(self, ask: Ask) -> None:
        if ask.key in self._inflight:
            return
        self._prefetches += 1
        loop = self._loop or asyncio.get_running_loop()
        self._start_background(ask, loop.time() + self.config.query_timeout)

    def _start_background(self, ask: Ask, deadline: float) -> Shared:
        """A refresh (prefetch, or behind a stale answer) in its own task, so that the client
        that started it may stop waiting while it goes on for the cache and for others."""
        shared = Shared()
        self._inflight[ask.key] = shared
        loop = self._loop or asyncio.get_running_loop()
        task = loop.create_task(self._fetch(ask, deadline))
        self._background.add(task)
        task.add_done_callback(lambda t: self._background_done(ask.key, shared, t))
        return shared

    def _background_done(self, key: CacheKey, shared: Shared, task: asyncio.Task[bytes]) -> None:
        self._background.discard(task)
        if task.cancelled():
            self._conclude(key, shared, None, ResolutionFailed("the refresh was cancelled"))
        elif (exc := task.exception()) is not None:
            self._conclude(key, shared, None, exc)
        else:
            self._conclude(key, shared, task.result(), None)

    async def _fetch(self, ask: Ask, deadline: float) -> bytes:
        raw = await self._ask_upstreams(
            ask.name, ask.qtype, ask.qclass, do=ask.do, cd=ask.cd, deadline=deadline
        )
        try:
            reply = normalize(raw)
        except WireError as exc:
            raise ResolutionFailed("upstream reply cannot be relayed", [exc]) from exc
        if self.cache is not None:
            # A reply the cache cannot take is still relayed: the client gets its answer.
            with contextlib.suppress(WireError, ValueError):
                self.cache.put(ask.key, reply)
        return reply

    async def _ask_upstreams(
        self, name: bytes, qtype: int, qclass: int, *, do: bool, cd: bool, deadline: float
    ) -> bytes:
        """The first usable upstream reply, trying upstreams in policy order."""
        self._upstream_queries += 1
        attempts: list[BaseException] = []
        fallback: bytes | None = None
        unreachable: set[int] = set()
        loop = self._loop or asyncio.get_running_loop()
        for round_ in range(_ROUNDS):
            for index in self.selector.order(self._now()):
                if index in unreachable:
                    continue
                now = loop.time()
                if now >= deadline:
                    break
                if attempts or round_:
                    self._failovers += 1
                upstream = self.upstreams[index]
                try:
                    reply = await upstream.exchange(
                        name,
                        qtype,
                        qclass,
                        deadline=min(deadline, now + self.config.upstream_timeout),
                        do=do,
                        cd=cd,
                    )
                except UpstreamError as exc:
                    attempts.append(exc)
                    self.selector.failed(index, self._now())
                    if isinstance(exc, UpstreamUnreachable):
                        unreachable.add(index)
                    continue
                self.selector.succeeded(index, loop.time() - now)
                if reply[3] & 0x0F in (SERVFAIL, REFUSED):
                    fallback = reply
                    attempts.append(UpstreamError(upstream.name, "answered SERVFAIL/REFUSED"))
                    continue
                return reply
            if fallback is not None:
                break
        if fallback is not None:
            return fallback
        raise ResolutionFailed("no upstream answered", attempts)

    def statistics(self) -> ForwarderStatistics:
        return ForwarderStatistics(
            queries=self._queries,
            answered=self._answered,
            failed=self._failed,
            failovers=self._failovers,
            cache_answers=self._cache_answers,
            coalesced=self._coalesced,
            prefetches=self._prefetches,
            stale_answers=self._stale_answers,
            upstream_queries=self._upstream_queries,
            upstreams=tuple(u.statistics() for u in self.upstreams),
            cache=self.cache.statistics() if self.cache is not None else None,
        )

    def __repr__(self) -> str:
        s = self.statistics()
        return (
            f"<Forwarder upstreams={len(self.upstreams)} policy={self.config.policy} "
            f"queries={s.queries} answered={s.answered} failed={s.failed}>"
        )
