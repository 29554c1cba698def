"""UDP drops at the listening socket: dnsperf against cache hits, and the kernel's count of
datagrams dropped because the daemon's receive buffer was full.

Starts ``resolver authority`` (the fixture zones) and ``resolver serve`` in front of it from the
checkout given by ``--checkout`` (default: this one), on free 127.0.0.1 ports; asks each
question of ``benchmarks/queries/hits.txt`` once (so every measured query is a cache hit),
then runs ``dnsperf -q Q -l SECONDS`` ``--runs`` times. Reported per run: queries sent, lost
(dnsperf), the listening socket's own drop counter (the ``drops`` column of /proc/net/udp
for its port: the RcvbufErrors of that one socket, whoever else shares the machine), and the
sum over every UDP socket on 127.0.0.1 or the wildcard (a socket closed before the second
reading, such as dnsperf's own, is not in it: compare dnsperf's lost with the listener's
drops). ``--client-buffer`` gives dnsperf's sockets larger buffers (``-b``, KiB): with its
default, dnsperf itself drops replies at 300 outstanding. Stops everything at the end.

Run from the repository root (see benchmarks/README.md, section "UDP listening buffers")::

    python benchmarks/udp_drops.py [--runs 3] [--seconds 10] [--outstanding 300]
        [--client-buffer 4096] [--checkout DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repository

from benchmarks import daemon
from benchmarks.dnsperf import dnsperf_argv, parse_dnsperf
from benchmarks.harness import failures_reported
from benchmarks.ports import free_port
from benchmarks.processes import HOST, ROOT, spawned, wait_answering

PROG = "udp_drops"

HITS = ROOT / "benchmarks" / "queries" / "hits.txt"


def socket_drops(port: int) -> int:
    """The drop counter of the UDP socket bound to 127.0.0.1:port."""
    wanted = f"0100007F:{port:04X}"
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == wanted and fields[2] == "00000000:0000":
            return int(fields[-1])
    raise SystemExit(f"no UDP socket on 127.0.0.1:{port}")


def loopback_drops() -> int:
    """The drop counters of every UDP socket bound to 127.0.0.1 or the wildcard, summed
    (dnsperf's among them); sockets that close meanwhile take their counts with them."""
    total = 0
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].startswith(("0100007F:", "00000000:")):
            total += int(fields[-1])
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkout", type=Path, default=ROOT, help="code to run (a checkout)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--outstanding", type=int, default=300)
    parser.add_argument(
        "--client-buffer", type=int, default=0, help="dnsperf -b: its socket buffers, KiB"
    )
    args = parser.parse_args()
    with failures_reported(PROG):
        run(args)


def run(args: argparse.Namespace) -> None:
    checkout = args.checkout.resolve()
    # ``python -m`` puts the working directory first on the path: run in the checkout measured.
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    up, port = free_port(), free_port()
    authority = daemon.fixture_authority(f"{HOST}:{up}", log_level=None)
    serve = daemon.serve(listen=f"{HOST}:{port}", upstream=f"{HOST}:{up}")
    with spawned(authority, cwd=checkout, env=env) as auth:
        wait_answering(lambda: auth.poll() is None, up, name="resolver authority")
        with spawned(serve, cwd=checkout, env=env) as ours:
            wait_answering(lambda: ours.poll() is None, port, name="resolver serve")
            buffers = ["-b", str(args.client_buffer)] if args.client_buffer else []
            warm = ["dnsperf", "-s", HOST, "-p", str(port), "-d", str(HITS), *buffers, "-n", "1"]
            subprocess.run(warm, capture_output=True, check=True)
            print(f"checkout {checkout}", flush=True)
            argv = dnsperf_argv(
                port, HITS, args.seconds, args.outstanding, core=None, timeout=None, options=buffers
            )
            for number in range(args.runs):
                before, all_before = socket_drops(port), loopback_drops()
                out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
                sent, _, lost, qps, _, _ = parse_dnsperf(out)
                print(
                    f"run {number + 1}: sent {sent}, lost {lost}, "
                    f"listener drops {socket_drops(port) - before}, "
                    f"all loopback sockets' drops {loopback_drops() - all_before}, "
                    f"{qps:,.0f} qps",
                    flush=True,
                )


if __name__ == "__main__":
    main()
