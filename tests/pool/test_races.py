"""The pool's races around failed and cancelled creations: after each, every waiter is either
served or told why, and every object is either in the pool or closed."""

from __future__ import annotations

import asyncio

import pytest
from pool_things import Factory, Thing, close_thing, settle

from resolver.errors import PoolTimeout
from resolver.pool import Guard, Pool


async def take(pool: Pool[Thing], timeout: float) -> Thing:
    async with pool.acquire(timeout=timeout) as thing:
        return thing


async def hold(pool: Pool[Thing], timeout: float) -> Guard[Thing]:
    return await pool.acquire(timeout=timeout)


async def test_failed_replacement_does_not_strand_the_next_waiter() -> None:
    factory = Factory()
    pool = Pool(factory=factory, close=close_thing, max_size=1)
    holder = await pool.acquire()
    first = asyncio.create_task(take(pool, 2.0))
    second = asyncio.create_task(take(pool, 2.0))
    await settle()
    factory.fail = 1
    holder.discard()  # its replacement fails; the factory works again afterwards
    with pytest.raises(OSError, match="cannot bind"):
        await first
    thing = await second  # served by a new creation, not left to its timeout
    assert thing.n == 1
    stats = pool.statistics()
    assert (stats.failed_creates, stats.timed_out, stats.waiting) == (1, 0, 0)
    await pool.aclose()


async def test_cancelled_start_keeps_what_its_factories_make() -> None:
    factory = Factory()
    gate = asyncio.Event()

    async def first_fast_then_gated() -> Thing:
        if factory.calls:
            factory.gate = gate
        return await factory()

    pool = Pool(factory=first_fast_then_gated, close=close_thing, min_size=2, max_size=2)
    starter = asyncio.create_task(pool.start())
    await settle()
    assert len(factory.made) == 1  # one factory has finished, the other waits at the gate
    starter.cancel()
    await asyncio.gather(starter, return_exceptions=True)
    gate.set()
    await settle()
    stats = pool.statistics()
    assert stats.creating == 0, "a creation is counted that no factory runs"
    live = [thing for thing in factory.made if not thing.closed]
    assert len(live) == stats.size, "an object was made but neither pooled nor closed"
    assert {(await take(pool, 1.0)).n for _ in range(2)} <= {t.n for t in live}
    await pool.aclose()
    assert all(thing.closed == 1 for thing in factory.made)


async def test_given_objects_are_not_too_old_on_first_use() -> None:
    given = Thing(-1)
    factory = Factory()
    pool = Pool([given], factory=factory, close=close_thing, max_size=1, max_age=5.0)
    assert await take(pool, 1.0) is given
    stats = pool.statistics()
    assert (stats.retired, stats.created) == (0, 0)
    await pool.aclose()


async def test_failed_replacement_spares_a_waiter_another_holder_can_serve() -> None:
    factory = Factory()
    pool = Pool(factory=factory, close=close_thing, max_size=2)
    first = await pool.acquire()
    second = await pool.acquire()
    waiter = asyncio.create_task(take(pool, 2.0))
    await settle()
    factory.fail = 1
    first.discard()  # the replacement fails while `second` is still out
    await settle()
    assert not waiter.done(), "the failed replacement was charged to a waiter still servable"
    assert pool.statistics().failed_creates == 1
    kept = second.obj
    second.release()
    assert await waiter is kept
    await pool.aclose()


async def test_a_broken_factory_fails_each_stranded_waiter_once() -> None:
    factory = Factory()
    factory.fail = 1_000
    pool = Pool(factory=factory, close=close_thing, max_size=1)
    waiters = [asyncio.create_task(take(pool, 2.0)) for _ in range(3)]
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, OSError) for r in results), results
    await settle()
    stats = pool.statistics()
    assert (stats.failed_creates, stats.creating, stats.waiting) == (3, 0, 0)
    assert factory.calls == 3, "a failing factory was retried with nobody to serve"
    await pool.aclose()


async def test_a_waiter_arriving_after_a_failure_tries_the_factory_again() -> None:
    factory = Factory()
    pool = Pool(factory=factory, close=close_thing, max_size=3)
    holder = await pool.acquire()
    factory.fail = 1
    first = asyncio.create_task(hold(pool, 2.0))
    await settle()
    # That creation failed; `holder` may come back, so `first` waits rather than fail.
    assert (pool.statistics().failed_creates, first.done()) == (1, False)
    second = asyncio.create_task(hold(pool, 2.0))
    # The newcomer's arrival tried the factory again, for both waiters.
    guards = await asyncio.gather(first, second)
    assert sorted(guard.obj.n for guard in guards) == [1, 2]
    for guard in [holder, *guards]:
        guard.release()
    await pool.aclose()


async def test_timeout_after_a_failed_creation_carries_the_factory_error() -> None:
    factory = Factory()
    pool = Pool(factory=factory, close=close_thing, max_size=2)
    holder = await pool.acquire()
    other = await pool.acquire()
    factory.fail = 1_000
    other.discard()  # the replacement fails; `holder` could still come back, so nobody is failed
    with pytest.raises(PoolTimeout) as info:
        await pool.acquire(timeout=0.01)
    assert isinstance(info.value.__cause__, OSError)
    holder.release()
    await pool.aclose()
