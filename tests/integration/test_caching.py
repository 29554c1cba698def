"""The cache in the daemon, through the server: coalescing, serve-stale, prefetch, TTLs
counted down (also as dig sees them), remembered replies."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import NamedTuple

import pytest
from support import udp_exchange
from tls_support import PrivateCa, insecure_client_context

from resolver.authority import Authority
from resolver.cache import Cache
from resolver.config import CacheConfig, ForwarderConfig, ServerConfig, TransportConfig
from resolver.engine import Engine
from resolver.querylog import QueryLog
from resolver.server import Server
from resolver.wire import DNSRecord, build_query, parse
from resolver.wire.options import RESPONSE_BLOCK


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Served(NamedTuple):
    clock: FakeClock
    engine: Engine
    port: int
    server: Server


@pytest.fixture
async def served(authority: Authority) -> AsyncIterator[Served]:
    """The caching engine (fake clock) behind the real UDP/TCP server on 127.0.0.1."""
    clock = FakeClock()
    config = ForwarderConfig(
        upstreams=(authority.address,), upstream_timeout=2.5, query_timeout=4.0
    )
    engine = Engine(config, TransportConfig(), cache=Cache(CacheConfig(), clock=clock))
    await engine.start()
    server = Server(ServerConfig(listen=(("127.0.0.1", 0),)), engine)
    try:
        await server.start()
        yield Served(clock, engine, server.addresses[0][1], server)
    finally:
        await server.aclose()
        await engine.aclose()


_ids = itertools.count(1)


async def resolve(served: Served, name: str, qtype: int = 1) -> DNSRecord:
    query = build_query(name, qtype, qid=next(_ids) & 0xFFFF)
    return parse(await asyncio.to_thread(udp_exchange, served.port, query))


async def test_second_question_is_answered_from_cache_without_upstream(
    authority: Authority, served: Served
) -> None:
    first = await resolve(served, "www.example.com.")
    second = await resolve(served, "WWW.example.com.")
    assert str(first.rr[0].rdata) == str(second.rr[0].rdata) == "127.1.0.1"
    assert len(authority.queries) == 1
    assert served.engine.statistics().cache_answers == 1


async def test_ttls_count_down_in_cached_answers(
    served: Served,
) -> None:
    clock = served.clock
    assert (await resolve(served, "www.example.com.")).rr[0].ttl == 300
    clock.now += 100.4
    assert (await resolve(served, "www.example.com.")).rr[0].ttl == 200


async def test_negative_answer_is_cached_for_the_soa_minimum(
    authority: Authority, served: Served
) -> None:
    clock = served.clock
    assert (await resolve(served, "nothere.example.com.")).header.rcode == 3
    clock.now += 250  # before the last tenth of its 300 s, where a prefetch would ask again
    assert (await resolve(served, "nothere.example.com.")).header.rcode == 3
    assert len(authority.queries) == 1
    clock.now += 51
    await resolve(served, "nothere.example.com.")
    assert len(authority.queries) == 2


async def test_expired_answer_is_served_stale_when_upstreams_fail(
    authority: Authority, served: Served
) -> None:
    clock = served.clock
    await resolve(served, "short.example.com.")
    await authority.aclose()  # every upstream is gone now
    clock.now += 61
    stale = await resolve(served, "short.example.com.")
    assert str(stale.rr[0].rdata) == "127.1.0.2"
    assert stale.rr[0].ttl == 30
    assert served.engine.statistics().stale_answers == 1


async def test_without_stale_data_a_failure_is_servfail_not_nxdomain(
    authority: Authority, served: Served
) -> None:
    await authority.aclose()
    reply = await resolve(served, "www.example.com.")
    assert reply.header.rcode == 2  # SERVFAIL


async def test_stale_answer_comes_while_refresh_continues_in_background(
    authority: Authority, served: Served
) -> None:
    clock = served.clock
    await resolve(served, "short.example.com.")
    clock.now += 61
    authority.faults.delay = 1.9  # slower than the RFC 8767 client timer of 1.8 s
    stale = await resolve(served, "short.example.com.")
    assert stale.rr[0].ttl == 30
    async with asyncio.timeout(3):
        await authority.wait_queries(2)  # the refresh reached the upstream
        while (await resolve(served, "short.example.com.")).rr[0].ttl != 60:
            await asyncio.sleep(0.05)


async def test_hit_in_last_tenth_of_ttl_prefetches_once(
    authority: Authority, served: Served
) -> None:
    clock = served.clock
    await resolve(served, "short.example.com.")  # TTL 60
    clock.now += 55
    authority.faults.delay = 0.3  # the refresh is still on its way while these are served
    answers = [await resolve(served, "short.example.com.") for _ in range(5)]
    assert all(a.rr[0].ttl == 5 for a in answers)  # served from cache meanwhile
    async with asyncio.timeout(2):
        await authority.wait_queries(2)
        while (await resolve(served, "short.example.com.")).rr[0].ttl != 60:
            await asyncio.sleep(0.01)
    assert len(authority.queries) == 2  # one refresh, not one per hit
    assert served.engine.statistics().prefetches == 1


async def test_coalesced_clients_each_get_their_own_id_and_case(
    authority: Authority, served: Served
) -> None:
    authority.faults.delay = 0.2
    names = ["www.example.com.", "WWW.EXAMPLE.COM.", "wWw.ExAmPlE.cOm."]
    queries = [build_query(name, 1, qid=100 + i) for i, name in enumerate(names)]
    replies = await asyncio.gather(
        *(asyncio.to_thread(udp_exchange, served.port, q) for q in queries)
    )
    for i, (name, reply) in enumerate(zip(names, replies, strict=True)):
        record = parse(reply)
        assert record.header.id == 100 + i
        assert str(record.q.qname) == name
        assert str(record.rr[0].rdata) == "127.1.0.1"
    assert len(authority.queries) == 1


async def test_dig_sees_ttl_decrease_in_cached_answer(served: Served) -> None:
    dig = shutil.which("dig")
    assert dig is not None, "dig (bind9-dnsutils) is required: .ci/run installs it"

    async def dig_ttl() -> int:
        proc = await asyncio.create_subprocess_exec(
            dig, "@127.0.0.1", "-p", str(served.port), "www.example.com", "A",
            "+noall", "+answer", "+tries=1", "+time=2",
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await proc.communicate()
        return int(out.decode().split()[1])

    assert await dig_ttl() == 300
    served.clock.now += 42
    assert await dig_ttl() == 258


async def test_repeated_hits_are_remembered_within_the_second_then_recomputed(
    served: Served,
) -> None:
    query = build_query("www.example.com.", 1, qid=1)

    async def ask(qid: int) -> DNSRecord:
        data = qid.to_bytes(2, "big") + query[2:]
        return parse(await asyncio.to_thread(udp_exchange, served.port, data))

    await ask(1)  # miss: from the authority
    cache = served.engine.cache
    assert cache is not None
    first_hit = await ask(2)  # the first hit in its second: not rendered
    assert cache.statistics().rendered == 0
    second_hit, repeat = await ask(3), await ask(4)  # the second is rendered, then repeated
    assert served.engine.statistics().cache_answers == 2  # the repeat skipped the lookup
    assert (cache.statistics().repeats, cache.statistics().rendered) == (1, 1)
    assert (first_hit.header.id, second_hit.header.id, repeat.header.id) == (2, 3, 4)
    assert first_hit.rr[0].ttl == second_hit.rr[0].ttl == repeat.rr[0].ttl == 300
    served.clock.now += 1.0  # the TTLs drop a second: the remembered reply is no longer exact
    later = await ask(5)
    assert later.rr[0].ttl == 299
    assert served.engine.statistics().cache_answers == 3


async def test_hits_in_the_prefetch_window_still_trigger_prefetch_through_the_server(
    authority: Authority, served: Served
) -> None:
    query = build_query("short.example.com.", 1, qid=9)
    await asyncio.to_thread(udp_exchange, served.port, query)
    await asyncio.to_thread(udp_exchange, served.port, query)  # remembered until the window
    served.clock.now += 54.5
    await asyncio.to_thread(udp_exchange, served.port, query)
    async with asyncio.timeout(2):
        await authority.wait_queries(2)
    assert served.engine.statistics().prefetches == 1


async def test_repeats_answered_from_rendered_replies_are_logged_as_cache_answers(
    served: Served, tmp_path: Path
) -> None:
    server = served.server
    log = QueryLog(tmp_path / "queries.jsonl")
    server.query_log = log
    query = build_query("www.example.com.", 1, qid=1)
    for qid in range(1, 6):
        data = qid.to_bytes(2, "big") + query[2:]
        await asyncio.to_thread(udp_exchange, served.port, data)
    log.close()
    records = [json.loads(line) for line in (tmp_path / "queries.jsonl").read_text().splitlines()]
    assert [r["source"] for r in records] == ["upstream", "cache", "cache", "cache", "cache"]
    cache = served.engine.cache
    assert cache is not None
    # The second hit is rendered; the last two repeat it: the fast path, logged all the same.
    assert cache.statistics().repeats == 2


# --------------------------------------------------------------- repeats over TCP, TLS, HTTPS


@pytest.fixture
async def streamed(authority: Authority, ca: PrivateCa) -> AsyncIterator[Served]:
    """As ``served``, with DNS over TLS and HTTPS listeners too (port: UDP and TCP)."""
    issued = ca.issue("ours")
    clock = FakeClock()
    config = ForwarderConfig(
        upstreams=(authority.address,), upstream_timeout=2.5, query_timeout=4.0
    )
    engine = Engine(config, TransportConfig(), cache=Cache(CacheConfig(), clock=clock))
    await engine.start()
    server_config = ServerConfig(
        listen=(("127.0.0.1", 0),),
        listen_tls=(("127.0.0.1", 0),),
        listen_https=(("127.0.0.1", 0),),
        tls_cert=issued.cert,
        tls_key=issued.key,
    )
    server = Server(server_config, engine)
    try:
        await server.start()
        yield Served(clock, engine, server.addresses[0][1], server)
    finally:
        await server.aclose()
        await engine.aclose()


async def stream_exchange(served: Served, transport: str, queries: list[bytes]) -> list[bytes]:
    """Ask ``queries`` one after the other over one TCP or TLS connection (each after the
    reply to the one before), or over HTTPS (HTTP/1.1 POST, a connection each); the replies."""
    server = served.server
    replies: list[bytes] = []
    if transport == "https":
        address = server.https_addresses[0]
        for message in queries:
            reader, writer = await asyncio.open_connection(
                *address, ssl=insecure_client_context("http/1.1")
            )
            try:
                writer.write(
                    b"POST /dns-query HTTP/1.1\r\nHost: dns.test\r\n"
                    b"Content-Type: application/dns-message\r\nConnection: close\r\n"
                    + f"Content-Length: {len(message)}\r\n\r\n".encode()
                    + message
                )
                response = await reader.read()
            finally:
                writer.close()
            assert response.startswith(b"HTTP/1.1 200"), response
            replies.append(response.split(b"\r\n\r\n", 1)[1])
        return replies
    if transport == "tls":
        reader, writer = await asyncio.open_connection(
            *server.tls_addresses[0], ssl=insecure_client_context("dot")
        )
    else:
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    try:
        for message in queries:
            writer.write(len(message).to_bytes(2, "big") + message)
            size = int.from_bytes(await reader.readexactly(2), "big")
            replies.append(await reader.readexactly(size))
    finally:
        writer.close()
    return replies


def with_id(query: bytes, qid: int) -> bytes:
    return qid.to_bytes(2, "big") + query[2:]


STREAMS = [
    pytest.param("tcp", id="tcp"),
    pytest.param("tls", id="tls"),
    pytest.param("https", id="https"),
]


@pytest.mark.parametrize("transport", STREAMS)
async def test_stream_repeats_are_answered_from_the_rendered_reply_with_their_own_id(
    streamed: Served, transport: str
) -> None:
    query = build_query("www.example.com.", 1, qid=1)
    cache = streamed.engine.cache
    assert cache is not None
    async with asyncio.timeout(20):
        # A miss (from the authority), the first hit in its second (not rendered), the second
        # (rendered), then two repeats of it (HTTPS clients send ID 0, RFC 8484 section 4.1).
        ids = [0] * 5 if transport == "https" else [1, 2, 3, 4, 5]
        _miss, first, second, repeat, again = await stream_exchange(
            streamed, transport, [with_id(query, qid) for qid in ids]
        )
    assert streamed.engine.statistics().cache_answers == 2  # the repeats skipped the engine
    assert (cache.statistics().repeats, cache.statistics().rendered) == (2, 1)
    assert streamed.server.reply_counts().cache_repeats == 2
    assert [r[:2] for r in (second, repeat, again)] == [with_id(b"", qid) for qid in ids[2:]]
    assert repeat[2:] == again[2:] == second[2:]
    assert parse(repeat).rr[0].ttl == 300
    padded = transport != "tcp"
    assert all((len(reply) % RESPONSE_BLOCK == 0) == padded for reply in (first, second, repeat))
    statistics = streamed.server.statistics()
    assert (statistics.tcp_queries, statistics.udp_queries, statistics.answered) == (5, 0, 5)


async def test_a_udp_query_never_gets_a_streams_rendered_reply(streamed: Served) -> None:
    # Too big for UDP at 1232 bytes: truncated there, whole over TCP.
    query = build_query("big.example.com.", 16, qid=1, edns_size=1232)
    cache = streamed.engine.cache
    assert cache is not None

    async def udp(qid: int) -> DNSRecord:
        reply = await asyncio.to_thread(udp_exchange, streamed.port, with_id(query, qid))
        assert len(reply) <= 1232
        return parse(reply)

    async with asyncio.timeout(20):
        tcp = await stream_exchange(streamed, "tcp", [with_id(query, q) for q in (1, 2, 3)])
        assert cache.statistics().rendered == 1  # TCP's, of the third
        after_tcp = await udp(4)  # the same question, over UDP: a hit, rendered for UDP
        assert cache.statistics().repeats == 0
        repeated = await udp(5)  # a repeat of UDP's rendered reply
        assert cache.statistics().repeats == 1
        (tcp_repeat,) = await stream_exchange(streamed, "tcp", [with_id(query, 6)])
    assert cache.statistics().repeats == 2
    assert [(r.header.tc, len(r.rr)) for r in (after_tcp, repeated)] == [(1, 0), (1, 0)]
    whole = [parse(r) for r in [*tcp, tcp_repeat]]
    assert [(r.header.tc, len(r.rr)) for r in whole] == [(0, 8)] * 4
    assert tcp_repeat[2:] == tcp[2][2:]


async def test_a_tcp_query_never_gets_a_padded_reply_rendered_for_tls(streamed: Served) -> None:
    query = build_query("www.example.com.", 1, qid=1)
    cache = streamed.engine.cache
    assert cache is not None
    async with asyncio.timeout(20):
        await stream_exchange(streamed, "tls", [with_id(query, q) for q in (1, 2, 3)])
        assert cache.statistics().rendered == 1
        first, repeat = await stream_exchange(streamed, "tcp", [with_id(query, 4), query])
    assert len(first) < RESPONSE_BLOCK
    assert first[2:] == repeat[2:]
    assert cache.statistics().repeats == 1  # TCP's own, rendered from its first


@pytest.mark.parametrize("transport", STREAMS)
async def test_stream_repeats_are_logged_as_cache_answers_on_their_transport(
    streamed: Served, tmp_path: Path, transport: str
) -> None:
    log = QueryLog(tmp_path / "queries.jsonl")
    streamed.server.query_log = log
    query = build_query("www.example.com.", 1, qid=1)
    async with asyncio.timeout(20):
        await stream_exchange(streamed, transport, [with_id(query, q) for q in range(1, 6)])
    log.close()
    lines = (tmp_path / "queries.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["source"] for r in records] == ["upstream", "cache", "cache", "cache", "cache"]
    assert {(r["transport"], r["name"], r["type"], r["rcode"]) for r in records} == {
        (transport, "www.example.com.", "A", "NOERROR")
    }
    cache = streamed.engine.cache
    assert cache is not None
    assert cache.statistics().repeats == 2
