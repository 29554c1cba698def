"""Recursive mode through the running server: the daemon resolves from the fixture root hints
over the fake hierarchy (one Authority per server address, one port), over UDP and TCP."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import NamedTuple

import pytest
from conftest import Hierarchy
from support import tcp_exchange, udp_exchange

from resolver.cache import Cache
from resolver.config import (
    CacheConfig,
    ForwarderConfig,
    RecursionConfig,
    ServerConfig,
    TransportConfig,
)
from resolver.engine import Engine
from resolver.server import Server
from resolver.wire import DNSRecord, build_query, parse


class Recursive(NamedTuple):
    engine: Engine
    port: int
    hierarchy: Hierarchy


async def _serving(
    hierarchy: Hierarchy, fixtures_dir: Path, **settings: object
) -> AsyncIterator[Recursive]:
    recursion = RecursionConfig(
        root_hints=fixtures_dir / "root.hints",
        port=hierarchy.port,
        **settings,  # type: ignore[arg-type]
    )
    engine = Engine(
        ForwarderConfig(), TransportConfig(), cache=Cache(CacheConfig()), recursion=recursion
    )
    await engine.start()
    server = Server(ServerConfig(listen=(("127.0.0.1", 0),)), engine)
    try:
        await server.start()
        yield Recursive(engine, server.addresses[0][1], hierarchy)
    finally:
        await server.aclose()
        await engine.aclose()


@pytest.fixture
async def recursive(hierarchy: Hierarchy, fixtures_dir: Path) -> AsyncIterator[Recursive]:
    async for served in _serving(hierarchy, fixtures_dir):
        yield served


_ids = itertools.count(1)


async def ask(served: Recursive, name: str, qtype: int = 1, *, tcp: bool = False) -> DNSRecord:
    query = build_query(name, qtype, qid=next(_ids) & 0xFFFF)
    exchange = tcp_exchange if tcp else udp_exchange
    return parse(await asyncio.to_thread(exchange, served.port, query, 12.0))


def answer_rdata(reply: DNSRecord) -> list[str]:
    return [str(rr.rdata) for rr in reply.rr]


def asked(hierarchy: Hierarchy, address: str) -> list[str]:
    return [q.qname for q in hierarchy.authorities[address].queries]


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
async def test_a_name_is_resolved_from_the_root(recursive: Recursive, tcp: bool) -> None:
    reply = await ask(recursive, "www.example.com.", tcp=tcp)
    assert reply.header.rcode == 0
    assert answer_rdata(reply) == ["127.1.0.1"]
    assert reply.header.ra
    assert not reply.header.aa
    for address in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
        assert len(asked(recursive.hierarchy, address)) == 1


async def test_each_server_is_asked_only_one_label_more(recursive: Recursive) -> None:
    await ask(recursive, "www.example.com.")
    hierarchy = recursive.hierarchy
    assert [name.lower() for name in asked(hierarchy, "127.0.0.2")] == ["com."]
    assert [name.lower() for name in asked(hierarchy, "127.0.0.3")] == ["example.com."]
    assert [name.lower() for name in asked(hierarchy, "127.0.0.4")] == ["www.example.com."]


async def test_the_next_name_in_a_known_zone_goes_straight_to_its_server(
    recursive: Recursive,
) -> None:
    await ask(recursive, "www.example.com.")
    before = recursive.hierarchy.queries()
    reply = await ask(recursive, "mail.example.com.")
    assert answer_rdata(reply) == ["127.1.0.25"]
    assert recursive.hierarchy.queries() == before + 1
    assert len(asked(recursive.hierarchy, "127.0.0.4")) == 2


async def test_a_repeated_question_is_answered_from_the_cache(recursive: Recursive) -> None:
    await ask(recursive, "www.example.com.")
    before = recursive.hierarchy.queries()
    reply = await ask(recursive, "WWW.EXAMPLE.COM.")
    assert answer_rdata(reply) == ["127.1.0.1"]
    assert str(reply.q.qname) == "WWW.EXAMPLE.COM."
    assert recursive.hierarchy.queries() == before
    assert recursive.engine.statistics().cache_answers == 1


async def test_every_query_to_an_authority_leaves_from_its_own_port(
    recursive: Recursive,
) -> None:
    names = [f"n{i}.wild.test." for i in range(40)]
    replies = await asyncio.gather(*(ask(recursive, name) for name in names))
    assert all(answer_rdata(reply) == ["127.1.3.1"] for reply in replies)
    ports = [q.client[1] for a in recursive.hierarchy.authorities.values() for q in a.queries]
    assert len(ports) >= 40
    # A closed socket's port may come back by chance; a socket is never used twice.
    assert len(set(ports)) >= 0.9 * len(ports)
    servers = recursive.engine.statistics().servers
    assert servers is not None
    assert servers.ipv4 is not None
    pool = servers.ipv4
    assert pool.acquired == len(ports)
    assert pool.in_use == 0
    assert pool.retired + pool.discarded == pool.acquired  # each socket closed after one use


async def test_query_names_carry_random_case(recursive: Recursive) -> None:
    await asyncio.gather(*(ask(recursive, f"case{i}.wild.test.") for i in range(10)))
    sent = asked(recursive.hierarchy, "127.0.0.5")
    assert any(name != name.lower() for name in sent)


async def test_a_server_that_does_not_echo_case_is_asked_without_0x20(
    recursive: Recursive,
) -> None:
    await ask(recursive, "www.example.com.")  # the zone is known: the next goes to .4 only
    leaf = recursive.hierarchy.authorities["127.0.0.4"]
    leaf.faults.lowercase = True
    reply = await ask(recursive, "mail.example.com.")
    assert answer_rdata(reply) == ["127.1.0.25"]
    names = [q.qname for q in leaf.queries[1:]]
    assert len(names) == 3  # the 0x20 query, then twice without
    assert names[1] == names[2] == "mail.example.com."
    assert recursive.engine.statistics().servers.case_mismatches == 1  # type: ignore[union-attr]


async def test_a_cname_across_zones_is_followed(recursive: Recursive) -> None:
    reply = await ask(recursive, "cross.example.com.")
    assert answer_rdata(reply) == ["www.example.test.", "127.1.1.1"]


async def test_a_glueless_name_server_is_looked_up(recursive: Recursive) -> None:
    reply = await ask(recursive, "www.oob.com.")
    assert answer_rdata(reply) == ["127.1.4.1"]
    assert [name.lower() for name in asked(recursive.hierarchy, "127.0.0.7")] == ["www.oob.com."]


async def test_nxdomain_comes_with_the_soa_and_is_cached(recursive: Recursive) -> None:
    reply = await ask(recursive, "nonexistent.example.com.")
    assert reply.header.rcode == 3
    assert [str(rr.rname) for rr in reply.auth] == ["example.com."]
    before = recursive.hierarchy.queries()
    again = await ask(recursive, "nonexistent.example.com.")
    assert again.header.rcode == 3
    assert recursive.hierarchy.queries() == before


async def test_a_truncated_answer_is_fetched_over_tcp(recursive: Recursive) -> None:
    reply = await ask(recursive, "big.example.com.", 16, tcp=True)
    assert len(reply.rr) == 8
    leaf = recursive.hierarchy.authorities["127.0.0.4"]
    assert [q.transport for q in leaf.queries][-2:] == ["udp", "tcp"]


async def test_a_half_lame_zone_is_answered_by_its_live_server(recursive: Recursive) -> None:
    reply = await ask(recursive, "www.half.test.")
    assert answer_rdata(reply) == ["127.1.5.1"]


async def test_a_zone_with_no_live_server_is_servfail(recursive: Recursive) -> None:
    reply = await ask(recursive, "www.lame.com.")
    assert reply.header.rcode == 2
    assert answer_rdata(reply) == []


async def test_silent_servers_give_servfail_within_the_deadline(
    hierarchy: Hierarchy, fixtures_dir: Path
) -> None:
    hierarchy.authorities["127.0.0.4"].faults.drop = True
    # Two tries take 0.6 s; the deadline lies far beyond, so a busy machine cannot blur the
    # difference between giving up and waiting the deadline out.
    async for served in _serving(hierarchy, fixtures_dir, server_timeout=0.3, query_timeout=8.0):
        started = time.monotonic()
        reply = await ask(served, "www.example.com.")
        elapsed = time.monotonic() - started
        assert reply.header.rcode == 2
        assert elapsed < 8.0
        # Asked twice (a lost datagram deserves a second try), then given up.
        assert len(asked(hierarchy, "127.0.0.4")) == 2


async def test_a_refusing_server_is_servfail_never_a_guess(recursive: Recursive) -> None:
    await ask(recursive, "www.example.com.")
    recursive.hierarchy.authorities["127.0.0.4"].faults.refuse = True
    reply = await ask(recursive, "mail.example.com.")
    assert reply.header.rcode == 2
    assert answer_rdata(reply) == []


async def test_without_minimisation_every_server_sees_the_full_name(
    hierarchy: Hierarchy, fixtures_dir: Path
) -> None:
    async for served in _serving(hierarchy, fixtures_dir, qname_minimisation=False):
        await ask(served, "www.example.com.")
        for address in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
            assert [n.lower() for n in asked(hierarchy, address)] == ["www.example.com."]


async def test_a_failed_resolution_is_remembered_for_the_servfail_ttl(
    recursive: Recursive,
) -> None:
    def sent() -> int:
        servers = recursive.engine.statistics().servers
        assert servers is not None
        return servers.queries

    first = await ask(recursive, "www.lame.com.")
    before = sent()
    again = await ask(recursive, "www.lame.com.")
    assert first.header.rcode == again.header.rcode == 2
    assert sent() == before  # RFC 9520: not resolved again at once
    other = await ask(recursive, "other.lame.com.")
    assert other.header.rcode == 2
    assert sent() > before  # another question is tried


async def test_an_expired_answer_is_served_stale_when_its_servers_fail(
    hierarchy: Hierarchy, fixtures_dir: Path
) -> None:
    clock = [1000.0]
    recursion = RecursionConfig(root_hints=fixtures_dir / "root.hints", port=hierarchy.port)
    cache = Cache(CacheConfig(), clock=lambda: clock[0])
    engine = Engine(ForwarderConfig(), TransportConfig(), cache=cache, recursion=recursion)
    await engine.start()
    server = Server(ServerConfig(listen=(("127.0.0.1", 0),)), engine)
    try:
        await server.start()
        served = Recursive(engine, server.addresses[0][1], hierarchy)
        fresh = await ask(served, "short.example.com.")
        assert answer_rdata(fresh) == ["127.1.0.2"]
        clock[0] += 61  # its TTL is 60
        hierarchy.authorities["127.0.0.4"].faults.refuse = True
        stale = await ask(served, "short.example.com.")
        assert answer_rdata(stale) == ["127.1.0.2"]
        assert stale.rr[0].ttl == 30  # RFC 8767's stale TTL
        assert engine.statistics().stale_answers == 1
    finally:
        await server.aclose()
        await engine.aclose()
