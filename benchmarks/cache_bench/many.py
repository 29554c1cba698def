"""Cache hits over many names: dnsperf looping over 100,000 different names (by default), every
one already cached, against ours, dnsmasq and the trivial responder.

``python -m benchmarks.cache_bench.many [--names 100000] [--seconds 5] [--rounds 2]``. Beside the
15-name ``hits`` workload (main.py), whose every repeat can be answered from the cache's
bounded store of rendered replies (10,000 at most, a second each), this one asks more names
than that store holds, so most hits go through the cache's lookup and the reply shaping.

* the upstream: NSD (benchmarks/serve_bench/nsd.py) serving ``*.wild.test. A`` with a TTL of an
  hour, so nothing expires or reaches a prefetch window during the benchmark;
* ``resolver serve`` (ours) with ``[cache] max_entries`` twice the names (defaults otherwise);
* ``dnsmasq --cache-size`` twice the names: dnsmasq 2.90 takes up to 5,000,000 (it caps larger
  values there, and warns above 10,000 that a big cache "may cause performance issues");
* the trivial uvloop responder (trivial.py): the ceiling for a Python UDP server.

The workload: ``h<N>.wild.test. A`` for N below ``--names``, in a shuffled order (seed 1),
written once. Each caching server is warmed with every name first: dnsperf reads the file once
(``-n 1``), again until a pass causes no upstream query (NSD's own counter, through
nsd-control), at most four passes. Then each round runs every server once in rotated order,
dnsperf looping over the file for ``--seconds``; a CHECK line says whether NSD saw any query
during the measured runs (it must not: every measured answer came from a cache). Server under
test alone on core 0, dnsperf and NSD on core 1. Reported as in main.py, with CPU us per query
and queries per CPU-second, and the ratios as medians of each round's ratio.

Target (issue on one home for the engine's state): ours at least 1.0x dnsmasq per CPU-second,
0 lost, printed as a VERDICT line with the qps ratio beside it; the trivial responder as INFO.
Exit status 0 whatever the verdict says, 2 when setup fails. Traffic goes to 127.0.0.1 only;
every dnsperf run is bounded (``-l``); every process is stopped on the way out.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from benchmarks.cache_bench.main import DNSMASQ, OURS, SERVER_CORE, TRIVIAL
from benchmarks.serve_bench.dnsperf import Run, measure
from benchmarks.serve_bench.nsd import ZONE, NsdCounter, nsd_proc
from benchmarks.serve_bench.report import BUSY_CPU, Row, describe, median, paired
from benchmarks.serve_bench.servers import (
    BEFORE,
    DNSMASQ_COMMON,
    HOST,
    Proc,
    SetupError,
    check_answers,
    free_port,
    running,
)

DESCRIPTION = (
    "dnsperf cache hits over many names: resolver serve vs dnsmasq vs a trivial uvloop responder"
)
UPSTREAM = "upstream NSD"
SERVERS = (OURS, DNSMASQ, TRIVIAL)
TARGET_VS_DNSMASQ = 1.0  # queries per CPU-second
TTL = 3600
DNSMASQ_CACHE_MAX = 5_000_000  # what dnsmasq 2.90 accepts for --cache-size
WARM_PASSES = 4


def names_file(tmp: Path, names: int) -> Path:
    order = list(range(names))
    random.Random(1).shuffle(order)
    path = tmp / "many.txt"
    path.write_text("".join(f"h{i}.{ZONE} A\n" for i in order))
    return path


def procs(
    tmp: Path, names: int, before: Path | None = None
) -> tuple[Proc, NsdCounter, dict[str, Proc]]:
    upstream, counter = nsd_proc(tmp, UPSTREAM, ttl=TTL)
    probe = (f"probe.{ZONE}", "A")
    entries = 2 * names
    config = tmp / "ours.toml"
    config.write_text(f"[cache]\nmax_entries = {entries}\n")
    pinned = ["taskset", "-c", SERVER_CORE]
    ours, dnsmasq, trivial = free_port(), free_port(), free_port()
    servers = {
        OURS: Proc(
            OURS,
            [*pinned, sys.executable, "-m", "resolver", "serve", "--config", str(config),
             "--listen", f"{HOST}:{ours}", "--upstream", f"{HOST}:{upstream.port}",
             "--log-level", "warning"],
            tmp / "ours.log",
            ours,
            probe,
        ),
        DNSMASQ: Proc(
            DNSMASQ,
            [*pinned, "dnsmasq", *DNSMASQ_COMMON,
             f"--cache-size={min(entries, DNSMASQ_CACHE_MAX)}",
             f"--server={HOST}#{upstream.port}", f"--port={dnsmasq}"],
            tmp / "dnsmasq.log",
            dnsmasq,
            probe,
        ),
        TRIVIAL: Proc(
            TRIVIAL,
            [*pinned, sys.executable, "-m", "benchmarks.cache_bench.trivial", "--port",
             str(trivial)],
            tmp / "trivial.log",
            trivial,
        ),
    }  # fmt: skip
    if before is not None:
        # The same daemon imported from another checkout (``python -m`` puts its working
        # directory first on sys.path: it runs there), to measure a change in the same run.
        port = free_port()
        servers[BEFORE] = Proc(
            BEFORE,
            [*pinned, "env", "-C", str(before), f"PYTHONPATH={before}", sys.executable, "-m",
             "resolver", "serve", "--config", str(config), "--listen", f"{HOST}:{port}",
             "--upstream", f"{HOST}:{upstream.port}", "--log-level", "warning"],
            tmp / "before.log",
            port,
            probe,
        )  # fmt: skip
    return upstream, counter, servers


def upstream_queries(run: Run) -> int:
    return round(run.upstream_per_query * run.completed)


def warm(
    servers: dict[str, Proc], upstream: Proc, counter: NsdCounter, queries: Path, names: int
) -> dict[str, list[int]]:
    """Every name through each caching server, pass after pass until one causes no upstream
    query; the upstream queries of each pass. Raises SetupError if a cache never fills."""
    caused: dict[str, list[int]] = {}
    for name in [s for s in servers if s != TRIVIAL]:
        caused[name] = []
        for _ in range(WARM_PASSES):
            run = measure(
                name, servers[name], upstream, counter, queries, 60.0, 100, single_pass=names
            )
            caused[name].append(upstream_queries(run))
            print(
                f"  warm-up {name:26} {run.completed:,} answered ({run.lost} lost), upstream "
                f"queries {caused[name][-1]:,}",
                flush=True,
            )
            if caused[name][-1] == 0 and run.lost == 0:
                break
        else:
            raise SetupError(f"{name}: still asking the upstream after {WARM_PASSES} passes")
    return caused


def bench(args: argparse.Namespace, tmp: Path) -> tuple[dict[str, Row], dict[str, list[int]]]:
    upstream, counter, servers = procs(tmp, args.names, args.before)
    queries = names_file(tmp, args.names)
    order = [*SERVERS, *([BEFORE] if args.before is not None else [])]
    rows = {s: Row(s) for s in order}
    with running([upstream, *servers.values()]):
        for name in order:
            check_answers(servers[name], [(f"check.{ZONE}", "A")])
        warmed = warm(servers, upstream, counter, queries, args.names)
        for round_ in range(args.rounds):
            shift = round_ % len(order)
            for server in order[shift:] + order[:shift]:
                time.sleep(args.pause)
                run = measure(
                    server,
                    servers[server],
                    upstream,
                    counter,
                    queries,
                    args.seconds,
                    args.outstanding,
                )
                rows[server].runs.append(run)
                print(
                    f"  round {round_ + 1} {server:26} {run.qps:9,.0f} qps lost {run.lost} "
                    f"cpu {run.server_cpu:.0%} {run.per_cpu_second:9,.0f} q/cpu-s upstream "
                    f"{upstream_queries(run)} rcodes {run.rcodes}",
                    flush=True,
                )
    return rows, warmed


def _x(value: float) -> str:
    return f"{value:.2f}x" if value else "-"


def table(rows: dict[str, Row]) -> list[str]:
    dnsmasq, trivial = rows[DNSMASQ], rows[TRIVIAL]
    lines = [
        "| server | qps (median) | qps range | lost | avg latency ms | server CPU | CPU us/query | "
        "queries per CPU-s | upstream queries | qps vs dnsmasq | per CPU-s vs dnsmasq | "
        "per CPU-s vs trivial |",
        "|---|" + "---:|" * 11,
    ]
    for row in rows.values():
        runs = row.runs
        lines.append(
            f"| {row.server} | {row.qps:,.0f} | {row.spread()} | {row.lost} | "
            f"{median([r.latency_ms for r in runs]):.2f} | "
            f"{median([r.server_cpu for r in runs]):.0%} | "
            f"{median([r.cpu_us_per_query for r in runs]):.1f} | "
            f"{row.per_cpu_second:,.0f} | "
            f"{sum(upstream_queries(r) for r in runs) if row.server != TRIVIAL else '-'} | "
            f"{_x(paired(row, dnsmasq))} | {_x(paired(row, dnsmasq, per_cpu=True))} | "
            f"{_x(paired(row, trivial, per_cpu=True))} |"
        )
    return lines


def _met(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def verdicts(rows: dict[str, Row], warmed: dict[str, list[int]], names: int) -> list[str]:
    ours = rows[OURS]
    per_cpu = paired(ours, rows[DNSMASQ], per_cpu=True)
    out = [
        f"VERDICT many: per CPU-second vs dnsmasq {per_cpu:.2f}x (target >= "
        f"{TARGET_VS_DNSMASQ}x): {_met(per_cpu >= TARGET_VS_DNSMASQ)}; qps "
        f"{paired(ours, rows[DNSMASQ]):.2f}x; {names:,} names",
        f"INFO many: vs trivial responder per CPU-second "
        f"{paired(ours, rows[TRIVIAL], per_cpu=True):.2f}x; qps {paired(ours, rows[TRIVIAL]):.2f}x",
        f"VERDICT many: lost queries {ours.lost} (target 0): {_met(ours.lost == 0)}",
    ]
    if BEFORE in rows:
        out.append(
            f"INFO many: {OURS} vs {BEFORE}: qps {paired(ours, rows[BEFORE]):.2f}x; per "
            f"CPU-second {paired(ours, rows[BEFORE], per_cpu=True):.2f}x"
        )
    for name in [s for s in rows if s != TRIVIAL]:
        during = sum(upstream_queries(r) for r in rows[name].runs)
        out.append(
            f"CHECK all cache hits, {name}: upstream queries per warm-up pass "
            f"{', '.join(f'{n:,}' for n in warmed[name])}; {during} during the measured runs: "
            f"{'OK' if during == 0 else 'FAILED'}"
        )
    for row in rows.values():
        cpu = median([r.server_cpu for r in row.runs])
        if cpu < BUSY_CPU:
            out.append(
                f"WARNING: {row.server} used {cpu:.0%} of its core (median): it did not get "
                "the core or was not CPU-bound, so its qps says less than its queries per "
                "CPU-second"
            )
        if row.lost and row.server != OURS:
            out.append(f"WARNING: {row.server} lost {row.lost} queries")
        odd = sorted({r.rcodes for r in row.runs if "NOERROR 100" not in r.rcodes.replace("(", "")})
        odd = [c for c in odd if "(100.00%)" not in c]
        if odd:
            out.append(f"WARNING: {row.server} response codes: {odd}")
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cache_bench.many", description=DESCRIPTION
    )
    parser.add_argument("--names", type=int, default=100_000, help="different names cached")
    parser.add_argument("--seconds", type=float, default=5.0, help="dnsperf -l per run")
    parser.add_argument("--rounds", type=int, default=2, help="median of this many rounds")
    parser.add_argument("--outstanding", type=int, default=100, help="dnsperf -q")
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between runs")
    parser.add_argument(
        "--before",
        type=Path,
        metavar="CHECKOUT",
        help="also run resolver serve imported from CHECKOUT (a copy of the tree before a "
        "change), in the same rounds",
    )
    args = parser.parse_args(argv)
    if args.before is not None:
        args.before = args.before.resolve()
        if not (args.before / "resolver" / "__init__.py").exists():
            parser.error(f"--before: no resolver package in {args.before}")
    if not (0 < args.seconds <= 60 and 1 <= args.rounds <= 20 and args.outstanding >= 1):
        parser.error("need 0 < --seconds <= 60, 1 <= --rounds <= 20, --outstanding >= 1")
    if not 1_000 <= args.names <= DNSMASQ_CACHE_MAX // 2:
        parser.error(f"--names must be from 1,000 to {DNSMASQ_CACHE_MAX // 2:,}")
    return args


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through the finally blocks that stop the servers


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("dnsperf", "dnsmasq", "nsd", "nsd-control", "taskset"):
        if shutil.which(tool) is None:
            print(f"cache_bench.many: {tool} is not installed", file=sys.stderr)
            return 2
    if not {0, 1} <= os.sched_getaffinity(0):
        print("cache_bench.many: needs cores 0 and 1", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    for line in describe(args):
        print(line)
    print(f"workload many: {args.names:,} names under {ZONE} (NSD, TTL {TTL}), every one cached")
    with tempfile.TemporaryDirectory(prefix="cache_bench_many.") as name:
        try:
            rows, warmed = bench(args, Path(name))
        except SetupError as exc:
            print(f"cache_bench.many: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("cache_bench.many: interrupted; every server stopped", file=sys.stderr)
            return 130
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    print("\n".join(table(rows)))
    print()
    print("\n".join(verdicts(rows, warmed, args.names)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
