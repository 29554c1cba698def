"""``resolver --version`` names the build that runs: the pure-Python reference, or the build
compiled with mypyc (``RESOLVER_COMPILE=1``, see setup.py). scripts/test-compiled runs the suite
against the compiled wheel with ``RESOLVER_TEST_BUILD=compiled``; otherwise the sources run."""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import subprocess
import sys
from pathlib import Path

import pytest

from resolver import __version__

REPO = Path(__file__).resolve().parent.parent.parent
COMPILED = os.environ.get("RESOLVER_TEST_BUILD", "pure") == "compiled"


def test_version_names_the_build_that_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "resolver", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    build = "compiled with mypyc" if COMPILED else "pure Python"
    assert done.stdout == f"resolver {__version__} ({build})\n"


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("resolver.wire.raw", id="wire-raw"),
        pytest.param("resolver.cache", id="cache"),
        pytest.param("resolver.engine.forwarding", id="engine-forwarding"),
        pytest.param("resolver.pool", id="pool"),
    ],
)
def test_query_path_modules_come_from_the_build_under_test(name: str) -> None:
    origin = importlib.import_module(name).__file__ or ""
    extension = origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
    assert extension == COMPILED, origin
