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

from resolver.authority import Authority
from resolver.cache import Cache
from resolver.config import CacheConfig, ForwarderConfig, ServerConfig, TransportConfig
from resolver.engine import Engine
from resolver.querylog import QueryLog
from resolver.server import Server
from resolver.wire import DNSRecord, build_query, parse


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
