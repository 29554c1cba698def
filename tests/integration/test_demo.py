"""``resolver demo``: offline, on loopback, bounded in time, and it cleans up after itself."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from resolver.demo import DEMO_QUESTIONS, find_fixtures, run_demo
from resolver.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent.parent


def test_demo_subprocess_exits_zero_and_shows_answers_and_statistics() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "resolver", "demo"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    out = done.stdout
    for name, qtype, _ in DEMO_QUESTIONS:
        assert f"{name}. {qtype}:" in out
    assert "NOERROR  127.1.0.1" in out
    assert "CNAME www.example.com." in out
    assert "NXDOMAIN" in out
    assert "over TCP" in out
    assert "10 mail.example.com. | 20 mail2.example.test." in out
    assert "2001:db8::1" in out
    assert "no reply" not in out
    assert "daemon statistics" in out
    assert "upstreams:" in out
    assert "pool:" in out
    assert out.rstrip().endswith("everything closed")


async def test_run_demo_answers_every_question_and_closes_everything() -> None:
    lines: list[str] = []
    tasks_before = asyncio.all_tasks()
    async with asyncio.timeout(30):
        failures = await run_demo(lines.append)
    assert failures == 0
    text = "\n".join(lines)
    assert text.count(" ms over ") == len(DEMO_QUESTIONS)
    # The repeat may be served from the cache; the first www A must reach the authority.
    assert "the authority was asked 1 time" in text
    # Nothing keeps running after the demo returns.
    assert asyncio.all_tasks() - tasks_before == set()


def test_find_fixtures_locates_the_checkouts_fixtures() -> None:
    assert find_fixtures() == REPO / "fixtures"


def test_find_fixtures_without_zone_files_says_to_use_a_checkout(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="run the demo from a checkout"):
        find_fixtures(tmp_path)
