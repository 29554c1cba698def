"""The command lines that run our daemon (``resolver serve``) and authority (``resolver
authority``) for the benchmarks: from this checkout, from another checkout (to measure before
and after a change in one run), or from an installed build; and the TOML files they read."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks.processes import ROOT

FIXTURE_ZONES = ROOT / "fixtures" / "zones"
PYTHON = (sys.executable,)


def resolver(*args: str, python: Sequence[str] = PYTHON) -> list[str]:
    """``python -m resolver ARGS``; ``python`` is the command that runs the interpreter (see
    ``from_checkout`` and ``from_build``)."""
    return [*python, "-m", "resolver", *args]


def serve(
    *,
    listen: str | None = None,
    upstream: str | None = None,
    config: Path | None = None,
    extra: Sequence[str] = (),
    log_level: str | None = "warning",
    python: Sequence[str] = PYTHON,
) -> list[str]:
    """``resolver serve`` with the TOML file ``config``, listening on ``listen``, forwarding
    to ``upstream`` (each left out when None), then the ``extra`` options, logging at
    ``log_level`` (None: the daemon's default)."""
    return resolver(
        "serve",
        *(["--config", str(config)] if config is not None else []),
        *(["--listen", listen] if listen is not None else []),
        *(["--upstream", upstream] if upstream is not None else []),
        *extra,
        *(["--log-level", log_level] if log_level is not None else []),
        python=python,
    )


def fixture_authority(listen: str, log_level: str | None = "warning") -> list[str]:
    """``resolver authority`` serving every zone of fixtures/zones on ``listen``."""
    zones = [f"--zone={path}" for path in sorted(FIXTURE_ZONES.glob("*.zone"))]
    level = ["--log-level", log_level] if log_level is not None else []
    return resolver("authority", *zones, "--listen", listen, *level)


def from_checkout(checkout: Path) -> list[str]:
    """The command that runs Python importing ``resolver`` from another checkout (a copy of
    the tree before a change). ``python -m`` puts its working directory first on sys.path,
    so it runs in the checkout."""
    return ["env", "-C", str(checkout), f"PYTHONPATH={checkout}", sys.executable]


def from_build(build: Path) -> list[str]:
    """The command that runs Python with the package installed in ``build`` (``pip install
    --target``) first on its path: ``-P`` keeps the working directory, this checkout, off it,
    and ``env`` sets PYTHONPATH without changing the environment of anything else."""
    return ["env", f"PYTHONPATH={build}", sys.executable, "-P"]


def write_config(path: Path, text: str) -> Path:
    """The daemon's TOML file ``path`` (in the benchmark's temporary directory), holding
    ``text``; returns it."""
    path.write_text(text)
    return path
