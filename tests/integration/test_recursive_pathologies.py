"""Recursive mode through the running server over the scripted internet of tests/scenarios.py:
authorities on 127.0.0.2 and 127.0.0.10-14 (one port, UDP and TCP), each misbehaving as a test
says, as real ones do."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import NamedTuple

import pytest
import scenarios
from scenarios import World, serve_world
from support import free_port, udp_exchange, until

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
from resolver.wire import DNSRecord, parse


class Served(NamedTuple):
    world: World
    port: int


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    hints = tmp_path / "root.hints"
    hints.write_text(scenarios.ROOT_HINTS)
    world = World()
    for _ in range(10):
        port = free_port("127.0.0.2")
        try:
            async with serve_world(world, port):
                recursion = RecursionConfig(root_hints=hints, port=port, server_timeout=0.3)
                engine = Engine(
                    ForwarderConfig(),
                    TransportConfig(),
                    cache=Cache(CacheConfig()),
                    recursion=recursion,
                )
                await engine.start()
                server = Server(ServerConfig(listen=(("127.0.0.1", 0),)), engine)
                try:
                    await server.start()
                    yield Served(world, server.addresses[0][1])
                finally:
                    await server.aclose()
                    await engine.aclose()
                return
        except OSError:
            continue  # the port was taken on one of the addresses: another
    raise AssertionError("no port free on every address of the scripted world")


_ids = itertools.count(1)


async def ask(served: Served, name: str, qtype: str = "A", *, cd: bool = False) -> DNSRecord:
    query = DNSRecord.question(name, qtype)
    query.header.id = next(_ids) & 0xFFFF
    query.header.cd = int(cd)
    return parse(await asyncio.to_thread(udp_exchange, served.port, bytes(query.pack()), 12.0))


class Case(NamedTuple):
    faults: dict[str, scenarios.Fault]
    name: str
    rcode: int
    answer: list[str]  # rdata as dnslib writes it


CASES = {
    "glue-from-the-referring-zone": Case({}, "www.example.com.", 0, ["127.1.0.1"]),
    "negative-answer-without-aa": Case(
        {"127.0.0.11": scenarios.not_authoritative}, "nothere.example.com.", 3, []
    ),
    "ent-without-aa-under-minimisation": Case(
        {"127.0.0.11": scenarios.not_authoritative}, "leaf.ent.example.com.", 0, ["127.1.0.4"]
    ),
    "referral-claiming-aa": Case(
        {"127.0.0.10": scenarios.claims_aa}, "www.aa.com.", 0, ["127.1.2.1"]
    ),
    "glueless-behind-dead-and-lame": Case(
        {"127.0.0.14": scenarios.upward_referral}, "www.glueless.com.", 0, ["127.1.4.1"]
    ),
    "in-zone-server-without-glue": Case({}, "www.inzone.com.", 0, ["127.1.5.1"]),
    "cname-with-foreign-authority": Case(
        {"127.0.0.13": scenarios.foreign_authority},
        "www.alias.com.",
        0,
        ["www.example.net.", "127.1.1.1"],
    ),
    "nodata-without-soa": Case(
        {"127.0.0.11": scenarios.without_authority}, "txt.example.com.", 0, []
    ),
    "recursive-lame-server": Case(
        {"127.0.0.14": scenarios.recursive_lame}, "www.example.net.", 0, ["127.1.1.1"]
    ),
    "sideways-referral": Case(
        {"127.0.0.14": scenarios.sideways_referral}, "www.example.net.", 0, ["127.1.1.1"]
    ),
    "dname-through-a-half-lame-zone": Case(
        {"127.0.0.14": scenarios.upward_referral},
        "www.old.example.com.",
        0,
        # dnslib writes DNAME rdata in the RFC 3597 form: example.net.
        ["\\# 13 076578616D706C65036E657400", "www.example.net.", "127.1.1.1"],
    ),
    "server-dropping-edns": Case(
        {"127.0.0.12": scenarios.drops_edns}, "www.aa.com.", 0, ["127.1.2.1"]
    ),
    "truncated-referral": Case(
        {"127.0.0.10": scenarios.truncates_referrals}, "www.aa.com.", 0, ["127.1.2.1"]
    ),
    "tcp-only-server": Case({"127.0.0.12": scenarios.tcp_only}, "www.aa.com.", 0, ["127.1.2.1"]),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
async def test_a_misbehaving_authority_still_gets_the_answer(served: Served, case: Case) -> None:
    served.world.faults.update(case.faults)
    reply = await ask(served, case.name)
    assert reply.header.rcode == case.rcode
    assert [str(rr.rdata) for rr in reply.rr] == case.answer
    assert reply.header.ra


async def test_glue_from_the_referring_zone_saves_the_lookups(served: Served) -> None:
    await ask(served, "www.example.com.")
    assert [a.address for a in served.world.asked] == ["127.0.0.2", "127.0.0.10", "127.0.0.11"]


async def test_a_negative_answer_without_aa_carries_the_zones_soa(served: Served) -> None:
    served.world.faults["127.0.0.11"] = scenarios.not_authoritative
    reply = await ask(served, "txt.example.com.")
    assert (reply.header.rcode, reply.rr) == (0, [])
    assert [str(rr.rname) for rr in reply.auth] == ["example.com."]


async def test_the_cd_bit_of_the_query_is_copied_into_the_reply(served: Served) -> None:
    # Both orders, so that neither a cached answer nor a rendered repeat carries the other's.
    without = await ask(served, "www.example.com.")
    with_cd = await ask(served, "www.example.com.", cd=True)
    again = await ask(served, "www.example.com.")
    assert (without.header.cd, with_cd.header.cd, again.header.cd) == (0, 1, 0)


async def test_a_poisoned_address_beside_a_cname_is_never_used(served: Served) -> None:
    served.world.faults["127.0.0.13"] = scenarios.foreign_authority
    reply = await ask(served, "www.alias.com.")
    assert "192.0.2.66" not in [str(rr.rdata) for rr in reply.rr]
    assert "ns.evil.example.net." not in [a.qname for a in served.world.asked]


async def test_glueless_servers_of_a_zone_are_looked_up_in_parallel(served: Served) -> None:
    reply = await ask(served, "www.multi.com.")
    assert [str(rr.rdata) for rr in reply.rr] == ["127.1.8.1"]
    # The lookup of ns2.dns.net. started beside that of ns.dns.net.; it goes on after the
    # answer, as a question of its own.
    await until(lambda: "ns2.dns.net." in [a.qname for a in served.world.asked], timeout=10.0)
