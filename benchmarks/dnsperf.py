"""dnsperf: its command line, what its output says, and one bounded run with the CPU the
servers used meanwhile."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from benchmarks.cpu import cpu_seconds
from benchmarks.errors import SetupError
from benchmarks.processes import HOST, LOAD_CORE, Proc


class Counter(Protocol):
    """An upstream's own count of the queries it received or answered."""

    def read(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Run:
    server: str
    sent: int
    completed: int
    lost: int
    qps: float
    latency_ms: float
    rcodes: str
    server_cpu: float  # share of one core, 1.0 = 100%
    upstream_cpu: float
    upstream_per_query: float
    wall: float
    input_exhausted: bool  # a single-pass input ran out before the time limit

    @property
    def cpu_us_per_query(self) -> float:
        return self.server_cpu * self.wall / self.completed * 1e6 if self.completed else 0.0

    @property
    def per_cpu_second(self) -> float:
        """Queries answered per second of the server's own CPU time: less noisy than qps
        on a shared machine, where the server under test rarely gets its core to itself."""
        cpu = self.server_cpu * self.wall
        return self.completed / cpu if cpu else 0.0


def dnsperf_argv(
    port: int,
    queries: Path,
    seconds: float,
    outstanding: int,
    once: bool = False,
    host: str = HOST,
    clients: int = 1,
    *,
    core: str | None = LOAD_CORE,
    timeout: float | None = 2,
    mode: str | None = None,
    rate: int | None = None,
    options: Sequence[str] = (),
) -> list[str]:
    """dnsperf at host:port on ``core`` (None: not pinned), bounded by ``-l`` (and by one
    pass over the input with ``once``), from ``clients`` sockets (``-c``: source ports),
    ``outstanding`` queries in flight (``-q``), waiting ``timeout`` seconds for a reply
    (``-t``; None: dnsperf's default); ``mode`` is ``-m`` (udp, tcp, dot, doh), ``rate``
    ``-Q``, and ``options`` go last."""
    return [
        *(["taskset", "-c", core] if core is not None else []),
        "dnsperf",
        *(["-m", mode] if mode is not None else []),
        "-s",
        host,
        "-p",
        str(port),
        "-d",
        str(queries),
        "-l",
        f"{seconds:g}",
        "-c",
        str(clients),
        "-q",
        str(outstanding),
        *(["-t", f"{timeout:g}"] if timeout is not None else []),
        *(["-n", "1"] if once else []),
        *(["-Q", str(rate)] if rate is not None else []),
        *options,
    ]


def _line(text: str, label: str) -> re.Match[str]:
    match = re.search(rf"^\s*{re.escape(label)}:\s*(.+)$", text, re.MULTILINE)
    if match is None:
        raise SetupError(f"dnsperf output lacks {label!r}:\n{text}")
    return match


def _field(text: str, label: str) -> str:
    return _line(text, label).group(1).strip()


def lost_line(text: str) -> str:
    """dnsperf's ``Queries lost:`` line as it printed it (count and share), stripped."""
    return _line(text, "Queries lost").group(0).strip()


def parse_dnsperf(text: str) -> tuple[int, int, int, float, float, str]:
    """(sent, completed, lost, qps, average latency in ms, response codes) from dnsperf."""
    sent = int(_field(text, "Queries sent").split()[0])
    completed = int(_field(text, "Queries completed").split()[0])
    lost = int(_field(text, "Queries lost").split()[0])
    qps = float(_field(text, "Queries per second").split()[0])
    latency = float(_field(text, "Average Latency (s)").split()[0]) * 1000
    rcodes = re.search(r"^\s*Response codes:\s*(.*)$", text, re.MULTILINE)
    return sent, completed, lost, qps, latency, rcodes.group(1).strip() if rcodes else "-"


def run_dnsperf(argv: Sequence[str], seconds: float) -> str:
    """Run a dnsperf command line bounded by ``seconds`` (its ``-l``) to its end; its
    output. Raises SetupError when it fails."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=False)
    if done.returncode != 0:
        raise SetupError(f"dnsperf failed ({done.returncode}):\n{done.stderr}{done.stdout}")
    return done.stdout


def measure(
    server: str,
    target: Proc,
    upstream: Proc,
    counter: Counter,
    queries: Path,
    seconds: float,
    outstanding: int,
    single_pass: int = 0,
    host: str = HOST,
    prefix: Sequence[str] = (),
    clients: int = 1,
) -> Run:
    """One bounded dnsperf run at ``target`` (on host:target.port), with the CPU both
    servers used meanwhile. ``single_pass``: the number of questions in ``queries``, to be
    read once (0: loop). ``prefix`` goes before dnsperf's command line (``ip netns exec NS``
    to run it in a network namespace). The target's CPU is its whole process group's (the
    workers of ``serve --workers`` too)."""
    once = single_pass > 0
    argv = [
        *prefix,
        *dnsperf_argv(target.port, queries, seconds, outstanding, once, host, clients),
    ]
    answered_before = counter.read()
    cpu_before = (cpu_seconds(target.pid), cpu_seconds(upstream.pid))
    wall = time.monotonic()
    out = run_dnsperf(argv, seconds)
    wall = time.monotonic() - wall
    cpu_after = (cpu_seconds(target.pid), cpu_seconds(upstream.pid))
    answered = counter.read() - answered_before
    sent, completed, lost, qps, latency, rcodes = parse_dnsperf(out)
    if target is upstream:
        answered = completed  # dnsperf's own queries: one upstream query each
    return Run(
        server=server,
        sent=sent,
        completed=completed,
        lost=lost,
        qps=qps,
        latency_ms=latency,
        rcodes=rcodes,
        server_cpu=(cpu_after[0] - cpu_before[0]) / wall,
        upstream_cpu=(cpu_after[1] - cpu_before[1]) / wall,
        upstream_per_query=answered / completed if completed else 0.0,
        wall=wall,
        input_exhausted=0 < single_pass <= sent,
    )
