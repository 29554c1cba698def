"""The response policy's cost: loading a big blocklist (and an RPZ zone), and its price per
query.

A list of N distinct names (deterministic pseudo-random two- and three-label names under a few
hundred made-up domains, as public lists look) is written in the chosen format to a temporary
directory; a fresh Python process then loads it with ``resolver.policy.PolicyLoader`` (the
daemon's own loader) and reports:

* load time (wall clock, reading and parsing and building the sets);
* resident set size: after importing, after loading (``/proc/self/statm``, after
  ``gc.collect()``), and the peak (``ru_maxrss``); the growth is what the list costs;
* per question, ``Policy.before`` (what every query pays before the cache) for a name not in
  the list (the common case: four labels, so four set lookups), and for a listed one; and
  ``Policy.after`` (what every answer from the cache or upstream pays) on an answer with one
  A record and on one with a CNAME chain of two links, each the mean of 200,000 calls.

With ``--rpz N`` an RPZ zone of N QNAME rules (``name CNAME .``, every tenth local data) is
loaded too, in the same way, through the project's master-file reader.

Targets (issue 21): 1,000,000 names load in at most 5 s and 300 MB of RSS, and a query pays a
few microseconds at most.

Run from the repository root (see benchmarks/README.md, section "Policy")::

    python -m benchmarks.policy_bench                       # 1,000,000 hosts lines
    python -m benchmarks.policy_bench --format adblock --names 1000000 --rpz 100000
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.memory import rss_bytes

CALLS = 200_000


def rss_mb() -> float:
    return rss_bytes() / 1e6


def names(count: int, seed: int = 21) -> list[str]:
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz0123456789"
    domains = [
        "".join(rng.choices(letters, k=rng.randint(5, 12))) + rng.choice([".com", ".net", ".org"])
        for _ in range(500)
    ]
    seen: set[str] = set()
    out = []
    while len(out) < count:
        label = "".join(rng.choices(letters, k=rng.randint(3, 14)))
        name = f"{label}.{rng.choice(domains)}"
        if rng.random() < 0.3:
            name = "".join(rng.choices(letters, k=rng.randint(2, 6))) + "." + name
        if name not in seen:
            seen.add(name)
            out.append(name)
    return out


def write_list(path: Path, fmt: str, listed: list[str]) -> None:
    with path.open("w") as handle:
        if fmt == "hosts":
            handle.write("# a public list's preamble\n127.0.0.1 localhost\n0.0.0.0 0.0.0.0\n")
            handle.writelines(f"0.0.0.0 {name}\n" for name in listed)
        elif fmt == "adblock":
            handle.write("[Adblock Plus 2.0]\n! Title: made up\n")
            handle.writelines(f"||{name}^\n" for name in listed)
        else:
            handle.writelines(f"{name}\n" for name in listed)


def write_rpz(path: Path, listed: list[str]) -> None:
    with path.open("w") as handle:
        handle.write(
            "$ORIGIN rpz.bench.\n$TTL 300\n@ SOA localhost. root.localhost. 1 3600 600 86400 60\n"
        )
        handle.write("  NS localhost.\n")
        for index, name in enumerate(listed):
            if index % 10:
                handle.write(f"{name} CNAME .\n")
            else:
                handle.write(f"{name} A 192.0.2.1\n")


def measure(list_path: str, fmt: str, rpz_path: str, probe: str, listed_probe: str) -> None:
    """In the fresh process: load, then time the per-query calls."""
    from resolver.config import ListConfig, PolicyConfig, RpzConfig
    from resolver.engine.policy import Client
    from resolver.policy import PolicyLoader
    from resolver.wire.message import name_to_wire
    from resolver.wire.records import Record, build_reply

    gc.collect()
    base = rss_mb()
    lists = (ListConfig(file=Path(list_path), format=fmt),) if list_path else ()  # type: ignore[arg-type]
    zones = (RpzConfig(file=Path(rpz_path)),) if rpz_path else ()
    started = time.perf_counter()
    policy, report = PolicyLoader().load(PolicyConfig(lists=lists, rpz=zones))
    loaded = time.perf_counter() - started
    gc.collect()
    after = rss_mb()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1000
    assert policy is not None
    print(f"loaded: {'; '.join(report.lines)}")
    print(f"load time: {loaded:.2f} s")
    print(
        f"RSS: {base:.0f} MB before, {after:.0f} MB after (+{after - base:.0f} MB), "
        f"peak {peak:.0f} MB"
    )
    client = Client("127.0.0.1", False)
    miss = name_to_wire(probe).lower()
    hit = name_to_wire(listed_probe).lower()
    assert policy.before(miss, client) is None
    assert policy.before(hit, client) is not None
    before = policy.before
    for label, key in (("before, name not listed", miss), ("before, name listed", hit)):
        started = time.perf_counter()
        for _ in range(CALLS):
            before(key, client)
        print(f"{label}: {(time.perf_counter() - started) / CALLS * 1e6:.2f} us")
    plain = build_reply(miss, 1, 1, 0, [Record(miss, 1, 1, 300, bytes(4))])
    target = name_to_wire("edge.cdn.example.net.")
    chain = build_reply(
        miss,
        1,
        1,
        0,
        [
            Record(miss, 5, 1, 300, name_to_wire("x.cdn.example.net.")),
            Record(name_to_wire("x.cdn.example.net."), 5, 1, 300, target),
            Record(target, 1, 1, 300, bytes(4)),
        ],
    )
    after_check = policy.after
    for label, reply in (("after, one A record", plain), ("after, two CNAME links", chain)):
        started = time.perf_counter()
        for _ in range(CALLS):
            after_check(reply, miss, client)
        print(f"{label}: {(time.perf_counter() - started) / CALLS * 1e6:.2f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--names", type=int, default=1_000_000)
    parser.add_argument("--format", choices=["hosts", "domains", "adblock"], default="hosts")
    parser.add_argument("--rpz", type=int, default=0, help="RPZ rules to load too")
    parser.add_argument("--measure", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(*args.measure)
        return
    print(
        f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, {platform.machine()}"
    )
    listed = names(args.names + args.rpz)
    with tempfile.TemporaryDirectory() as directory:
        list_path = Path(directory) / f"list.{args.format}"
        write_list(list_path, args.format, listed[: args.names])
        rpz_path = ""
        if args.rpz:
            rpz_path = str(Path(directory) / "bench.rpz")
            write_rpz(Path(rpz_path), listed[args.names :])
        print(
            f"# {args.names:,} names, {args.format} format, {list_path.stat().st_size / 1e6:.1f} MB"
            + (f"; RPZ zone of {args.rpz:,} rules" if args.rpz else "")
        )
        probe = "www.not-listed.example.com."  # four labels: four lookups
        subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.policy_bench",
                "--measure",
                str(list_path),
                args.format,
                rpz_path,
                probe,
                listed[args.names // 2] + ".",
            ],
            check=True,
        )


if __name__ == "__main__":
    main()
