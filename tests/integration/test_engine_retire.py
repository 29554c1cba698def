"""A replaced engine (a reload changed the upstreams) answers what it was asked, then closes;
a question still unanswered after the grace gets SERVFAIL rather than nothing."""

from __future__ import annotations

import asyncio
import socket

from resolver.config import ForwarderConfig, SocketPoolConfig, TransportConfig
from resolver.engine import Ask, Engine, Outcome
from resolver.wire import name_to_wire

TRANSPORT = TransportConfig(pool=SocketPoolConfig(min_size=1, max_size=4, min_idle=1))


def ask(name: str) -> Ask:
    return Ask.of(name_to_wire(name), 1, 1, False, False)


async def test_retire_answers_stragglers_with_servfail_then_closes() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # receives, never answers
        silent.bind(("127.0.0.1", 0))
        config = ForwarderConfig(
            upstreams=(silent.getsockname(),), upstream_timeout=5.0, query_timeout=5.0
        )
        engine = Engine(config, TRANSPORT)
        await engine.start()
        loop = asyncio.get_running_loop()
        outcomes: list[Outcome] = []
        for name in ("a.example.", "b.example."):
            assert engine.answer(ask(name), loop.time() + 5.0, outcomes.append) is None
        async with asyncio.timeout(3.0):
            await engine.retire(0.2)
        assert [(o.reply, o.ede) for o in outcomes] == [(None, 22), (None, 22)]
        assert all(u.pool.size == 0 for u in engine.statistics().upstreams)
        assert repr(engine).endswith("inflight=0>")


async def test_retire_without_questions_in_flight_closes_at_once() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        engine = Engine(ForwarderConfig(upstreams=(silent.getsockname(),)), TRANSPORT)
        await engine.start()
        async with asyncio.timeout(1.0):
            await engine.retire(30.0)
