"""The cancellation matrix: cancel at every await point of acquire, use and release, then check
that the pool's statistics account for every object (idle or held, none lost, none twice)."""

from __future__ import annotations

import asyncio

import pytest
from pool_things import Thing, close_thing, settle

from resolver.errors import PoolTimeout
from resolver.pool import Pool, PoolStatistics


def accounted(pool: Pool[Thing], *, size: int, in_use: int) -> PoolStatistics:
    stats = pool.statistics()
    assert (stats.size, stats.in_use, stats.idle) == (size, in_use, size - in_use)
    assert stats.waiting == 0
    return stats


async def take_and_hold(pool: Pool[Thing], held: list[Thing], timeout: float | None) -> None:
    async with pool.acquire(timeout=timeout) as thing:
        held.append(thing)
        await asyncio.Event().wait()


@pytest.mark.parametrize("timeout", [None, 5.0], ids=["no-timeout", "with-timeout"])
async def test_cancel_while_waiting_leaves_queue_and_loses_nothing(timeout: float | None) -> None:
    pool = Pool([Thing(0)])
    holder = await pool.acquire()
    waiter = asyncio.create_task(take_and_hold(pool, [], timeout))
    await settle()
    assert pool.statistics().waiting == 1
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    stats = accounted(pool, size=1, in_use=1)
    assert stats.cancelled == 1
    holder.release()
    accounted(pool, size=1, in_use=0)


@pytest.mark.parametrize("timeout", [None, 5.0], ids=["no-timeout", "with-timeout"])
async def test_cancel_after_handoff_before_resume_returns_object(timeout: float | None) -> None:
    pool = Pool([Thing(0)])
    holder = await pool.acquire()
    held: list[Thing] = []
    waiter = asyncio.create_task(take_and_hold(pool, held, timeout))
    await settle()
    holder.release()  # hand-off: the waiter owns the object but has not run yet
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert held == []
    accounted(pool, size=1, in_use=0)


async def test_cancel_after_handoff_passes_object_to_next_waiter() -> None:
    pool = Pool([Thing(0)])
    holder = await pool.acquire()
    first_held: list[Thing] = []
    second_held: list[Thing] = []
    first = asyncio.create_task(take_and_hold(pool, first_held, None))
    await settle()
    second = asyncio.create_task(take_and_hold(pool, second_held, None))
    await settle()
    holder.release()
    first.cancel()
    await settle()
    assert first_held == []
    assert len(second_held) == 1
    accounted(pool, size=1, in_use=1)
    second.cancel()
    await asyncio.gather(first, second, return_exceptions=True)
    accounted(pool, size=1, in_use=0)


async def test_cancel_while_holding_in_async_with_releases() -> None:
    pool = Pool([Thing(0)])
    held: list[Thing] = []
    task = asyncio.create_task(take_and_hold(pool, held, None))
    await settle()
    assert len(held) == 1
    accounted(pool, size=1, in_use=1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    accounted(pool, size=1, in_use=0)


async def test_cancel_while_holding_a_guard_released_in_finally() -> None:
    pool = Pool([Thing(0)])

    async def user() -> None:
        guard = await pool.acquire()
        try:
            await asyncio.Event().wait()
        finally:
            guard.release()

    task = asyncio.create_task(user())
    await settle()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    accounted(pool, size=1, in_use=0)


async def test_timeout_racing_handoff_gives_the_object_to_the_waiter() -> None:
    pool = Pool([Thing(0)])
    holder = await pool.acquire()
    held: list[Thing] = []
    waiter = asyncio.create_task(take_and_hold(pool, held, 0.0))
    await asyncio.sleep(0)  # the waiter is queued and its zero timer is armed
    holder.release()
    await settle()
    if held:
        assert pool.statistics().timed_out == 0
        accounted(pool, size=1, in_use=1)
    else:  # the timer won: then the object must be idle, not lost
        assert pool.statistics().timed_out == 1
        accounted(pool, size=1, in_use=0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    accounted(pool, size=1, in_use=0)


async def test_timeout_then_release_does_not_hand_to_expired_waiter() -> None:
    pool = Pool([Thing(0)])
    holder = await pool.acquire()
    with pytest.raises(PoolTimeout):
        await pool.acquire(timeout=0.001)
    holder.release()
    accounted(pool, size=1, in_use=0)


async def test_cancel_while_waiting_for_factory_keeps_the_new_object() -> None:
    gate = asyncio.Event()
    made: list[Thing] = []

    async def factory() -> Thing:
        await gate.wait()
        made.append(Thing(len(made)))
        return made[-1]

    pool = Pool(factory=factory, close=close_thing, max_size=1)
    waiter = asyncio.create_task(take_and_hold(pool, [], None))
    await settle()
    assert pool.statistics().creating == 1
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    gate.set()
    await settle()
    accounted(pool, size=1, in_use=0)
    await pool.aclose()
    assert made[0].closed == 1


async def test_cancel_during_aclose_wait_still_closes_everything() -> None:
    thing = Thing(0)
    pool = Pool([thing], close=close_thing)
    guard = await pool.acquire()
    closer = asyncio.create_task(pool.aclose(timeout=0.05))
    await settle()
    closer.cancel()
    await asyncio.gather(closer, return_exceptions=True)
    await pool.aclose()  # waits for the same shielded closing work
    assert thing.closed == 1
    guard.release()
    assert pool.statistics().in_use == 0
    assert thing.closed == 1


@pytest.mark.parametrize("holders", [1, 3], ids=["one-object", "three-objects"])
async def test_random_cancellations_of_many_tasks_lose_nothing(holders: int) -> None:
    pool = Pool([Thing(i) for i in range(holders)])
    owners: dict[int, int] = {}

    async def worker(i: int) -> None:
        async with pool.acquire(timeout=1.0) as thing:
            assert thing.n not in owners, "two holders of one object"
            owners[thing.n] = i
            await asyncio.sleep(0)
            del owners[thing.n]

    tasks = [asyncio.create_task(worker(i)) for i in range(60)]
    for round_ in range(20):
        await asyncio.sleep(0)
        for task in tasks[round_::7]:
            task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    accounted(pool, size=holders, in_use=0)


@pytest.mark.parametrize("timeout", [None, 5.0], ids=["no-timeout", "with-timeout"])
async def test_cancel_guard_form_while_waiting_or_after_handoff_loses_nothing(
    timeout: float | None,
) -> None:
    pool = Pool([Thing(0)])
    holder = await pool.acquire()

    async def take_guard() -> None:
        guard = await pool.acquire(timeout=timeout)
        guard.release()

    waiting = asyncio.create_task(take_guard())
    handed = asyncio.create_task(take_guard())
    await settle()
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    holder.release()  # handed to the second waiter, which is cancelled before it resumes
    handed.cancel()
    await asyncio.gather(handed, return_exceptions=True)
    stats = accounted(pool, size=1, in_use=0)
    assert stats.cancelled == 2


async def test_cancel_waiter_whose_creation_then_fails_strands_nobody() -> None:
    gate = asyncio.Event()

    async def factory() -> Thing:
        await gate.wait()
        raise OSError("cannot bind")

    pool = Pool(factory=factory, close=close_thing, max_size=1)
    first = asyncio.create_task(take_and_hold(pool, [], None))
    await settle()
    second = asyncio.create_task(take_and_hold(pool, [], 5.0))
    await settle()
    assert pool.statistics().creating == 1  # started for the first; no room for another
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    gate.set()  # the creation fails: the waiter left, whom nothing else can serve, is told
    with pytest.raises(OSError, match="cannot bind"):
        await second
    await settle()
    stats = pool.statistics()
    assert (stats.size, stats.creating, stats.waiting, stats.failed_creates) == (0, 0, 0, 1)
    assert stats.cancelled == 1
    await pool.aclose()
