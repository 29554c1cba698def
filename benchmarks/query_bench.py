"""Query benchmark: the wall time of one ``resolver query`` call against one ``dig`` call.

Both ask the same question of the same server, ``resolver authority`` serving the fixture
zones on a free 127.0.0.1 port, started here and stopped at the end. Each round runs every
command once, in rotated order; the report is the median wall time of each over the rounds and
the ratio of ours to dig's, with a VERDICT against the target of 2x dig (issue 18). Each call is
a fresh process, start-up included: that is what a user waits for.

``resolver query`` runs as a user runs it: the ``resolver`` console script of a plain
(non-editable) ``pip install --no-deps --target DIR .`` of this checkout, made in a temporary
directory, with its bytecode cached (in a temporary ``PYTHONPYCACHEPREFIX``, whatever
PYTHONDONTWRITEBYTECODE says) as an installed package has it. Beside it, measured in the same
rounds: ``python -c pass`` (the interpreter with this environment's ``site``: what no Python
program can go below here), and, with ``--no-site``, the same pair under ``python -S`` with
site-packages on PYTHONPATH: the interpreter without the ``.pth`` hooks of this environment (an
editable install's finder, a certificate path hook), as a clean virtualenv has it. One
unmeasured call of each warms the caches first. Every query call must print the answer, or the
run fails.

Run from the repository root (see benchmarks/README.md, section "Query")::

    python benchmarks/query_bench.py --rounds 20
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

REPO = Path(__file__).resolve().parent.parent
ZONES = REPO / "fixtures" / "zones"
NAME = "www.example.com"
ANSWER = "127.1.0.1"
TARGET_RATIO = 2.0
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


def timed(command: Sequence[str], env: dict[str, str], answer: bool = True) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one call of ``command``; SystemExit
    unless it succeeds (and, with ``answer``, prints the answer). On a shared machine the CPU
    time is the steadier figure: waiting for a core counts in the wall time only."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=CALL_TIMEOUT, check=False
    )
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0 or (answer and ANSWER not in done.stdout):
        raise SystemExit(f"{command[0]} failed ({done.returncode}): {done.stderr.strip()}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return elapsed, cpu


def install(target: Path) -> Path:
    """A plain ``pip install --no-deps --target`` of a copy of this checkout (so that the build
    leaves nothing in it); its console script."""
    source = target.parent / "source"
    litter = shutil.ignore_patterns(".git", "build", "*.egg-info", ".*_cache", ".hypothesis")
    shutil.copytree(REPO, source, ignore=litter)
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps"]
    done = subprocess.run(
        [*pip, "--target", str(target), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    script = target / "bin" / "resolver"
    if done.returncode != 0 or not script.exists():
        raise SystemExit(f"pip install failed: {done.stderr.strip()}")
    return script


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="calls of each (default 20)")
    parser.add_argument(
        "--no-site",
        action="store_true",
        help="also measure both under python -S (no .pth hooks), site-packages on the path",
    )
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
        with tempfile.TemporaryDirectory(prefix="query-bench-") as scratch:
            script = install(Path(scratch) / "install")
            env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
            env |= {"PYTHONPATH": str(script.parent.parent), "PYTHONPYCACHEPREFIX": scratch}
            ask = ["query", "@127.0.0.1", "-p", str(port), NAME]
            commands = {
                "ours": ([sys.executable, str(script), *ask], env, True),
                "dig": ([dig, "@127.0.0.1", "-p", str(port), NAME], env, True),
                "python": ([sys.executable, "-c", "pass"], env, False),
            }
            if args.no_site:
                path = [str(script.parent.parent), sysconfig.get_path("purelib")]
                bare = env | {"PYTHONPATH": os.pathsep.join(path)}
                commands["ours -S"] = ([sys.executable, "-S", str(script), *ask], bare, True)
                commands["python -S"] = ([sys.executable, "-S", "-c", "pass"], bare, False)
            for command, command_env, answer in commands.values():
                timed(command, command_env, answer)
            times: dict[str, list[float]] = {label: [] for label in commands}
            cpu: dict[str, list[float]] = {label: [] for label in commands}
            labels = list(commands)
            for round_number in range(args.rounds):
                shift = round_number % len(labels)
                for label in labels[shift:] + labels[:shift]:
                    command, command_env, answer = commands[label]
                    wall, used = timed(command, command_env, answer)
                    times[label].append(wall)
                    cpu[label].append(used)
    finally:
        stop(authority)
    median_ms = {label: statistics.median(values) * 1000 for label, values in times.items()}
    cpu_ms = {label: statistics.median(values) * 1000 for label, values in cpu.items()}
    ratio = median_ms["ours"] / median_ms["dig"]
    print(f"server: resolver authority on 127.0.0.1:{port}; question: {NAME} A")
    print(f"python: {sys.version.split()[0]} ({sys.executable}); dig: {dig}")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"rounds: {args.rounds}, rotating which goes first")
    for label, values in times.items():
        print(f"{label:>9} ms: {' '.join(f'{t * 1000:.1f}' for t in values)}")
    print("median wall ms: " + ", ".join(f"{k} {ms:.1f}" for k, ms in median_ms.items()))
    print("median CPU ms:  " + ", ".join(f"{k} {ms:.1f}" for k, ms in cpu_ms.items()))
    print(
        f"ratio: resolver query / dig {ratio:.2f}x wall, {cpu_ms['ours'] / cpu_ms['dig']:.2f}x CPU"
    )
    if args.no_site:
        print(
            "ratio without this environment's .pth hooks (python -S): "
            f"{median_ms['ours -S'] / median_ms['dig']:.2f}x wall, "
            f"{cpu_ms['ours -S'] / cpu_ms['dig']:.2f}x CPU"
        )
    met = ratio <= TARGET_RATIO
    print(f"VERDICT: {'met' if met else 'missed'} (target <= {TARGET_RATIO:g}x dig)")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
