"""Shared test setup: every async test runs once on asyncio's loop and once on uvloop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest
import uvloop


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


# Fake authority fixtures (appended by the authority work; see fixtures/README.md).
from collections.abc import AsyncIterator  # noqa: E402
from pathlib import Path  # noqa: E402

from resolver.authority import Authority  # noqa: E402


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
