"""Answers of our own through the running daemon: localhost, the private and special-use
reverse zones, special-use names and a hosts file, over UDP and TCP, with the upstream's
query count proving that nothing leaked to it."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from support import ScriptedUpstream, tcp_exchange, udp_exchange

from resolver.config import (
    Config,
    ForwarderConfig,
    LocalConfig,
    ServerConfig,
    SocketPoolConfig,
    TransportConfig,
)
from resolver.daemon import Daemon
from resolver.errors import ConfigError
from resolver.wire import DNSRecord, build_query, read_header

BOUND = 10.0
A, NS, SOA, PTR, MX, AAAA = 1, 2, 6, 12, 15, 28
_AA = 0x0400
_ids = itertools.count(1)


def nodata(query: bytes) -> bytes:
    """The upstream's reply to anything: NOERROR without records."""
    header = read_header(query)
    end = 12 + query[12:].index(b"\x00") + 5
    return struct.pack("!6H", header.id, 0x8180, 1, 0, 0, 0) + query[12:end]


@contextlib.asynccontextmanager
async def serving(
    upstream: ScriptedUpstream, *, local: LocalConfig | None = None, **forwarder: Any
) -> AsyncIterator[Daemon]:
    """The production Daemon on 127.0.0.1:free in front of ``upstream``."""
    config = Config(
        server=ServerConfig(listen=(("127.0.0.1", 0),)),
        forwarder=ForwarderConfig(
            upstreams=(upstream.address,), upstream_timeout=0.5, query_timeout=2.0, **forwarder
        ),
        transport=TransportConfig(pool=SocketPoolConfig(min_size=1, max_size=4, min_idle=1)),
        local=local or LocalConfig(),
    )
    daemon = Daemon(config, load=lambda: config)  # a reload reads the hosts file again
    await daemon.start()
    try:
        yield daemon
    finally:
        await daemon.aclose()


async def ask(daemon: Daemon, name: str, qtype: int = A, *, tcp: bool = False) -> DNSRecord:
    query = build_query(name, qtype, qid=next(_ids) & 0xFFFF)
    exchange = tcp_exchange if tcp else udp_exchange
    reply = await asyncio.to_thread(exchange, daemon.addresses[0][1], query)
    assert reply[:2] == query[:2]
    return DNSRecord.parse(reply)


def rdata(record: DNSRecord) -> list[str]:
    return [str(rr.rdata) for rr in record.rr]


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
@pytest.mark.parametrize(
    ("name", "qtype", "expected"),
    [
        ("localhost.", A, ["127.0.0.1"]),
        ("LocalHost.", AAAA, ["::1"]),
        ("printer.LOCALHOST.", A, ["127.0.0.1"]),
        ("a.b.c.localhost.", AAAA, ["::1"]),
        ("1.0.0.127.in-addr.arpa.", PTR, ["localhost."]),
        ("1." + "0." * 31 + "ip6.arpa.", PTR, ["localhost."]),
        ("localhost.", MX, []),
    ],
    ids=["a", "aaaa-case", "below-a", "below-aaaa", "ptr-v4", "ptr-v6", "other-type"],
)
async def test_localhost_is_answered_here_and_never_asked_upstream(
    name: str, qtype: int, expected: list[str], tcp: bool
) -> None:
    async with asyncio.timeout(BOUND), ScriptedUpstream(nodata) as upstream:
        async with serving(upstream) as d:
            reply = await ask(d, name, qtype, tcp=tcp)
            assert reply.header.rcode == 0
            assert reply.header.aa == 1
            assert reply.header.ra == 1
            assert str(reply.q.qname) == name  # the asker's case
            assert rdata(reply) == expected
            assert d.engine.statistics().local_answers == 1
        assert upstream.queries == []


@pytest.mark.parametrize(
    ("name", "zone"),
    [
        ("5.4.3.10.in-addr.arpa.", "10.in-addr.arpa."),
        ("1.0.20.172.in-addr.arpa.", "20.172.in-addr.arpa."),
        ("9.1.168.192.in-addr.arpa.", "168.192.in-addr.arpa."),
        ("1.0.0.100.in-addr.arpa.", None),  # 100.0/16 is public: below 100.64/10
        ("1.0.64.100.in-addr.arpa.", "64.100.in-addr.arpa."),
        (
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.",
            "d.f.ip6.arpa.",
        ),
        ("2.0.0.127.in-addr.arpa.", "127.in-addr.arpa."),
        ("1.2.254.169.in-addr.arpa.", "254.169.in-addr.arpa."),
        ("7.2.0.192.in-addr.arpa.", "2.0.192.in-addr.arpa."),
        ("4.0.0.0.in-addr.arpa.", "0.in-addr.arpa."),
        ("1.0.0.0.8.e.f.ip6.arpa.", "8.e.f.ip6.arpa."),
        ("www.invalid.", "invalid."),
        ("hidden.onion.", "onion."),
    ],
    ids=[
        "rfc1918-10",
        "rfc1918-172",
        "rfc1918-192",
        "public-100",
        "shared-100-64",
        "ula",
        "loopback-other",
        "link-local",
        "test-net-1",
        "this-network",
        "link-local-v6",
        "invalid",
        "onion",
    ],
)
async def test_private_and_special_use_zones_are_nxdomain_without_asking_upstream(
    name: str, zone: str | None
) -> None:
    async with asyncio.timeout(BOUND), ScriptedUpstream(nodata) as upstream:
        async with serving(upstream) as d:
            reply = await ask(d, name, PTR)
        if zone is None:
            assert reply.header.rcode == 0
            assert len(upstream.queries) == 1
            return
        assert upstream.queries == []
        assert reply.header.rcode == 3
        assert reply.header.aa == 1
        (soa,) = reply.auth
        assert (str(soa.rname), soa.rtype, soa.ttl) == (zone, SOA, 10_800)
        assert str(soa.rdata).startswith("localhost. nobody.invalid. 1 ")


async def test_zone_apex_answers_its_soa_and_ns() -> None:
    async with asyncio.timeout(BOUND), ScriptedUpstream(nodata) as upstream:
        async with serving(upstream) as d:
            soa = await ask(d, "168.192.in-addr.arpa.", SOA)
            ns = await ask(d, "168.192.in-addr.arpa.", NS, tcp=True)
        assert upstream.queries == []
        assert [rr.rtype for rr in soa.rr] == [SOA]
        assert rdata(ns) == ["localhost."]


@pytest.mark.parametrize(
    ("switch", "name", "qtype", "still_local"),
    [
        ("localhost", "localhost.", A, "1.1.168.192.in-addr.arpa."),
        ("localhost", "1.0.0.127.in-addr.arpa.", PTR, "x.invalid."),
        ("private_reverse", "1.1.168.192.in-addr.arpa.", PTR, "localhost."),
        ("special_reverse", "1.1.254.169.in-addr.arpa.", PTR, "1.1.168.192.in-addr.arpa."),
        ("special_names", "x.invalid.", A, "localhost."),
    ],
    ids=["localhost", "localhost-reverse", "private-reverse", "special-reverse", "special-names"],
)
async def test_each_switch_turns_off_its_answers_only(
    switch: str, name: str, qtype: int, still_local: str
) -> None:
    local = LocalConfig(**{switch: False})
    async with (
        asyncio.timeout(BOUND),
        ScriptedUpstream(nodata) as upstream,
        serving(upstream, local=local) as d,
    ):
        reply = await ask(d, name, qtype)
        assert reply.header.rcode == 0
        assert reply.header.aa == 0
        assert len(upstream.queries) == 1
        assert (await ask(d, still_local, PTR)).header.aa == 1
        assert len(upstream.queries) == 1


HOSTS = """\
# a comment line, then the usual loopback lines
127.0.0.1   localhost
::1         localhost ip6-localhost
192.0.2.10  printer.lan printer   # trailing comment
2001:db8::10 printer.lan
10.1.2.3    DB.Internal
0.0.0.0     ads.example.com tracker.example.com
not-an-address bad.example
fe80::1%eth0 scoped.example
"""


@pytest.fixture
def hosts_file(tmp_path: Path) -> Path:
    path = tmp_path / "hosts"
    path.write_text(HOSTS)
    return path


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
@pytest.mark.parametrize(
    ("name", "qtype", "expected"),
    [
        ("printer.lan.", A, ["192.0.2.10"]),
        ("Printer.LAN.", AAAA, ["2001:db8::10"]),
        ("printer.", A, ["192.0.2.10"]),
        ("printer.", AAAA, []),
        ("db.internal.", A, ["10.1.2.3"]),
        ("tracker.example.com.", A, ["0.0.0.0"]),
        ("10.2.0.192.in-addr.arpa.", PTR, ["printer.lan."]),
        (ipaddress.ip_address("2001:db8::10").reverse_pointer + ".", PTR, ["printer.lan."]),
        ("3.2.1.10.in-addr.arpa.", PTR, ["DB.Internal."]),
        ("localhost.", AAAA, ["::1"]),
    ],
    ids=[
        "a",
        "aaaa",
        "alias",
        "alias-nodata",
        "inside-private",
        "blocklist",
        "ptr-v4",
        "ptr-v6",
        "ptr-in-private-zone",
        "localhost",
    ],
)
async def test_hosts_file_answers_a_aaaa_and_ptr_without_asking_upstream(
    hosts_file: Path, name: str, qtype: int, expected: list[str], tcp: bool
) -> None:
    async with asyncio.timeout(BOUND), ScriptedUpstream(nodata) as upstream:
        async with serving(upstream, local=LocalConfig(hosts=hosts_file)) as d:
            reply = await ask(d, name, qtype, tcp=tcp)
        assert upstream.queries == []
        assert reply.header.rcode == 0
        assert reply.header.aa == 1
        assert rdata(reply) == expected
        if expected:
            assert [rr.ttl for rr in reply.rr] == [60] * len(expected)


async def test_names_not_in_the_hosts_file_go_upstream(hosts_file: Path) -> None:
    async with asyncio.timeout(BOUND), ScriptedUpstream(nodata) as upstream:
        async with serving(upstream, local=LocalConfig(hosts=hosts_file)) as d:
            for name in ("www.example.com.", "bad.example.", "scoped.example.", "lan."):
                assert (await ask(d, name)).header.aa == 0
        assert len(upstream.queries) == 4


async def test_hosts_file_is_off_by_default(hosts_file: Path) -> None:
    async with asyncio.timeout(BOUND), ScriptedUpstream(nodata) as upstream:
        async with serving(upstream) as d:
            assert rdata(await ask(d, "printer.lan.")) == []
        assert len(upstream.queries) == 1


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
async def test_hosts_file_read_again_replaces_the_answers(hosts_file: Path, tcp: bool) -> None:
    async with asyncio.timeout(BOUND), ScriptedUpstream(nodata) as upstream:
        async with serving(upstream, local=LocalConfig(hosts=hosts_file)) as d:
            # Twice: the second is kept rendered for exact repeats, which a reload forgets.
            for _ in range(2):
                assert rdata(await ask(d, "printer.lan.", tcp=tcp)) == ["192.0.2.10"]
            await asyncio.to_thread(hosts_file.write_text, "192.0.2.77 printer.lan\n")
            assert await d.reload()
            assert rdata(await ask(d, "printer.lan.", tcp=tcp)) == ["192.0.2.77"]
            assert rdata(await ask(d, "db.internal.", tcp=tcp)) == []
        assert len(upstream.queries) == 1  # db.internal, gone from the file


def test_an_unreadable_hosts_file_is_a_config_error(tmp_path: Path) -> None:
    config = Config(
        forwarder=ForwarderConfig(upstreams=(("127.0.0.2", 53),)),
        local=LocalConfig(hosts=tmp_path / "missing"),
    )
    with pytest.raises(ConfigError) as info:
        Daemon(config)
    assert info.value.field == "local.hosts"
