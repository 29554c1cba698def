"""``python -m benchmarks.soak [--seconds 60] [--share 0.8]``: the caching daemon under a
steady load for a while: 0 queries lost, resident memory and descriptors flat.

``resolver serve`` (cache on, the defaults otherwise) forwards to the dnsmasq upstream of
benchmarks/serve_bench; dnsperf asks the ``zone`` workload (11 questions, so cache hits after
the first round). First the maximum: the best of two 10-second dnsperf runs with 100
outstanding; then ``--seconds`` at ``--share`` of it (dnsperf ``-Q``), sampling the daemon's
VmRSS and open descriptors every 5 s. Exits 1 if a query was lost, RSS grew by more than
``--rss-slack`` MiB from the first sample to the last, or the descriptors changed.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.dnsperf import dnsperf_argv, parse_dnsperf, run_dnsperf
from benchmarks.errors import SetupError
from benchmarks.memory import status_kib
from benchmarks.processes import wait_ready
from benchmarks.report import now
from benchmarks.serve_bench.servers import (
    check_answers,
    ours_proc,
    query_file,
    read_queries,
    upstream_proc,
)

SAMPLE_EVERY = 5.0


def descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def dnsperf(port: int, seconds: float, rate: int | None) -> tuple[int, int, int, float]:
    argv = dnsperf_argv(port, query_file("zone"), seconds, 100, rate=rate)
    sent, completed, lost, qps, _, _ = parse_dnsperf(run_dnsperf(argv, seconds))
    return sent, completed, lost, qps


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--share", type=float, default=0.8)
    parser.add_argument("--rss-slack", type=float, default=2.0, help="MiB")
    args = parser.parse_args()
    print(f"# soak {now()}, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="soak-") as name:
        tmp = Path(name)
        upstream = upstream_proc(tmp)
        ours = None
        try:
            upstream.start()
            wait_ready(upstream)
            ours = ours_proc(tmp, "soak", upstream.port, "", ("www.example.com", "A"))
            ours.start()
            wait_ready(ours)
            check_answers(ours, read_queries("zone"))
            best = max(dnsperf(ours.port, 10, None)[3] for _ in range(2))
            rate = int(best * args.share)
            print(f"maximum {best:.0f} qps (best of two 10 s runs); soak at {rate} qps")
            # The daemon is the process dnsperf talks to: taskset execs into Python.
            pid = ours.pid
            samples = [(0.0, status_kib(pid, "VmRSS"), descriptors(pid))]
            began = time.monotonic()
            argv = dnsperf_argv(ours.port, query_file("zone"), args.seconds, 100, rate=rate)
            load = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            while load.poll() is None and time.monotonic() - began < args.seconds + 30:
                time.sleep(SAMPLE_EVERY)  # sampling period, not an ordering sleep
                at = time.monotonic() - began
                samples.append((at, status_kib(pid, "VmRSS"), descriptors(pid)))
            out, err = load.communicate(timeout=30)
            if load.returncode != 0:
                raise SetupError(f"dnsperf failed ({load.returncode}):\n{err}{out}")
            sent, completed, lost, qps = parse_dnsperf(out)[:4]
            alive = ours.alive()
        finally:
            if ours is not None:
                ours.stop()
            upstream.stop()
    print(f"{sent} sent, {completed} completed, {lost} lost, {qps:.0f} qps, daemon alive {alive}")
    print("| t (s) | RSS (KiB) | descriptors |")
    print("|---|---|---|")
    for at, rss, fds in samples:
        print(f"| {at:.0f} | {rss} | {fds} |")
    # From the first sample under load: the cache and pool fill in the first seconds.
    loaded = samples[1:] or samples
    growth = (loaded[-1][1] - loaded[0][1]) / 1024
    fds_flat = len({fds for _, _, fds in loaded}) == 1
    print(f"RSS growth under load {growth:+.2f} MiB; descriptors flat {fds_flat}")
    ok = lost == 0 and alive and growth <= args.rss_slack and fds_flat
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
