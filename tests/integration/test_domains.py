"""Per-domain forwarding through the running daemon: the longest configured domain holding a
name picks its upstreams, with its own policy and health; every other name goes to the
default upstreams. Upstreams are scripted responders on loopback that say who answered."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import struct
import tomllib
from collections.abc import AsyncIterator, Callable

import pytest
from support import ScriptedUpstream, udp_exchange

from resolver.config import config_from_mapping
from resolver.daemon import Daemon
from resolver.wire import DNSRecord, build_query, read_header

BOUND = 10.0
PTR = 12
_ids = itertools.count(1)


def answering(address: str) -> Callable[[bytes], bytes]:
    """A script answering every question with one A record (or, for PTR, a NOERROR without
    records) that names the upstream by ``address``."""
    packed = ipaddress.ip_address(address).packed

    def script(query: bytes) -> bytes:
        header = read_header(query)
        end = 12 + query[12:].index(b"\x00") + 5
        qtype = struct.unpack("!H", query[end - 4 : end - 2])[0]
        count = 1 if qtype == 1 else 0
        head = struct.pack("!6H", header.id, 0x8180, 1, count, 0, 0) + query[12:end]
        if not count:
            return head
        return head + b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 300, 4) + packed

    return script


def silent(query: bytes) -> None:
    return None


@contextlib.asynccontextmanager
async def serving(toml: str, **upstreams: ScriptedUpstream) -> AsyncIterator[Daemon]:
    """The production Daemon from TOML text, with ``{name}`` replaced by that upstream's
    address."""
    text = toml.format(**{k: f"{u.address[0]}:{u.address[1]}" for k, u in upstreams.items()})
    data = tomllib.loads(
        '[server]\nlisten = ["127.0.0.1:0"]\n'
        "[transport.pool]\nmin_size = 1\nmax_size = 4\nmin_idle = 1\n" + text
    )
    daemon = Daemon(config_from_mapping(data))
    await daemon.start()
    try:
        yield daemon
    finally:
        await daemon.aclose()


async def who(daemon: Daemon, name: str) -> list[str]:
    query = build_query(name, 1, qid=next(_ids) & 0xFFFF)
    reply = await asyncio.to_thread(udp_exchange, daemon.addresses[0][1], query)
    return [str(rr.rdata) for rr in DNSRecord.parse(reply).rr]


@contextlib.asynccontextmanager
async def upstreams(
    *scripts: Callable[[bytes], bytes | None],
) -> AsyncIterator[list[ScriptedUpstream]]:
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(ScriptedUpstream(s)) for s in scripts]


async def test_a_domain_gets_its_questions_and_the_default_upstreams_the_rest() -> None:
    toml = """
[forwarder]
upstreams = ["{default}"]

[[forwarder.domains]]
name = "corp.test"
upstreams = ["{corp}"]
"""
    async with (
        asyncio.timeout(BOUND),
        upstreams(answering("127.0.0.1"), answering("127.0.0.62")) as (default, corp),
        serving(toml, default=default, corp=corp) as d,
    ):
        assert await who(d, "www.corp.test.") == ["127.0.0.62"]
        assert await who(d, "Deep.Down.CORP.test.") == ["127.0.0.62"]
        assert await who(d, "corp.test.") == ["127.0.0.62"]
        assert await who(d, "notcorp.test.") == ["127.0.0.1"]  # a label boundary, not a suffix
        assert await who(d, "www.example.com.") == ["127.0.0.1"]
        assert await who(d, "test.") == ["127.0.0.1"]
        assert len(corp.queries) == 3
        assert len(default.queries) == 3
        assert d.engine.route(b"\x03www\x04corp\x04test\x00") == "corp.test."


async def test_the_longest_matching_domain_wins() -> None:
    toml = """
[forwarder]
upstreams = ["{default}"]
[[forwarder.domains]]
name = "test"
upstreams = ["{tld}"]
[[forwarder.domains]]
name = "a.corp.test"
upstreams = ["{deep}"]
[[forwarder.domains]]
name = "corp.test"
upstreams = ["{corp}"]
"""
    scripts = [answering(f"127.0.0.{n}") for n in (1, 2, 3, 4)]
    async with (
        asyncio.timeout(BOUND),
        upstreams(*scripts) as (default, tld, corp, deep),
        serving(toml, default=default, tld=tld, corp=corp, deep=deep) as d,
    ):
        assert await who(d, "x.b.a.corp.test.") == ["127.0.0.4"]
        assert await who(d, "a.corp.test.") == ["127.0.0.4"]
        assert await who(d, "b.corp.test.") == ["127.0.0.3"]
        assert await who(d, "other.test.") == ["127.0.0.2"]
        assert await who(d, "example.com.") == ["127.0.0.1"]


async def test_a_domain_has_its_own_policy() -> None:
    toml = """
[forwarder]
upstreams = ["{default}"]
policy = "sequential"
[[forwarder.domains]]
name = "corp.test"
upstreams = ["{one}", "{two}"]
policy = "round_robin"
"""
    scripts = [answering(f"127.0.0.{n}") for n in (1, 2, 3)]
    async with (
        asyncio.timeout(BOUND),
        upstreams(*scripts) as (default, one, two),
        serving(toml, default=default, one=one, two=two) as d,
    ):
        seen = [(await who(d, f"n{i}.corp.test."))[0] for i in range(4)]
        assert seen == ["127.0.0.2", "127.0.0.3", "127.0.0.2", "127.0.0.3"]
        assert len(default.queries) == 0


async def test_a_domain_keeps_its_own_health() -> None:
    """The domain's silent first upstream is marked down after one timeout and skipped; the
    same server is a default upstream too, whose health is untouched by it."""
    toml = """
[forwarder]
upstreams = ["{dead}", "{default}"]
upstream_timeout = 0.2
down_after = 1
[[forwarder.domains]]
name = "corp.test"
upstreams = ["{dead}", "{corp}"]
"""
    async with (
        asyncio.timeout(BOUND),
        upstreams(silent, answering("127.0.0.1"), answering("127.0.0.62")) as (
            dead,
            default,
            corp,
        ),
        serving(toml, dead=dead, default=default, corp=corp) as d,
    ):
        assert await who(d, "one.corp.test.") == ["127.0.0.62"]
        assert len(dead.queries) == 1
        assert await who(d, "two.corp.test.") == ["127.0.0.62"]
        assert len(dead.queries) == 1  # down for the domain: not asked again
        assert await who(
            d,
            "www.example.com.",
        ) == ["127.0.0.1"]
        assert len(dead.queries) == 2  # still up for the default upstreams: asked first
        # One socket pool per server, however many places list it.
        assert len(d.engine.statistics().upstreams) == 3


@pytest.mark.parametrize(
    ("name", "forwarded"),
    [
        ("5.1.168.192.in-addr.arpa.", True),
        ("168.192.in-addr.arpa.", True),
        ("5.1.1.10.in-addr.arpa.", False),
        ("2.0.0.127.in-addr.arpa.", False),
    ],
    ids=["below", "apex", "other-private-zone", "loopback-zone"],
)
async def test_a_forwarded_private_reverse_zone_is_asked_not_answered_locally(
    name: str, forwarded: bool
) -> None:
    toml = """
[forwarder]
upstreams = ["{default}"]
[[forwarder.domains]]
name = "168.192.in-addr.arpa"
upstreams = ["{router}"]
"""
    async with (
        asyncio.timeout(BOUND),
        upstreams(answering("127.0.0.1"), answering("127.0.0.53")) as (default, router),
        serving(toml, default=default, router=router) as d,
    ):
        query = build_query(name, PTR, qid=next(_ids) & 0xFFFF)
        reply = DNSRecord.parse(await asyncio.to_thread(udp_exchange, d.addresses[0][1], query))
        assert len(router.queries) == int(forwarded)
        assert reply.header.rcode == (0 if forwarded else 3)
        assert reply.header.aa == int(not forwarded)
        assert default.queries == []
