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
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repository

from benchmarks import daemon
from benchmarks.errors import SetupError
from benchmarks.harness import rotated
from benchmarks.ports import free_port
from benchmarks.processes import HOST, ROOT, spawn, stop, wait_answering
from benchmarks.report import load_average

NAME = "www.example.com"
ANSWER = "127.1.0.1"
TARGET_RATIO = 2.0
STARTUP = 15.0  # seconds for the authority to answer
CALL_TIMEOUT = 20.0  # seconds for one measured call


def start_authority(port: int) -> subprocess.Popen[bytes]:
    """``resolver authority`` of this checkout serving the fixture zones on HOST:port, once
    it answers. Raises SetupError."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = spawn(daemon.fixture_authority(f"{HOST}:{port}"), cwd=ROOT, env=env)
    try:
        wait_answering(
            lambda: process.poll() is None, port, (NAME, "A"), STARTUP, "resolver authority"
        )
    except SetupError:
        stop(process)
        raise
    return process


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
    shutil.copytree(ROOT, source, ignore=litter)
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
    try:
        port = free_port()
        authority = start_authority(port)
    except SetupError as exc:
        raise SystemExit(str(exc)) from None
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
                for label in rotated(labels, round_number):
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
    print(f"load average at the end: {load_average()}")
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
