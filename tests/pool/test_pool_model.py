"""A hypothesis state machine drives random acquire / release / cancel / timeout / discard /
recycle sequences, with failing creations and cancelled ``start()`` calls, and checks after every
step that no object has two holders, none is lost or duplicated, waiters are served in the order
they asked, no waiter is stranded while the pool has room to make an object, and every creation
the pool counts is one a factory is running."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import uvloop
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from resolver.errors import PoolClosed, PoolTimeout
from resolver.pool import Guard, Pool


class Obj:
    def __init__(self, n: int) -> None:
        self.n = n
        self.closed = 0


class Client:
    """One task that asks for an object, then holds it until told what to do with it."""

    def __init__(self, order: int) -> None:
        self.order = order
        self.obj: Obj | None = None
        self.action: asyncio.Future[str] | None = None
        self.task: asyncio.Task[None] | None = None
        self.guard: Guard[Obj] | None = None
        self.outcome = "waiting"


def make_machine(loop_factory: Callable[[], asyncio.AbstractEventLoop]) -> type:
    class PoolMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.loop = loop_factory()
            self.made: list[Obj] = []
            self.clients: list[Client] = []
            self.grants: list[int] = []
            self.holders: dict[int, Client] = {}
            self.max_size = 3
            self.fail_next = 0  # how many of the next factory calls fail
            self.in_factory = 0  # factory calls running now

            async def factory() -> Obj:
                self.in_factory += 1
                try:
                    await asyncio.sleep(0)
                    if self.fail_next:
                        self.fail_next -= 1
                        raise OSError("cannot bind")
                finally:
                    self.in_factory -= 1
                obj = Obj(len(self.made))
                self.made.append(obj)
                return obj

            self.factory = factory

        @initialize(
            max_size=st.integers(min_value=1, max_value=3),
            min_size=st.integers(min_value=0, max_value=3),
            started=st.booleans(),
        )
        def open_pool(self, max_size: int, min_size: int, started: bool) -> None:
            async def close(obj: Obj) -> None:
                obj.closed += 1

            self.max_size = max_size
            self.pool: Pool[Obj] = Pool(
                factory=self.factory,
                close=close,
                min_size=min(min_size, max_size),
                max_size=max_size,
                max_uses=4,
            )
            if started:
                self.run(self.pool.start())

        def run(self, aw: object) -> object:
            return self.loop.run_until_complete(aw)  # type: ignore[arg-type]

        def settle(self, rounds: int = 4) -> None:
            for _ in range(rounds):
                self.run(asyncio.sleep(0))

        async def client_body(self, client: Client, timeout: float | None) -> None:
            try:
                guard = await self.pool.acquire(timeout=timeout)
            except PoolTimeout:
                client.outcome = "timed out"
                return
            except OSError:
                client.outcome = "failed"  # a creation failed and nothing else could serve it
                return
            obj = guard.obj
            assert obj.n not in self.holders, f"object {obj.n} has two holders"
            assert obj.closed == 0, "a closed object was handed out"
            self.holders[obj.n] = client
            client.obj = obj
            client.guard = guard
            client.outcome = "holding"
            self.grants.append(client.order)
            client.action = self.loop.create_future()
            action = "release"  # what a cancelled holder does on the way out
            try:
                action = await client.action
            finally:
                if self.holders.get(obj.n) is client:
                    del self.holders[obj.n]
                client.obj = None
                if action == "discard":
                    guard.discard()
                elif action == "release":
                    guard.release()
            client.outcome = action

        @rule(timeout=st.sampled_from([None, None, 0.0]))
        def ask(self, timeout: float | None) -> None:
            client = Client(len(self.clients))
            self.clients.append(client)
            client.task = self.loop.create_task(self.client_body(client, timeout))
            self.settle()

        def holding(self) -> list[Client]:
            return [c for c in self.clients if c.outcome == "holding" and c.action is not None]

        @precondition(lambda self: any(c.outcome == "holding" for c in self.clients))
        @rule(data=st.data(), action=st.sampled_from(["release", "discard"]))
        def finish(self, data: st.DataObject, action: str) -> None:
            candidates = self.holding()
            if not candidates:
                return
            client = data.draw(st.sampled_from(candidates))
            assert client.action is not None
            client.action.set_result(action)
            self.settle()

        @precondition(
            lambda self: (
                any(c.outcome == "holding" for c in self.clients)
                and any(c.outcome == "waiting" for c in self.clients)
            )
        )
        @rule(data=st.data())
        def release_and_cancel_next_waiter(self, data: st.DataObject) -> None:
            """Release from outside the holder's task, then cancel the waiter that just got the
            object before it can resume: the object must pass on, not vanish."""
            candidates = self.holding()
            waiting = [c for c in self.clients if c.outcome == "waiting"]
            if not candidates or not waiting:
                return
            holder = data.draw(st.sampled_from(candidates))
            assert holder.guard is not None
            assert holder.obj is not None
            assert holder.action is not None
            del self.holders[holder.obj.n]
            holder.guard.release()
            holder.action.set_result("external")
            for client in waiting:
                assert client.task is not None
                if data.draw(st.booleans()):
                    client.task.cancel()
            self.settle()
            for client in waiting:
                assert client.task is not None
                if client.task.cancelled():
                    client.outcome = "cancelled"

        @precondition(lambda self: any(c.outcome in ("waiting", "holding") for c in self.clients))
        @rule(data=st.data(), settle_first=st.booleans())
        def cancel(self, data: st.DataObject, settle_first: bool) -> None:
            live = [c for c in self.clients if c.outcome in ("waiting", "holding")]
            client = data.draw(st.sampled_from(live))
            assert client.task is not None
            client.task.cancel()
            if settle_first:
                self.settle()
            self.run(asyncio.gather(client.task, return_exceptions=True))
            if client.outcome in ("waiting", "holding"):
                client.outcome = "cancelled"
            self.settle()

        @rule(count=st.integers(min_value=1, max_value=3))
        def break_factory(self, count: int) -> None:
            """The next ``count`` creations fail."""
            self.fail_next = count

        @rule(cancel_after=st.sampled_from([None, 0, 1, 2]))
        def start(self, cancel_after: int | None) -> None:
            """Call start(), maybe cancelling it after a few loop iterations while its
            factories run."""
            task = self.loop.create_task(self.pool.start())
            if cancel_after is not None:
                self.settle(cancel_after)
                task.cancel()
            self.run(asyncio.gather(task, return_exceptions=True))
            self.settle()

        @rule()
        def quiesce(self) -> None:
            """Let every creation finish (this factory never blocks): then none may still be
            counted."""
            for _ in range(50):
                if self.pool.statistics().creating == 0:
                    break
                self.settle(1)
            assert self.in_factory == 0
            assert self.pool.statistics().creating == 0, "a creation counted that no factory runs"

        @invariant()
        def nobody_stranded(self) -> None:
            stats = self.pool.statistics()
            servers = stats.in_use + stats.creating
            assert stats.waiting <= servers or stats.size + stats.creating >= self.max_size, (
                "a waiter sleeps that nothing in flight can serve, with room to make an object"
            )
            assert stats.creating >= self.in_factory

        @invariant()
        def accounts_balance(self) -> None:
            stats = self.pool.statistics()
            assert stats.size == stats.idle + stats.in_use
            assert stats.in_use == len(self.holders)  # after settling, every hand-off has resumed
            assert not (stats.idle and stats.waiting)
            assert stats.size + stats.creating <= self.max_size
            live = [o for o in self.made if not o.closed]
            assert len(live) == stats.size, "an object was lost or duplicated"

        @invariant()
        def served_in_order(self) -> None:
            assert self.grants == sorted(self.grants), "a waiter was overtaken"

        def teardown(self) -> None:
            try:
                for client in self.clients:
                    if client.task is not None and not client.task.done():
                        client.task.cancel()
                pending = [c.task for c in self.clients if c.task is not None]
                if pending:
                    self.run(asyncio.gather(*pending, return_exceptions=True))
                self.quiesce()
                stats = self.pool.statistics()
                assert stats.in_use == 0
                self.run(self.pool.aclose())
                assert all(obj.closed == 1 for obj in self.made), "an object closed twice or never"
                try:
                    self.run(self.pool.acquire())
                except PoolClosed:
                    pass
                else:
                    raise AssertionError("a closed pool handed out an object")
            finally:
                self.loop.close()

    return PoolMachine


@pytest.mark.parametrize(
    "loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"]
)
def test_random_operation_sequences_keep_the_pool_consistent(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    machine = make_machine(loop_factory)
    machine.TestCase.settings = settings(
        max_examples=60,
        stateful_step_count=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    machine.TestCase().runTest()
