"""Shared test setup: every async test runs once on asyncio's loop and once on uvloop; the
fake authority, in-process and as a subprocess."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path

import pytest
import uvloop
from support import STOP, free_port, start_resolver

from resolver.authority import Authority


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
