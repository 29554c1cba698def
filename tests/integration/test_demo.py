"""``resolver demo``: offline, on loopback, bounded in time, and it cleans up after itself."""

from __future__ import annotations

import asyncio
import fnmatch
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from resolver.demo import DEMO_QUESTIONS, demo_zones, run_demo

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
    # DNSSEC: example.com. is signed at each run, one child zone with expired signatures.
    assert "NOERROR  127.1.0.1  (AD: validated)" in out
    assert "SERVFAIL, no records (EDE 7)" in out
    assert "log: validation failure <www.expired.example.com. A IN>: signature expired" in out
    assert "daemon statistics" in out
    assert "upstreams:" in out
    assert "pool:" in out
    # Forwarding mode: nothing of recursive mode's, and no field printed as None.
    assert "None" not in out
    assert "servers" not in out
    assert "zones 0" not in out
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


def test_demo_zones_are_package_data() -> None:
    zones = demo_zones()
    assert [zone.origin for zone in zones] == ["example.com.", "example.test."]
    assert all(zone.source.startswith("resolver/demo_zones/") for zone in zones)


async def test_run_demo_serves_the_zones_it_is_given() -> None:
    # Only example.test.: every example.com. question is refused, yet each gets a reply.
    lines: list[str] = []
    zones = [zone for zone in demo_zones() if zone.origin == "example.test."]
    async with asyncio.timeout(30):
        failures = await run_demo(lines.append, zones=zones)
    assert failures == 0
    assert "fake authority for 1 zones" in lines[0]
    assert "REFUSED" in "\n".join(lines)


def test_demo_output_cut_short_by_its_reader_is_a_normal_end() -> None:
    # `resolver demo | head -1`: the pipe closes after the first line.
    demo = subprocess.Popen(
        [sys.executable, "-m", "resolver", "demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    assert demo.stdout is not None
    first = demo.stdout.readline()
    demo.stdout.close()
    _, err = demo.communicate(timeout=60)
    assert first.startswith(b"fake authority for 3 zones")
    assert demo.returncode == 0, err
    assert err == b""


def test_demo_zones_are_declared_as_package_data() -> None:
    # What a wheel (pip install ., pipx, the Docker image) carries besides the modules.
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["resolver"]
    package = REPO / "resolver"
    files = [path.relative_to(package).as_posix() for path in package.glob("demo_zones/*")]
    assert files
    for name in files:
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), name


def test_demo_runs_from_the_package_alone_far_from_any_checkout(tmp_path: Path) -> None:
    """Only the installed package (a copy of resolver/, as a wheel lays it out) on the path,
    and the demo run from another directory: no fixtures/ anywhere near."""
    site = tmp_path / "site"
    shutil.copytree(
        REPO / "resolver", site / "resolver", ignore=shutil.ignore_patterns("__pycache__")
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *args],
            capture_output=True,
            text=True,
            cwd=elsewhere,
            env=env,
            timeout=60,
            check=False,
        )

    where = run("-c", "import resolver; print(resolver.__file__)")
    assert where.stdout.startswith(str(site)), where.stdout + where.stderr
    demo = run("-m", "resolver", "demo")
    assert demo.returncode == 0, demo.stderr
    assert demo.stdout.rstrip().endswith("everything closed")
