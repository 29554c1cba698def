"""Cold-cache recursive resolution, queries per second: our daemon in recursive mode against
Unbound with one thread, in the same run, over the same hierarchy.

``python -m benchmarks.recursive_bench [--no-ours]`` builds the fixture hierarchy in a network
namespace of its own (benchmarks/hierarchy.py: one NSD per server address, on port 53) and
starts in it, each alone on core 0: Unbound (``num-threads: 1``, iterator only), the serve
benchmark's floor forwarder (the least a uvloop program can do per query: here it relays each
question to wild.test.'s authority, as a resolver whose delegation is cached must at least do),
and our daemon (``resolver serve``, ``mode = "recursive"``, default settings, cache on; left
out with ``--no-ours``). dnsperf and the authorities share core 1.

Each resolver is asked ``warm.wild.test. A`` first, so the delegation of wild.test. (and the
root's and test.'s) is in its cache. Then each run gives dnsperf a new file of names that no run
asked before, ``q<N>-r<RUN>.wild.test. A`` (one label under the zone, so QNAME minimisation
costs no extra query), read once (``-n 1``) for ``--seconds`` with ``--outstanding`` queries in
flight: every query misses the cache and takes one query to the wildcard zone's NSD. Rounds run
every server once in rotated order; the figures are medians over rounds, and the ratios are
medians of each round's ratio. The row "authority (ceiling)" is dnsperf straight at wild.test.'s
NSD: what the load side and the authority reach without a resolver between them.

With ``--workload zones`` the names spread over delegated zones instead (issue 18): the
benchmark generates ``many.test.`` (delegated from the fixtures' test. to 127.0.0.8), which
delegates ``z<N>.many.test.`` each to its own name server ``ns.z<N>.many.test.`` with glue
(127.0.0.9, one NSD serving every such zone, each a wildcard). Each run asks names in
``--zones`` zones (at least 1,000) that no run asked before, ``q<I>-r<RUN>.z<N>.many.test. A``,
the names dealt round-robin over the zones: the first name of a zone costs the resolver a
referral with glue from many.test.'s server (QNAME minimisation asks it for the zone's name),
the others one query to the zone's server. The ceiling row is dnsperf at 127.0.0.9; "up/q"
counts the queries both NSDs received.

Target (issue 11): ours at least 0.3x Unbound's qps, 0 queries lost.

Everything stays in the namespace, which has nothing but loopback; every dnsperf run stops by
itself (``-l``, ``-n 1``) and every server is stopped on the way out, Ctrl-C and SIGTERM too.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from benchmarks.hierarchy import (
    FLOOR_ADDRESS,
    Hierarchy,
    Server,
    require,
    running,
)
from benchmarks.serve_bench.dnsperf import measure
from benchmarks.serve_bench.nsd import NsdCounter
from benchmarks.serve_bench.report import Row, git_state, measured_package, median, paired
from benchmarks.serve_bench.report import tool_version as version_of
from benchmarks.serve_bench.servers import LOAD_CORE, SERVER_CORE, SetupError

ZONE = "wild.test."
AUTHORITY = "127.0.0.5"  # wild.test.'s server (fixtures/README.md)
WILDCARD_ANSWER = "127.1.3.1"
CEILING = "authority (ceiling)"
UNBOUND = "unbound (1 thread)"
OURS = "resolver serve"
FLOOR = "floor forwarder"
TARGET = 0.3  # ours / Unbound, qps
# Names per second of --seconds: more than any server here reached (the authority alone, up to
# 143 k); a run that uses its file up before its time is flagged.
NAMES_PER_SECOND = 200_000


class Names:
    """A new dnsperf input per run: ``names`` never-asked names under the wildcard zone, or
    with ``zones`` spread round-robin over that many zones of many.test. no run used before
    (the first run's zones follow the warm-up's)."""

    def __init__(self, directory: Path, names: int, zones: int = 0) -> None:
        self.path = directory / "names.txt"
        self.names = names
        self.zones = zones
        self.runs = 0

    def next(self) -> Path:
        self.runs += 1
        label = f"r{self.runs:04d}"
        zones, first = self.zones, self.runs * self.zones
        if zones:
            lines = (f"q{i}-{label}.z{first + i % zones}.{MANY} A\n" for i in range(self.names))
        else:
            lines = (f"q{i}-{label}.{ZONE} A\n" for i in range(self.names))
        self.path.write_text("".join(lines))
        return self.path


MANY = "many.test."
MANY_ADDRESS = "127.0.0.8"  # many.test.'s server (glue in the fixtures' test.)
LEAVES_ADDRESS = "127.0.0.9"  # every z<N>.many.test.'s server
SOA = "@ 3600 IN SOA {ns} hostmaster.many.test. 1 7200 3600 1209600 300\n"


def write_zones(directory: Path, count: int) -> list[str]:
    """many.test. and its ``count`` delegated zones (z0 .. z<count-1>) as zone files in
    ``directory``; returns the delegated zones' origins."""
    directory.mkdir()
    origins = [f"z{n}.{MANY}" for n in range(count)]
    parent = [
        f"$ORIGIN {MANY}\n",
        SOA.format(ns=f"ns1.{MANY}"),
        f"@ 3600 IN NS ns1.{MANY}\nns1 3600 IN A {MANY_ADDRESS}\n",
    ]
    for n in range(count):
        parent.append(f"z{n} 86400 IN NS ns.z{n}.{MANY}\nns.z{n} 86400 IN A {LEAVES_ADDRESS}\n")
    (directory / f"{MANY}zone").write_text("".join(parent))
    for origin in origins:
        (directory / f"{origin}zone").write_text(
            f"$ORIGIN {origin}\n{SOA.format(ns=f'ns.{origin}')}"
            f"@ 86400 IN NS ns.{origin}\nns 86400 IN A {LEAVES_ADDRESS}\n"
            f"* 300 IN A {WILDCARD_ANSWER}\n"
        )
    return origins


class Both:
    """Queries received by two NSDs (many.test.'s and its children's)."""

    def __init__(self, first: NsdCounter, second: NsdCounter) -> None:
        self.counters = (first, second)

    def read(self) -> int:
        return sum(counter.read() for counter in self.counters)


def check(hierarchy: Hierarchy, server: Server, name: str) -> None:
    """``name`` A answers NOERROR with the wildcard's address. Raises SetupError."""
    reply = hierarchy.dig(server, name, "A", seconds=5)
    got = [(r.rtype, r.rdata) for r in reply.answer]
    if reply.status != "NOERROR" or got != [("A", WILDCARD_ANSWER)]:
        raise SetupError(f"{server.name}: {name} A: {reply.status} {got}\n{reply.text}")


def start(hierarchy: Hierarchy, args: argparse.Namespace) -> dict[str, Server]:
    """Every server measured, started and checked, in the order of the table."""
    leaf = AUTHORITY
    if args.workload == "zones":
        # Every run uses its own zones; the warm-up the zones before the first run's.
        zonesdir = hierarchy.directory / "many"
        count = args.zones * (args.rounds * 4 + 1)
        origins = write_zones(zonesdir, count)
        hierarchy.start_nsd(MANY_ADDRESS, [MANY], zonesdir, core=LOAD_CORE)
        hierarchy.start_nsd(LEAVES_ADDRESS, origins, zonesdir, core=LOAD_CORE)
        leaf = LEAVES_ADDRESS
    authority = hierarchy.authorities[leaf]
    servers = {CEILING: authority, UNBOUND: hierarchy.start_unbound(core=SERVER_CORE)}
    if args.ours:
        servers[OURS] = hierarchy.start_resolver(core=SERVER_CORE)
    floor = [sys.executable, "-m", "benchmarks.serve_bench.floor"]
    floor += ["--listen", f"{FLOOR_ADDRESS}:53", "--upstream", f"{leaf}:53"]
    servers[FLOOR] = hierarchy.start_server("floor", FLOOR_ADDRESS, floor, core=SERVER_CORE)
    zone = f"z0.{MANY}" if args.workload == "zones" else ZONE
    for server in servers.values():
        check(hierarchy, server, f"warm.{zone}")  # the delegations, cached from here on
        check(hierarchy, server, f"check.{zone}")
    return servers


def bench(args: argparse.Namespace, directory: Path) -> list[Row]:
    with running(directory, core=LOAD_CORE) as hierarchy:
        servers = start(hierarchy, args)
        authority = servers[CEILING]
        counter: NsdCounter | Both = NsdCounter(hierarchy.nsd_conf_path(AUTHORITY))
        zones = 0
        if args.workload == "zones":
            zones = args.zones
            counter = Both(
                NsdCounter(hierarchy.nsd_conf_path(MANY_ADDRESS)),
                NsdCounter(hierarchy.nsd_conf_path(LEAVES_ADDRESS)),
            )
        names = Names(directory, args.names, zones)
        rows = {name: Row(name) for name in servers}
        order = list(servers)
        for round_ in range(args.rounds):
            print(f"round {round_ + 1} of {args.rounds}", flush=True)
            shift = round_ % len(order)
            for name in order[shift:] + order[:shift]:
                queries = names.next()
                time.sleep(args.pause)
                server = servers[name]
                run = measure(
                    name,
                    server.proc,
                    authority.proc,
                    counter,
                    queries,
                    args.seconds,
                    args.outstanding,
                    single_pass=args.names,
                    host=server.address,
                    prefix=hierarchy.argv([]),
                )
                rows[name].runs.append(run)
                print(
                    f"  {name:20} {run.qps:9,.0f} qps lost {run.lost} "
                    f"cpu {run.server_cpu:.0%} up/q {run.upstream_per_query:.2f}",
                    flush=True,
                )
        return [rows[name] for name in order]


def _x(value: float) -> str:
    return f"{value:.2f}x" if value else "-"


def table(rows: Sequence[Row]) -> list[str]:
    unbound = next(row for row in rows if row.server == UNBOUND)
    lines = [
        "| server | qps (median) | qps range | lost | avg latency ms | server CPU | "
        "CPU us/query | queries per CPU-s | authority CPU | up/q | qps vs Unbound | "
        "per CPU-s vs Unbound |",
        "|---|" + "---:|" * 11,
    ]
    for row in rows:
        runs = row.runs
        lines.append(
            f"| {row.server} | {row.qps:,.0f} | {row.spread()} | {row.lost} | "
            f"{median([r.latency_ms for r in runs]):.2f} | "
            f"{median([r.server_cpu for r in runs]):.0%} | "
            f"{median([r.cpu_us_per_query for r in runs]):.1f} | "
            f"{row.per_cpu_second:,.0f} | "
            f"{median([r.upstream_cpu for r in runs]):.0%} | "
            f"{median([r.upstream_per_query for r in runs]):.2f} | "
            f"{_x(paired(row, unbound))} | {_x(paired(row, unbound, per_cpu=True))} |"
        )
    return lines


def verdicts(rows: Sequence[Row]) -> list[str]:
    by = {row.server: row for row in rows}
    unbound = by[UNBOUND]
    out = []
    if OURS in by:
        ours = by[OURS]
        qps = paired(ours, unbound)
        ok = qps >= TARGET and ours.lost == 0
        out.append(
            f"VERDICT: {'MET' if ok else 'MISSED'}: ours {qps:.2f}x Unbound's qps "
            f"(target >= {TARGET}x), {ours.lost} lost (target 0); per CPU-second "
            f"{paired(ours, unbound, per_cpu=True):.2f}x"
        )
    else:
        out.append("VERDICT: not measured: ours was left out (--no-ours)")
    floor = by[FLOOR]
    out.append(
        f"INFO: floor {paired(floor, unbound):.2f}x Unbound's qps, "
        f"{paired(floor, unbound, per_cpu=True):.2f}x per CPU-second"
    )
    for row in rows:
        runs = row.runs
        if row.server != CEILING and row.lost:
            out.append(f"WARNING: {row.server} lost {row.lost} queries")
        if any(r.input_exhausted for r in runs):
            out.append(f"WARNING: {row.server} used up its names (raise --names)")
        if any(r.rcodes.split()[:1] != ["NOERROR"] or "," in r.rcodes for r in runs):
            out.append(f"WARNING: {row.server} answered {[r.rcodes for r in runs]}")
        if row.server != CEILING and median([r.server_cpu for r in runs]) < 0.9:
            out.append(
                f"WARNING: {row.server} used {median([r.server_cpu for r in runs]):.0%} of its "
                "core: another tenant had it, or it waited on something else"
            )
    return out


def describe(args: argparse.Namespace) -> list[str]:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    unbound = version_of(["unbound", "-V"], r"Version (\S+)")
    nsd = version_of(["nsd", "-v"], r"NSD version (\S+)")
    dnsperf = version_of(["dnsperf", "-h"], r"Version (\S+)")
    measured = f"{measured_package()} (tree {git_state()})" if args.ours else "not measured"
    workload = f"names under the wildcard zone {ZONE}"
    if args.workload == "zones":
        workload = f"names over {args.zones:,} new delegated zones of {MANY} per run"
    return [
        f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, load {load}",
        f"workload: {workload}",
        f"unbound {unbound}, NSD {nsd}, dnsperf {dnsperf}; resolver: {measured}",
        f"load: dnsperf -c 1 -q {args.outstanding} -t 2 -l {args.seconds:g} -n 1, "
        f"{args.names:,} new names per run, {args.rounds} round(s), medians; resolver under "
        f"test on core {SERVER_CORE}, dnsperf and the authorities on core {LOAD_CORE}",
    ]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.recursive_bench",
        description="cold-cache recursive qps: ours against Unbound (1 thread), in a network "
        "namespace holding the fixture hierarchy",
    )
    parser.add_argument(
        "--ours",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure resolver serve (default); --no-ours runs the peers only",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="dnsperf -l per run")
    parser.add_argument("--rounds", type=int, default=3, help="median of this many rounds")
    parser.add_argument("--outstanding", type=int, default=100, help="dnsperf -q")
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between runs")
    parser.add_argument(
        "--names", type=int, default=0, help=f"per run (default: seconds x {NAMES_PER_SECOND:,})"
    )
    parser.add_argument(
        "--workload",
        choices=("wildcard", "zones"),
        default="wildcard",
        help="names under one wildcard zone, or spread over delegated zones (see the module)",
    )
    parser.add_argument(
        "--zones", type=int, default=1_000, help="zones per run with --workload zones"
    )
    args = parser.parse_args(argv)
    if not 1_000 <= args.zones <= 5_000:
        parser.error("--zones must be from 1,000 to 5,000")
    if not (0 < args.seconds <= 60 and 1 <= args.rounds <= 20 and 1 <= args.outstanding <= 1000):
        parser.error("need 0 < --seconds <= 60, 1 <= --rounds <= 20, 1 <= --outstanding <= 1000")
    args.names = args.names or math.ceil(args.seconds * NAMES_PER_SECOND)
    if not 1_000 <= args.names <= 10_000_000:
        parser.error("--names must be from 1,000 to 10,000,000")
    return args


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through the finally that ends the namespace


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        require("ip", "nsd", "nsd-control", "unbound", "dig", "dnsperf", "taskset")
    except SetupError as exc:
        print(f"recursive_bench: {exc}", file=sys.stderr)
        return 2
    if not {0, 1} <= os.sched_getaffinity(0):
        print("recursive_bench: needs cores 0 and 1", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    print("\n".join(describe(args)), flush=True)
    with tempfile.TemporaryDirectory(prefix="recursive_bench.") as name:
        try:
            rows = bench(args, Path(name))
        except SetupError as exc:
            print(f"recursive_bench: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("recursive_bench: interrupted; every server stopped", file=sys.stderr)
            return 130
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    print("\n".join(table(rows)))
    print()
    print("\n".join(verdicts(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
