"""The Pool: fair, cancellation-safe, with timeouts and recycling.

``async with pool.acquire() as obj`` checks out one object exclusively and returns it when the
block ends; ``guard = await pool.acquire()`` gives the same as an explicit :class:`Guard`.

How the state stays consistent (the httpcore idea): every decision is a plain synchronous method
(``_take_idle``, ``_put_back``, ``_retire``), so nothing can interleave with it. Awaiting happens
only in two places: a waiter's future and a background creation or close. Invariants:

* ``size == idle + in_use`` at all times; an object handed to a waiter counts as in use from the
  moment of the hand-off, before the waiter resumes.
* An idle object and a live (not yet resolved) waiter never coexist: an object that becomes free
  goes to the oldest live waiter first, and a newcomer takes an idle object only when nobody waits.
  So there is no barging, no lost wake-up, and one release wakes exactly one waiter.

The pool knows nothing of DNS.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Generic, Literal, TypeVar

from resolver.errors import PoolClosed, PoolTimeout
from resolver.pool.guard import Guard, PoolStatistics, _Acquire, _Entry
from resolver.pool.settings import validate

__all__ = ["Pool"]

T = TypeVar("T")

Order = Literal["fifo", "random"]


class Pool(Generic[T]):
    """A pool of objects checked out one holder at a time.

    Made either from given ``objects`` (a fixed set) or from an async ``factory``: ``min_size``
    objects are created by :meth:`start` (or ``async with pool``), more on demand up to
    ``max_size``. ``close`` is an optional async hook called for every object the pool retires.

    Recycling (needs a factory): an object is retired after ``max_uses`` check-outs or once it is
    ``max_age`` seconds old, closed, and replaced in the background. Idle objects are handed out
    oldest-released first (``order="fifo"``) or at random (``order="random"``).

    ``clock`` gives monotonic seconds for ``max_age``; it defaults to the running loop's time.
    """

    def __init__(
        self,
        objects: Iterable[T] = (),
        *,
        factory: Callable[[], Awaitable[T]] | None = None,
        close: Callable[[T], Awaitable[None]] | None = None,
        min_size: int = 0,
        max_size: int | None = None,
        max_uses: int | None = None,
        max_age: float | None = None,
        order: Order = "fifo",
        clock: Callable[[], float] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        given = list(objects)
        validate(given, factory, min_size, max_size, max_uses, max_age, order)
        self._factory = factory
        self._close_hook = close
        self._min_size = min_size
        self._max_size = max_size if max_size is not None else max(len(given), min_size, 1)
        self._max_uses = max_uses
        self._max_age = max_age
        self._recycles = max_uses is not None or max_age is not None
        self._random = rng if order == "random" else None
        if order == "random" and self._random is None:
            self._random = random.Random()
        self._clock = clock
        self._idle: deque[_Entry[T]] = deque()
        self._waiters: deque[asyncio.Future[_Entry[T]]] = deque()
        # Waiters whose futures are unresolved. Resolved futures stay in the deque until a
        # release skips them or a purge drops them.
        self._live_waiters = 0
        self._entries: set[_Entry[T]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._creations: set[asyncio.Task[None]] = set()
        # The loop the pool lives on, bound at first use, so that a release from outside a task
        # (a callback, a finally in sync code) still schedules its work on the right loop.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._close_task: asyncio.Task[None] | None = None
        self._drained: asyncio.Event | None = None
        self._in_use = 0
        self._creating = 0
        self._n_created = 0
        self._n_retired = 0
        self._n_discarded = 0
        self._n_acquired = 0
        self._n_timed_out = 0
        self._n_cancelled = 0
        self._n_failed_creates = 0
        now = clock() if clock is not None else 0.0
        for obj in given:
            entry = _Entry(obj, now)
            self._entries.add(entry)
            self._idle.append(entry)

    # ----------------------------------------------------------------- public surface

    def acquire(self, timeout: float | None = None) -> _Acquire[T]:
        """Check out one object: ``async with pool.acquire() as obj`` or
        ``guard = await pool.acquire()``.

        Waiters are served first come, first served. Raises PoolTimeout (a TimeoutError) when
        no object is free within ``timeout`` seconds, PoolClosed once the pool is closing, and
        whatever the factory raised when creating a new object for this waiter failed.
        """
        return _Acquire(self, timeout)

    def acquire_nowait(self) -> Guard[T]:
        """A guard for an idle object, at once. Raises PoolTimeout when none is idle (or when
        others are already waiting) and PoolClosed once the pool is closing."""
        entry = self._take_idle()
        if entry is None:
            raise PoolTimeout("no idle object in the pool")
        return Guard(self, entry)

    async def start(self) -> None:
        """Create objects up to ``min_size`` concurrently. Raises what the factory raises."""
        factory = self._factory
        self._bind_loop()
        if factory is None or self._closed:
            return
        missing = self._min_size - (len(self._entries) + self._creating)
        if missing <= 0:
            return
        self._creating += missing
        results = await asyncio.gather(*(factory() for _ in range(missing)), return_exceptions=True)
        self._creating -= missing
        errors: list[BaseException] = []
        for result in results:
            if isinstance(result, BaseException):
                errors.append(result)
                self._n_failed_creates += 1
            else:
                self._adopt(result)
        if errors:
            raise errors[0]

    async def aclose(self, timeout: float = 5.0) -> None:
        """Close the pool. Idempotent; every call waits for the same closing work.

        Waiters (current and later) get PoolClosed at once; idle objects are closed; then the
        pool waits up to ``timeout`` seconds for outstanding guards to come back and closes
        whatever remains. Cancelling a caller does not stop the closing work.
        """
        if self._close_task is None:
            self._closed = True
            self._fail_waiters(PoolClosed("the pool is closed"))
            while self._idle:
                self._retire(self._idle.popleft(), replace=False)
            self._close_task = self._bind_loop().create_task(self._finish_close(timeout))
        await asyncio.shield(self._close_task)

    @property
    def closed(self) -> bool:
        return self._closed

    def statistics(self) -> PoolStatistics:
        return PoolStatistics(
            size=len(self._idle) + self._in_use,
            idle=len(self._idle),
            in_use=self._in_use,
            waiting=sum(1 for fut in self._waiters if not fut.done()),
            creating=self._creating,
            created=self._n_created,
            retired=self._n_retired,
            discarded=self._n_discarded,
            acquired=self._n_acquired,
            timed_out=self._n_timed_out,
            cancelled=self._n_cancelled,
            failed_creates=self._n_failed_creates,
        )

    def __repr__(self) -> str:
        s = self.statistics()
        state = "closed" if self._closed else "open"
        return (
            f"<Pool {state} size={s.size} idle={s.idle} in_use={s.in_use} "
            f"waiting={s.waiting} creating={s.creating} max_size={self._max_size}>"
        )

    async def __aenter__(self) -> Pool[T]:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ----------------------------------------------------------------- acquiring

    async def _acquire(self, timeout: float | None) -> Guard[T]:
        entry = self._take_idle()
        if entry is not None:
            return Guard(self, entry)
        guard: Guard[T] = Guard(self, None)
        await self._wait(timeout, guard)
        return guard

    def _take_idle(self) -> _Entry[T] | None:
        """Check out an idle object if one is free; None means the caller must wait."""
        if self._closed:
            raise PoolClosed("the pool is closed")
        if self._loop is None:
            with contextlib.suppress(RuntimeError):  # acquire_nowait from sync code
                self._loop = asyncio.get_running_loop()
        idle = self._idle
        while idle:
            if self._random is not None and len(idle) > 1:
                idle.rotate(-self._random.randrange(len(idle)))
            entry = idle.popleft()
            if self._max_age is not None and self._too_old(entry):
                self._retire(entry, replace=True)
                continue
            if self._max_uses is not None:
                entry.uses += 1
            self._in_use += 1
            self._n_acquired += 1
            return entry
        return None

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    async def _wait(self, timeout: float | None, holder: Guard[T] | _Acquire[T]) -> T:
        """Queue as a waiter until an object is handed over; store it in ``holder``."""
        if self._closed:
            raise PoolClosed("the pool is closed")
        loop = self._loop or self._bind_loop()
        fut: asyncio.Future[_Entry[T]] = loop.create_future()
        self._waiters.append(fut)
        self._live_waiters += 1
        if self._factory is not None:
            self._grow()
        timer = None if timeout is None else loop.call_later(timeout, self._expire, fut)
        try:
            entry = await fut
        except asyncio.CancelledError:
            self._cancelled_waiter(fut)
            raise
        finally:
            if timer is not None:
                timer.cancel()
        holder._entry = entry
        return entry.obj

    def _cancelled_waiter(self, fut: asyncio.Future[_Entry[T]]) -> None:
        self._n_cancelled += 1
        if fut.cancelled():
            self._live_waiters -= 1
            self._purge_waiters()
        elif fut.exception() is None:
            # Cancelled after the hand-off but before it resumed: the object is the waiter's,
            # so pass it on rather than lose it.
            self._put_back(fut.result())

    def _expire(self, fut: asyncio.Future[_Entry[T]]) -> None:
        if not fut.done():
            self._n_timed_out += 1
            fut.set_exception(PoolTimeout("no object became free before the timeout"))
            self._live_waiters -= 1
            self._purge_waiters()

    def _purge_waiters(self) -> None:
        """A waiter left the queue early. Its future is skipped lazily by releases; purge now
        and then so that a long run of timeouts cannot grow the queue without bound."""
        if len(self._waiters) > 2 * self._live_waiters + 64:
            self._waiters = deque(f for f in self._waiters if not f.done())

    def _fail_waiters(self, exc: BaseException) -> None:
        waiters, self._waiters = self._waiters, deque()
        self._live_waiters = 0
        for fut in waiters:
            if not fut.done():
                fut.set_exception(exc)

    # ----------------------------------------------------------------- returning

    def _put_back(self, entry: _Entry[T]) -> None:
        """An object came back (or was created): hand it to the oldest live waiter, else idle."""
        if self._closed:
            self._in_use -= 1
            self._retire(entry, replace=False)
            return
        if self._recycles and (
            (self._max_uses is not None and entry.uses >= self._max_uses)
            or (self._max_age is not None and self._too_old(entry))
        ):
            self._in_use -= 1
            self._retire(entry, replace=True)
            return
        waiters = self._waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                self._live_waiters -= 1
                if self._max_uses is not None:
                    entry.uses += 1
                self._n_acquired += 1
                fut.set_result(entry)
                return
        self._in_use -= 1
        self._idle.append(entry)
        if self._drained is not None:
            self._notify_drained()

    def _discard(self, entry: _Entry[T]) -> None:
        self._in_use -= 1
        self._n_discarded += 1
        self._retire(entry, replace=not self._closed)

    def _retire(self, entry: _Entry[T], *, replace: bool) -> None:
        """Drop an object from the pool, close it in the background, maybe replace it."""
        if entry in self._entries:
            self._entries.remove(entry)
            self._n_retired += 1
        self._close_in_background(entry)
        if replace:
            self._grow(replacing=1)
        self._notify_drained()

    def _too_old(self, entry: _Entry[T]) -> bool:
        assert self._max_age is not None
        return self._now() - entry.created_at >= self._max_age

    def _now(self) -> float:
        return self._clock() if self._clock is not None else self._bind_loop().time()

    # ----------------------------------------------------------------- growing

    def _grow(self, replacing: int = 0) -> None:
        """Start background creations: one per waiter not yet covered, one per retired object
        being replaced, and up to min_size; never past max_size."""
        if self._factory is None or self._closed:
            return
        live = len(self._entries) + self._creating
        wanted = max(self._min_size - live, self._live_waiters - self._creating, replacing)
        for _ in range(min(wanted, self._max_size - live)):
            self._creating += 1
            self._spawn(self._create(), creation=True)

    async def _create(self) -> None:
        assert self._factory is not None
        try:
            obj = await self._factory()
        except asyncio.CancelledError:
            self._creating -= 1
            raise
        except Exception as exc:
            self._creating -= 1
            self._n_failed_creates += 1
            self._fail_one_waiter(exc)
            return
        self._creating -= 1
        self._adopt(obj)

    def _adopt(self, obj: T) -> None:
        entry = _Entry(obj, self._now())
        self._n_created += 1
        if self._closed:
            self._close_in_background(entry)
            return
        self._entries.add(entry)
        self._in_use += 1
        self._put_back(entry)

    def _fail_one_waiter(self, exc: Exception) -> None:
        """A creation made for a waiter failed: the oldest waiter gets the factory's error
        rather than waiting for an object that will not come."""
        waiters = self._waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                self._live_waiters -= 1
                fut.set_exception(exc)
                return

    # ----------------------------------------------------------------- closing

    def _close_in_background(self, entry: _Entry[T]) -> None:
        if entry.closed:
            return
        entry.closed = True
        if self._close_hook is not None:
            self._spawn(self._close_hook(entry.obj))

    def _spawn(self, aw: Awaitable[None], *, creation: bool = False) -> None:
        task = asyncio.ensure_future(aw, loop=self._bind_loop())
        self._tasks.add(task)
        if creation:
            self._creations.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._creations.discard(task)
        if not task.cancelled():
            # A close hook or creation that failed has nobody to report to; retrieving the
            # exception keeps asyncio from logging "exception was never retrieved".
            task.exception()

    def _notify_drained(self) -> None:
        if self._drained is not None and self._in_use == 0:
            self._drained.set()

    async def _finish_close(self, timeout: float) -> None:
        if self._in_use:
            self._drained = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._drained.wait()
        for entry in list(self._entries):
            self._retire(entry, replace=False)
        for task in self._creations:
            task.cancel()
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
