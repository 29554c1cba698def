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
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tcp_abuse import REPO, ZONES, free_port, running, wait_answering

HITS = REPO / "benchmarks" / "queries" / "hits.txt"


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
    parser.add_argument("--checkout", type=Path, default=REPO, help="code to run (a checkout)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--outstanding", type=int, default=300)
    parser.add_argument(
        "--client-buffer", type=int, default=0, help="dnsperf -b: its socket buffers, KiB"
    )
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(args.checkout.resolve())}
    up, port = free_port(), free_port()
    zones = [f"--zone={path}" for path in sorted(ZONES.glob("*.zone"))]
    authority = [sys.executable, "-m", "resolver", "authority", *zones]
    serve = [sys.executable, "-m", "resolver", "serve", "--listen", f"127.0.0.1:{port}"]
    serve += ["--upstream", f"127.0.0.1:{up}", "--log-level", "warning"]
    with running([*authority, "--listen", f"127.0.0.1:{up}"], env) as auth:
        wait_answering(auth, up)
        with running(serve, env) as daemon:
            wait_answering(daemon, port)
            dnsperf = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(HITS)]
            if args.client_buffer:
                dnsperf += ["-b", str(args.client_buffer)]
            subprocess.run([*dnsperf, "-n", "1"], capture_output=True, check=True)  # warm
            print(f"checkout {args.checkout.resolve()}", flush=True)
            for run in range(args.runs):
                before, all_before = socket_drops(port), loopback_drops()
                out = subprocess.run(
                    [*dnsperf, "-c", "1", "-q", str(args.outstanding), "-l", str(args.seconds)],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                sent = re.search(r"Queries sent:\s+(\d+)", out)
                lost = re.search(r"Queries lost:\s+(\d+)", out)
                qps = re.search(r"Queries per second:\s+([\d.]+)", out)
                if not (sent and lost and qps):
                    raise SystemExit(f"unexpected dnsperf output:\n{out}")
                print(
                    f"run {run + 1}: sent {sent[1]}, lost {lost[1]}, "
                    f"listener drops {socket_drops(port) - before}, "
                    f"all loopback sockets' drops {loopback_drops() - all_before}, "
                    f"{float(qps[1]):,.0f} qps",
                    flush=True,
                )


if __name__ == "__main__":
    main()
