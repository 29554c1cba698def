"""The Forwarder in front of several fake authorities on loopback: selection policies,
failover inside one deadline, health (down_after), SERVFAIL handling, total failure."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import random
import socket
import warnings
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import uvloop

from resolver.authority import Authority
from resolver.config import ForwarderConfig, SocketPoolConfig, TransportConfig
from resolver.errors import ResolutionFailed, UpstreamTimeout
from resolver.forwarder import Forwarder
from resolver.transport import Upstream
from resolver.wire import CLASS_IN, REFUSED, SERVFAIL, TYPE_A, DNSRecord, name_to_wire, read_header

BOUND = 10.0  # every test finishes well within this; reached only when a test is failing
TRANSPORT = TransportConfig(pool=SocketPoolConfig(min_size=1, max_size=4))

Authorities = Callable[[int], contextlib.AbstractAsyncContextManager[list[Authority]]]


@pytest.fixture
def authorities(fixtures_dir: Path) -> Authorities:
    """``async with authorities(n) as servers``: n Authorities, all zones, 127.0.0.1:free."""
    zone_files = sorted((fixtures_dir / "zones").glob("*.zone"))

    @contextlib.asynccontextmanager
    async def start(count: int) -> AsyncIterator[list[Authority]]:
        async with contextlib.AsyncExitStack() as stack:
            servers = [
                await stack.enter_async_context(Authority.from_files(zone_files))
                for _ in range(count)
            ]
            yield servers

    return start


@contextlib.asynccontextmanager
async def forwarder(
    servers: list[Authority] | list[tuple[str, int]], **config: Any
) -> AsyncIterator[Forwarder]:
    addresses = tuple(s.address if isinstance(s, Authority) else s for s in servers)
    config.setdefault("upstream_timeout", 0.3)
    config.setdefault("query_timeout", 2.0)
    rng = config.pop("rng", None)
    fwd = Forwarder(ForwarderConfig(upstreams=addresses, **config), TRANSPORT, rng=rng)
    await fwd.start()
    try:
        yield fwd
    finally:
        await settle(fwd)
        await fwd.aclose()


async def settle(fwd: Forwarder) -> None:
    """Wait (bounded) until no upstream socket is being created: closing a pool while one is
    half-made leaks it on uvloop (see the leak test below), which would hang the loop's
    teardown under warnings-as-errors instead of failing one clear test."""
    with contextlib.suppress(TimeoutError):
        await until(lambda: all(idle_pool(u) for u in fwd.upstreams))


async def resolve(fwd: Forwarder, name: str = "www.example.com.", qtype: int = TYPE_A) -> bytes:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + fwd.config.query_timeout
    return await fwd.resolve(
        name_to_wire(name), qtype, CLASS_IN, do=False, cd=False, deadline=deadline
    )


def answers(reply: bytes) -> list[str]:
    return [str(rr.rdata) for rr in DNSRecord.parse(reply).rr]


def counts(servers: list[Authority]) -> list[int]:
    return [len(s.queries) for s in servers]


async def who_answers(fwd: Forwarder, servers: list[Authority], times: int) -> list[int]:
    """Ask ``times`` questions one after another; the index of the server each one reached."""
    chosen = []
    for _ in range(times):
        before = counts(servers)
        assert answers(await resolve(fwd)) == ["127.1.0.1"]
        after = counts(servers)
        (index,) = [i for i in range(len(servers)) if after[i] > before[i]]
        chosen.append(index)
    return chosen


def idle_pool(upstream: Upstream) -> bool:
    """No exchange holds a socket and none is being made: a socket still in use may yet be
    discarded and replaced, and closing the pool mid-creation leaks on uvloop."""
    stats = upstream.pool.statistics()
    return stats.in_use == 0 and stats.creating == 0


async def until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    """Bounded polling, one loop iteration at a time, until ``condition`` holds."""
    async with asyncio.timeout(timeout):
        for _ in itertools.count():
            if condition():
                return
            await asyncio.sleep(0)


def dead_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- selection ----------------------------------------------------------------------------


async def test_sequential_uses_the_first_upstream_only(authorities: Authorities) -> None:
    async with (
        asyncio.timeout(BOUND),
        authorities(3) as servers,
        forwarder(servers, policy="sequential") as fwd,
    ):
        assert await who_answers(fwd, servers, 5) == [0] * 5


async def test_round_robin_rotates_the_first_choice(authorities: Authorities) -> None:
    async with (
        asyncio.timeout(BOUND),
        authorities(3) as servers,
        forwarder(servers, policy="round_robin") as fwd,
    ):
        assert await who_answers(fwd, servers, 6) == [0, 1, 2, 0, 1, 2]


async def test_random_spreads_queries_over_every_upstream(authorities: Authorities) -> None:
    async with asyncio.timeout(BOUND), authorities(2) as servers:
        async with forwarder(servers, policy="random", rng=random.Random(20240101)) as fwd:
            chosen = await who_answers(fwd, servers, 40)
        assert set(chosen) == {0, 1}
        assert min(chosen.count(0), chosen.count(1)) >= 5


async def test_fastest_prefers_the_upstream_without_delay(authorities: Authorities) -> None:
    async with asyncio.timeout(BOUND), authorities(2) as (slow, fast):
        slow.faults.delay = 0.05
        async with forwarder([slow, fast], policy="fastest") as fwd:
            chosen = await who_answers(fwd, [slow, fast], 8)
        # Both get measured first (unmeasured servers go first); then the fast one wins.
        assert set(chosen[:2]) == {0, 1}
        assert chosen[-5:] == [1] * 5


# --- failover and health ------------------------------------------------------------------


async def test_fails_over_to_the_second_when_the_first_drops(authorities: Authorities) -> None:
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(BOUND), authorities(2) as servers:
        servers[0].faults.drop = True
        async with forwarder(servers, upstream_timeout=0.3, query_timeout=2.0) as fwd:
            start = loop.time()
            reply = await resolve(fwd)
            elapsed = loop.time() - start
            assert answers(reply) == ["127.1.0.1"]
            assert counts(servers) == [1, 1]
            assert 0.25 <= elapsed < 1.0  # one upstream_timeout, not the query deadline
            assert fwd.statistics().failovers == 1


async def test_unreachable_first_upstream_fails_over_at_once(authorities: Authorities) -> None:
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(BOUND), authorities(1) as (server,):
        dead = ("127.0.0.1", dead_udp_port())
        async with forwarder([dead, server.address], upstream_timeout=1.0) as fwd:
            start = loop.time()
            assert answers(await resolve(fwd)) == ["127.1.0.1"]
            assert loop.time() - start < 0.5
            assert fwd.statistics().upstreams[0].unreachable == 1


def test_closing_while_a_replacement_socket_is_being_created_leaks_no_socket_on_uvloop(
    fixtures_dir: Path,
) -> None:
    """Bug report for the lead: Pool.aclose cancels a pending socket creation; uvloop's
    create_datagram_endpoint, cancelled half-way, leaves its UDPTransport open. The leak shows
    as a ResourceWarning when the loop closes (under pytest's warnings-as-errors the loop's
    close then hangs, so this test runs its own loop and records the warnings instead)."""
    zone_files = sorted((fixtures_dir / "zones").glob("*.zone"))

    async def scenario() -> None:
        async with Authority.from_files(zone_files) as server:
            dead = ("127.0.0.1", dead_udp_port())
            fwd = Forwarder(ForwarderConfig(upstreams=(dead, server.address)), TRANSPORT)
            await fwd.start()
            try:
                assert answers(await resolve(fwd)) == ["127.1.0.1"]
            finally:
                # The dead upstream's socket was discarded; its replacement is being made.
                await fwd.aclose()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(5):
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(asyncio.wait_for(scenario(), BOUND))
            gc.collect()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == []


async def test_upstream_down_after_failures_is_skipped(authorities: Authorities) -> None:
    async with asyncio.timeout(BOUND), authorities(2) as servers:
        servers[0].faults.drop = True
        config = {"down_after": 2, "down_for": 60.0, "upstream_timeout": 0.2}
        async with forwarder(servers, **config) as fwd:
            for _ in range(2):
                assert answers(await resolve(fwd)) == ["127.1.0.1"]
            assert counts(servers) == [2, 2]
            assert fwd.selector.is_down(0, asyncio.get_running_loop().time())
            # Down: the first is not even tried, so answers come without waiting for it.
            for _ in range(3):
                assert answers(await resolve(fwd)) == ["127.1.0.1"]
            assert counts(servers) == [2, 5]


async def test_down_upstreams_are_still_tried_when_all_are_down(
    authorities: Authorities,
) -> None:
    async with asyncio.timeout(BOUND), authorities(1) as (server,):
        server.faults.drop = True
        async with forwarder([server], down_after=1, upstream_timeout=0.1) as fwd:
            with pytest.raises(ResolutionFailed):
                await resolve(fwd)
            assert fwd.selector.is_down(0, asyncio.get_running_loop().time())
            server.faults.drop = False
            assert answers(await resolve(fwd)) == ["127.1.0.1"]


@pytest.mark.parametrize(
    ("upstream_timeout", "query_timeout"),
    [
        pytest.param(0.1, 1.0, id="every-round-fits-the-deadline"),
        pytest.param(0.3, 0.5, id="deadline-cuts-the-rounds-short"),
    ],
)
async def test_all_upstreams_failing_raises_resolution_failed_by_the_deadline(
    authorities: Authorities, upstream_timeout: float, query_timeout: float
) -> None:
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(BOUND), authorities(2) as servers:
        for server in servers:
            server.faults.drop = True
        config = {"upstream_timeout": upstream_timeout, "query_timeout": query_timeout}
        async with forwarder(servers, **config) as fwd:
            start = loop.time()
            with pytest.raises(ResolutionFailed) as info:
                await resolve(fwd)
            elapsed = loop.time() - start
    assert elapsed < query_timeout + 0.25
    assert len(info.value.attempts) >= 2
    assert all(isinstance(a, UpstreamTimeout) for a in info.value.attempts)
    assert {a.server for a in info.value.attempts if isinstance(a, UpstreamTimeout)} == {
        f"{host}:{port}" for host, port in (s.address for s in servers)
    }


# --- rcodes -------------------------------------------------------------------------------


@pytest.mark.parametrize("knob", ["servfail", "refuse"])
async def test_servfail_or_refused_from_the_first_is_answered_by_the_second(
    authorities: Authorities, knob: str
) -> None:
    async with asyncio.timeout(BOUND), authorities(2) as servers:
        setattr(servers[0].faults, knob, True)
        async with forwarder(servers) as fwd:
            reply = await resolve(fwd)
            assert answers(reply) == ["127.1.0.1"]
            assert counts(servers) == [1, 1]


@pytest.mark.parametrize(
    ("knob", "rcode"), [pytest.param("servfail", SERVFAIL, id="servfail"), ("refuse", REFUSED)]
)
async def test_when_every_upstream_fails_with_an_rcode_that_reply_is_returned(
    authorities: Authorities, knob: str, rcode: int
) -> None:
    async with asyncio.timeout(BOUND), authorities(2) as servers:
        for server in servers:
            setattr(server.faults, knob, True)
        async with forwarder(servers) as fwd:
            reply = await resolve(fwd)
            assert read_header(reply).rcode == rcode
            # Each upstream asked once: an rcode is an answer, not worth a second round.
            assert counts(servers) == [1, 1]
