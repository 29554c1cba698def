"""The pooled objects and factory the pool tests share (on the path through ``pythonpath``)."""

from __future__ import annotations

import asyncio


class Thing:
    """A pooled object that remembers who holds it and how often it was closed."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.holder: object | None = None
        self.closed = 0

    def __repr__(self) -> str:
        return f"Thing({self.n})"


class Factory:
    """Makes Things; fails the next ``fail`` calls; waits for ``gate`` when one is set."""

    def __init__(self, fail: int = 0) -> None:
        self.made: list[Thing] = []
        self.fail = fail
        self.calls = 0
        self.gate: asyncio.Event | None = None

    async def __call__(self) -> Thing:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            self.fail -= 1
            raise OSError("cannot bind")
        thing = Thing(len(self.made))
        self.made.append(thing)
        return thing


async def close_thing(thing: Thing) -> None:
    thing.closed += 1


async def settle(rounds: int = 5) -> None:
    """Let the loop run a few rounds (background creations and closes)."""
    for _ in range(rounds):
        await asyncio.sleep(0)
