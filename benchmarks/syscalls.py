"""System calls per forwarded query: ``resolver serve`` (forwarding, cache off) beside the floor
forwarder, both in front of NSD serving a wildcard zone, every query a name never asked.

``python -m benchmarks.syscalls [--seconds 4] [--rate 2000] [--tool perf|strace] [--before DIR]``
starts NSD (benchmarks/serve_bench/nsd.py) and dnsperf on core 1, and each forwarder alone on
core 0: ours (``[cache] enabled = false``, defaults otherwise) and the floor
(benchmarks/serve_bench/floor.py). For each forwarder in turn it attaches the tracer to the
process (``perf trace -s -p PID``, or ``strace -c -f -p PID`` with ``--tool strace``), runs
dnsperf for ``--seconds`` at a fixed ``--rate`` (``-Q``: the same arrival pattern for both, so
the same number of datagrams waits per wake-up; a tracer slows a process, and an unbounded
load would measure how far behind each one falls), detaches, and divides each system call's
count (and its failures) by the queries dnsperf completed. The table has one row per system
call with calls per query for both, failures in brackets. ``--before DIR`` adds a third
server, ``resolver serve`` imported from another checkout (``PYTHONPATH=DIR``; a ``git
worktree`` of the commit before a change): before and after, measured in the same run.

Traffic goes to 127.0.0.1 only; every dnsperf run reads a file of new names once and stops by
itself (``-n 1``, ``-l``); every process started is in its own process group and is stopped on
the way out, SIGTERM and Ctrl-C included. Needs root (or ptrace rights over the children),
dnsperf, NSD with nsd-control, taskset, and perf or strace.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.dnsperf import dnsperf_argv, parse_dnsperf, run_dnsperf
from benchmarks.errors import SetupError
from benchmarks.harness import (
    failures_reported,
    interrupt_on_sigterm,
    missing_cores,
    missing_tool,
)
from benchmarks.processes import running
from benchmarks.report import git_state, load_average, now
from benchmarks.serve_bench.nsd import ZONE, nsd_proc
from benchmarks.serve_bench.servers import (
    BEFORE,
    CACHE_OFF,
    CEILING,
    FLOOR,
    OURS,
    before_proc,
    check_answers,
    forwarder_procs,
)

PROG = "syscalls"
SERVERS = (OURS, FLOOR)


@dataclass(frozen=True, slots=True)
class Count:
    calls: int
    errors: int


@dataclass(frozen=True, slots=True)
class Traced:
    server: str
    completed: int
    lost: int
    qps: float
    counts: dict[str, Count]

    def per_query(self, syscall: str) -> tuple[float, float]:
        count = self.counts.get(syscall, Count(0, 0))
        if not self.completed:
            return 0.0, 0.0
        return count.calls / self.completed, count.errors / self.completed

    @property
    def total(self) -> float:
        return sum(c.calls for c in self.counts.values()) / self.completed if self.completed else 0


# strace -c: "% time  seconds  usecs/call  calls  errors syscall" (errors may be blank).
_STRACE_ROW = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(\d+)?\s*([a-z_0-9]+)\s*$")
# perf trace -s: "   syscall   calls  errors  total  min  avg  max  stddev" per thread.
_PERF_ROW = re.compile(r"^\s+([a-z_0-9]+)\s+(\d+)\s+(\d+)\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+")


def parse_strace(text: str) -> dict[str, Count]:
    counts: dict[str, Count] = {}
    for line in text.splitlines():
        match = _STRACE_ROW.match(line)
        if match and match.group(3) != "total":
            calls, errors = int(match.group(1)), int(match.group(2) or 0)
            counts[match.group(3)] = Count(calls, errors)
    return counts


def parse_perf(text: str) -> dict[str, Count]:
    """Sums the per-thread summaries of ``perf trace -s``."""
    counts: dict[str, Count] = {}
    for line in text.splitlines():
        match = _PERF_ROW.match(line)
        if match:
            name, calls, errors = match.group(1), int(match.group(2)), int(match.group(3))
            old = counts.get(name, Count(0, 0))
            counts[name] = Count(old.calls + calls, old.errors + errors)
    return counts


def tracer_argv(tool: str, pid: int, out: Path) -> list[str]:
    if tool == "perf":
        return ["perf", "trace", "-s", "-p", str(pid), "-o", str(out)]
    return ["strace", "-c", "-f", "-p", str(pid), "-o", str(out)]


def names_file(directory: Path, run: int, count: int) -> Path:
    path = directory / "names.txt"
    path.write_text("".join(f"q{i}.s{run:03d}.{ZONE} A\n" for i in range(count)))
    return path


def trace_one(
    args: argparse.Namespace, server: str, pid: int, port: int, queries: Path, tmp: Path
) -> Traced:
    """Attach the tracer to ``pid``, run dnsperf at ``port``, detach, and read the counts."""
    out = tmp / f"trace-{server.split()[0]}.txt"
    tracer = subprocess.Popen(
        tracer_argv(args.tool, pid, out),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        time.sleep(1.0)  # attached (perf opens its events, strace seizes every thread)
        if tracer.poll() is not None:
            error = tracer.stderr.read().decode() if tracer.stderr else ""
            raise SetupError(f"{args.tool} exited: {error}")
        argv = dnsperf_argv(port, queries, args.seconds, 100, once=True, rate=args.rate)
        report = run_dnsperf(argv, args.seconds)
        time.sleep(0.2)  # the last replies' wake-ups
    finally:
        if tracer.poll() is None:
            os.killpg(tracer.pid, signal.SIGINT)
        try:
            tracer.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(tracer.pid, signal.SIGKILL)
            tracer.wait(5)
    _, completed, lost, qps, _, _ = parse_dnsperf(report)
    text = out.read_text() if out.exists() else ""
    counts = parse_perf(text) if args.tool == "perf" else parse_strace(text)
    if not counts:
        raise SetupError(f"no system call counts from {args.tool}:\n{text[-2000:]}")
    return Traced(server, completed, lost, qps, counts)


def bench(args: argparse.Namespace, tmp: Path) -> list[Traced]:
    nsd, _ = nsd_proc(tmp, CEILING)
    probe = (f"check.{ZONE}", "A")
    forwarders = forwarder_procs(tmp, nsd.port, "nsd", probe, [CEILING, *SERVERS])
    if args.before is not None:
        forwarders[BEFORE] = before_proc(tmp, args.before, nsd.port, CACHE_OFF, probe)
    results = []
    with running([nsd, *forwarders.values()]):
        for proc in forwarders.values():
            check_answers(proc, [(f"check{i}.{ZONE}", "A") for i in range(5)])
        run = 0
        for round_ in range(args.rounds):
            for server in args.servers:
                run += 1
                queries = names_file(tmp, run, int(args.rate * args.seconds * 1.2) + 100)
                proc = forwarders[server]
                traced = trace_one(args, server, proc.pid, proc.port, queries, tmp)
                print(
                    f"  round {round_ + 1} {server:16} {traced.completed:7,} queries "
                    f"({traced.qps:,.0f} qps, {traced.lost} lost), "
                    f"{traced.total:.2f} system calls per query",
                    flush=True,
                )
                results.append(traced)
    return results


def merged(runs: Sequence[Traced], server: str) -> Traced:
    """One server's runs summed."""
    mine = [r for r in runs if r.server == server]
    counts: dict[str, Count] = {}
    for run in mine:
        for name, count in run.counts.items():
            old = counts.get(name, Count(0, 0))
            counts[name] = Count(old.calls + count.calls, old.errors + count.errors)
    return Traced(
        server,
        sum(r.completed for r in mine),
        sum(r.lost for r in mine),
        sum(r.qps for r in mine) / len(mine),
        counts,
    )


def table(results: Sequence[Traced], servers: Sequence[str]) -> list[str]:
    rows = [merged(results, server) for server in servers]
    names = sorted(
        {n for row in rows for n in row.counts},
        key=lambda n: -max(row.per_query(n)[0] for row in rows),
    )

    def cell(row: Traced, name: str) -> str:
        calls, errors = row.per_query(name)
        if not calls:
            return "-"
        return f"{calls:.3f}" + (f" ({errors:.3f} failed)" if errors else "")

    lines = [
        "| system call | " + " | ".join(f"{row.server} per query" for row in rows) + " |",
        "|---|" + "---:|" * len(rows),
    ]
    for name in names:
        if max(row.per_query(name)[0] for row in rows) < 0.0005:
            continue
        lines.append(f"| {name} | " + " | ".join(cell(row, name) for row in rows) + " |")
    lines.append("| **all** | " + " | ".join(f"**{row.total:.2f}**" for row in rows) + " |")
    lines.append(
        "| queries traced (lost) | "
        + " | ".join(f"{row.completed:,} ({row.lost})" for row in rows)
        + " |"
    )
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.syscalls",
        description="system calls per forwarded query: resolver serve (cache off) beside the "
        "floor forwarder, NSD upstream, distinct names, at a fixed rate",
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="dnsperf -l per run")
    parser.add_argument("--rate", type=int, default=2000, help="dnsperf -Q: queries/s")
    parser.add_argument("--rounds", type=int, default=1, help="runs per server, summed")
    parser.add_argument(
        "--tool",
        choices=("perf", "strace"),
        default="perf" if shutil.which("perf") else "strace",
        help="perf trace -s (default when installed) or strace -c -f",
    )
    parser.add_argument(
        "--before",
        type=Path,
        metavar="CHECKOUT",
        help="also trace resolver serve imported from this checkout (PYTHONPATH), e.g. a "
        "git worktree of the commit before a change",
    )
    args = parser.parse_args(argv)
    args.servers = [OURS, *([BEFORE] if args.before else []), FLOOR]
    if args.before is not None and not (args.before / "resolver" / "__init__.py").exists():
        parser.error(f"--before: no resolver package in {args.before}")
    if not (0 < args.seconds <= 30 and 100 <= args.rate <= 100_000 and 1 <= args.rounds <= 5):
        parser.error("need 0 < --seconds <= 30, 100 <= --rate <= 100000, 1 <= --rounds <= 5")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if missing_tool(PROG, ("dnsperf", "nsd", "nsd-control", "taskset", args.tool)):
        return 2
    if missing_cores(PROG):
        return 2
    interrupt_on_sigterm()
    print(
        f"date: {now()}; resolver tree {git_state()}; "
        f"{args.tool}; dnsperf -Q {args.rate} -l {args.seconds:g} -n 1, distinct names under "
        f"{ZONE} (NSD); {args.rounds} run(s) per server; load average {load_average()}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="syscalls.") as name, failures_reported(PROG):
        results = bench(args, Path(name))
    print()
    print("\n".join(table(results, args.servers)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
