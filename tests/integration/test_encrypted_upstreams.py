"""Encrypted upstreams through the running server and engine, as clients reach them: the
engine's decisions (failover, health, serve-stale) hold for tls:// upstreams as for UDP ones,
and TCP after a truncated UDP reply goes over the upstream's pooled connection."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from support import udp_exchange
from tls_support import PrivateCa, StreamServer, echo_reply, server_context

from resolver.authority import Authority
from resolver.cache import Cache
from resolver.config import (
    CacheConfig,
    EncryptedUpstream,
    ForwarderConfig,
    ServerConfig,
    SocketPoolConfig,
    TransportConfig,
)
from resolver.engine import Engine
from resolver.server import Server
from resolver.wire import DNSRecord, build_query, read_header

BOUND = 10.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@contextlib.asynccontextmanager
async def running(
    upstreams: Sequence[EncryptedUpstream | tuple[str, int]],
    transport: TransportConfig,
    clock: FakeClock | None = None,
    **config: Any,
) -> AsyncIterator[tuple[Engine, int]]:
    config.setdefault("upstream_timeout", 0.5)
    config.setdefault("query_timeout", 2.0)
    cache = Cache(CacheConfig(), clock=clock) if clock is not None else None
    engine = Engine(ForwarderConfig(upstreams=tuple(upstreams), **config), transport, cache=cache)
    await engine.start()
    server = Server(ServerConfig(listen=(("127.0.0.1", 0),)), engine)
    try:
        await server.start()
        yield engine, server.addresses[0][1]
    finally:
        await server.aclose()
        await engine.aclose()


async def ask(port: int, name: str) -> bytes:
    query = build_query(name, 1, qid=4242)
    return await asyncio.to_thread(udp_exchange, port, query)


def addresses(reply: bytes) -> list[str]:
    return [str(rr.rdata) for rr in DNSRecord.parse(reply).rr]


def tls_upstream(server: StreamServer, name: str = "dns.test") -> EncryptedUpstream:
    return EncryptedUpstream(protocol="tls", host="127.0.0.1", port=server.port, tls_name=name)


def answering(address: bytes) -> Any:
    def answer(seen: list[bytes]) -> list[bytes]:
        return [echo_reply(seen[-1], address)]

    return answer


async def test_a_rejected_certificate_fails_over_and_the_upstream_goes_down(
    ca: PrivateCa,
) -> None:
    good = ca.issue("good")
    transport = TransportConfig(tls_ca=ca.pem)
    async with (
        asyncio.timeout(BOUND),
        StreamServer(answering(b"\x7f\x00\x00\x01"), server_context(good)) as first,
        StreamServer(answering(b"\x7f\x00\x00\x02"), server_context(good)) as second,
        running(
            [tls_upstream(first, "wrong.test"), tls_upstream(second)],
            transport,
            down_after=1,
            down_for=60.0,
        ) as (engine, port),
    ):
        assert addresses(await ask(port, "a.example.")) == ["127.0.0.2"]
        assert addresses(await ask(port, "b.example.")) == ["127.0.0.2"]
        stats = engine.statistics().upstreams
        # Down after its one failure: the second question did not even try it.
        assert stats[0].streams.failed_opens == 1
        assert stats[0].unreachable == 1
        assert first.queries == []  # nothing was ever sent to it
        assert stats[1].streams.opened == 1
        assert engine.statistics().failovers == 1


async def test_a_stale_answer_is_served_when_the_tls_upstream_fails(ca: PrivateCa) -> None:
    good = ca.issue("good")
    clock = FakeClock()
    failing = False

    def answer(seen: list[bytes]) -> list[bytes]:
        if failing:
            raise ConnectionError("gone")
        reply = bytearray(echo_reply(seen[-1]))
        return [bytes(reply)]

    async with (
        asyncio.timeout(BOUND),
        StreamServer(answer, server_context(good)) as peer,
        running(
            [tls_upstream(peer)], TransportConfig(tls_ca=ca.pem), clock=clock, query_timeout=1.0
        ) as (engine, port),
    ):
        assert addresses(await ask(port, "s.example.")) == ["127.0.0.1"]
        clock.now += 61  # echo_reply's TTL is 60: now stale
        failing = True
        peer.close_idle()
        reply = await ask(port, "s.example.")
        assert read_header(reply).rcode == 0
        assert addresses(reply) == ["127.0.0.1"]
        assert engine.statistics().stale_answers == 1


async def test_tcp_after_truncation_reuses_one_pooled_connection(authority: Authority) -> None:
    authority.faults.always_tc = True
    transport = TransportConfig(pool=SocketPoolConfig(min_size=1, max_size=4))
    async with asyncio.timeout(BOUND), running([authority.address], transport) as (engine, port):
        for name in ("www.example.com.", "mail.example.com.", "short.example.com."):
            assert read_header(await ask(port, name)).rcode == 0
        streams = engine.statistics().upstreams[0].streams
        assert streams.opened == 1
        assert streams.queries == 3
        assert streams.reused == 2


async def test_a_query_caught_by_the_servers_close_is_retried_without_counting_against_health(
    ca: PrivateCa,
) -> None:
    good = ca.issue("good")

    def close_on_second(seen: list[bytes]) -> list[bytes]:
        if len(seen) == 2:  # the server ends the connection as the second query arrives
            raise ConnectionError("closing")
        return [echo_reply(seen[-1])]

    async with (
        asyncio.timeout(BOUND),
        StreamServer(close_on_second, server_context(good)) as first,
        StreamServer(answering(b"\x7f\x00\x00\x02"), server_context(good)) as second,
        running(
            [tls_upstream(first), tls_upstream(second)],
            TransportConfig(tls_ca=ca.pem),
            down_after=1,
            down_for=60.0,
        ) as (engine, port),
    ):
        for name in ("a.example.", "b.example."):
            assert addresses(await ask(port, name)) == ["127.0.0.1"]
        statistics = engine.statistics()
        stats = statistics.upstreams[0]
        assert stats.streams.retried == 1
        assert stats.streams.peer_closed == 1
        assert first.accepted == 2
        assert stats.streams.resumed == 1  # the fresh connection resumed the TLS session
        # No failure counted: the first upstream stayed up, nothing failed over.
        assert (stats.timeouts, stats.unreachable, stats.bad_responses) == (0, 0, 0)
        assert statistics.failovers == 0
        assert second.queries == []


async def test_fastest_moves_a_silent_tls_upstream_behind_the_other(ca: PrivateCa) -> None:
    good = ca.issue("good")
    async with (
        asyncio.timeout(BOUND),
        StreamServer(lambda seen: [], server_context(good)) as silent,
        StreamServer(answering(b"\x7f\x00\x00\x02"), server_context(good)) as other,
        running(
            [tls_upstream(silent), tls_upstream(other)],
            TransportConfig(tls_ca=ca.pem),
            policy="fastest",
            upstream_timeout=0.2,
        ) as (engine, port),
    ):
        # Unmeasured upstreams are tried first: within two questions the silent one has been
        # tried once, timed out and been passed over.
        for name in ("a.example.", "b.example."):
            assert addresses(await ask(port, name)) == ["127.0.0.2"]
        assert len(silent.queries) == 1
        for name in ("c.example.", "d.example.", "e.example."):
            assert addresses(await ask(port, name)) == ["127.0.0.2"]
        assert len(silent.queries) == 1
        assert [u.timeouts for u in engine.statistics().upstreams] == [1, 0]
