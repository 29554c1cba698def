"""Starting the daemon in-process: an upstream no socket can reach is left out with a warning,
none usable is one error, and a start that fails leaves no descriptor open."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
from collections.abc import AsyncIterator

import pytest

from resolver.authority import Authority
from resolver.config import (
    Config,
    DomainConfig,
    ForwarderConfig,
    ServerConfig,
    SocketPoolConfig,
    TransportConfig,
)
from resolver.daemon import Daemon
from resolver.errors import UpstreamUnreachable
from resolver.wire import DNSRecord

BOUND = 10.0
# Link-local without a scope: connect() fails with EINVAL, so no socket can be opened.
UNREACHABLE = ("fe80::1", 53)


def config(*upstreams: tuple[str, int], listen: tuple[str, int] = ("127.0.0.1", 0)) -> Config:
    return Config(
        server=ServerConfig(listen=(listen,)),
        forwarder=ForwarderConfig(upstreams=upstreams, upstream_timeout=0.5, query_timeout=1.0),
        transport=TransportConfig(pool=SocketPoolConfig(min_size=2, max_size=8, min_idle=2)),
    )


def descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@contextlib.asynccontextmanager
async def started(cfg: Config) -> AsyncIterator[Daemon]:
    daemon = Daemon(cfg)
    await daemon.start()
    try:
        yield daemon
    finally:
        await daemon.aclose()


async def udp_ask(address: tuple[str, int], name: str) -> DNSRecord:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, address)
        await loop.sock_sendall(sock, DNSRecord.question(name).pack())
        return DNSRecord.parse(await loop.sock_recv(sock, 65535))


async def test_an_upstream_no_socket_can_reach_is_left_out_and_the_others_serve(
    authority: Authority, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="resolver")
    async with asyncio.timeout(BOUND), started(config(UNREACHABLE, authority.address)) as daemon:
        assert [u.address for u in daemon.engine.upstreams] == [authority.address]
        reply = await udp_ask(daemon.addresses[0], "www.example.com.")
        assert [str(rr.rdata) for rr in reply.rr] == ["127.1.0.1"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "[fe80::1]:53" in warnings[0]


@pytest.mark.parametrize(
    "upstreams",
    [
        pytest.param((UNREACHABLE,), id="one"),
        pytest.param((UNREACHABLE, ("fe80::2", 53)), id="two"),
    ],
)
async def test_no_usable_upstream_is_one_error_naming_each(
    upstreams: tuple[tuple[str, int], ...],
) -> None:
    before = descriptors()
    daemon = Daemon(config(*upstreams))
    async with asyncio.timeout(BOUND):
        with pytest.raises(UpstreamUnreachable) as info:
            await daemon.start()
    for host, _ in upstreams:
        assert f"[{host}]:53" in str(info.value)
    assert descriptors() == before


async def test_a_start_that_fails_leaves_no_descriptor_open(authority: Authority) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        before = descriptors()
        daemon = Daemon(config(UNREACHABLE, authority.address, listen=taken.getsockname()))
        async with asyncio.timeout(BOUND):
            with pytest.raises(OSError, match=r"(?i)in use|could not bind"):
                await daemon.start()
            # Closed transports give their descriptors back on a later loop iteration.
            while descriptors() != before:
                await asyncio.sleep(0.01)
        assert daemon.engine.upstreams[0].pool.statistics().size == 0


async def test_a_domain_left_without_a_usable_upstream_stops_the_start(
    authority: Authority,
) -> None:
    """Its names must not leak to the default upstreams: that is as fatal as none at all."""
    cfg = config(authority.address)
    forwarder = ForwarderConfig(
        upstreams=(authority.address,),
        upstream_timeout=0.5,
        query_timeout=1.0,
        domains=(DomainConfig(name="corp.test", upstreams=(UNREACHABLE,)),),
    )
    before = descriptors()
    with pytest.raises(UpstreamUnreachable, match=r"\[fe80::1\]:53"):
        async with asyncio.timeout(BOUND), started(dataclasses.replace(cfg, forwarder=forwarder)):
            pass
    assert descriptors() <= before


async def test_a_domain_keeps_serving_with_its_usable_upstreams(
    authority: Authority, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="resolver")
    forwarder = ForwarderConfig(
        upstreams=(authority.address,),
        upstream_timeout=0.5,
        query_timeout=1.0,
        domains=(DomainConfig(name="example.com", upstreams=(UNREACHABLE, authority.address)),),
    )
    cfg = dataclasses.replace(config(authority.address), forwarder=forwarder)
    async with asyncio.timeout(BOUND), started(cfg) as daemon:
        reply = await udp_ask(daemon.addresses[0], "www.example.com")
        assert [str(rr.rdata) for rr in reply.rr] == ["127.1.0.1"]
    assert "upstream left out: [fe80::1]:53" in caplog.text
