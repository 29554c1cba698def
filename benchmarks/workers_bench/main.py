"""The command line: one daemon per layout and load, rounds of dnsperf, the tables."""

from __future__ import annotations

import argparse
import math
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.cache_bench.main import HIT_RECORDS
from benchmarks.cpu import machine_times, process_cpu
from benchmarks.dnsperf import Counter, Run, measure
from benchmarks.harness import (
    failures_reported,
    interrupt_on_sigterm,
    missing_cores,
    missing_tool,
    rotated,
)
from benchmarks.processes import LOAD_CORE, SERVER_CORE, Proc, running
from benchmarks.report import (
    Row,
    git_state,
    leading_cells,
    leading_header,
    load_average,
    machine,
    measured_package,
    median,
    now,
    paired,
    run_figures,
    version_of,
)
from benchmarks.serve_bench.nsd import PROBE, nsd_proc
from benchmarks.serve_bench.report import run_warnings
from benchmarks.serve_bench.servers import (
    CACHE_OFF,
    UpstreamCounter,
    check_answers,
    ours_proc,
    query_file,
    read_queries,
    upstream_proc,
)
from benchmarks.serve_bench.workloads import DISTINCT_QPS_BOUND, WORKLOADS, Inputs

PROG = "workers_bench"
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
        dnsmasq = upstream_proc(tmp, HIT_RECORDS, "upstream dnsmasq")
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
    before, machine_before = process_cpu(proc.pid), machine_times()
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
    after, (idle, total) = process_cpu(proc.pid), machine_times()
    layout.idle.append((idle - machine_before[0]) / max(1, total - machine_before[1]))
    workers = [after[pid] - before.get(pid, 0.0) for pid in after if pid != proc.pid]
    layout.workers_cpu.append(sorted((cpu / run.wall for cpu in workers), reverse=True))
    layout.row.runs.append(run)
    print(
        f"  {load:8} {proc.name:22} {run_figures(run)} machine idle {layout.idle[-1]:.0%}",
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
                for name in rotated(list(made), round_):
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
        leading_header("layout")
        + "worker CPU | queries per CPU-s | up/q | upstream CPU | machine idle | "
        "qps vs 1 worker, core 0 | qps vs 1 worker, cores 0-1 | per CPU-s vs 1 worker, core 0 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for layout in made.values():
        row = layout.row
        lines.append(
            leading_cells(row) + f"{_shares(layout)} | {row.per_cpu_second:,.0f} | "
            f"{row.upstream_per_query:.2f} | {row.upstream_cpu:.0%} | {median(layout.idle):.0%} | "
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
    return [
        f"date: {now()}",
        machine(),
        f"python {platform.python_version()}, dnsmasq {version_of('dnsmasq')}, "
        f"NSD {version_of('nsd')}, dnsperf {version_of('dnsperf')}",
        f"resolver measured: {measured_package()} (tree {git_state()})",
        f"load: dnsperf -c {args.clients} -q {args.outstanding} -t 2 -l {args.seconds:g}, "
        f"{args.rounds} round(s), medians; dnsperf and the upstream on core {LOAD_CORE}",
    ]


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


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    tools = ["dnsperf", "dnsmasq", "taskset"]
    if "distinct" in args.loads:
        tools += ["nsd", "nsd-control"]
    if missing_tool(PROG, tools) or missing_cores(PROG):
        return 2
    interrupt_on_sigterm()
    for line in describe(args):
        print(line)
    with tempfile.TemporaryDirectory(prefix="workers_bench.") as name, failures_reported(PROG):
        daemons = bench(args, Path(name))
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
