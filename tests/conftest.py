"""Shared test setup: every async test runs once on asyncio's loop and once on uvloop; the
fake authority, in-process and as a subprocess."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import NamedTuple

import pytest
import uvloop
from support import HIERARCHY, STOP, free_port, start_resolver
from tls_support import PrivateCa
from unbound_peer import UnboundPeer, running_unbound

from resolver.authority import Authority
from resolver.authority.zone import load_zone


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture
def fixtures_dir() -> Path:
    """The repository's fixtures/ directory (zones/, root.hints)."""
    return Path(__file__).resolve().parent.parent / "fixtures"


@pytest.fixture
async def authority(fixtures_dir: Path) -> AsyncIterator[Authority]:
    """An Authority serving every zone in fixtures/zones on 127.0.0.1, a free port."""
    server = Authority.from_files(sorted((fixtures_dir / "zones").glob("*.zone")))
    async with server:
        yield server


class Hierarchy(NamedTuple):
    """The fixture hierarchy running: one Authority per server address, all on ``port``."""

    port: int
    authorities: dict[str, Authority]

    def queries(self) -> int:
        return sum(len(authority.queries) for authority in self.authorities.values())


@pytest.fixture
async def hierarchy(fixtures_dir: Path) -> AsyncIterator[Hierarchy]:
    """The fake hierarchy of fixtures/README.md: each server address of HIERARCHY serving its
    zones on one port, free on all of them (root hints: fixtures/root.hints)."""
    zones = {
        address: [load_zone(fixtures_dir / "zones" / name) for name in names]
        for address, names in HIERARCHY.items()
    }
    for _ in range(10):
        port = free_port("127.0.0.2")
        started: dict[str, Authority] = {}
        try:
            for address, served in zones.items():
                authority = Authority(served)
                started[address] = authority
                await authority.start(address, port)
        except OSError:
            for authority in started.values():
                await authority.aclose()
            continue
        try:
            yield Hierarchy(port, started)
        finally:
            for authority in started.values():
                await authority.aclose()
        return
    raise AssertionError("no port free on every address of the hierarchy")


@pytest.fixture
def authority_port(fixtures_dir: Path) -> Iterator[int]:
    """A `resolver authority` subprocess serving every fixture zone on 127.0.0.1; its port."""
    port = free_port()
    zones = [f"--zone={path}" for path in sorted((fixtures_dir / "zones").glob("*.zone"))]
    process = start_resolver(["authority", *zones, "--listen", f"127.0.0.1:{port}"], port)
    try:
        yield port
    finally:
        process.kill()
        process.communicate(timeout=STOP)


@pytest.fixture
def ca(tmp_path: Path) -> PrivateCa:
    """A private certificate authority of the test's own (tests/tls_support.py)."""
    directory = tmp_path / "ca"
    directory.mkdir()
    return PrivateCa(directory)


@pytest.fixture
def unbound_peer(tmp_path: Path, ca: PrivateCa) -> Iterator[UnboundPeer]:
    """Unbound serving plain DNS, DoT and DoH on loopback with a certificate of ``ca`` for
    dns.test and 127.0.0.1 (tests/unbound_peer.py)."""
    with running_unbound(tmp_path, ca.issue("unbound")) as peer:
        yield peer
