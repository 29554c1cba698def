"""Idle shrink (``idle_timeout``), the statistics' accounting of every object, and random order."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from itertools import pairwise

import pytest
from pool_things import Factory, Thing, close_thing, settle

from resolver.errors import ConfigError
from resolver.pool import Pool, PoolStatistics


def accounted(pool: Pool[Thing]) -> PoolStatistics:
    stats = pool.statistics()
    assert stats.size == stats.idle + stats.in_use
    assert stats.given + stats.created == stats.size + stats.retired
    return stats


async def until(condition: Callable[[], bool], limit: float = 2.0) -> None:
    async with asyncio.timeout(limit):
        while not condition():
            await asyncio.sleep(0.005)


async def test_idle_objects_above_min_size_close_after_idle_timeout() -> None:
    factory = Factory()
    pool = Pool(factory=factory, close=close_thing, min_size=1, max_size=4, idle_timeout=0.05)
    guards = [await pool.acquire() for _ in range(4)]
    for guard in guards:
        guard.release()
    assert accounted(pool).idle == 4
    await until(lambda: pool.statistics().idle_closed == 3)
    await settle()
    stats = accounted(pool)
    assert (stats.size, stats.idle, stats.retired, stats.closing) == (1, 1, 3, 0)
    assert sorted(thing.closed for thing in factory.made) == [0, 1, 1, 1]
    await asyncio.sleep(0.1)  # at min_size: the last one stays however long it idles
    assert accounted(pool).size == 1
    await pool.aclose()
    assert [thing.closed for thing in factory.made] == [1, 1, 1, 1]


async def test_idle_timeout_closes_the_longest_idle_and_spares_objects_in_use() -> None:
    factory = Factory()
    pool = Pool(factory=factory, close=close_thing, min_size=2, max_size=3, idle_timeout=0.05)
    first, second, third = [await pool.acquire() for _ in range(3)]
    oldest = first.obj
    first.release()
    await asyncio.sleep(0.02)
    second.release()
    await until(lambda: pool.statistics().idle_closed == 1)
    await settle()
    assert oldest.closed == 1  # one above min_size: the longest idle goes
    await asyncio.sleep(0.1)
    stats = accounted(pool)
    assert (stats.size, stats.in_use, stats.idle_closed) == (2, 1, 1)
    assert third.obj.closed == 0
    third.release()
    await pool.aclose()


async def test_busy_pool_loses_nothing_to_the_idle_sweep() -> None:
    factory = Factory()
    pool = Pool(factory=factory, close=close_thing, min_size=0, max_size=2, idle_timeout=0.05)
    async with pool.acquire() as held:
        await asyncio.sleep(0.1)
        assert held.closed == 0
        assert accounted(pool).idle_closed == 0
    await until(lambda: pool.statistics().size == 0)
    await settle()
    assert (held.closed, accounted(pool).idle_closed) == (1, 1)
    async with pool.acquire() as fresh:  # an empty pool makes a new one on demand
        assert fresh is not held
    await pool.aclose()


async def test_aclose_stops_the_idle_sweep() -> None:
    factory = Factory()
    pool = Pool(factory=factory, close=close_thing, max_size=2, idle_timeout=0.05)
    guard = await pool.acquire()
    guard.release()
    await pool.aclose()
    await asyncio.sleep(0.1)
    stats = accounted(pool)
    assert (stats.size, stats.retired, stats.idle_closed) == (0, 1, 0)
    assert factory.made[0].closed == 1


async def test_statistics_account_for_every_object_through_churn() -> None:
    factory = Factory()
    given = [Thing(-1), Thing(-2)]
    pool = Pool(given, factory=factory, close=close_thing, min_size=1, max_size=4, max_uses=2)
    for round_ in range(12):
        guard = await pool.acquire()
        accounted(pool)
        if round_ % 3 == 0:
            guard.discard()
        else:
            guard.release()
        accounted(pool)
        await settle()
    stats = accounted(pool)
    assert stats.given == 2
    assert stats.discarded == 4
    assert stats.retired >= stats.discarded
    held = await pool.acquire()
    await pool.aclose(timeout=0.01)  # closes the held one under its holder, counted once
    held.release()
    stats = accounted(pool)
    assert (stats.size, stats.in_use, stats.closing) == (0, 0, 0)
    assert stats.retired == stats.given + stats.created
    assert all(thing.closed == 1 for thing in [*given, *factory.made])


@pytest.mark.parametrize("order", ["fifo", "random"], ids=["fifo", "random"])
async def test_every_idle_object_gets_used(order: str) -> None:
    things = [Thing(i) for i in range(4)]
    pool = Pool(things, order=order, rng=random.Random(5))  # type: ignore[arg-type]
    seen: Counter[int] = Counter()
    for _ in range(4000):
        guard = pool.acquire_nowait()
        seen[guard.obj.n] += 1
        guard.release()
    assert set(seen) == {0, 1, 2, 3}
    assert all(800 <= count <= 1200 for count in seen.values()), seen


async def test_random_order_draws_afresh_rather_than_cycling() -> None:
    things = [Thing(i) for i in range(8)]
    pool = Pool(things, order="random", rng=random.Random(11))
    draws = []
    for _ in range(64):
        guard = pool.acquire_nowait()
        draws.append(guard.obj.n)
        guard.release()
    repeats = sum(a == b for a, b in pairwise(draws))
    assert repeats > 0, "the same object never came twice in a row: that is a cycle"
    fifo = Pool([Thing(i) for i in range(8)])
    cycle = []
    for _ in range(16):
        guard = fifo.acquire_nowait()
        cycle.append(guard.obj.n)
        guard.release()
    assert cycle == list(range(8)) * 2


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"factory": Factory(), "idle_timeout": 0.0}, "idle_timeout"),
        ({"idle_timeout": 1.0}, "idle_timeout"),
    ],
    ids=["zero-timeout", "no-factory"],
)
def test_invalid_idle_timeout_raises_config_error(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        Pool([Thing(0)], **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
