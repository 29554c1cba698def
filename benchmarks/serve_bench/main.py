"""The command line: rounds of measurements over every server and workload."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from benchmarks.serve_bench.dnsperf import dnsperf_argv, measure, parse_dnsperf
from benchmarks.serve_bench.report import Row, describe, median, table, verdicts
from benchmarks.serve_bench.servers import (
    CEILING,
    SERVERS,
    WORKLOADS,
    SetupError,
    UpstreamCounter,
    candidate_procs,
    check_answers,
    forwarder_procs,
    read_queries,
    running,
    upstream_proc,
)

DESCRIPTION = "dnsperf against three UDP forwarders in front of one fast upstream on loopback."


def bench(args: argparse.Namespace, tmp: Path) -> dict[str, list[Row]]:
    upstream = upstream_proc(tmp)
    forwarders = forwarder_procs(tmp, upstream.port)
    targets = {CEILING: upstream, **forwarders}
    rows = {w: [Row(s) for s in SERVERS] for w in args.workloads}
    with running([upstream, *forwarders.values()]):
        for proc in targets.values():
            for workload in args.workloads:
                check_answers(proc, read_queries(workload)[:20])
        counter = UpstreamCounter(upstream)
        for round_ in range(args.rounds):
            order = SERVERS[round_ % len(SERVERS) :] + SERVERS[: round_ % len(SERVERS)]
            for workload in args.workloads:
                for server in order:
                    time.sleep(args.pause)
                    run = measure(
                        server,
                        targets[server],
                        upstream,
                        counter,
                        workload,
                        args.seconds,
                        args.outstanding,
                    )
                    next(r for r in rows[workload] if r.server == server).runs.append(run)
                    print(
                        f"  round {round_ + 1} {workload:6} {server:22} {run.qps:9,.0f} qps "
                        f"lost {run.lost} cpu {run.server_cpu:.0%}",
                        flush=True,
                    )
    return rows


def compare_upstreams(args: argparse.Namespace, tmp: Path) -> None:
    """Each upstream candidate alone on core 0, dnsperf on core 1, zone workload."""
    procs = candidate_procs(tmp)
    results: dict[str, list[float]] = {p.name: [] for p in procs}
    with running(procs):
        for _ in range(args.rounds):
            for proc in procs:
                time.sleep(args.pause)
                argv = dnsperf_argv(proc.port, "zone", args.seconds, args.outstanding)
                done = subprocess.run(
                    argv, capture_output=True, text=True, timeout=args.seconds + 30, check=False
                )
                _, _, lost, qps, _, _ = parse_dnsperf(done.stdout)
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
        "--compare-upstreams",
        action="store_true",
        help="measure the upstream candidates alone instead, and exit",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.rounds = 3.0, 1
    if args.seconds <= 0 or args.seconds > 120 or args.rounds < 1 or args.outstanding < 1:
        parser.error("need 0 < --seconds <= 120, --rounds >= 1, --outstanding >= 1")
    return args


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through the finally blocks that stop the servers


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("dnsperf", "dnsmasq", "taskset"):
        if shutil.which(tool) is None:
            print(f"serve_bench: {tool} is not installed", file=sys.stderr)
            return 2
    if len(os.sched_getaffinity(0)) < 2:
        print("serve_bench: needs cores 0 and 1", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    for line in describe(args):
        print(line)
    with tempfile.TemporaryDirectory(prefix="serve_bench.") as name:
        tmp = Path(name)
        try:
            if args.compare_upstreams:
                compare_upstreams(args, tmp)
                return 0
            rows = bench(args, tmp)
        except SetupError as exc:
            print(f"serve_bench: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("serve_bench: interrupted; every server stopped", file=sys.stderr)
            return 130
    for workload, workload_rows in rows.items():
        print(f"\nworkload {workload} (queries/{workload}.txt)")
        print("\n".join(table(workload_rows)))
    print()
    for workload, workload_rows in rows.items():
        print("\n".join(verdicts(workload, workload_rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
