"""The response policy's name server triggers (``rpz-nsdname``, ``rpz-nsip``) through a running
recursive server over the fixture hierarchy (fixtures/README.md), and their absence in
forwarding mode."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import Hierarchy
from support import udp_exchange

from resolver.authority import Authority
from resolver.cache import Cache
from resolver.config import (
    CacheConfig,
    ForwarderConfig,
    PolicyConfig,
    RecursionConfig,
    RpzConfig,
    ServerConfig,
    TransportConfig,
)
from resolver.engine import Engine
from resolver.engine.policy import Policy
from resolver.policy import PolicyLoader
from resolver.server import Server
from resolver.wire import DNSRecord, build_query, parse

A = 1
NOERROR, NXDOMAIN = 0, 3
_ids = itertools.count(1)

# example.com.'s child sub.example.com. is served by ns1.sub.example.com. (127.0.0.6);
# example.test., wild.test. and half.test. by 127.0.0.5.
RPZ = """$ORIGIN rpz.test.
$TTL 300
@ SOA localhost. root.localhost. 1 3600 600 86400 60
  NS localhost.
ns1.sub.example.com.rpz-nsdname CNAME .
32.5.0.0.127.rpz-nsip A 127.9.9.9
"""


async def _serving(engine: Engine) -> AsyncIterator[int]:
    await engine.start()
    server = Server(ServerConfig(listen=(("127.0.0.1", 0),)), engine)
    try:
        await server.start()
        yield server.addresses[0][1]
    finally:
        await server.aclose()
        await engine.aclose()


def _load(tmp_path: Path) -> Policy:
    (tmp_path / "ns.rpz").write_text(RPZ)
    policy, _report = PolicyLoader().load(PolicyConfig(rpz=(RpzConfig(file=tmp_path / "ns.rpz"),)))
    assert policy is not None
    assert policy.servers_checked
    return policy


@pytest.fixture
async def recursive(hierarchy: Hierarchy, fixtures_dir: Path, tmp_path: Path) -> AsyncIterator[int]:
    recursion = RecursionConfig(root_hints=fixtures_dir / "root.hints", port=hierarchy.port)
    engine = Engine(
        ForwarderConfig(),
        TransportConfig(),
        cache=Cache(CacheConfig()),
        recursion=recursion,
        response_policy=_load(tmp_path),
    )
    async for port in _serving(engine):
        yield port


@pytest.fixture
async def forwarding(authority: Authority, tmp_path: Path) -> AsyncIterator[int]:
    engine = Engine(
        ForwarderConfig(upstreams=(authority.address,)),
        TransportConfig(),
        cache=Cache(CacheConfig()),
        response_policy=_load(tmp_path),
    )
    async for port in _serving(engine):
        yield port


async def ask(port: int, name: str) -> DNSRecord:
    query = build_query(name, A, qid=next(_ids) & 0xFFFF)
    return parse(await asyncio.to_thread(udp_exchange, port, query, 12.0))


def answers(reply: DNSRecord) -> list[str]:
    return [f"{rr.rname} {rr.rdata}" for rr in reply.rr]


@pytest.mark.parametrize(
    ("name", "rcode", "expected"),
    [
        ("www.example.com.", NOERROR, ["www.example.com. 127.1.0.1"]),
        ("www.sub.example.com.", NXDOMAIN, []),
        ("www.example.test.", NOERROR, ["www.example.test. 127.9.9.9"]),
        ("nothere.example.test.", NOERROR, ["nothere.example.test. 127.9.9.9"]),
        ("cross.example.com.", NOERROR, ["cross.example.com. 127.9.9.9"]),
    ],
    ids=["no-trigger", "nsdname", "nsip", "nsip-on-nxdomain", "nsip-of-cname-target"],
)
async def test_name_server_triggers_apply_in_recursive_mode_from_the_cache_too(
    recursive: int, name: str, rcode: int, expected: list[str]
) -> None:
    for _ in range(2):  # resolved, then answered from the cache: the same policy answer
        reply = await ask(recursive, name)
        assert reply.header.rcode == rcode
        assert answers(reply) == expected


async def test_name_server_triggers_never_match_in_forwarding_mode(forwarding: int) -> None:
    reply = await ask(forwarding, "www.sub.example.com.")
    assert reply.header.rcode == NOERROR
    assert answers(reply) == ["www.sub.example.com. 127.1.2.1"]
    reply = await ask(forwarding, "www.example.test.")
    assert answers(reply) == ["www.example.test. 127.1.1.1"]
