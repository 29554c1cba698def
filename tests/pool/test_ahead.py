"""Objects made ahead of demand: ``min_idle`` spares, the heir of an object on its last use,
and a plain (not async) close hook."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from resolver.errors import ConfigError
from resolver.pool import Pool


class Factory:
    def __init__(self) -> None:
        self.made: list[int] = []

    async def __call__(self) -> int:
        self.made.append(len(self.made))
        return self.made[-1]


async def until(condition: Callable[[], bool], limit: float = 2.0) -> None:
    async with asyncio.timeout(limit):
        while not condition():
            await asyncio.sleep(0.001)


async def test_min_idle_keeps_spares_ready_while_objects_are_held() -> None:
    pool = Pool(factory=Factory(), min_size=1, max_size=20, min_idle=3)
    async with pool:
        held = []
        for _ in range(5):
            await until(lambda: pool.statistics().idle >= 1)
            held.append(pool.acquire_nowait())
            # Each checkout that leaves fewer than 3 idle starts creations at once.
            await until(lambda: pool.statistics().idle >= 3)
        stats = pool.statistics()
        assert (stats.in_use, stats.idle) == (5, 3)
        for guard in held:
            guard.release()


async def test_min_idle_is_bounded_by_max_size() -> None:
    pool = Pool(factory=Factory(), max_size=4, min_idle=10)
    async with pool:
        guard = await pool.acquire()
        await until(lambda: pool.statistics().size == 4)
        await asyncio.sleep(0.01)
        assert pool.statistics().size == 4
        guard.release()


def test_min_idle_needs_a_factory_and_is_not_negative() -> None:
    with pytest.raises(ConfigError, match="min_idle"):
        Pool([1], min_idle=1)
    with pytest.raises(ConfigError, match="min_idle"):
        Pool(factory=Factory(), min_idle=-1)


async def test_the_heir_of_an_object_on_its_last_use_is_made_before_it_returns() -> None:
    factory = Factory()
    pool = Pool(factory=factory, min_size=1, max_size=4, max_uses=2)
    async with pool:
        with pool.acquire_nowait():
            pass
        guard = pool.acquire_nowait()  # the second and last use of object 0
        await until(lambda: len(factory.made) == 2)  # its heir, while it is still held
        stats = pool.statistics()
        assert (stats.in_use, stats.idle) == (1, 1)
        guard.release()
        stats = pool.statistics()
        # Retired without asking for another replacement: the heir took its place.
        assert (stats.size, stats.idle, stats.retired, stats.creating) == (1, 1, 1, 0)
        with pool.acquire_nowait() as obj:
            assert obj == 1


async def test_a_plain_close_hook_runs_at_once() -> None:
    closed: list[int] = []
    pool = Pool(factory=Factory(), close=closed.append, min_size=1, max_uses=1)
    async with pool:
        pool.acquire_nowait().release()
        assert closed == [0]
        assert pool.statistics().closing == 0
