"""A hypothesis state machine drives random acquire / release / cancel / timeout / discard /
recycle sequences and checks, after every step, that no object has two holders, none is lost or
duplicated, and waiters are served in the order they asked."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import uvloop
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

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

            async def factory() -> Obj:
                await asyncio.sleep(0)
                obj = Obj(len(self.made))
                self.made.append(obj)
                return obj

            async def close(obj: Obj) -> None:
                obj.closed += 1

            self.pool: Pool[Obj] = Pool(
                factory=factory, close=close, min_size=1, max_size=self.max_size, max_uses=4
            )
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
                self.run(asyncio.gather(*pending, return_exceptions=True))
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
