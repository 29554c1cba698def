"""A generic asyncio resource pool: fair, cancellation-safe, with timeouts, recycling and idle
shrink. It knows nothing of DNS.

``async with pool.acquire() as obj`` checks out one object exclusively and returns it when the
block ends; ``guard = await pool.acquire()`` gives the same as an explicit :class:`Guard`.

How the state stays consistent (the httpcore idea): the state changes only in plain synchronous
methods, and one of them, ``_reconcile``, draws every consequence: it hands idle objects to the
oldest waiters, charges a failed creation to a waiter only when nothing else can serve it,
starts creations while there is room and demand, arms the idle sweep and wakes a closing pool.
Every path that changes the state ends in it: a return, a discard, a new waiter, a waiter that
times out or is cancelled, a creation that succeeds, fails or is cancelled, the sweep. Two
paths skip the call because its outcome is known without it: a return that nobody waits for
and that needs no replacement or sweep (the object simply goes idle), and a new waiter at a
pool without a factory (nothing is idle and nothing can be made). Awaiting happens only on a
waiter's future, in the pool's own background tasks (creations, close hooks) and in ``aclose``.

Invariants, true whenever no pool code is running:

* ``size == idle + in_use`` and ``given + created == size + retired``. An object handed to a
  waiter counts as in use from the hand-off, before the waiter resumes.
* An idle object and a live waiter never coexist: no barging, no lost wake-up, and one return
  wakes exactly one waiter.
* A waiter always has something that may serve it, an object in use or a creation in flight,
  unless the pool cannot grow.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Generator, Iterable
from dataclasses import dataclass
from operator import attrgetter
from types import TracebackType
from typing import Generic, Literal, TypeVar

from resolver.errors import ConfigError, GuardReleased, PoolClosed, PoolTimeout

__all__ = ["Guard", "Pool", "PoolStatistics"]

T = TypeVar("T")

Order = Literal["fifo", "random"]

# The idle sweep fires this much after the first object is due, so that a loop whose timers
# round to the millisecond never wakes it a moment early, finds nothing due, and re-arms it.
_SWEEP_SLACK = 0.001


@dataclass(frozen=True, slots=True)
class PoolStatistics:
    """A snapshot of a pool's counts.

    ``size == idle + in_use`` and ``given + created == size + retired`` always hold: every
    object the pool ever held is idle, in use, or retired (discarded, recycled after
    ``max_uses`` or ``max_age``, closed as idle above ``min_size``, or closed with the pool).
    ``closing`` counts retired objects whose close hook is still running.
    """

    size: int
    idle: int
    in_use: int
    waiting: int
    creating: int
    created: int
    retired: int
    discarded: int
    acquired: int
    timed_out: int
    cancelled: int
    failed_creates: int
    given: int
    closing: int
    idle_closed: int


class _Entry(Generic[T]):
    """One pooled object and its bookkeeping."""

    __slots__ = ("closed", "expires_at", "heir", "idle_since", "obj", "uses")

    def __init__(self, obj: T, now: float, max_age: float | None) -> None:
        self.obj = obj
        self.expires_at = math.inf if max_age is None else now + max_age
        self.idle_since = now
        self.uses = 0
        self.closed = False  # retired: a holder's late release or discard is then ignored
        self.heir = False  # its replacement was started when its last use began


class Guard(Generic[T]):
    """Exclusive use of one pooled object until :meth:`release` or :meth:`discard`.

    After either call the guard refuses further use: ``obj``, ``release`` and ``discard`` raise
    :class:`GuardReleased`. Used as a (sync) context manager, it releases on exit unless it was
    already released or discarded.
    """

    __slots__ = ("_entry", "_pool")

    def __init__(self, pool: Pool[T], entry: _Entry[T] | None) -> None:
        self._pool = pool
        self._entry = entry

    @property
    def obj(self) -> T:
        """The checked-out object. Raises GuardReleased once the guard is released."""
        entry = self._entry
        if entry is None:
            raise GuardReleased("this guard was already released")
        return entry.obj

    @property
    def released(self) -> bool:
        return self._entry is None

    def release(self) -> None:
        """Return the object to the pool (or to the oldest waiter). Never awaits.
        Raises GuardReleased when called twice."""
        entry = self._entry
        if entry is None:
            raise GuardReleased("this guard was already released")
        self._entry = None
        self._pool._put_back(entry)

    def discard(self) -> None:
        """The object is broken: the pool closes it and makes a replacement in the background.
        Never awaits. Raises GuardReleased when the guard was already released."""
        entry = self._entry
        if entry is None:
            raise GuardReleased("this guard was already released")
        self._entry = None
        self._pool._discard(entry)

    def __enter__(self) -> T:
        return self.obj

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._entry is not None:
            self.release()

    def __repr__(self) -> str:
        state = "released" if self._entry is None else f"holding {self._entry.obj!r}"
        return f"<Guard {state}>"


class _Acquire(Generic[T]):
    """What ``pool.acquire()`` returns: awaitable (a Guard) and an async context manager (the
    object itself, returned to the pool when the block ends)."""

    __slots__ = ("_entry", "_pool", "_timeout")

    def __init__(self, pool: Pool[T], timeout: float | None) -> None:
        self._pool = pool
        self._timeout = timeout
        self._entry: _Entry[T] | None = None

    def __await__(self) -> Generator[object, None, Guard[T]]:
        yield from self.__aenter__().__await__()
        guard = Guard(self._pool, self._entry)
        self._entry = None
        return guard

    async def __aenter__(self) -> T:
        # The pool decides (_take, _enqueue, _cancelled_waiter); only the awaiting is here, so
        # that a waiter runs one coroutine, a good part of the cost of a contended acquire.
        pool = self._pool
        entry = pool._take() if pool._idle else None
        if entry is None:
            fut, timer = pool._enqueue(self._timeout)
            try:
                entry = await fut
            except asyncio.CancelledError:
                pool._cancelled_waiter(fut)
                raise
            finally:
                if timer is not None:
                    timer.cancel()
        elif pool._requested or len(pool._idle) + pool._creating < pool._min_idle:
            pool._reconcile()
        self._entry = entry
        return entry.obj

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        entry = self._entry
        if entry is not None:
            self._entry = None
            self._pool._put_back(entry)


class Pool(Generic[T]):
    """A pool of objects checked out one holder at a time.

    Made from given ``objects``, from an async ``factory``, or both: ``min_size`` objects are
    created by :meth:`start` (or ``async with pool``), more on demand up to ``max_size``.
    A factory that never waits may be given as ``create``, a plain function instead: each
    creation then runs in a callback of the loop (those asked for in one step together),
    which costs a tenth of a task.
    ``close`` is an optional hook called for every object the pool retires: a coroutine
    function runs in the background, a plain function (returning None) at once.

    With a factory, an object is retired after ``max_uses`` check-outs or once it is
    ``max_age`` seconds old and replaced in the background (for ``max_uses``, the replacement
    is started when the last use begins, room permitting, so that it is ready when the old
    one returns), and idle objects above
    ``min_size`` are closed once idle for ``idle_timeout`` seconds. With ``min_idle``, at least
    that many objects are kept idle (room permitting), made ahead of demand so that a burst or
    a retirement does not make a holder wait for a creation. Idle objects are handed out
    oldest-returned first (``order="fifo"``) or uniformly at random (``order="random"``, drawn
    from ``rng``); waiters are always served first come, first served.

    A failed creation is reported to a waiter only when nothing else (an object in use, another
    creation) could serve it; a waiter whose timeout ends while the factory is failing gets a
    PoolTimeout caused by the factory's last error.

    ``clock`` gives monotonic seconds for ``max_age`` and ``idle_timeout`` (default
    :func:`time.monotonic`). Raises ConfigError naming the first invalid setting.
    """

    __slots__ = (
        "_bookkeeping",
        "_can_create",
        "_close_hook",
        "_close_task",
        "_closed",
        "_closes",
        "_closing",
        "_creating",
        "_creations",
        "_drained",
        "_entries",
        "_factory",
        "_failing",
        "_idle",
        "_idle_timeout",
        "_in_use",
        "_last_error",
        "_live_waiters",
        "_loop",
        "_make",
        "_make_handle",
        "_max_age",
        "_max_size",
        "_max_uses",
        "_min_idle",
        "_min_size",
        "_n_acquired",
        "_n_cancelled",
        "_n_created",
        "_n_discarded",
        "_n_failed_creates",
        "_n_given",
        "_n_idle_closed",
        "_n_retired",
        "_n_timed_out",
        "_pending_makes",
        "_pop_idle",
        "_random",
        "_requested",
        "_stamps",
        "_sweep",
        "_time",
        "_waiters",
    )

    def __init__(
        self,
        objects: Iterable[T] = (),
        *,
        factory: Callable[[], Awaitable[T]] | None = None,
        create: Callable[[], T] | None = None,
        close: Callable[[T], Awaitable[None] | None] | None = None,
        min_size: int = 0,
        max_size: int | None = None,
        max_uses: int | None = None,
        max_age: float | None = None,
        idle_timeout: float | None = None,
        min_idle: int = 0,
        order: Order = "fifo",
        clock: Callable[[], float] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        given = list(objects)
        if factory is not None and create is not None:
            raise ConfigError("create", "give a factory or create, not both")
        maker = factory or create
        _validate(len(given), maker, min_size, max_size, max_uses, max_age, idle_timeout, order)
        if min_idle < 0 or (min_idle and maker is None):
            raise ConfigError("min_idle", "must be 0 or more, and needs a factory")
        self._factory = factory
        self._make = create
        self._can_create = maker is not None
        self._pending_makes = 0  # creations with ``create`` waiting for their callback
        self._make_handle: asyncio.Handle | None = None
        self._close_hook = close
        self._min_size = min_size
        self._min_idle = min_idle
        self._max_size = max_size if max_size is not None else max(len(given), min_size, 1)
        self._max_uses = max_uses
        self._max_age = max_age
        self._idle_timeout = idle_timeout
        # Check-outs and returns count uses and read the clock only for these.
        self._stamps = max_age is not None or idle_timeout is not None
        self._bookkeeping = self._stamps or max_uses is not None
        self._time = clock or time.monotonic
        self._idle: deque[_Entry[T]] | list[_Entry[T]]
        self._pop_idle: Callable[[], _Entry[T]]
        if order == "random":
            self._idle = []
            self._random = (rng or random.Random()).random
            self._pop_idle = self._pop_random
        else:
            fifo: deque[_Entry[T]] = deque()
            self._idle = fifo
            self._pop_idle = fifo.popleft
        self._entries: set[_Entry[T]] = set()
        self._waiters: deque[asyncio.Future[_Entry[T]]] = deque()
        # Waiters whose futures are unresolved. A future resolved or cancelled early stays in
        # the deque until the hand-off loop meets it, or a purge drops it.
        self._live_waiters = 0
        self._in_use = 0
        self._creating = 0
        self._closing = 0
        self._requested = 0  # replacements asked for by retirements, started by _reconcile
        self._failing = False  # the last creation failed and nothing has worked since
        self._last_error: Exception | None = None
        self._creations: set[asyncio.Task[Exception | None]] = set()
        self._closes: set[asyncio.Future[None]] = set()
        self._sweep: asyncio.TimerHandle | None = None
        # Bound at first need (a wait, a background task, a timer), then never looked up again.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._close_task: asyncio.Task[None] | None = None
        self._drained: asyncio.Event | None = None
        self._n_given = len(given)
        self._n_created = 0
        self._n_retired = 0
        self._n_discarded = 0
        self._n_idle_closed = 0
        self._n_acquired = 0
        self._n_timed_out = 0
        self._n_cancelled = 0
        self._n_failed_creates = 0
        now = self._time()
        for obj in given:
            entry = _Entry(obj, now, max_age)
            self._entries.add(entry)
            self._idle.append(entry)

    # ----------------------------------------------------------------- public surface

    def acquire(self, timeout: float | None = None) -> _Acquire[T]:
        """Check out one object: ``async with pool.acquire() as obj`` or
        ``guard = await pool.acquire()``.

        Waiters are served first come, first served. Raises PoolTimeout (a TimeoutError) when
        no object is free within ``timeout`` seconds, PoolClosed once the pool is closing, and
        the factory's error when a creation failed and nothing else could serve this waiter.
        """
        return _Acquire(self, timeout)

    def acquire_nowait(self) -> Guard[T]:
        """A guard for an idle object, at once. Raises PoolTimeout when none is idle (so also
        when others are waiting) and PoolClosed once the pool is closing."""
        entry = self._take()
        if self._requested or len(self._idle) + self._creating < self._min_idle:
            self._reconcile()
        if entry is None:
            raise PoolTimeout("no idle object in the pool")
        return Guard(self, entry)

    async def start(self) -> None:
        """Create objects up to ``min_size`` concurrently and wait for them. Raises the first
        error a factory raised. The creations belong to the pool: cancelling ``start()`` does
        not stop them, and whatever they make is pooled (and closed by :meth:`aclose`)."""
        if not self._can_create or self._closed:
            return
        missing = self._min_size - len(self._entries) - self._creating
        if missing <= 0:
            return
        if self._make is not None:
            while True:
                # Each creation may ask for more (min_idle): made here too, not in the loop's
                # next step, so that start returns with what it promised and no more.
                if self._make_handle is not None:
                    self._make_handle.cancel()
                    self._make_pending()
                if self._min_size - len(self._entries) - self._creating <= 0:
                    return
                self._creating += 1
                if (error := self._create_now()) is not None:
                    raise error
        tasks = [task for _ in range(missing) if (task := self._spawn_creation()) is not None]
        await asyncio.wait(tasks)
        for task in tasks:
            if not task.cancelled() and (error := task.result()) is not None:
                raise error

    async def aclose(self, timeout: float = 5.0) -> None:
        """Close the pool. Idempotent; every call waits for the same closing work.

        Waiters (current and later) get PoolClosed at once; idle objects are closed and
        creations cancelled; then the pool waits up to ``timeout`` seconds for outstanding
        guards to come back and closes whatever remains. Cancelling a caller does not stop the
        closing work.
        """
        if self._close_task is None:
            loop = self._loop or self._bind()
            self._closed = True
            if self._sweep is not None:
                self._sweep.cancel()
                self._sweep = None
            error = PoolClosed("the pool is closed")
            for fut in self._waiters:
                if not fut.done():
                    fut.set_exception(error)
                    self._live_waiters -= 1
            # A waiter cancelled but not yet resumed still counts itself out when it resumes.
            self._waiters.clear()
            idle = list(self._idle)
            self._idle.clear()
            for entry in idle:
                self._retire(entry, replace=False)
            for task in self._creations:
                task.cancel()
            if self._make_handle is not None:
                self._make_handle.cancel()
                self._make_handle = None
                self._creating -= self._pending_makes
                self._pending_makes = 0
            self._close_task = loop.create_task(self._finish_close(timeout))
        await asyncio.shield(self._close_task)

    @property
    def closed(self) -> bool:
        return self._closed

    def statistics(self) -> PoolStatistics:
        size, idle, in_use = len(self._entries), len(self._idle), self._in_use
        assert size == idle + in_use, (size, idle, in_use)
        return PoolStatistics(
            size=size,
            idle=idle,
            in_use=in_use,
            waiting=sum(1 for fut in self._waiters if not fut.done()),
            creating=self._creating,
            created=self._n_created,
            retired=self._n_retired,
            discarded=self._n_discarded,
            acquired=self._n_acquired,
            timed_out=self._n_timed_out,
            cancelled=self._n_cancelled,
            failed_creates=self._n_failed_creates,
            given=self._n_given,
            closing=self._closing,
            idle_closed=self._n_idle_closed,
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

    # ----------------------------------------------------------------- checking out

    def _take(self) -> _Entry[T] | None:
        """Check out an idle object; None when none is idle. Raises PoolClosed once the pool
        is closing. Objects found too old on the way are retired, and their replacements left
        for the caller's ``_reconcile`` to start."""
        if self._closed:
            raise PoolClosed("the pool is closed")
        idle = self._idle
        while idle:
            entry = self._pop_idle()
            if self._bookkeeping:
                if self._max_age is not None and entry.expires_at <= self._time():
                    self._retire(entry, replace=True)
                    continue
                entry.uses += 1
                if (
                    entry.uses == self._max_uses
                    and len(self._entries) + self._creating < self._max_size
                ):
                    # Its last use: make the replacement now, so that it is idle by the time
                    # this one retires and the next checkout finds it without waiting.
                    entry.heir = True
                    self._requested += 1
            self._in_use += 1
            self._n_acquired += 1
            return entry
        return None

    def _pop_random(self) -> _Entry[T]:
        # Uniform in O(1): swap the chosen one with the last and pop. random() * n is uniform
        # to within n / 2**53, and a C call where randrange is several Python ones.
        idle = self._idle
        i = int(self._random() * len(idle))
        entry = idle[i]
        idle[i] = idle[-1]
        idle.pop()
        return entry

    def _enqueue(
        self, timeout: float | None
    ) -> tuple[asyncio.Future[_Entry[T]], asyncio.TimerHandle | None]:
        """Join the line of waiters: the future gets an object (or an error), the timer, if
        any, fails it with PoolTimeout. The caller cancels the timer once the future is done
        and calls ``_cancelled_waiter`` when cancelled. Raises PoolClosed once the pool is
        closing."""
        if self._closed:
            raise PoolClosed("the pool is closed")
        loop = self._loop or self._bind()
        fut: asyncio.Future[_Entry[T]] = loop.create_future()
        self._waiters.append(fut)
        self._live_waiters += 1
        if self._can_create:  # else nothing can follow from a new waiter
            self._failing = False  # a newcomer is worth another try of a factory that failed
            self._reconcile()
        timer = None if timeout is None else loop.call_later(timeout, self._expire, fut)
        return fut, timer

    def _expire(self, fut: asyncio.Future[_Entry[T]]) -> None:
        if fut.done():
            return
        self._n_timed_out += 1
        error = PoolTimeout("no object became free before the timeout")
        if self._failing:
            error.__cause__ = self._last_error
        fut.set_exception(error)
        self._live_waiters -= 1
        self._purge_waiters()
        self._reconcile()

    def _cancelled_waiter(self, fut: asyncio.Future[_Entry[T]]) -> None:
        self._n_cancelled += 1
        if fut.cancelled():
            self._live_waiters -= 1
            self._purge_waiters()
            self._reconcile()
        elif fut.exception() is None:
            # Cancelled after the hand-off but before it resumed: the object is the waiter's,
            # so it goes back (to the next waiter) rather than being lost.
            self._put_back(fut.result())

    def _purge_waiters(self) -> None:
        """Futures that left the line early are skipped lazily; drop them now and then so that
        a long run of timeouts cannot grow the line without bound."""
        waiters = self._waiters
        if len(waiters) > 2 * self._live_waiters + 64:
            live = [fut for fut in waiters if not fut.done()]
            waiters.clear()
            waiters.extend(live)

    # ----------------------------------------------------------------- returning

    def _put_back(self, entry: _Entry[T]) -> None:
        """A holder returned its object: idle again, or retired when spent."""
        if self._closed:
            self._returned_after_close(entry, discarded=False)
            return
        self._in_use -= 1
        if self._bookkeeping:
            spent = self._max_uses is not None and entry.uses >= self._max_uses
            if self._stamps:
                now = self._time()
                entry.idle_since = now
                spent = spent or entry.expires_at <= now
            if spent:
                self._retire(entry, replace=not entry.heir)
                self._reconcile()
                return
        self._idle.append(entry)
        if self._live_waiters or (
            self._idle_timeout is not None
            and self._sweep is None
            and len(self._entries) > self._min_size
        ):
            self._reconcile()

    def _discard(self, entry: _Entry[T]) -> None:
        if self._closed:
            self._returned_after_close(entry, discarded=True)
            return
        self._in_use -= 1
        self._n_discarded += 1
        self._retire(entry, replace=not entry.heir)
        self._reconcile()

    def _returned_after_close(self, entry: _Entry[T], *, discarded: bool) -> None:
        if entry.closed:  # closed under its holder when aclose stopped waiting: counted then
            return
        self._in_use -= 1
        self._n_discarded += discarded
        self._retire(entry, replace=False)
        self._reconcile()

    def _retire(self, entry: _Entry[T], *, replace: bool) -> None:
        """The object leaves the pool and is closed in the background; with ``replace``, a
        replacement is requested from the next ``_reconcile``. The caller has already taken
        it out of the idle objects or the in-use count."""
        self._entries.remove(entry)
        self._n_retired += 1
        entry.closed = True
        if replace:
            self._requested += 1
        if self._close_hook is not None:
            closing = self._close_hook(entry.obj)
            if closing is None:  # a plain function: closed already
                return
            self._closing += 1
            task = asyncio.ensure_future(closing, loop=self._loop or self._bind())
            self._closes.add(task)
            task.add_done_callback(self._close_done)

    def _close_done(self, task: asyncio.Future[None]) -> None:
        self._closes.discard(task)
        self._closing -= 1
        if not task.cancelled():
            # A close hook that failed has nobody to report to; retrieving the exception keeps
            # asyncio from logging "exception was never retrieved".
            task.exception()

    # ----------------------------------------------------------------- the decision step

    def _reconcile(self, failure: Exception | None = None) -> None:
        """Draw every consequence of the current state (see the module docstring)."""
        waiters = self._waiters
        while waiters and self._idle:
            fut = waiters.popleft()
            if fut.done():  # it timed out, was cancelled or failed: it left the line
                continue
            entry = self._take()
            if entry is None:  # all idle ones were too old
                waiters.appendleft(fut)
                break
            self._live_waiters -= 1
            fut.set_result(entry)
        if failure is not None and self._live_waiters:
            self._charge(failure)
        if self._can_create and not self._closed:
            self._grow()
        else:
            self._requested = 0
        if (
            self._idle_timeout is not None
            and self._sweep is None
            and self._idle
            and len(self._entries) > self._min_size
            and not self._closed
        ):
            self._arm_sweep()
        if self._drained is not None and self._in_use == 0:
            self._drained.set()

    def _charge(self, failure: Exception) -> None:
        """A creation failed. Objects in use may come back and other creations may succeed, so
        the oldest waiters, as many as those could serve, keep waiting; the oldest waiter
        beyond them, whom nothing can serve now, gets the factory's error."""
        cover = self._in_use + self._creating
        for fut in self._waiters:
            if fut.done():
                continue
            if cover:
                cover -= 1
                continue
            fut.set_exception(failure)
            self._live_waiters -= 1
            return

    def _grow(self) -> None:
        """Start creations while there is room: one per waiter not covered by a creation in
        flight, up to ``min_size``, and one per requested replacement. After a failure, only
        for waiters nothing at all can serve, since each such failure then ends one waiter and
        a broken factory cannot spin; a success or a new waiter lifts that."""
        requested, self._requested = self._requested, 0
        size, creating = len(self._entries), self._creating
        room = self._max_size - size - creating
        if room <= 0:
            return
        waiting = self._live_waiters
        if self._failing:
            wanted = max(waiting - self._in_use - creating, requested)
        else:
            wanted = max(
                self._min_size - size - creating,
                waiting - creating,
                requested,
                self._min_idle - len(self._idle) - creating,
            )
        for _ in range(min(wanted, room)):
            self._spawn_creation()

    # ----------------------------------------------------------------- creating

    def _spawn_creation(self) -> asyncio.Task[Exception | None] | None:
        """Start one creation: a task with ``factory``; with ``create``, a share of the one
        callback that makes what was asked for (None then)."""
        self._creating += 1
        loop = self._loop or self._bind()
        if self._make is not None:
            self._pending_makes += 1
            if self._make_handle is None:
                self._make_handle = loop.call_soon(self._make_pending)
            return None
        task = loop.create_task(self._create())
        self._creations.add(task)
        task.add_done_callback(self._creation_done)
        return task

    async def _create(self) -> Exception | None:
        """One creation, run as the pool's own task so that no caller's cancellation can lose
        what it makes. Returns the factory's error, for start()."""
        assert self._factory is not None
        try:
            obj = await self._factory()
        except Exception as exc:  # this task's root: the error goes to a waiter and start()
            return self._creation_failed(exc)
        self._created(obj)
        return None

    def _make_pending(self) -> None:
        """The callback of ``create``: make every object asked for since it was scheduled."""
        self._make_handle = None
        count, self._pending_makes = self._pending_makes, 0
        for _ in range(count):
            self._create_now()

    def _create_now(self) -> Exception | None:
        """One creation with ``create`` (counted in ``_creating`` already); its error, if any."""
        assert self._make is not None
        try:
            obj = self._make()
        except Exception as exc:  # the callback's root: the error goes to a waiter and start()
            return self._creation_failed(exc)
        self._created(obj)
        return None

    def _creation_failed(self, exc: Exception) -> Exception:
        self._creating -= 1
        self._n_failed_creates += 1
        self._failing = True
        self._last_error = exc
        self._reconcile(failure=exc)
        return exc

    def _created(self, obj: T) -> None:
        self._creating -= 1
        self._failing = False
        self._last_error = None
        entry = _Entry(obj, self._time(), self._max_age)
        self._n_created += 1
        self._entries.add(entry)
        if self._closed:
            self._retire(entry, replace=False)
        else:
            self._idle.append(entry)
        self._reconcile()

    def _creation_done(self, task: asyncio.Task[Exception | None]) -> None:
        self._creations.discard(task)
        if task.cancelled():
            # Counted here, not in _create: a task cancelled before its first step never runs
            # its coroutine. Marked as failing so that a loop shutting down is not handed new
            # creations for min_size; a waiter nothing else can serve still gets one.
            self._creating -= 1
            self._failing = True
            self._reconcile()
        else:
            task.result()  # a broken invariant inside _create surfaces in the loop's handler

    # ----------------------------------------------------------------- idle sweep

    def _arm_sweep(self) -> None:
        assert self._idle_timeout is not None
        due = min(entry.idle_since for entry in self._idle) + self._idle_timeout
        delay = max(due - self._time(), 0.0) + _SWEEP_SLACK
        self._sweep = (self._loop or self._bind()).call_later(delay, self._sweep_idle)

    def _sweep_idle(self) -> None:
        """Close the objects idle for ``idle_timeout`` or longer, longest idle first, while the
        pool is above ``min_size``. ``_reconcile`` re-arms the timer while idle objects above
        ``min_size`` remain, so an idle pool at its minimum has no timer at all."""
        assert self._idle_timeout is not None
        self._sweep = None
        idle = self._idle
        excess = min(len(self._entries) - self._min_size, len(self._idle) - self._min_idle)
        if excess > 0 and idle:
            limit = self._time() - self._idle_timeout
            due = [entry for entry in idle if entry.idle_since <= limit]
            due.sort(key=attrgetter("idle_since"))
            gone = set(due[:excess])
            if gone:
                kept = [entry for entry in idle if entry not in gone]
                idle.clear()
                idle.extend(kept)
                for entry in gone:
                    self._retire(entry, replace=False)
                self._n_idle_closed += len(gone)
        self._reconcile()

    # ----------------------------------------------------------------- closing

    def _bind(self) -> asyncio.AbstractEventLoop:
        self._loop = asyncio.get_running_loop()
        return self._loop

    async def _finish_close(self, timeout: float) -> None:
        if self._in_use:
            self._drained = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._drained.wait()
        for entry in list(self._entries):  # still out after the timeout: closed under holders
            self._in_use -= 1
            self._retire(entry, replace=False)
        while self._creations or self._closes:
            await asyncio.gather(*self._creations, *self._closes, return_exceptions=True)


def _validate(
    given: int,
    factory: object,
    min_size: int,
    max_size: int | None,
    max_uses: int | None,
    max_age: float | None,
    idle_timeout: float | None,
    order: str,
) -> None:
    if min_size < 0:
        raise ConfigError("min_size", "must be 0 or more")
    if max_size is not None:
        if max_size < 1:
            raise ConfigError("max_size", "must be at least 1")
        if max_size < min_size:
            raise ConfigError("max_size", "must be at least min_size")
        if max_size < given:
            raise ConfigError("max_size", "is smaller than the number of objects given")
    if factory is None and not given:
        raise ConfigError("objects", "give objects or a factory")
    if max_uses is not None and max_uses < 1:
        raise ConfigError("max_uses", "must be at least 1")
    if max_age is not None and max_age <= 0:
        raise ConfigError("max_age", "must be positive")
    if idle_timeout is not None and idle_timeout <= 0:
        raise ConfigError("idle_timeout", "must be positive")
    if factory is None and (max_uses is not None or max_age is not None):
        raise ConfigError("max_uses", "recycling needs a factory to make replacements")
    if factory is None and idle_timeout is not None:
        raise ConfigError("idle_timeout", "closing idle objects needs a factory to make more")
    if order not in ("fifo", "random"):
        raise ConfigError("order", "must be 'fifo' or 'random'")
