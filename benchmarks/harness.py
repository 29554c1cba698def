"""What every benchmark that starts servers does around its measurements: check that its tools
and cores are there, turn SIGTERM into KeyboardInterrupt (so the ``finally`` blocks that stop
the servers run), and end with a one-line message and exit status 2 when setup fails, 130 when
interrupted."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
from collections.abc import Iterable, Iterator, Sequence
from types import FrameType
from typing import TypeVar

from benchmarks.errors import SetupError

T = TypeVar("T")


def missing_tool(prog: str, tools: Iterable[str]) -> bool:
    """Whether a tool of ``tools`` is not installed; says which on stderr."""
    for tool in tools:
        if shutil.which(tool) is None:
            print(f"{prog}: {tool} is not installed", file=sys.stderr)
            return True
    return False


def missing_cores(prog: str) -> bool:
    """Whether this process may not run on both cores 0 and 1 (the server core and the load
    core); says so on stderr."""
    if {0, 1} <= os.sched_getaffinity(0):
        return False
    print(f"{prog}: needs cores 0 and 1", file=sys.stderr)
    return True


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through the finally blocks that stop the servers


def interrupt_on_sigterm() -> None:
    """SIGTERM from now on raises KeyboardInterrupt, as Ctrl-C does."""
    signal.signal(signal.SIGTERM, _terminate)


@contextlib.contextmanager
def failures_reported(prog: str) -> Iterator[None]:
    """A SetupError inside ends the process with its message and status 2; an interruption
    with status 130. Every server has been stopped by then (their ``finally`` blocks ran)."""
    try:
        yield
    except SetupError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; every server stopped", file=sys.stderr)
        raise SystemExit(130) from None


def rotated(items: Sequence[T], round_: int) -> list[T]:
    """``items`` in the order of round ``round_`` (from 0): each round starts one further on,
    so that no server always runs first."""
    shift = round_ % len(items)
    return [*items[shift:], *items[:shift]]
