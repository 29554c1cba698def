"""What a check-out hands out: the Guard, the acquire context, and the pooled entry.

They call back into the pool's synchronous bookkeeping (``Pool._put_back``, ``_discard``,
``_take_idle``, ``_wait``); see ``resolver.pool.core`` for the invariants.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Generic, TypeVar

from resolver.errors import GuardReleased

if TYPE_CHECKING:
    from resolver.pool.core import Pool

__all__ = ["Guard", "PoolStatistics"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PoolStatistics:
    """A snapshot of a pool's counts. ``size == idle + in_use`` always holds."""

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


class _Entry(Generic[T]):
    """One pooled object and its recycling bookkeeping."""

    __slots__ = ("closed", "created_at", "obj", "uses")

    def __init__(self, obj: T, created_at: float) -> None:
        self.obj = obj
        self.created_at = created_at
        self.uses = 0
        self.closed = False


class Guard(Generic[T]):
    """Exclusive use of one pooled object until :meth:`release` or :meth:`discard`.

    After either call the guard refuses further use: ``obj``, ``release`` and ``discard`` raise
    :class:`GuardReleased`. Used as a (sync) context manager, it releases on exit unless it was
    already released or discarded.
    """

    __slots__ = ("_entry", "_pool")

    def __init__(self, pool: Pool[T], entry: _Entry[T] | None) -> None:
        self._pool = pool
        self._entry: _Entry[T] | None = entry

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
        """Return the object to the pool (or to the longest waiter). Never awaits."""
        entry = self._entry
        if entry is None:
            raise GuardReleased("this guard was already released")
        self._entry = None
        self._pool._put_back(entry)

    def discard(self) -> None:
        """The object is broken: the pool closes it and creates a replacement in the background."""
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
        return self._pool._acquire(self._timeout).__await__()

    async def __aenter__(self) -> T:
        pool = self._pool
        if pool._idle or pool._closed:
            entry = pool._take_idle()
            if entry is not None:
                self._entry = entry
                return entry.obj
        if self._timeout is not None or pool._factory is not None or pool._closed:
            return await pool._wait(self._timeout, self)
        # The plain wait (no timer, nothing to create), inlined: one coroutine per waiter
        # instead of two, which is most of the cost of a contended acquire.
        loop = pool._loop or pool._bind_loop()
        fut: asyncio.Future[_Entry[T]] = loop.create_future()
        pool._waiters.append(fut)
        pool._live_waiters += 1
        try:
            entry = await fut
        except asyncio.CancelledError:
            pool._cancelled_waiter(fut)
            raise
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
