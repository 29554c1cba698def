"""The image itself, as the tests service runs it: an unprivileged user, the compiled build,
and the offline demo."""

from __future__ import annotations

import os
import subprocess


def test_the_image_runs_as_an_unprivileged_user() -> None:
    assert os.getuid() != 0


def test_the_demo_runs_inside_the_image() -> None:
    done = subprocess.run(
        ["resolver", "demo"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "everything closed" in done.stdout


def test_the_image_ships_the_compiled_build() -> None:
    done = subprocess.run(
        ["resolver", "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("(compiled with mypyc)\n"), done.stdout
