"""Where ``resolver serve`` (or the trivial responder) spends its time under the cache-hit
load: py-spy while dnsperf runs.

Starts the same upstream and daemon as the benchmark (pinned the same way), warms the cache
with one pass, then runs one bounded dnsperf (``-l`` = duration + 4 s) at the daemon and
``py-spy record --format raw`` on it meanwhile, and prints the frames with the most samples,
by self time (the innermost frame) and inclusive time (on the stack). Time in a system call is
attributed to the Python line that made it. Needs permission to ptrace the daemon (root).

    python -m benchmarks.cache_bench.profile --duration 8 --top 25
    python -m benchmarks.cache_bench.profile --server trivial   # the same for the ceiling
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.cache_bench.main import OURS, TRIVIAL, WORKLOAD, procs
from benchmarks.dnsperf import dnsperf_argv, parse_dnsperf
from benchmarks.errors import SetupError
from benchmarks.processes import running
from benchmarks.serve_bench.servers import check_answers, query_file, read_queries

_LINE = re.compile(r"^(.*) (\d+)$")


def aggregate(raw: str) -> tuple[int, collections.Counter[str], collections.Counter[str]]:
    """(total samples, self samples by frame, inclusive samples by frame) of py-spy raw output."""
    total = 0
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    for line in raw.splitlines():
        match = _LINE.match(line.strip())
        if match is None:
            continue
        frames, count = match.group(1).split(";"), int(match.group(2))
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    return total, own, inclusive


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cache_bench.profile")
    parser.add_argument("--duration", type=int, default=8, help="py-spy seconds")
    parser.add_argument("--rate", type=int, default=300, help="py-spy samples per second")
    parser.add_argument("--outstanding", type=int, default=100, help="dnsperf -q")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--server", choices=("ours", "trivial"), default="ours", help="the process to profile"
    )
    parser.add_argument("--raw", type=Path, help="also keep py-spy's raw output here")
    args = parser.parse_args(argv)
    if shutil.which("py-spy") is None:
        print("profile: py-spy is not installed", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="cache_bench_profile.") as name:
        tmp = Path(name)
        upstream, servers = procs(tmp)
        ours = servers[OURS if args.server == "ours" else TRIVIAL]
        raw_path = tmp / "raw.txt"
        try:
            with running([upstream, ours]):
                check_answers(ours, read_queries(WORKLOAD))  # the warm-up pass
                load = subprocess.Popen(
                    dnsperf_argv(
                        ours.port, query_file(WORKLOAD), args.duration + 4, args.outstanding
                    ),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
                try:
                    time.sleep(1.0)
                    subprocess.run(
                        ["py-spy", "record", "--pid", str(ours.pid), "--duration",
                         str(args.duration), "--rate", str(args.rate), "--format", "raw",
                         "-o", str(raw_path)],
                        capture_output=True,
                        timeout=args.duration + 30,
                        check=True,
                    )  # fmt: skip
                    out, _ = load.communicate(timeout=args.duration + 30)
                finally:
                    if load.poll() is None:
                        load.kill()
                        load.wait()
        except (SetupError, subprocess.SubprocessError) as exc:
            print(f"profile: {exc}", file=sys.stderr)
            return 2
        raw = raw_path.read_text()
    if args.raw is not None:
        args.raw.write_text(raw)
    _, _, lost, qps, latency, _ = parse_dnsperf(out)
    print(f"dnsperf during the profile: {qps:,.0f} qps, lost {lost}, avg {latency:.2f} ms")
    total, own, inclusive = aggregate(raw)
    for title, counts in (("self", own), ("inclusive", inclusive)):
        print(f"\n{title} (of {total} samples)")
        for frame, count in counts.most_common(args.top):
            print(f"{count / total:6.1%}  {frame}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
