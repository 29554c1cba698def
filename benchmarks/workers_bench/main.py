"""The command line: one daemon per layout and load, rounds of dnsperf, the tables."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from benchmarks.cache_bench.main import HIT_RECORDS
from benchmarks.serve_bench.dnsperf import Run, measure
from benchmarks.serve_bench.nsd import PROBE, nsd_proc
from benchmarks.serve_bench.report import (
    Row,
    git_state,
    measured_package,
    median,
    paired,
    run_warnings,
    tool_version,
)
from benchmarks.serve_bench.servers import (
    CACHE_OFF,
    DNSMASQ_COMMON,
    LOAD_CORE,
    SERVER_CORE,
    Counter,
    Proc,
    SetupError,
    UpstreamCounter,
    check_answers,
    free_port,
    ours_proc,
    process_cpu,
    query_file,
    read_queries,
    running,
)
from benchmarks.serve_bench.workloads import DISTINCT_QPS_BOUND, WORKLOADS, Inputs

DESCRIPTION = "resolver serve with 1 worker against 2 (--workers 2), cache hits and distinct names"

ONE_PINNED = "1 worker, core 0"
ONE = "1 worker, cores 0-1"
TWO = "2 workers, cores 0-1"
# Each layout: worker processes, the cores taskset allows.
LAYOUTS = {ONE_PINNED: (1, SERVER_CORE), ONE: (1, "0,1"), TWO: (2, "0,1")}
LOADS = ("hits", "distinct")
WARM_PASSES = 16  # each question from a new socket each time: every worker sees it


@dataclass
class Layout:
    """One daemon under one load, and what its runs measured."""

    proc: Proc
    row: Row
    workers_cpu: list[list[float]] = field(default_factory=list)  # per run, each worker's share
    idle: list[float] = field(default_factory=list)  # per run, the machine's idle share


def cpu_times() -> tuple[int, int]:
    """The machine's idle and total CPU time so far, in ticks (the ``cpu`` line of
    /proc/stat; idle includes iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[3] + fields[4], sum(fields)


def settle(proc: Proc, questions: Sequence[tuple[str, str]]) -> None:
    """Ask every question WARM_PASSES times, each from a socket of its own: every worker
    has started and answers (a query to one still starting waits in its buffer), and with
    the cache on, each worker's cache holds every answer."""
    for _ in range(WARM_PASSES):
        check_answers(proc, questions)


def start_loads(args: argparse.Namespace, tmp: Path) -> dict[str, tuple[Proc, Counter]]:
    """The upstream of each load: cache_bench's dnsmasq for ``hits``, NSD for ``distinct``."""
    upstreams: dict[str, tuple[Proc, Counter]] = {}
    if "hits" in args.loads:
        port = free_port()
        argv = ["taskset", "-c", LOAD_CORE, "dnsmasq", *DNSMASQ_COMMON, f"--port={port}"]
        dnsmasq = Proc("upstream dnsmasq", [*argv, *HIT_RECORDS], tmp / "upstream.log", port)
        upstreams["hits"] = (dnsmasq, UpstreamCounter(dnsmasq))
    if "distinct" in args.loads:
        upstreams["distinct"] = nsd_proc(tmp, "NSD")
    return upstreams


def layouts(tmp: Path, load: str, upstream: Proc) -> dict[str, Layout]:
    toml, probe = ("", ("www.example.com", "A")) if load == "hits" else (CACHE_OFF, PROBE)
    made = {}
    for index, (name, (workers, cores)) in enumerate(LAYOUTS.items()):
        proc = ours_proc(
            tmp, f"{load}-{index}", upstream.port, toml, probe, name, cores=cores, workers=workers
        )
        made[name] = Layout(proc, Row(name))
    return made


def run_once(
    args: argparse.Namespace,
    inputs: Inputs,
    load: str,
    layout: Layout,
    upstream: tuple[Proc, Counter],
) -> Run:
    queries = query_file("hits") if load == "hits" else inputs.next(WORKLOADS["distinct"])
    time.sleep(args.pause)
    single_pass = args.distinct_names if load == "distinct" else 0
    proc = layout.proc
    before, machine = process_cpu(proc.pid), cpu_times()
    run = measure(
        proc.name,
        proc,
        *upstream,
        queries,
        args.seconds,
        args.outstanding,
        single_pass=single_pass,
        clients=args.clients,
    )
    after, (idle, total) = process_cpu(proc.pid), cpu_times()
    layout.idle.append((idle - machine[0]) / max(1, total - machine[1]))
    workers = [after[pid] - before.get(pid, 0.0) for pid in after if pid != proc.pid]
    layout.workers_cpu.append(sorted((cpu / run.wall for cpu in workers), reverse=True))
    layout.row.runs.append(run)
    print(
        f"  {load:8} {proc.name:22} {run.qps:9,.0f} qps lost {run.lost} "
        f"cpu {run.server_cpu:.0%} {run.per_cpu_second:9,.0f} q/cpu-s "
        f"machine idle {layout.idle[-1]:.0%}",
        flush=True,
    )
    return run


def bench(args: argparse.Namespace, tmp: Path) -> dict[str, dict[str, Layout]]:
    upstreams = start_loads(args, tmp)
    daemons = {load: layouts(tmp, load, upstreams[load][0]) for load in args.loads}
    procs = [u[0] for u in upstreams.values()]
    procs += [layout.proc for made in daemons.values() for layout in made.values()]
    inputs = Inputs(tmp, args.distinct_names)
    with running(procs):
        for load, made in daemons.items():
            questions = read_queries("hits") if load == "hits" else WORKLOADS[load].checks()
            for layout in made.values():
                settle(layout.proc, questions)
        for round_ in range(args.rounds):
            print(f"round {round_ + 1} of {args.rounds}", flush=True)
            for load, made in daemons.items():
                names = list(made)
                shift = round_ % len(names)
                for name in names[shift:] + names[:shift]:
                    run_once(args, inputs, load, made[name], upstreams[load])
    return daemons


def _shares(layout: Layout) -> str:
    if not layout.workers_cpu or not layout.workers_cpu[0]:
        return "-"
    count = min(len(shares) for shares in layout.workers_cpu)
    by_rank = [median([shares[i] for shares in layout.workers_cpu]) for i in range(count)]
    return " + ".join(f"{share:.0%}" for share in by_rank)


def table(made: dict[str, Layout]) -> list[str]:
    base, unpinned = made[ONE_PINNED].row, made[ONE].row
    lines = [
        "| layout | qps (median) | qps range | lost | avg latency ms | server CPU | "
        "worker CPU | queries per CPU-s | up/q | upstream CPU | machine idle | "
        "qps vs 1 worker, core 0 | qps vs 1 worker, cores 0-1 | per CPU-s vs 1 worker, core 0 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for layout in made.values():
        row, runs = layout.row, layout.row.runs
        lines.append(
            f"| {row.server} | {row.qps:,.0f} | {row.spread()} | {row.lost} | "
            f"{median([r.latency_ms for r in runs]):.2f} | "
            f"{median([r.server_cpu for r in runs]):.0%} | {_shares(layout)} | "
            f"{row.per_cpu_second:,.0f} | "
            f"{median([r.upstream_per_query for r in runs]):.2f} | "
            f"{median([r.upstream_cpu for r in runs]):.0%} | {median(layout.idle):.0%} | "
            f"{paired(row, base):.2f}x | {paired(row, unpinned):.2f}x | "
            f"{paired(row, base, per_cpu=True):.2f}x |"
        )
    return lines


def notes(load: str, made: dict[str, Layout]) -> list[str]:
    """INFO lines with the ratios of 2 workers to 1, CHECK and WARNING lines."""
    two, pinned, unpinned = made[TWO].row, made[ONE_PINNED].row, made[ONE].row
    out = [
        f"INFO {load}: 2 workers vs 1 worker on core 0: qps {paired(two, pinned):.2f}x, "
        f"per CPU-second {paired(two, pinned, per_cpu=True):.2f}x; "
        f"vs 1 worker on cores 0-1: qps {paired(two, unpinned):.2f}x"
    ]
    for layout in made.values():
        row = layout.row
        if load == "hits":
            upstream = sum(round(r.upstream_per_query * r.completed) for r in row.runs)
            verdict = "OK" if upstream == 0 else "FAILED"
            out.append(
                f"CHECK all cache hits, {row.server}: {upstream} upstream queries during the "
                f"measured runs: {verdict}"
            )
        if row.lost:
            out.append(f"WARNING {load}: {row.server} lost {row.lost} queries")
    return out + run_warnings(load, [layout.row for layout in made.values()])


def describe(args: argparse.Namespace) -> list[str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    dnsmasq = tool_version(["dnsmasq", "--version"], r"version (\S+)")
    dnsperf = tool_version(["dnsperf", "-h"], r"Version (\S+)")
    nsd = tool_version(["nsd", "-v"], r"NSD version (\S+)")
    return [
        f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"machine: {platform.machine()}, {os.cpu_count()} cores ({cpu}), "
        f"{platform.system()} {platform.release()}, load average {load_average()}",
        f"python {platform.python_version()}, dnsmasq {dnsmasq}, NSD {nsd}, dnsperf {dnsperf}",
        f"resolver measured: {measured_package()} (tree {git_state()})",
        f"load: dnsperf -c {args.clients} -q {args.outstanding} -t 2 -l {args.seconds:g}, "
        f"{args.rounds} round(s), medians; dnsperf and the upstream on core {LOAD_CORE}",
    ]


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.workers_bench", description=DESCRIPTION
    )
    parser.add_argument("--seconds", type=float, default=6.0, help="dnsperf -l per run")
    parser.add_argument("--rounds", type=int, default=3, help="median of this many rounds")
    parser.add_argument("--outstanding", type=int, default=100, help="dnsperf -q")
    parser.add_argument("--clients", type=int, default=64, help="dnsperf -c: source ports")
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between runs")
    parser.add_argument("--quick", action="store_true", help="one round of 3 s")
    parser.add_argument(
        "--loads",
        type=lambda text: [w.strip() for w in text.split(",") if w.strip()],
        default=list(LOADS),
        help="hits, distinct or both",
    )
    parser.add_argument("--distinct-names", type=int, default=0, help="names per distinct run")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.rounds = 3.0, 1
    if args.seconds <= 0 or args.seconds > 120 or args.rounds < 1 or args.outstanding < 1:
        parser.error("need 0 < --seconds <= 120, --rounds >= 1, --outstanding >= 1")
    if not 1 <= args.clients <= 1000:
        parser.error("--clients must be from 1 to 1000")
    if not args.loads or set(args.loads) - set(LOADS):
        parser.error(f"--loads: choose from {', '.join(LOADS)}")
    if not args.distinct_names:
        args.distinct_names = math.ceil(args.seconds * DISTINCT_QPS_BOUND)
    return args


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through the finally blocks that stop the servers


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    tools = ["dnsperf", "dnsmasq", "taskset"]
    if "distinct" in args.loads:
        tools += ["nsd", "nsd-control"]
    for tool in tools:
        if shutil.which(tool) is None:
            print(f"workers_bench: {tool} is not installed", file=sys.stderr)
            return 2
    if not {0, 1} <= os.sched_getaffinity(0):
        print("workers_bench: needs cores 0 and 1", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    for line in describe(args):
        print(line)
    with tempfile.TemporaryDirectory(prefix="workers_bench.") as name:
        try:
            daemons = bench(args, Path(name))
        except SetupError as exc:
            print(f"workers_bench: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("workers_bench: interrupted; every server stopped", file=sys.stderr)
            return 130
    print(f"\nload average at the end: {load_average()}")
    for load, made in daemons.items():
        what = "cache hits, upstream dnsmasq" if load == "hits" else "distinct names, upstream NSD"
        print(f"\nload {load} ({what})")
        print("\n".join(table(made)))
    print()
    for load, made in daemons.items():
        print("\n".join(notes(load, made)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
