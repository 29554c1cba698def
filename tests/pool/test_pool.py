"""Behaviour of resolver.pool.Pool: exclusivity, fairness, guards, factories, recycling, closing."""

from __future__ import annotations

import asyncio
import random

import pytest
from pool_things import Factory, Thing, close_thing, settle

from resolver.errors import ConfigError, GuardReleased, PoolClosed, PoolTimeout
from resolver.pool import Pool, PoolStatistics


def check(pool: Pool[Thing]) -> PoolStatistics:
    stats = pool.statistics()
    assert stats.size == stats.idle + stats.in_use
    assert not (stats.idle and stats.waiting), "an idle object and a sleeping waiter coexist"
    return stats


async def test_acquire_gives_exclusive_object_and_returns_it() -> None:
    things = [Thing(0), Thing(1)]
    pool = Pool(things)
    async with pool.acquire() as a, pool.acquire() as b:
        assert {a, b} == set(things)
        assert check(pool).in_use == 2
    assert check(pool).idle == 2
    assert pool.statistics().acquired == 2


async def test_guard_refuses_use_after_release() -> None:
    pool = Pool([Thing(0)])
    guard = await pool.acquire()
    assert guard.obj.n == 0
    guard.release()
    assert guard.released
    with pytest.raises(GuardReleased):
        _ = guard.obj
    with pytest.raises(GuardReleased):
        guard.release()
    with pytest.raises(GuardReleased):
        guard.discard()
    assert check(pool).idle == 1


async def test_guard_as_context_manager_releases_on_exit() -> None:
    pool = Pool([Thing(0)])
    with await pool.acquire() as thing:
        assert thing.n == 0
        assert pool.statistics().in_use == 1
    assert check(pool).idle == 1


async def test_release_on_exception_inside_block() -> None:
    pool = Pool([Thing(0)])
    with pytest.raises(RuntimeError):
        async with pool.acquire():
            raise RuntimeError("boom")
    assert check(pool).idle == 1


async def test_waiters_are_served_in_fifo_order() -> None:
    pool = Pool([Thing(0)])
    holder = await pool.acquire()
    order: list[int] = []

    async def waiter(i: int) -> None:
        async with pool.acquire():
            order.append(i)
            await asyncio.sleep(0)

    tasks = [asyncio.create_task(waiter(i)) for i in range(5)]
    await settle()
    assert check(pool).waiting == 5
    holder.release()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]


async def test_newcomer_does_not_barge_past_a_waiter() -> None:
    pool = Pool([Thing(0)])
    holder = await pool.acquire()
    got: list[str] = []

    async def take(name: str) -> None:
        async with pool.acquire():
            got.append(name)

    first = asyncio.create_task(take("waiter"))
    await settle()
    holder.release()  # handed to the waiter, who has not resumed yet
    with pytest.raises(PoolTimeout):
        pool.acquire_nowait()  # the newcomer finds nothing idle
    late = asyncio.create_task(take("newcomer"))
    await asyncio.gather(first, late)
    assert got == ["waiter", "newcomer"]


async def test_one_release_wakes_exactly_one_waiter() -> None:
    pool = Pool([Thing(0)])
    holder = await pool.acquire()
    woken: list[int] = []

    async def waiter(i: int) -> None:
        guard = await pool.acquire()
        woken.append(i)
        await asyncio.Event().wait()  # hold forever
        guard.release()

    tasks = [asyncio.create_task(waiter(i)) for i in range(3)]
    await settle()
    holder.release()
    await settle()
    assert woken == [0]
    assert check(pool).waiting == 2
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_acquire_timeout_raises_pool_timeout_and_loses_nothing() -> None:
    pool = Pool([Thing(0)])
    holder = await pool.acquire()
    with pytest.raises(PoolTimeout) as info:
        await pool.acquire(timeout=0.01)
    assert isinstance(info.value, TimeoutError)
    stats = check(pool)
    assert (stats.timed_out, stats.waiting, stats.in_use) == (1, 0, 1)
    holder.release()
    assert check(pool).idle == 1


async def test_acquire_nowait_gives_idle_object_or_raises_at_once() -> None:
    pool = Pool([Thing(0)])
    guard = pool.acquire_nowait()
    with pytest.raises(PoolTimeout):
        pool.acquire_nowait()
    guard.release()
    assert pool.acquire_nowait().obj.n == 0


async def test_idle_objects_are_handed_out_oldest_released_first() -> None:
    things = [Thing(i) for i in range(3)]
    pool = Pool(things)
    guards = [await pool.acquire() for _ in range(3)]
    for i in (2, 0, 1):
        guards[i].release()
    got = [(await pool.acquire()).obj.n for _ in range(3)]
    assert got == [2, 0, 1]


async def test_random_order_uses_the_given_rng() -> None:
    def draw(seed: int) -> list[int]:
        pool = Pool([Thing(i) for i in range(8)], order="random", rng=random.Random(seed))
        return [pool.acquire_nowait().obj.n for _ in range(8)]

    first = draw(7)
    assert first == draw(7)
    assert sorted(first) == list(range(8))
    assert first != list(range(8))


async def test_factory_pool_creates_min_size_on_start_and_grows_to_max() -> None:
    factory = Factory()
    pool = Pool(factory=factory, close=close_thing, min_size=2, max_size=3)
    await pool.start()
    assert check(pool).size == 2
    guards = [await pool.acquire() for _ in range(3)]
    assert len({g.obj for g in guards}) == 3
    assert len(factory.made) == 3
    with pytest.raises(PoolTimeout):
        await pool.acquire(timeout=0.01)
    for guard in guards:
        guard.release()
    await pool.aclose()
    assert [t.closed for t in factory.made] == [1, 1, 1]


async def test_factory_failure_reaches_the_waiter_and_frees_the_slot() -> None:
    factory = Factory(fail=1)
    pool = Pool(factory=factory, close=close_thing, max_size=1)
    with pytest.raises(OSError, match="cannot bind"):
        await pool.acquire()
    stats = check(pool)
    assert (stats.failed_creates, stats.size, stats.creating) == (1, 0, 0)
    async with pool.acquire() as thing:
        assert thing.n == 0
    await pool.aclose()


async def test_discard_closes_object_and_replaces_it_in_background() -> None:
    factory = Factory()
    pool = Pool(factory=factory, close=close_thing, min_size=1, max_size=1)
    await pool.start()
    guard = await pool.acquire()
    broken = guard.obj
    guard.discard()
    await settle()
    assert broken.closed == 1
    stats = check(pool)
    assert (stats.discarded, stats.size, stats.idle) == (1, 1, 1)
    async with pool.acquire() as thing:
        assert thing is not broken
    await pool.aclose()


async def test_discard_hands_replacement_to_the_waiter() -> None:
    factory = Factory()
    pool = Pool(factory=factory, close=close_thing, max_size=1)
    guard = await pool.acquire()
    waiter = asyncio.create_task(_take(pool))
    await settle()
    guard.discard()
    thing = await waiter
    assert thing.n == 1
    await pool.aclose()


async def _take(pool: Pool[Thing]) -> Thing:
    async with pool.acquire(timeout=1.0) as thing:
        return thing


async def test_max_uses_retires_and_replaces_object() -> None:
    factory = Factory()
    pool = Pool(factory=factory, close=close_thing, min_size=1, max_size=1, max_uses=2)
    await pool.start()
    seen = [await _take(pool) for _ in range(5)]
    assert [t.n for t in seen] == [0, 0, 1, 1, 2]
    await settle()
    assert factory.made[0].closed == 1
    assert factory.made[1].closed == 1
    assert check(pool).retired == 2
    await pool.aclose()


async def test_max_age_retires_old_object_with_injected_clock() -> None:
    now = [100.0]
    factory = Factory()
    pool = Pool(
        factory=factory,
        close=close_thing,
        min_size=1,
        max_size=1,
        max_age=30.0,
        clock=lambda: now[0],
    )
    await pool.start()
    assert (await _take(pool)).n == 0
    now[0] += 29.0
    assert (await _take(pool)).n == 0
    now[0] += 1.0
    assert (await _take(pool)).n == 1  # the idle one was too old: retired and replaced
    assert factory.made[0].closed == 1
    await pool.aclose()


async def test_aclose_fails_waiters_and_later_acquires() -> None:
    thing = Thing(0)
    pool = Pool([thing], close=close_thing)
    guard = await pool.acquire()
    waiter = asyncio.create_task(_take(pool))
    await settle()
    closing = asyncio.create_task(pool.aclose(timeout=1.0))
    await settle()
    with pytest.raises(PoolClosed):
        await waiter
    with pytest.raises(PoolClosed):
        await pool.acquire()
    guard.release()  # the outstanding guard comes back; now the pool can finish
    await closing
    assert thing.closed == 1
    assert pool.statistics().size == 0
    await pool.aclose()  # idempotent
    assert thing.closed == 1


async def test_aclose_waits_a_bounded_time_then_closes_held_objects() -> None:
    thing = Thing(0)
    pool = Pool([thing], close=close_thing)
    guard = await pool.acquire()
    await pool.aclose(timeout=0.01)
    assert thing.closed == 1
    guard.release()  # late release after close: closed once only
    await settle()
    assert thing.closed == 1
    assert pool.statistics().in_use == 0


async def test_aclose_finishes_even_when_caller_is_cancelled() -> None:
    thing = Thing(0)
    pool = Pool([thing], close=close_thing)
    guard = await pool.acquire()
    closer = asyncio.create_task(pool.aclose(timeout=5.0))
    await settle()
    closer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closer
    guard.release()
    await pool.aclose()
    assert thing.closed == 1


async def test_statistics_and_repr_show_live_counts() -> None:
    pool = Pool([Thing(0), Thing(1)])
    guard = await pool.acquire()
    assert "in_use=1" in repr(pool)
    assert "idle=1" in repr(pool)
    guard.release()
    assert pool.statistics() == PoolStatistics(
        size=2,
        idle=2,
        in_use=0,
        waiting=0,
        creating=0,
        created=0,
        retired=0,
        discarded=0,
        acquired=1,
        timed_out=0,
        cancelled=0,
        failed_creates=0,
        given=2,
        closing=0,
        idle_closed=0,
    )


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"min_size": -1}, "min_size"),
        ({"max_size": 0}, "max_size"),
        ({"max_uses": 0}, "max_uses"),
        ({"max_age": 0.0}, "max_age"),
        ({"order": "lifo"}, "order"),
    ],
    ids=["negative-min", "zero-max", "zero-uses", "zero-age", "bad-order"],
)
def test_invalid_settings_raise_config_error_naming_the_field(
    kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(ConfigError) as info:
        Pool(factory=Factory(), **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_pool_without_objects_or_factory_is_rejected() -> None:
    with pytest.raises(ConfigError, match="objects"):
        Pool([])


def test_recycling_without_factory_is_rejected() -> None:
    with pytest.raises(ConfigError, match="factory"):
        Pool([Thing(0)], max_uses=3)
