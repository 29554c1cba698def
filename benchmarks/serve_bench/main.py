"""The command line: rounds of measurements over every server and workload, or the max_uses
sweep of ours alone."""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.dnsperf import (
    Counter,
    Run,
    dnsperf_argv,
    measure,
    parse_dnsperf,
    run_dnsperf,
)
from benchmarks.harness import (
    failures_reported,
    interrupt_on_sigterm,
    missing_cores,
    missing_tool,
    rotated,
)
from benchmarks.processes import Proc, running
from benchmarks.report import Row, load_average, median, run_figures
from benchmarks.serve_bench.nsd import PROBE, nsd_proc
from benchmarks.serve_bench.report import describe, sweep_table, table, verdicts
from benchmarks.serve_bench.servers import (
    BEFORE,
    CACHE_OFF,
    CEILING,
    COMPILED,
    DNSLIB,
    DNSMASQ,
    FLOOR,
    OURS,
    UpstreamCounter,
    before_proc,
    build_version,
    candidate_procs,
    check_answers,
    forwarder_procs,
    ours_proc,
    query_file,
    upstream_proc,
)
from benchmarks.serve_bench.workloads import (
    DISTINCT_QPS_BOUND,
    WORKLOADS,
    Inputs,
    Upstream,
    Workload,
)

PROG = "serve_bench"
DESCRIPTION = (
    "dnsperf against UDP forwarders (resolver serve, dnsmasq, a minimal uvloop floor) in front "
    "of a fast upstream on loopback: dnsmasq for the zone and unique workloads, NSD for distinct."
)


def start_upstream(kind: Upstream, tmp: Path) -> tuple[Proc, Counter]:
    if kind == "nsd":
        return nsd_proc(tmp, CEILING)
    proc = upstream_proc(tmp)
    return proc, UpstreamCounter(proc)


def run_once(
    args: argparse.Namespace,
    inputs: Inputs,
    workload: Workload,
    name: str,
    target: Proc,
    upstream: tuple[Proc, Counter],
) -> Run:
    """Measure ``target`` once on ``workload``, printing the figures as they come."""
    queries = inputs.next(workload)  # before the pause: a fresh file takes a moment to write
    time.sleep(args.pause)
    single_pass = args.distinct_names if workload.fresh else 0
    run = measure(
        name, target, *upstream, queries, args.seconds, args.outstanding, single_pass=single_pass
    )
    print(f"  {workload.name:8} {name:22} {run_figures(run)}", flush=True)
    return run


def bench(args: argparse.Namespace, tmp: Path) -> dict[str, list[Row]]:
    workloads = [WORKLOADS[w] for w in args.workloads]
    kinds = sorted({w.upstream for w in workloads})
    upstreams = {kind: start_upstream(kind, tmp) for kind in kinds}
    targets = {
        kind: {
            CEILING: upstreams[kind][0],
            **forwarder_procs(
                tmp,
                upstreams[kind][0].port,
                kind,
                upstreams[kind][0].probe,
                args.servers,
                args.compiled,
            ),
        }
        for kind in kinds
    }
    if args.before is not None:
        for kind in kinds:
            upstream = upstreams[kind][0]
            (tmp / f"before-{kind}").mkdir()
            targets[kind][BEFORE] = before_proc(
                tmp / f"before-{kind}", args.before, upstream.port, CACHE_OFF, upstream.probe
            )
    rows = {w.name: [Row(s) for s in args.servers] for w in workloads}
    inputs = Inputs(tmp, args.distinct_names)
    with running([proc for kind in kinds for proc in targets[kind].values()]):
        for workload in workloads:
            for proc in targets[workload.upstream].values():
                check_answers(proc, workload.checks())
        for round_ in range(args.rounds):
            print(f"round {round_ + 1} of {args.rounds}", flush=True)
            for workload in workloads:
                for server in rotated(args.servers, round_):
                    target = targets[workload.upstream][server]
                    run = run_once(
                        args, inputs, workload, server, target, upstreams[workload.upstream]
                    )
                    next(r for r in rows[workload.name] if r.server == server).runs.append(run)
    return rows


def sweep(args: argparse.Namespace, tmp: Path) -> list[Row]:
    """Ours alone on ``distinct``, one daemon per ``[transport.pool] max_uses`` value."""
    workload = WORKLOADS["distinct"]
    upstream = nsd_proc(tmp, CEILING)
    values = sorted(set(args.max_uses))
    names = [f"max_uses = {n}" for n in values]
    daemons = {
        name: ours_proc(
            tmp,
            f"ours-max-uses-{n}",
            upstream[0].port,
            f"{CACHE_OFF}\n[transport.pool]\nmax_uses = {n}\n",
            PROBE,
            name=name,
        )
        for name, n in zip(names, values, strict=True)
    }
    rows = {name: Row(name) for name in names}
    inputs = Inputs(tmp, args.distinct_names)
    with running([upstream[0], *daemons.values()]):
        for daemon in daemons.values():
            check_answers(daemon, workload.checks())
        for round_ in range(args.rounds):
            print(f"round {round_ + 1} of {args.rounds}", flush=True)
            for name in rotated(names, round_):
                rows[name].runs.append(
                    run_once(args, inputs, workload, name, daemons[name], upstream)
                )
    return [rows[name] for name in names]


def compare_upstreams(args: argparse.Namespace, tmp: Path) -> None:
    """Each upstream candidate alone on core 0, dnsperf on core 1, zone workload."""
    procs = candidate_procs(tmp)
    results: dict[str, list[float]] = {p.name: [] for p in procs}
    with running(procs):
        for _ in range(args.rounds):
            for proc in procs:
                time.sleep(args.pause)
                argv = dnsperf_argv(proc.port, query_file("zone"), args.seconds, args.outstanding)
                _, _, lost, qps, _, _ = parse_dnsperf(run_dnsperf(argv, args.seconds))
                results[proc.name].append(qps)
                print(f"  {proc.name:24} {qps:9,.0f} qps lost {lost}", flush=True)
    print("\n| upstream candidate | qps (median) |\n|---|---:|")
    for name, values in sorted(results.items(), key=lambda kv: -median(kv[1])):
        print(f"| {name} | {median(values):,.0f} |")


def csv_workloads(text: str) -> list[str]:
    chosen = [w.strip() for w in text.split(",") if w.strip()]
    unknown = sorted(set(chosen) - set(WORKLOADS))
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {list(WORKLOADS)}")
    return chosen


def csv_counts(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("need one or more integers, each at least 1")
    return values


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.serve_bench", description=DESCRIPTION
    )
    parser.add_argument("--seconds", type=float, default=6.0, help="dnsperf -l per run")
    parser.add_argument("--rounds", type=int, default=3, help="median of this many rounds")
    parser.add_argument("--outstanding", type=int, default=100, help="dnsperf -q")
    parser.add_argument("--workloads", type=csv_workloads, default=list(WORKLOADS))
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between runs")
    parser.add_argument("--quick", action="store_true", help="one round of 3 s")
    parser.add_argument(
        "--distinct-names",
        type=int,
        default=0,
        help=f"names per distinct run (default: seconds x {DISTINCT_QPS_BOUND:,})",
    )
    parser.add_argument("--dnslib", action="store_true", help="add dnslib's ProxyResolver")
    parser.add_argument(
        "--compiled",
        type=Path,
        metavar="DIR",
        help="add resolver serve from the build installed in DIR (pip install --target DIR "
        "of the wheel built with RESOLVER_COMPILE=1), beside the one of this checkout",
    )
    parser.add_argument(
        "--max-uses",
        type=csv_counts,
        metavar="N,N,...",
        help="instead: resolver serve alone on distinct, one daemon per [transport.pool] "
        "max_uses value, ratios to the largest",
    )
    parser.add_argument(
        "--compare-upstreams",
        action="store_true",
        help="measure the upstream candidates alone instead, and exit",
    )
    parser.add_argument(
        "--before",
        type=Path,
        metavar="CHECKOUT",
        help="also measure resolver serve imported from this checkout (a copy of the tree "
        "before a change), in the same rounds",
    )
    args = parser.parse_args(argv)
    if args.before is not None and not (args.before / "resolver" / "__init__.py").exists():
        parser.error(f"--before: no resolver package in {args.before}")
    if args.quick:
        args.seconds, args.rounds = 3.0, 1
    if args.seconds <= 0 or args.seconds > 120 or args.rounds < 1 or args.outstanding < 1:
        parser.error("need 0 < --seconds <= 120, --rounds >= 1, --outstanding >= 1")
    if not args.distinct_names:
        args.distinct_names = math.ceil(args.seconds * DISTINCT_QPS_BOUND)
    if not 1_000 <= args.distinct_names <= 20_000_000:
        parser.error("--distinct-names must be from 1,000 to 20,000,000")
    if args.compiled is not None:
        args.compiled = args.compiled.resolve()
        if not (args.compiled / "resolver").is_dir():
            parser.error(f"--compiled: no resolver package in {args.compiled}")
    args.servers = [
        CEILING,
        OURS,
        *([BEFORE] if args.before else []),
        *([COMPILED] if args.compiled else []),
        DNSMASQ,
        FLOOR,
        *([DNSLIB] if args.dnslib else []),
    ]
    return args


def tools(args: argparse.Namespace) -> list[str]:
    needed = ["dnsperf", "dnsmasq", "taskset"]
    if args.max_uses or "distinct" in args.workloads:
        needed += ["nsd", "nsd-control"]
    return needed


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if missing_tool(PROG, tools(args)) or missing_cores(PROG):
        return 2
    interrupt_on_sigterm()
    for line in describe(args):
        print(line)
    if args.compiled:
        with failures_reported(PROG):
            compiled_version = build_version(args.compiled)
        print(f"{COMPILED}: {args.compiled}, {compiled_version}")
        if not compiled_version.endswith("(compiled with mypyc)"):
            print(f"{PROG}: {args.compiled} does not hold the compiled build", file=sys.stderr)
            return 2
    if args.max_uses or "distinct" in args.workloads:
        print(f"distinct: {args.distinct_names:,} new names per run, each read once (-n 1)")
    with tempfile.TemporaryDirectory(prefix="serve_bench.") as name, failures_reported(PROG):
        tmp = Path(name)
        if args.compare_upstreams:
            compare_upstreams(args, tmp)
            return 0
        if args.max_uses:
            sweep_rows = sweep(args, tmp)
        else:
            rows = bench(args, tmp)
    print(f"\nload average at the end: {load_average()}")
    if args.max_uses:
        print(f"\nworkload distinct, {OURS} (cache off) per [transport.pool] max_uses")
        print("\n".join(sweep_table(sweep_rows)))
        return 0
    for workload, workload_rows in rows.items():
        upstream = "NSD, wildcard zone" if WORKLOADS[workload].fresh else "dnsmasq, local records"
        print(f"\nworkload {workload} (upstream: {upstream})")
        print("\n".join(table(workload_rows)))
    print()
    for workload, workload_rows in rows.items():
        print("\n".join(verdicts(workload, workload_rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
