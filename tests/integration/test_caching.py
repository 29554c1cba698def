"""The cache in the daemon: coalescing, serve-stale, prefetch, TTL decrement seen by dig."""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator
from typing import NamedTuple

import pytest

from resolver.authority import Authority
from resolver.cache import Cache
from resolver.config import CacheConfig, ForwarderConfig, ServerConfig, TransportConfig
from resolver.errors import ResolutionFailed
from resolver.forwarder import Forwarder
from resolver.server import Server
from resolver.wire import DNSRecord, build_query, name_to_wire, parse


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def wire(name: str) -> bytes:
    return name_to_wire(name)


def make_forwarder(authority: Authority, clock: FakeClock) -> Forwarder:
    config = ForwarderConfig(upstreams=(authority.address,), upstream_timeout=3.0)
    return Forwarder(config, TransportConfig(), cache=Cache(CacheConfig(), clock=clock))


async def resolve(
    forwarder: Forwarder, name: str, qtype: int = 1, timeout: float = 4.0
) -> DNSRecord:
    deadline = asyncio.get_running_loop().time() + timeout
    reply = await forwarder.resolve(wire(name), qtype, 1, do=False, cd=False, deadline=deadline)
    return parse(reply)


@pytest.fixture
async def clock_and_forwarder(
    authority: Authority,
) -> AsyncIterator[tuple[FakeClock, Forwarder]]:
    clock = FakeClock()
    forwarder = make_forwarder(authority, clock)
    await forwarder.start()
    try:
        yield clock, forwarder
    finally:
        await forwarder.aclose()


async def test_second_question_is_answered_from_cache_without_upstream(
    authority: Authority, clock_and_forwarder: tuple[FakeClock, Forwarder]
) -> None:
    _, forwarder = clock_and_forwarder
    first = await resolve(forwarder, "www.example.com.")
    second = await resolve(forwarder, "WWW.example.com.")
    assert str(first.rr[0].rdata) == str(second.rr[0].rdata) == "127.1.0.1"
    assert len(authority.queries) == 1
    assert forwarder.statistics().cache_answers == 1


async def test_concurrent_identical_questions_share_one_upstream_query(
    authority: Authority, clock_and_forwarder: tuple[FakeClock, Forwarder]
) -> None:
    _, forwarder = clock_and_forwarder
    authority.faults.delay = 0.1
    replies = await asyncio.gather(*(resolve(forwarder, "www.example.com.") for _ in range(20)))
    assert all(str(r.rr[0].rdata) == "127.1.0.1" for r in replies)
    assert len(authority.queries) == 1
    assert forwarder.statistics().coalesced == 19


async def test_ttls_count_down_in_cached_answers(
    clock_and_forwarder: tuple[FakeClock, Forwarder],
) -> None:
    clock, forwarder = clock_and_forwarder
    assert (await resolve(forwarder, "www.example.com.")).rr[0].ttl == 300
    clock.now += 100.4
    assert (await resolve(forwarder, "www.example.com.")).rr[0].ttl == 200


async def test_negative_answer_is_cached_for_the_soa_minimum(
    authority: Authority, clock_and_forwarder: tuple[FakeClock, Forwarder]
) -> None:
    clock, forwarder = clock_and_forwarder
    assert (await resolve(forwarder, "nothere.example.com.")).header.rcode == 3
    clock.now += 299
    assert (await resolve(forwarder, "nothere.example.com.")).header.rcode == 3
    assert len(authority.queries) == 1
    clock.now += 2
    await resolve(forwarder, "nothere.example.com.")
    assert len(authority.queries) == 2


async def test_expired_answer_is_served_stale_when_upstreams_fail(
    authority: Authority, clock_and_forwarder: tuple[FakeClock, Forwarder]
) -> None:
    clock, forwarder = clock_and_forwarder
    await resolve(forwarder, "short.example.com.")
    await authority.aclose()  # every upstream is gone now
    clock.now += 61
    stale = await resolve(forwarder, "short.example.com.")
    assert str(stale.rr[0].rdata) == "127.1.0.2"
    assert stale.rr[0].ttl == 30
    assert forwarder.statistics().stale_answers == 1


async def test_without_stale_data_a_failure_is_resolution_failed_not_nxdomain(
    authority: Authority, clock_and_forwarder: tuple[FakeClock, Forwarder]
) -> None:
    _, forwarder = clock_and_forwarder
    await authority.aclose()
    with pytest.raises(ResolutionFailed):
        await resolve(forwarder, "www.example.com.", timeout=1.0)


async def test_stale_answer_comes_while_refresh_continues_in_background(
    authority: Authority, clock_and_forwarder: tuple[FakeClock, Forwarder]
) -> None:
    clock, forwarder = clock_and_forwarder
    await resolve(forwarder, "short.example.com.")
    clock.now += 61
    authority.faults.delay = 1.9  # slower than the RFC 8767 client timer of 1.8 s
    stale = await resolve(forwarder, "short.example.com.")
    assert stale.rr[0].ttl == 30
    async with asyncio.timeout(3):
        await authority.wait_queries(2)  # the refresh reached the upstream
        while forwarder.statistics().cache is None or not _fresh_again(forwarder):
            await asyncio.sleep(0.05)


def _fresh_again(forwarder: Forwarder) -> bool:
    name = wire("short.example.com.")
    return forwarder.answer_cached(name, 1, 1, do=False, cd=False) is not None


async def test_hit_in_last_tenth_of_ttl_prefetches_once(
    authority: Authority, clock_and_forwarder: tuple[FakeClock, Forwarder]
) -> None:
    clock, forwarder = clock_and_forwarder
    await resolve(forwarder, "short.example.com.")  # TTL 60
    clock.now += 55
    answers = [await resolve(forwarder, "short.example.com.") for _ in range(5)]
    assert all(a.rr[0].ttl == 5 for a in answers)  # served from cache meanwhile
    async with asyncio.timeout(2):
        await authority.wait_queries(2)
        while (await resolve(forwarder, "short.example.com.")).rr[0].ttl != 60:
            await asyncio.sleep(0.01)
    assert len(authority.queries) == 2  # one refresh, not one per hit
    assert forwarder.statistics().prefetches == 1


def udp_exchange(port: int, query: bytes) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2.0)
        sock.sendto(query, ("127.0.0.1", port))
        return sock.recv(65535)


class Served(NamedTuple):
    clock: FakeClock
    forwarder: Forwarder
    port: int


@pytest.fixture
async def served(clock_and_forwarder: tuple[FakeClock, Forwarder]) -> AsyncIterator[Served]:
    """The caching forwarder (fake clock) behind a real UDP/TCP server on 127.0.0.1."""
    clock, forwarder = clock_and_forwarder
    server = Server(ServerConfig(listen=(("127.0.0.1", 0),)), forwarder, query_timeout=2.0)
    await server.start()
    try:
        yield Served(clock, forwarder, server.addresses[0][1])
    finally:
        await server.aclose()


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
    first_hit, second_hit = await ask(2), await ask(3)
    assert served.forwarder.statistics().cache_answers == 1  # the repeat skipped the cache
    assert (first_hit.header.id, second_hit.header.id) == (2, 3)
    assert first_hit.rr[0].ttl == second_hit.rr[0].ttl == 300
    served.clock.now += 1.0  # the TTLs drop a second: the remembered reply is no longer exact
    later = await ask(4)
    assert later.rr[0].ttl == 299
    assert served.forwarder.statistics().cache_answers == 2


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
    assert served.forwarder.statistics().prefetches == 1
