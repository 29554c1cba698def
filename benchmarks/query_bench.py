"""Query benchmark: the wall time of one ``resolver query`` call against one ``dig`` call.

Both ask the same question of the same server, ``resolver authority`` serving the fixture
zones on a free 127.0.0.1 port, started here and stopped at the end. Each round runs both
once, alternating which goes first; the report is the median wall time of each over the
rounds and their ratio, with a VERDICT against the target of 3x dig (issue 14). Each call is
a fresh process, start-up included: that is what a user waits for.

``resolver query`` runs as ``python -m resolver query`` with this interpreter and this
checkout first on the path, with its bytecode cached (in a temporary directory, whatever
PYTHONDONTWRITEBYTECODE says) as an installed package has it; one unmeasured call of each
warms the caches first. Every call must print the answer, or the run fails.

Run from the repository root (see benchmarks/README.md, section "Query")::

    python benchmarks/query_bench.py --rounds 10
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

REPO = Path(__file__).resolve().parent.parent
ZONES = REPO / "fixtures" / "zones"
NAME = "www.example.com"
ANSWER = "127.1.0.1"
TARGET_RATIO = 3.0
STARTUP = 15.0  # seconds for the authority to answer
CALL_TIMEOUT = 20.0  # seconds for one measured call


def free_port() -> int:
    """A loopback port free for both UDP and TCP right now."""
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise SystemExit("no free loopback port")


def answers(port: int) -> bool:
    """Whether something on 127.0.0.1:``port`` answers a query for NAME."""
    labels = b"".join(bytes((len(p),)) + p.encode() for p in NAME.split("."))
    query = struct.pack("!6H", 0x4242, 0x0100, 1, 0, 0, 0) + labels + b"\x00\x00\x01\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        try:
            sock.sendto(query, ("127.0.0.1", port))
            reply, source = sock.recvfrom(65535)
        except OSError:
            time.sleep(0.05)  # nothing listens yet: pace the polling
            return False
    return source[1] == port and reply[:2] == b"\x42\x42" and bool(reply[2] & 0x80)


def start_authority(port: int) -> subprocess.Popen[bytes]:
    zones = [f"--zone={path}" for path in sorted(ZONES.glob("*.zone"))]
    listen = ["--listen", f"127.0.0.1:{port}", "--log-level", "warning"]
    process = subprocess.Popen(
        [sys.executable, "-m", "resolver", "authority", *zones, *listen],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + STARTUP
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"resolver authority exited with {process.returncode}")
        if answers(port):
            return process
    stop(process)
    raise SystemExit(f"resolver authority did not answer within {STARTUP:g}s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def timed(command: Sequence[str], env: dict[str, str]) -> float:
    """Seconds one call of ``command`` takes; SystemExit unless it prints the answer."""
    started = time.perf_counter()
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=CALL_TIMEOUT, check=False
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0 or ANSWER not in done.stdout:
        raise SystemExit(f"{command[0]} failed ({done.returncode}): {done.stderr.strip()}")
    return elapsed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="calls of each (default 10)")
    args = parser.parse_args(argv)
    if not 1 <= args.rounds <= 1000:
        parser.error("--rounds must be from 1 to 1000")
    dig = shutil.which("dig")
    if dig is None:
        raise SystemExit("dig is not installed (apt-get install bind9-dnsutils)")

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    port = free_port()
    authority = start_authority(port)
    try:
        with tempfile.TemporaryDirectory(prefix="query-bench-pyc-") as pyc:
            env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
            env |= {"PYTHONPATH": str(REPO), "PYTHONPYCACHEPREFIX": pyc}
            ours = [sys.executable, "-m", "resolver", "query", "@127.0.0.1", "-p", str(port), NAME]
            theirs = [dig, "@127.0.0.1", "-p", str(port), NAME]
            timed(ours, env)
            timed(theirs, env)
            times: dict[str, list[float]] = {"ours": [], "dig": []}
            for round_number in range(args.rounds):
                order = [("ours", ours), ("dig", theirs)]
                for label, command in order if round_number % 2 == 0 else order[::-1]:
                    times[label].append(timed(command, env))
    finally:
        stop(authority)
    ours_ms = statistics.median(times["ours"]) * 1000
    dig_ms = statistics.median(times["dig"]) * 1000
    ratio = ours_ms / dig_ms
    print(f"server: resolver authority on 127.0.0.1:{port}; question: {NAME} A")
    print(f"python: {sys.version.split()[0]} ({sys.executable}); dig: {dig}")
    print(f"rounds: {args.rounds}, alternating which goes first")
    for label in ("ours", "dig"):
        values = " ".join(f"{t * 1000:.1f}" for t in times[label])
        print(f"{label:>4} ms: {values}")
    print(f"median: resolver query {ours_ms:.1f} ms, dig {dig_ms:.1f} ms, ratio {ratio:.2f}x")
    met = ratio <= TARGET_RATIO
    print(f"VERDICT: {'met' if met else 'missed'} (target <= {TARGET_RATIO:g}x dig)")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
