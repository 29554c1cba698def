"""The processes the benchmarks start (peer servers, our daemon, load generators) and how they
end: each in its own process group, stopped whatever happens. One home for the core layout too:
the server under test alone on SERVER_CORE, the load and the upstreams on LOAD_CORE."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from dnslib import DNSRecord

from benchmarks.errors import SetupError

ROOT = Path(__file__).resolve().parents[1]  # the repository: where ``python -m resolver`` runs
HOST = "127.0.0.1"
SERVER_CORE = "0"  # the server under test, alone
LOAD_CORE = "1"  # dnsperf and the upstream


@dataclass
class Proc:
    """A process in its own session (so its whole group can be killed), logging to a file."""

    name: str
    argv: list[str]
    log: Path
    port: int
    probe: tuple[str, str] = ("www.example.com", "A")  # a question it answers once ready
    popen: subprocess.Popen[bytes] | None = None
    # Sent to the process when the thread that started it ends, even by SIGKILL (Linux's
    # PR_SET_PDEATHSIG, kept across exec): for servers that must not outlive their starter.
    parent_death_signal: int | None = None

    def start(self) -> None:
        with self.log.open("wb") as out:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                start_new_session=True,
                preexec_fn=_on_parent_death(self.parent_death_signal),
            )

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self) -> None:
        """SIGTERM to the process group, SIGKILL after 5 s. Idempotent."""
        if self.popen is None:
            return
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            if self.popen.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(wait)
        # Stragglers in the group (a dnsmasq TCP child) go too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)


def _on_parent_death(signum: int | None) -> Callable[[], None] | None:
    """A preexec_fn asking the kernel to send ``signum`` to the child when its parent thread
    ends; None for none. libc is looked up here, before the fork."""
    if signum is None:
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1

    def request() -> None:
        prctl(pr_set_pdeathsig, signum, 0, 0, 0)

    return request


def stop(process: subprocess.Popen[bytes]) -> None:
    """End a process started with a plain Popen (not a Proc): SIGTERM, then SIGKILL after
    10 s. Idempotent."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def ask(port: int, name: str, qtype: str, timeout: float = 1.0) -> DNSRecord | None:
    """One UDP query to HOST:port; the parsed reply or None."""
    query = DNSRecord.question(name, qtype)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(query.pack(), (HOST, port))
            data, _ = sock.recvfrom(65535)
        except OSError:
            return None
    return DNSRecord.parse(data)


def wait_answering(
    alive: Callable[[], bool],
    port: int,
    probe: tuple[str, str] = ("www.example.com", "A"),
    timeout: float = 15.0,
    name: str = "the server",
    log: Callable[[], str] = str,
) -> None:
    """Poll HOST:port with the ``probe`` question until a reply comes. Raises SetupError
    (with ``log()`` in its text) when ``alive()`` says the process ended, or after ``timeout``
    seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise SetupError(f"{name} exited:\n{log()}")
        if ask(port, *probe, timeout=0.5) is not None:
            return
        time.sleep(0.1)
    raise SetupError(f"{name} did not answer on {HOST}:{port} within {timeout:.0f} s")


def wait_ready(proc: Proc, timeout: float = 15.0) -> None:
    """Poll until the server answers its probe question. Raises SetupError."""
    wait_answering(
        proc.alive, proc.port, proc.probe, timeout, proc.name, lambda: proc.log.read_text()[-2000:]
    )


def spawn(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    stderr: IO[bytes] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` with a plain Popen, its output discarded (stderr to ``stderr`` when
    given); end it with ``stop``."""
    return subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=stderr if stderr is not None else subprocess.DEVNULL,
    )


@contextlib.contextmanager
def spawned(
    argv: Sequence[str], *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """``spawn``'s process for the block, stopped on the way out whatever happens."""
    process = spawn(argv, cwd=cwd, env=env)
    try:
        yield process
    finally:
        stop(process)


@contextlib.contextmanager
def running(procs: Sequence[Proc]) -> Iterator[None]:
    """Start every process, wait until each answers; stop them all, whatever happens."""
    try:
        for proc in procs:
            proc.start()
        for proc in procs:
            wait_ready(proc)
        yield
    finally:
        for proc in procs:
            proc.stop()


def pinned(cpu: int, argv: list[str]) -> list[str]:
    """``argv`` under ``taskset -c CPU`` when the machine has two CPUs or more and taskset is
    installed; as it is otherwise."""
    count = os.cpu_count() or 1
    if count >= 2 and shutil.which("taskset"):
        return ["taskset", "-c", str(cpu), *argv]
    return argv
