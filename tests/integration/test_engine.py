"""The query engine through a running server, as clients reach it: selection policies,
failover inside one deadline, health, rcodes, TC, EDNS fallback, AD, Extended DNS Errors and
serve-stale. Upstreams are fake authorities or scripted responders on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import itertools
import os
import random
import socket
import struct
import warnings
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import uvloop
from support import (
    ScriptedUpstream,
    dead_udp_port,
    idle_pool,
    tcp_exchange,
    udp_exchange,
    until,
)

from resolver.authority import Authority
from resolver.cache import Cache
from resolver.config import (
    CacheConfig,
    ForwarderConfig,
    ServerConfig,
    SocketPoolConfig,
    TransportConfig,
)
from resolver.engine import Engine
from resolver.server import Server
from resolver.wire import DNSRecord, build_query, read_header

BOUND = 10.0  # every test finishes well within this; reached only when a test is failing
# An upstream timeout no test reaches: a test whose query waits for it fails on BOUND, so
# "at once" is shown by the answer arriving at all, not by a stopwatch.
NEVER = 60.0
TRANSPORT = TransportConfig(pool=SocketPoolConfig(min_size=1, max_size=4))
_AD = 0x0020
_FORMERR, _SERVFAIL, _NOTIMP, _REFUSED = 1, 2, 4, 5

Authorities = Callable[[int], contextlib.AbstractAsyncContextManager[list[Authority]]]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Daemon(NamedTuple):
    engine: Engine
    server: Server
    port: int


@pytest.fixture
def authorities(fixtures_dir: Path) -> Authorities:
    """``async with authorities(n) as servers``: n Authorities, all zones, 127.0.0.1:free."""
    zone_files = sorted((fixtures_dir / "zones").glob("*.zone"))

    @contextlib.asynccontextmanager
    async def start(count: int) -> AsyncIterator[list[Authority]]:
        async with contextlib.AsyncExitStack() as stack:
            yield [
                await stack.enter_async_context(Authority.from_files(zone_files))
                for _ in range(count)
            ]

    return start


@contextlib.asynccontextmanager
async def daemon(
    upstreams: Sequence[Authority | ScriptedUpstream | tuple[str, int]],
    *,
    clock: FakeClock | None = None,
    transport: TransportConfig = TRANSPORT,
    **config: Any,
) -> AsyncIterator[Daemon]:
    """The production Server and Engine on 127.0.0.1 in front of ``upstreams``; with
    ``clock``, a cache on that fake clock."""
    addresses = tuple(u if isinstance(u, tuple) else u.address for u in upstreams)
    config.setdefault("upstream_timeout", 0.3)
    config.setdefault("query_timeout", 2.0)
    rng = config.pop("rng", None)
    cache = Cache(CacheConfig(), clock=clock) if clock is not None else None
    engine = Engine(ForwarderConfig(upstreams=addresses, **config), transport, cache=cache, rng=rng)
    await engine.start()
    server = Server(ServerConfig(listen=(("127.0.0.1", 0),)), engine)
    try:
        await server.start()
        yield Daemon(engine, server, server.addresses[0][1])
    finally:
        await server.aclose()
        with contextlib.suppress(TimeoutError):
            await until(lambda: all(idle_pool(u) for u in engine.upstreams))
        await engine.aclose()


_ids = itertools.count(1)


async def ask(
    port: int,
    name: str = "www.example.com.",
    qtype: int = 1,
    *,
    edns: bool = True,
    do: bool = False,
    ad: bool = False,
    tcp: bool = False,
) -> bytes:
    query = bytearray(
        build_query(name, qtype, qid=next(_ids) & 0xFFFF, do=do, edns_size=1232 if edns else None)
    )
    if ad:
        query[3] |= _AD
    exchange = tcp_exchange if tcp else udp_exchange
    return await asyncio.to_thread(exchange, port, bytes(query))


def answers(reply: bytes) -> list[str]:
    return [str(rr.rdata) for rr in DNSRecord.parse(reply).rr]


def rcode(reply: bytes) -> int:
    return read_header(reply).rcode


def ede_codes(reply: bytes) -> list[int]:
    """The Extended DNS Error info codes in the reply's OPT record."""
    record = DNSRecord.parse(reply)
    codes = []
    for rr in record.ar:
        if rr.rtype != 41:
            continue
        for option in rr.rdata:
            if option.code == 15:
                codes.append(struct.unpack("!H", option.data[:2])[0])
    return codes


def counts(servers: Sequence[Authority]) -> list[int]:
    return [len(s.queries) for s in servers]


def reply_to(query: bytes, *, rcode: int = 0, flags: int = 0, question: bool = True) -> bytes:
    """A reply to ``query`` with no records: its ID and question, QR and RA, ``rcode``."""
    header = read_header(query)
    end = 12 + query[12:].index(b"\x00") + 5
    head = struct.pack("!6H", header.id, 0x8080 | flags | rcode, int(question), 0, 0, 0)
    return head + (query[12:end] if question else b"")


def a_answer(query: bytes, flags: int = 0) -> bytes:
    """An answer to ``query``: one A record 127.9.9.9 with TTL 300."""
    base = bytearray(reply_to(query, flags=flags))
    base[7] = 1  # ancount
    return bytes(base) + b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 300, 4) + bytes([127, 9, 9, 9])


def has_opt(query: bytes) -> bool:
    return read_header(query).arcount > 0


# --- selection ----------------------------------------------------------------------------


async def who_answers(d: Daemon, servers: list[Authority], times: int) -> list[int]:
    """Ask ``times`` distinct questions one after another; which server each one reached."""
    chosen = []
    for _ in range(times):
        before = counts(servers)
        assert answers(await ask(d.port)) == ["127.1.0.1"]
        after = counts(servers)
        (index,) = [i for i in range(len(servers)) if after[i] > before[i]]
        chosen.append(index)
    return chosen


async def test_sequential_uses_the_first_upstream_only(authorities: Authorities) -> None:
    async with (
        asyncio.timeout(BOUND),
        authorities(3) as servers,
        daemon(servers, policy="sequential") as d,
    ):
        assert await who_answers(d, servers, 5) == [0] * 5


async def test_round_robin_rotates_the_first_choice(authorities: Authorities) -> None:
    async with (
        asyncio.timeout(BOUND),
        authorities(3) as servers,
        daemon(servers, policy="round_robin") as d,
    ):
        assert await who_answers(d, servers, 6) == [0, 1, 2, 0, 1, 2]


async def test_random_spreads_queries_over_every_upstream(authorities: Authorities) -> None:
    async with asyncio.timeout(BOUND), authorities(2) as servers:
        async with daemon(servers, policy="random", rng=random.Random(20240101)) as d:
            chosen = await who_answers(d, servers, 40)
        assert min(chosen.count(0), chosen.count(1)) >= 5


async def test_fastest_prefers_the_upstream_without_delay(authorities: Authorities) -> None:
    async with asyncio.timeout(BOUND), authorities(2) as (slow, fast):
        slow.faults.delay = 0.05
        async with daemon([slow, fast], policy="fastest") as d:
            chosen = await who_answers(d, [slow, fast], 8)
        # Both get measured first (unmeasured servers go first); then the fast one wins.
        assert set(chosen[:2]) == {0, 1}
        assert chosen[-5:] == [1] * 5


async def test_fastest_moves_a_silent_upstream_behind_the_others(
    authorities: Authorities,
) -> None:
    async with asyncio.timeout(BOUND), authorities(2) as servers:
        servers[0].faults.drop = True
        async with daemon(servers, policy="fastest", upstream_timeout=0.2) as d:
            await ask(d.port)  # the unmeasured first one is tried, times out, is penalised
            before = counts(servers)
            for _ in range(3):
                assert answers(await ask(d.port)) == ["127.1.0.1"]
            assert counts(servers)[0] == before[0]


# --- failover and health ------------------------------------------------------------------


async def test_a_silent_first_upstream_costs_one_attempt_before_failover(
    authorities: Authorities,
) -> None:
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(BOUND), authorities(2) as servers:
        servers[0].faults.drop = True
        async with daemon(servers, upstream_timeout=0.3, query_timeout=NEVER) as d:
            start = loop.time()
            assert answers(await ask(d.port)) == ["127.1.0.1"]
            elapsed = loop.time() - start
            assert counts(servers) == [1, 1]
            assert elapsed >= 0.25  # the silent one was waited for (timers never fire early)
            # One upstream timeout, not two; and not the deadline, which nobody reaches.
            stats = d.engine.statistics()
            assert [u.timeouts for u in stats.upstreams] == [1, 0]
            assert stats.failovers == 1


async def test_unreachable_first_upstream_fails_over_at_once(authorities: Authorities) -> None:
    async with asyncio.timeout(BOUND), authorities(1) as (server,):
        dead = ("127.0.0.1", dead_udp_port())
        async with daemon([dead, server], upstream_timeout=NEVER, query_timeout=NEVER) as d:
            assert answers(await ask(d.port)) == ["127.1.0.1"]  # waiting would reach BOUND
            first = d.engine.statistics().upstreams[0]
            assert (first.unreachable, first.timeouts) == (1, 0)


async def test_a_local_failure_fails_over_without_blaming_the_upstream(
    authorities: Authorities, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Out of descriptors (EMFILE) when opening a socket to the first upstream: the query
    goes to the second at once, and the first is neither marked down nor measured slow."""
    real_socket = socket.socket

    def no_more_ipv6(family: int = -1, *args: Any, **kwargs: Any) -> socket.socket:
        if family == socket.AF_INET6:
            raise OSError(errno.EMFILE, "Too many open files")
        return real_socket(family, *args, **kwargs)

    monkeypatch.setattr(socket, "socket", no_more_ipv6)
    lazy = TransportConfig(pool=SocketPoolConfig(min_size=0, max_size=4, min_idle=0))
    loop = asyncio.get_running_loop()
    timeouts = {"upstream_timeout": NEVER, "query_timeout": NEVER}
    async with (
        asyncio.timeout(BOUND),
        authorities(1) as (server,),
        daemon([("::1", 53), server], transport=lazy, down_after=1, **timeouts) as d,
    ):
        assert answers(await ask(d.port)) == ["127.1.0.1"]  # waiting would reach BOUND
        assert d.engine.statistics().upstreams[0].local_failures == 1
        assert d.engine.statistics().upstreams[0].timeouts == 0
        assert not d.engine.selector.is_down(0, loop.time())
        assert d.engine.selector.srtt(0) is None


async def test_upstream_down_after_failures_is_skipped(authorities: Authorities) -> None:
    async with asyncio.timeout(BOUND), authorities(2) as servers:
        servers[0].faults.drop = True
        async with daemon(servers, down_after=2, down_for=60.0, upstream_timeout=0.2) as d:
            for _ in range(2):
                assert answers(await ask(d.port)) == ["127.1.0.1"]
            assert counts(servers) == [2, 2]
            # Down: the first is not even tried, so answers come without waiting for it.
            for _ in range(3):
                assert answers(await ask(d.port)) == ["127.1.0.1"]
            assert counts(servers) == [2, 5]


async def test_down_upstreams_are_still_tried_when_all_are_down(
    authorities: Authorities,
) -> None:
    async with asyncio.timeout(BOUND), authorities(1) as (server,):
        server.faults.drop = True
        async with daemon([server], down_after=1, upstream_timeout=0.1) as d:
            assert rcode(await ask(d.port)) == _SERVFAIL
            server.faults.drop = False
            assert answers(await ask(d.port)) == ["127.1.0.1"]


# The deadline lies far from the end of the attempt it cuts short: a reply that ignored it would
# come more than a second late, a margin a busy machine does not eat.
@pytest.mark.parametrize(
    ("upstream_timeout", "query_timeout", "asked"),
    [
        pytest.param(0.1, 5.0, [2, 2], id="every-round-fits-the-deadline"),
        pytest.param(2.0, 2.5, [1, 1], id="deadline-cuts-the-rounds-short"),
    ],
)
async def test_when_every_upstream_is_silent_the_client_gets_servfail_by_the_deadline(
    authorities: Authorities, upstream_timeout: float, query_timeout: float, asked: list[int]
) -> None:
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(BOUND), authorities(2) as servers:
        for server in servers:
            server.faults.drop = True
        config = {"upstream_timeout": upstream_timeout, "query_timeout": query_timeout}
        async with daemon(servers, **config) as d:
            start = loop.time()
            reply = await ask(d.port)
            elapsed = loop.time() - start
            assert rcode(reply) == _SERVFAIL
            assert ede_codes(reply) == [22]  # No Reachable Authority
            # By the deadline, not when the attempt it cut short would have ended (4.0 s).
            assert elapsed < query_timeout + 1.0
            assert counts(servers) == asked


async def test_unreachable_upstreams_give_servfail_with_network_error() -> None:
    async with asyncio.timeout(BOUND):
        dead = ("127.0.0.1", dead_udp_port())
        async with daemon([dead], upstream_timeout=1.0) as d:
            reply = await ask(d.port)
            assert rcode(reply) == _SERVFAIL
            assert ede_codes(reply) == [23]  # Network Error


async def test_a_forwarded_question_whose_upstreams_are_silent_is_not_asked_again_at_once(
    authorities: Authorities,
) -> None:
    # RFC 9520 in forwarding mode too: the failure is remembered (cache.servfail_ttl, 5 s by
    # default; the fake clock stands still), so a repeat fails at once with the same EDE.
    async with asyncio.timeout(BOUND), authorities(1) as (server,):
        server.faults.drop = True
        async with daemon([server], clock=FakeClock(), query_timeout=0.5) as d:
            first = await ask(d.port)
            asked = counts([server])
            again = await ask(d.port)
            assert rcode(first) == rcode(again) == _SERVFAIL
            assert ede_codes(first) == ede_codes(again) == [22]
            assert counts([server]) == asked
            other = await ask(d.port, "other.example.com.")
            assert rcode(other) == _SERVFAIL
            assert counts([server])[0] > asked[0]  # another question is asked
            assert d.engine.cache is not None
            assert d.engine.cache.statistics().failures == 2


async def test_servfail_without_edns_carries_no_opt(authorities: Authorities) -> None:
    async with asyncio.timeout(BOUND), authorities(1) as (server,):
        server.faults.drop = True
        async with daemon([server], upstream_timeout=0.1, query_timeout=0.3) as d:
            reply = await ask(d.port, edns=False)
            assert rcode(reply) == _SERVFAIL
            assert read_header(reply).arcount == 0


# --- rcodes, TC, EDNS, AD -----------------------------------------------------------------


@pytest.mark.parametrize("knob", ["servfail", "refuse"])
async def test_servfail_or_refused_from_the_first_is_answered_by_the_second(
    authorities: Authorities, knob: str
) -> None:
    async with asyncio.timeout(BOUND), authorities(2) as servers:
        setattr(servers[0].faults, knob, True)
        async with daemon(servers) as d:
            assert answers(await ask(d.port)) == ["127.1.0.1"]
            assert counts(servers) == [1, 1]


@pytest.mark.parametrize(
    ("knob", "code"), [pytest.param("servfail", _SERVFAIL, id="servfail"), ("refuse", _REFUSED)]
)
async def test_when_every_upstream_answers_an_error_rcode_each_is_asked_once(
    authorities: Authorities, knob: str, code: int
) -> None:
    async with asyncio.timeout(BOUND), authorities(2) as servers:
        for server in servers:
            setattr(server.faults, knob, True)
        async with daemon(servers) as d:
            assert rcode(await ask(d.port)) == code
            assert counts(servers) == [1, 1]


async def test_servfail_from_the_only_upstream_costs_one_query(
    authorities: Authorities,
) -> None:
    async with asyncio.timeout(BOUND), authorities(1) as (server,):
        server.faults.servfail = True
        async with daemon([server]) as d:
            assert rcode(await ask(d.port)) == _SERVFAIL
            assert d.engine.statistics().upstream_queries == 1
            assert counts([server]) == [1]


@pytest.mark.parametrize("client", ["udp", "tcp"])
async def test_a_truncated_reply_costs_one_udp_and_one_tcp_query(
    authorities: Authorities, client: str
) -> None:
    async with asyncio.timeout(BOUND), authorities(1) as (server,):
        server.faults.always_tc = True
        async with daemon([server]) as d:
            reply = await ask(d.port, "big.example.com.", 16, tcp=client == "tcp")
            stats = server.statistics()
            assert (stats["udp_queries"], stats["tcp_queries"]) == (1, 1)
            assert d.engine.statistics().upstream_queries == 2
            if client == "tcp":
                assert answers(reply)  # the whole answer, not a truncated one


@pytest.mark.parametrize(
    ("name", "qtype", "expected"),
    [
        pytest.param("www.example.com.", 1, 1, id="always-tc"),
        pytest.param("big.example.com.", 16, 8, id="big-txt"),
    ],
)
async def test_a_truncated_udp_reply_is_asked_again_over_tcp_for_the_whole_answer(
    authorities: Authorities, name: str, qtype: int, expected: int
) -> None:
    async with asyncio.timeout(BOUND), authorities(1) as (server,):
        server.faults.always_tc = name == "www.example.com."
        async with daemon([server]) as d:
            reply = await ask(d.port, name, qtype, tcp=True)
            assert len(DNSRecord.parse(reply).rr) == expected
            assert [q.transport for q in server.queries] == ["udp", "tcp"]
            assert server.queries[0].qname.lower() == server.queries[1].qname.lower() == name


async def test_formerr_to_edns_is_asked_again_without_edns() -> None:
    def no_edns(query: bytes) -> bytes:
        return reply_to(query, rcode=_FORMERR) if has_opt(query) else a_answer(query)

    async with asyncio.timeout(BOUND), ScriptedUpstream(no_edns) as upstream:
        async with daemon([upstream]) as d:
            for edns in (False, True):
                reply = await ask(d.port, f"edns{int(edns)}.example.", edns=edns)
                assert rcode(reply) == 0
                assert answers(reply) == ["127.9.9.9"]
        assert [has_opt(q) for q in upstream.queries] == [True, False, True, False]


@pytest.mark.parametrize(
    "code",
    [_FORMERR, _SERVFAIL, _NOTIMP, _REFUSED],
    ids=["formerr", "servfail", "notimp", "refused"],
)
async def test_a_questionless_error_reply_fails_over_at_once(
    authorities: Authorities, code: int
) -> None:
    def broken(query: bytes) -> bytes:
        return reply_to(query, rcode=code, question=False)

    async with (
        asyncio.timeout(BOUND),
        ScriptedUpstream(broken) as bad,
        authorities(1) as (good,),
        daemon([bad, good], upstream_timeout=NEVER, query_timeout=NEVER) as d,
    ):
        assert answers(await ask(d.port)) == ["127.1.0.1"]  # waiting would reach BOUND
        first = d.engine.statistics().upstreams[0]
        assert (first.strays, first.timeouts) == (0, 0)


@pytest.mark.parametrize(
    ("ad", "do", "kept"),
    [
        pytest.param(True, False, True, id="client-ad"),
        pytest.param(False, True, True, id="client-do"),
        pytest.param(False, False, False, id="neither"),
    ],
)
async def test_ad_is_asked_upstream_and_passed_back_only_to_clients_asking_for_it(
    ad: bool, do: bool, kept: bool
) -> None:
    def validating(query: bytes) -> bytes:
        return a_answer(query, flags=_AD if query[3] & _AD else 0)

    async with asyncio.timeout(BOUND), ScriptedUpstream(validating) as upstream:
        async with daemon([upstream]) as d:
            reply = await ask(d.port, "signed.example.", ad=ad, do=do)
            assert bool(reply[3] & _AD) is kept
        assert all(q[3] & _AD for q in upstream.queries)


# --- serve-stale ----------------------------------------------------------------------------


@pytest.mark.parametrize("knob", ["servfail", "refuse", "drop"])
async def test_stale_answer_when_the_refresh_fails_then_at_once_for_a_while(
    authorities: Authorities, knob: str
) -> None:
    loop = asyncio.get_running_loop()
    clock = FakeClock()
    async with (
        asyncio.timeout(BOUND),
        authorities(1) as (server,),
        daemon([server], clock=clock, upstream_timeout=0.2, query_timeout=1.0) as d,
    ):
        assert answers(await ask(d.port)) == ["127.1.0.1"]
        clock.now += 301  # www.example.com has TTL 300: now stale
        setattr(server.faults, knob, True)
        reply = await ask(d.port)
        assert rcode(reply) == 0
        assert answers(reply) == ["127.1.0.1"]
        assert DNSRecord.parse(reply).rr[0].ttl == 30
        assert ede_codes(reply) == [3]  # Stale Answer
        asked = len(server.queries)
        # Within the recheck window the stale answer comes at once, without asking: nothing
        # is sent, so nothing is waited for (the refresh wait before a stale answer is 1.8 s).
        upstream_queries = d.engine.statistics().upstream_queries
        start = loop.time()
        assert answers(await ask(d.port)) == ["127.1.0.1"]
        assert loop.time() - start < 1.8
        assert len(server.queries) == asked
        assert d.engine.statistics().upstream_queries == upstream_queries
        assert d.engine.statistics().stale_answers == 2
        # After it, the upstream is asked again.
        clock.now += 31
        server.faults = type(server.faults)()
        reply = await ask(d.port)
        assert DNSRecord.parse(reply).rr[0].ttl == 300
        assert ede_codes(reply) == []


async def test_slow_refresh_serves_stale_after_the_wait_and_refreshes_behind(
    authorities: Authorities,
) -> None:
    clock = FakeClock()
    async with (
        asyncio.timeout(BOUND),
        authorities(1) as (server,),
        daemon([server], clock=clock, upstream_timeout=3.0, query_timeout=4.0) as d,
    ):
        await ask(d.port)
        clock.now += 301
        server.faults.delay = 2.5
        reply = await ask(d.port)  # answered stale after 1.8 s
        assert DNSRecord.parse(reply).rr[0].ttl == 30
        await server.wait_queries(2)
        await until(lambda: d.engine.statistics().cache.inserts == 2, timeout=3.0)  # type: ignore[union-attr]


# --- coalescing and the uvloop socket leak ------------------------------------------------


async def test_identical_questions_in_flight_share_one_upstream_query(
    authorities: Authorities,
) -> None:
    async with asyncio.timeout(BOUND), authorities(1) as (server,):
        server.faults.delay = 0.2
        async with daemon([server]) as d:
            replies = await asyncio.to_thread(burst, d.port, 20)
            assert len(replies) == 20
            assert all(answers(r) == ["127.1.0.1"] for r in replies)
            assert counts([server]) == [1]
            assert d.engine.statistics().coalesced == 19


def burst(port: int, count: int) -> list[bytes]:
    """``count`` identical questions sent at once from one socket; their replies."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(4.0)
        for qid in range(count):
            sock.sendto(build_query("www.example.com.", 1, qid=qid), ("127.0.0.1", port))
        return [sock.recv(65535) for _ in range(count)]


def test_closing_while_a_replacement_socket_is_being_created_leaks_no_socket_on_uvloop(
    fixtures_dir: Path,
) -> None:
    """Pool.aclose cancels a pending socket creation; a uvloop create_datagram_endpoint
    cancelled half-way must not leave its transport open. The leak would show as a
    ResourceWarning when the loop closes (under warnings-as-errors the close then hangs, so
    this test runs its own loop and records the warnings instead)."""
    zone_files = sorted((fixtures_dir / "zones").glob("*.zone"))

    async def scenario() -> None:
        async with Authority.from_files(zone_files) as server:
            dead = ("127.0.0.1", dead_udp_port())
            async with daemon([dead, server]) as d:
                # The dead upstream's socket is discarded; its replacement is being made.
                assert answers(await ask(d.port)) == ["127.1.0.1"]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(5):
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(asyncio.wait_for(scenario(), BOUND))
            gc.collect()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == []


async def test_descriptors_return_to_the_baseline_after_a_burst_into_a_silent_upstream(
    authorities: Authorities,
) -> None:
    """Every query of a burst times out and discards its socket, so the pool grows to
    max_size; once the burst is over, the sockets above min_size close after idle_timeout and
    the statistics account for every socket made."""
    pool = SocketPoolConfig(min_size=2, max_size=64, min_idle=2, idle_timeout=0.3)
    async with asyncio.timeout(BOUND), authorities(1) as (server,):
        server.faults.drop = True
        transport = TransportConfig(pool=pool)
        async with daemon([server], transport=transport, upstream_timeout=0.2) as d:
            await until(lambda: d.engine.statistics().upstreams[0].pool.idle >= 2)
            baseline = len(os.listdir("/proc/self/fd"))
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                for n in range(200):
                    query = build_query(f"burst{n}.example.com.", 1, qid=n)
                    client.sendto(query, ("127.0.0.1", d.port))
                await until(lambda: d.engine.statistics().upstreams[0].timeouts >= 100, 3.0)
                grown = d.engine.statistics().upstreams[0].pool.created
                await until(lambda: len(os.listdir("/proc/self/fd")) <= baseline + 3, 5.0)
            stats = d.engine.statistics().upstreams[0].pool
            assert grown > 20
            assert stats.size == stats.idle + stats.in_use
            assert stats.given + stats.created == stats.size + stats.retired
