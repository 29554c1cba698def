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
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.cache_bench.main import DNSMASQ, OURS, TRIVIAL, trivial_proc
from benchmarks.dnsperf import Run, measure
from benchmarks.errors import SetupError
from benchmarks.harness import (
    failures_reported,
    interrupt_on_sigterm,
    missing_cores,
    missing_tool,
    rotated,
)
from benchmarks.processes import Proc, running
from benchmarks.report import (
    Row,
    busy_warning,
    leading_cells,
    leading_header,
    load_average,
    met,
    paired,
    run_figures,
    times,
)
from benchmarks.serve_bench.nsd import ZONE, NsdCounter, nsd_proc
from benchmarks.serve_bench.report import describe
from benchmarks.serve_bench.servers import (
    BEFORE,
    before_proc,
    check_answers,
    dnsmasq_proc,
    ours_proc,
)

PROG = "cache_bench.many"
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
    toml = f"[cache]\nmax_entries = {entries}\n"
    servers = {
        OURS: ours_proc(tmp, "ours", upstream.port, toml, probe, OURS),
        DNSMASQ: dnsmasq_proc(tmp, DNSMASQ, upstream.port, min(entries, DNSMASQ_CACHE_MAX), probe),
        TRIVIAL: trivial_proc(tmp),
    }
    if before is not None:
        # The same daemon imported from another checkout, to measure a change in the same run.
        servers[BEFORE] = before_proc(tmp, before, upstream.port, toml, probe)
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
            for server in rotated(order, round_):
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
                    f"  round {round_ + 1} {server:26} {run_figures(run)} upstream "
                    f"{upstream_queries(run)} rcodes {run.rcodes}",
                    flush=True,
                )
    return rows, warmed


def table(rows: dict[str, Row]) -> list[str]:
    dnsmasq, trivial = rows[DNSMASQ], rows[TRIVIAL]
    lines = [
        leading_header() + "CPU us/query | queries per CPU-s | upstream queries | qps vs dnsmasq | "
        "per CPU-s vs dnsmasq | per CPU-s vs trivial |",
        "|---|" + "---:|" * 11,
    ]
    for row in rows.values():
        runs = row.runs
        lines.append(
            leading_cells(row) + f"{row.cpu_us_per_query:.1f} | {row.per_cpu_second:,.0f} | "
            f"{sum(upstream_queries(r) for r in runs) if row.server != TRIVIAL else '-'} | "
            f"{times(paired(row, dnsmasq))} | {times(paired(row, dnsmasq, per_cpu=True))} | "
            f"{times(paired(row, trivial, per_cpu=True))} |"
        )
    return lines


def verdicts(rows: dict[str, Row], warmed: dict[str, list[int]], names: int) -> list[str]:
    ours = rows[OURS]
    per_cpu = paired(ours, rows[DNSMASQ], per_cpu=True)
    out = [
        f"VERDICT many: per CPU-second vs dnsmasq {per_cpu:.2f}x (target >= "
        f"{TARGET_VS_DNSMASQ}x): {met(per_cpu >= TARGET_VS_DNSMASQ)}; qps "
        f"{paired(ours, rows[DNSMASQ]):.2f}x; {names:,} names",
        f"INFO many: vs trivial responder per CPU-second "
        f"{paired(ours, rows[TRIVIAL], per_cpu=True):.2f}x; qps {paired(ours, rows[TRIVIAL]):.2f}x",
        f"VERDICT many: lost queries {ours.lost} (target 0): {met(ours.lost == 0)}",
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
        busy = busy_warning(row)
        if busy is not None:
            out.append(busy)
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


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if missing_tool(PROG, ("dnsperf", "dnsmasq", "nsd", "nsd-control", "taskset")):
        return 2
    if missing_cores(PROG):
        return 2
    interrupt_on_sigterm()
    for line in describe(args):
        print(line)
    print(f"workload many: {args.names:,} names under {ZONE} (NSD, TTL {TTL}), every one cached")
    with tempfile.TemporaryDirectory(prefix="cache_bench_many.") as name, failures_reported(PROG):
        rows, warmed = bench(args, Path(name))
    print(f"\nload average at the end: {load_average()}\n")
    print("\n".join(table(rows)))
    print()
    print("\n".join(verdicts(rows, warmed, args.names)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
