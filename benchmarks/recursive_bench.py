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

With ``--dnssec`` (wildcard workload) every zone of the hierarchy is signed at the start with
keys made then (``hierarchy.sign_fixtures``), and both resolvers validate from the test root's
DS: Unbound with its validator module, ours with validation on (its default in recursive
mode). The warm-up question then also fetches the keys of the root, test. and wild.test., so
every measured answer costs a signature check with warm keys (issue 19's validating run), unless
the validated cache answers it unasked (RFC 8198, both resolvers' default);
``--no-aggressive-nsec`` turns that off in ours, to measure what validating each answer costs.

Target (issue 11): ours at least 0.3x Unbound's qps, 0 queries lost; validating (issue 19):
at least 0.5x Unbound per CPU-second.

Everything stays in the namespace, which has nothing but loopback; every dnsperf run stops by
itself (``-l``, ``-n 1``) and every server is stopped on the way out, Ctrl-C and SIGTERM too.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks import daemon
from benchmarks.dnsperf import measure
from benchmarks.errors import SetupError
from benchmarks.harness import failures_reported, interrupt_on_sigterm, missing_cores, rotated
from benchmarks.hierarchy import (
    FLOOR_ADDRESS,
    SPREAD_ANSWER,
    SPREAD_LEAVES,
    SPREAD_PARENT,
    SPREAD_WARM,
    SPREAD_ZONE,
    UNSIGNED,
    Hierarchy,
    Server,
    require,
    resolver_toml,
    running,
    sign_fixtures,
    write_spread,
)
from benchmarks.processes import LOAD_CORE, SERVER_CORE
from benchmarks.report import (
    Row,
    git_state,
    leading_cells,
    leading_header,
    load_average,
    measured_package,
    median,
    now,
    paired,
    run_figures,
    times,
    version_of,
)
from benchmarks.serve_bench.floor import command as floor_command
from benchmarks.serve_bench.nsd import NsdCounter

PROG = "recursive_bench"
ZONE = "wild.test."
AUTHORITY = "127.0.0.5"  # wild.test.'s server (fixtures/README.md)
WILDCARD_ANSWER = "127.1.3.1"
CEILING = "authority (ceiling)"
UNBOUND = "unbound (1 thread)"
OURS = "resolver serve"
BEFORE = "resolver serve (before)"  # --before: imported from another checkout
BEFORE_ADDRESS = "127.0.0.56"
FLOOR = "floor forwarder"
TARGET = 0.3  # ours / Unbound, qps
TARGET_PER_CPU = 0.5  # ours / Unbound, queries per CPU-second (issue on one home, item 3)
# Names per second of --seconds: more than any server here reached (the authority alone, up to
# 143 k); a run that uses its file up before its time is flagged.
NAMES_PER_SECOND = 200_000


class Names:
    """A new dnsperf input per run: ``names`` never-asked names under the wildcard zone."""

    def __init__(self, directory: Path, names: int) -> None:
        self.path = directory / "names.txt"
        self.names = names
        self.runs = 0

    def next(self) -> Path:
        self.runs += 1
        label = f"r{self.runs:04d}"
        self.path.write_text("".join(f"q{i}-{label}.{ZONE} A\n" for i in range(self.names)))
        return self.path


class SpreadNames:
    """The ``spread`` workload's input per run: run B asks ``per_zone`` new names in each of
    its own ``zones`` child zones ``z<K>-b<B>.spread.test.``, none cached by any resolver
    yet, in a shuffled order (seeded by B). So every run costs every resolver the same: one
    referral (with glue) per zone from spread.test.'s server, then one query per name to the
    zone's server."""

    def __init__(self, directory: Path, zones: int, per_zone: int, runs: int) -> None:
        self.path = directory / "names.txt"
        self.zones = zones
        self.per_zone = per_zone
        self.names = zones * per_zone
        self.runs = 0
        self.blocks = [[f"z{k}-b{b}.{SPREAD_ZONE}" for k in range(zones)] for b in range(runs)]

    def children(self) -> list[str]:
        """Every child zone the runs ask about, and the one the checks use."""
        return [*(zone for block in self.blocks for zone in block), SPREAD_CHECK_ZONE]

    def next(self) -> Path:
        block = self.blocks[self.runs]
        self.runs += 1
        lines = [f"q{n}.{zone} A\n" for zone in block for n in range(self.per_zone)]
        random.Random(self.runs).shuffle(lines)
        self.path.write_text("".join(lines))
        return self.path


SPREAD_CHECK_ZONE = f"zcheck.{SPREAD_ZONE}"


def check(hierarchy: Hierarchy, server: Server, name: str, answer: str = WILDCARD_ANSWER) -> None:
    """``name`` A answers NOERROR with ``answer`` alone. Raises SetupError."""
    reply = hierarchy.dig(server, name, "A", seconds=5)
    got = [(r.rtype, r.rdata) for r in reply.answer]
    if reply.status != "NOERROR" or got != [("A", answer)]:
        raise SetupError(f"{server.name}: {name} A: {reply.status} {got}\n{reply.text}")


def start(
    hierarchy: Hierarchy, args: argparse.Namespace, anchor: Path | None = None
) -> dict[str, Server]:
    """Every server measured, started and checked, in the order of the table; validating
    from ``anchor`` when given."""
    authority = hierarchy.authorities[AUTHORITY]
    unbound = hierarchy.start_unbound(core=SERVER_CORE, trust_anchor=anchor)
    servers = {CEILING: authority, UNBOUND: unbound}
    if args.ours:
        dnssec = UNSIGNED if anchor is None else f'trust_anchors = "{anchor}"'
        if anchor is not None and not args.aggressive_nsec:
            dnssec += "\naggressive_nsec = false"
        servers[OURS] = hierarchy.start_resolver(core=SERVER_CORE, dnssec=dnssec)
    floor = floor_command(f"{FLOOR_ADDRESS}:53", f"{AUTHORITY}:53")
    servers[FLOOR] = hierarchy.start_server("floor", FLOOR_ADDRESS, floor, core=SERVER_CORE)
    for server in servers.values():
        check(hierarchy, server, f"warm.{ZONE}")  # the delegation, cached from here on
        check(hierarchy, server, f"check.{ZONE}")
    return servers


def start_before(hierarchy: Hierarchy, checkout: Path) -> Server:
    """``resolver serve`` as ``start_resolver`` runs it, imported from ``checkout``."""
    config = daemon.write_config(
        hierarchy.directory / "resolver-before.toml", resolver_toml(BEFORE_ADDRESS)
    )
    command = daemon.serve(config=config, python=daemon.from_checkout(checkout))
    return hierarchy.start_server("resolver-before", BEFORE_ADDRESS, command, core=SERVER_CORE)


def start_spread(hierarchy: Hierarchy, args: argparse.Namespace) -> dict[str, Server]:
    """The servers of the ``spread`` workload: the ceiling is the child zones' NSD, the floor
    relays to it; each resolver has spread.test.'s delegation cached (``warm.spread.test.``),
    none of the measured child zones."""
    authority = hierarchy.authorities[SPREAD_LEAVES]
    servers = {CEILING: authority, UNBOUND: hierarchy.start_unbound(core=SERVER_CORE)}
    if args.ours:
        servers[OURS] = hierarchy.start_resolver(core=SERVER_CORE)
    if args.before is not None:
        servers[BEFORE] = start_before(hierarchy, args.before)
    floor = floor_command(f"{FLOOR_ADDRESS}:53", f"{SPREAD_LEAVES}:53")
    servers[FLOOR] = hierarchy.start_server("floor", FLOOR_ADDRESS, floor, core=SERVER_CORE)
    for name, server in servers.items():
        if name in (UNBOUND, OURS, BEFORE):
            check(hierarchy, server, SPREAD_WARM, "127.1.5.2")
        check(hierarchy, server, f"check.{SPREAD_CHECK_ZONE}", SPREAD_ANSWER)
    return servers


def bench_spread(args: argparse.Namespace, directory: Path) -> tuple[list[Row], dict[str, float]]:
    """The ``spread`` workload's rounds; the rows, and each server's median of spread.test.'s
    queries (referrals asked) per client query."""
    servers_count = 3 + bool(args.ours) + (args.before is not None)
    names = SpreadNames(directory, args.zones, args.per_zone, args.rounds * servers_count)
    spread = write_spread(directory, names.children())
    print(
        f"spread: {len(names.children()):,} child zones generated, {args.zones:,} new ones "
        f"per run, {args.per_zone} names each ({names.names:,} queries per run)",
        flush=True,
    )
    with running(directory, core=LOAD_CORE, spread=spread) as hierarchy:
        servers = start_spread(hierarchy, args)
        assert len(servers) == servers_count
        authority = servers[CEILING]
        counter = NsdCounter(hierarchy.nsd_conf_path(SPREAD_LEAVES))
        parent = NsdCounter(hierarchy.nsd_conf_path(SPREAD_PARENT))
        rows = {name: Row(name) for name in servers}
        referrals: dict[str, list[float]] = {name: [] for name in servers}
        order = list(servers)
        for round_ in range(args.rounds):
            print(f"round {round_ + 1} of {args.rounds}", flush=True)
            for name in rotated(order, round_):
                queries = names.next()
                time.sleep(args.pause)
                server = servers[name]
                asked = parent.read()
                run = measure(
                    name,
                    server.proc,
                    authority.proc,
                    counter,
                    queries,
                    args.seconds,
                    args.outstanding,
                    single_pass=names.names,
                    host=server.address,
                    prefix=hierarchy.argv([]),
                )
                asked = parent.read() - asked
                rows[name].runs.append(run)
                referrals[name].append(asked / run.completed if run.completed else 0.0)
                print(
                    f"  {name:20} {run_figures(run)} up/q {run.upstream_per_query:.2f} "
                    f"parent q/q {referrals[name][-1]:.3f}",
                    flush=True,
                )
        return [rows[name] for name in order], {k: median(v) for k, v in referrals.items()}


def bench(args: argparse.Namespace, directory: Path) -> list[Row]:
    files, anchor = None, None
    if args.dnssec:
        files, anchor = sign_fixtures(directory / "signed")
    with running(directory, core=LOAD_CORE, files=files) as hierarchy:
        servers = start(hierarchy, args, anchor)
        authority = servers[CEILING]
        counter = NsdCounter(hierarchy.nsd_conf_path(AUTHORITY))
        names = Names(directory, args.names)
        rows = {name: Row(name) for name in servers}
        order = list(servers)
        for round_ in range(args.rounds):
            print(f"round {round_ + 1} of {args.rounds}", flush=True)
            for name in rotated(order, round_):
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
                    f"  {name:20} {run_figures(run, per_cpu=False)} "
                    f"up/q {run.upstream_per_query:.2f}",
                    flush=True,
                )
        return [rows[name] for name in order]


def table(rows: Sequence[Row], referrals: dict[str, float] | None = None) -> list[str]:
    """The table; with ``referrals`` (spread), a column of spread.test.'s queries per client
    query, and "authority" is the child zones' server."""
    unbound = next(row for row in rows if row.server == UNBOUND)
    lines = [
        leading_header()
        + "CPU us/query | queries per CPU-s | authority CPU | up/q | "
        + ("parent q/q | " if referrals is not None else "")
        + "qps vs Unbound | per CPU-s vs Unbound |",
        "|---|" + "---:|" * (11 + (referrals is not None)),
    ]
    for row in rows:
        lines.append(
            leading_cells(row) + f"{row.cpu_us_per_query:.1f} | {row.per_cpu_second:,.0f} | "
            f"{row.upstream_cpu:.0%} | {row.upstream_per_query:.2f} | "
            + (f"{referrals[row.server]:.3f} | " if referrals is not None else "")
            + f"{times(paired(row, unbound))} | {times(paired(row, unbound, per_cpu=True))} |"
        )
    return lines


def verdicts(rows: Sequence[Row], workload: str = "wild") -> list[str]:
    by = {row.server: row for row in rows}
    unbound = by[UNBOUND]
    out = []
    if OURS in by:
        ours = by[OURS]
        qps = paired(ours, unbound)
        per_cpu = paired(ours, unbound, per_cpu=True)
        if workload == "wild":
            ok = qps >= TARGET and ours.lost == 0
            out.append(
                f"VERDICT: {'MET' if ok else 'MISSED'}: ours {qps:.2f}x Unbound's qps "
                f"(target >= {TARGET}x), {ours.lost} lost (target 0); per CPU-second "
                f"{per_cpu:.2f}x"
            )
        ok = per_cpu >= TARGET_PER_CPU and ours.lost == 0
        out.append(
            f"VERDICT {workload}: {'MET' if ok else 'MISSED'}: ours {per_cpu:.2f}x Unbound "
            f"per CPU-second (target >= {TARGET_PER_CPU}x), {ours.lost} lost (target 0); "
            f"qps {qps:.2f}x"
        )
    else:
        out.append("VERDICT: not measured: ours was left out (--no-ours)")
    if OURS in by and BEFORE in by:
        out.append(
            f"INFO {workload}: {OURS} vs {BEFORE}: qps {paired(by[OURS], by[BEFORE]):.2f}x; "
            f"per CPU-second {paired(by[OURS], by[BEFORE], per_cpu=True):.2f}x"
        )
    floor = by[FLOOR]
    out.append(
        f"INFO: floor {paired(floor, unbound):.2f}x Unbound's qps, "
        f"{paired(floor, unbound, per_cpu=True):.2f}x per CPU-second"
    )
    for row in rows:
        runs = row.runs
        if row.server != CEILING and row.lost:
            out.append(f"WARNING: {row.server} lost {row.lost} queries")
        if workload == "wild" and any(r.input_exhausted for r in runs):
            out.append(f"WARNING: {row.server} used up its names (raise --names)")
        if workload == "spread" and not all(r.input_exhausted for r in runs):
            out.append(f"WARNING: {row.server} ran out of time (--seconds) before its names")
        if any(r.rcodes.split()[:1] != ["NOERROR"] or "," in r.rcodes for r in runs):
            out.append(f"WARNING: {row.server} answered {[r.rcodes for r in runs]}")
        if row.server != CEILING and row.server_cpu < 0.9:
            out.append(
                f"WARNING: {row.server} used {row.server_cpu:.0%} of its "
                "core: another tenant had it, or it waited on something else"
            )
    return out


def describe(args: argparse.Namespace) -> list[str]:
    unbound, nsd, dnsperf = version_of("unbound"), version_of("nsd"), version_of("dnsperf")
    measured = f"{measured_package()} (tree {git_state()})" if args.ours else "not measured"
    names = (
        f"{args.zones * args.per_zone:,} new names in {args.zones:,} new delegated zones per run"
        if args.workload == "spread"
        else f"{args.names:,} new names per run"
    )
    if args.dnssec:
        names += "; every fixture zone signed, both resolvers validating"
        if not args.aggressive_nsec:
            names += " (ours with aggressive_nsec = false)"
    return [
        f"date: {now()}, {os.cpu_count()} cores, load {load_average()}",
        f"unbound {unbound}, NSD {nsd}, dnsperf {dnsperf}; resolver: {measured}",
        f"workload {args.workload}; load: dnsperf -c 1 -q {args.outstanding} -t 2 "
        f"-l {args.seconds:g} -n 1, {names}, {args.rounds} round(s), medians; resolver under "
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
        choices=("wild", "spread"),
        default="wild",
        help="wild: names under one wildcard zone, its delegation cached; spread: names in "
        "--zones new delegated zones per run (referrals with glue), --per-zone names each",
    )
    parser.add_argument(
        "--before",
        type=Path,
        metavar="CHECKOUT",
        help="spread: also measure resolver serve imported from this checkout (a copy of the "
        "tree before a change)",
    )
    parser.add_argument("--zones", type=int, default=1000, help="spread: new zones per run")
    parser.add_argument("--per-zone", type=int, default=30, help="spread: names per zone")
    parser.add_argument(
        "--dnssec",
        action="store_true",
        help="wild: sign the hierarchy and validate in both resolvers (see the module)",
    )
    parser.add_argument(
        "--no-aggressive-nsec",
        dest="aggressive_nsec",
        action="store_false",
        help="dnssec: ours with [dnssec] aggressive_nsec = false (Unbound keeps its own), so "
        "that every answer is asked for and validated: what a validation costs",
    )
    args = parser.parse_args(argv)
    if args.dnssec and args.workload != "wild":
        parser.error("--dnssec goes with --workload wild")
    if not (1 <= args.zones <= 20_000 and 1 <= args.per_zone <= 1000):
        parser.error("need 1 <= --zones <= 20000 and 1 <= --per-zone <= 1000")
    if not (0 < args.seconds <= 60 and 1 <= args.rounds <= 20 and 1 <= args.outstanding <= 1000):
        parser.error("need 0 < --seconds <= 60, 1 <= --rounds <= 20, 1 <= --outstanding <= 1000")
    args.names = args.names or math.ceil(args.seconds * NAMES_PER_SECOND)
    if not 1_000 <= args.names <= 10_000_000:
        parser.error("--names must be from 1,000 to 10,000,000")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with failures_reported(PROG):
        require("ip", "nsd", "nsd-control", "unbound", "dig", "dnsperf", "taskset")
    if missing_cores(PROG):
        return 2
    interrupt_on_sigterm()
    print("\n".join(describe(args)), flush=True)
    with tempfile.TemporaryDirectory(prefix="recursive_bench.") as name, failures_reported(PROG):
        referrals = None
        if args.workload == "spread":
            rows, referrals = bench_spread(args, Path(name))
        else:
            rows = bench(args, Path(name))
    print(f"\nload average at the end: {load_average()}\n")
    print("\n".join(table(rows, referrals)))
    print()
    print("\n".join(verdicts(rows, args.workload)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
