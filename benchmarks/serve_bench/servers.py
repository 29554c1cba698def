"""The processes: the dnsmasq upstream, the forwarders under test, the upstream candidates;
each in its own process group, stopped whatever happens. (NSD, the other upstream: nsd.py.)"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from dnslib import QTYPE, RCODE, DNSRecord

ROOT = Path(__file__).resolve().parents[2]
QUERIES = ROOT / "benchmarks" / "queries"
HOST = "127.0.0.1"
SERVER_CORE = "0"  # the server under test, alone
LOAD_CORE = "1"  # dnsperf and the upstream

CEILING = "upstream (ceiling)"
OURS = "resolver serve"
COMPILED = "resolver serve (compiled)"  # with --compiled DIR: the build compiled with mypyc
DNSMASQ = "dnsmasq forwarder"
FLOOR = "floor forwarder"
DNSLIB = "dnslib ProxyResolver"
BEFORE = "resolver serve (before)"  # imported from another checkout (--before)
SERVERS = (CEILING, OURS, COMPILED, DNSMASQ, FLOOR, DNSLIB)

# The upstream's records: the names of queries/zone.txt as fixtures/zones/example.com.zone has
# them, and a synthesised A for every name under uniq.example.com (queries/unique.txt).
# --local makes anything else under example.com. an NXDOMAIN/NODATA instead of a forward.
UPSTREAM_RECORDS = (
    "--local=/example.com/",
    "--local-ttl=300",
    "--host-record=www.example.com,127.1.0.1,2001:db8::1",
    "--host-record=mail.example.com,127.1.0.25,2001:db8::25",
    "--host-record=short.example.com,127.1.0.2",
    "--host-record=sip.example.com,127.1.0.50",
    "--cname=alias.example.com,www.example.com",
    "--txt-record=txtonly.example.com,only a TXT here,second string",
    "--srv-host=_sip._udp.example.com,sip.example.com,5060,10,5",
    "--mx-host=example.com,mail.example.com,10",
    "--mx-host=example.com,mail2.example.test,20",
    "--txt-record=example.com,v=spf1 -all",
    "--address=/uniq.example.com/127.1.0.9",
)
DNSMASQ_COMMON = (
    "-k",
    "--no-resolv",
    "--no-hosts",
    "--bind-interfaces",
    f"--listen-address={HOST}",
    "--user=root",
    "--pid-file=",
    "--log-facility=-",
)
DNSLIB_QUIET = "--log=-request,-reply,-truncated,-error"


class SetupError(Exception):
    """A server did not start or answered wrongly: the benchmark cannot run."""


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    """A port free for both UDP and TCP on HOST (the daemon and dnsmasq bind both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((HOST, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((HOST, port))
                except OSError:
                    continue
        return port
    raise SetupError("no free port on loopback")


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


def process_cpu(pgid: int) -> dict[int, float]:
    """User + system CPU seconds (utime and stime, fields 14 and 15 of /proc/PID/stat) of each
    live process in the process group, by pid, all threads included."""
    ticks: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:  # field 5, the process group
                ticks[int(stat.parent.name)] = int(fields[11]) + int(fields[12])
    return {pid: n / os.sysconf("SC_CLK_TCK") for pid, n in ticks.items()}


def cpu_seconds(pgid: int) -> float:
    """The CPU time of the whole process group (see ``process_cpu``). The servers under test
    are one process each (``taskset`` execs them, so the group leader is the server), but
    ``resolver serve --workers N``, whose workers are forked into its group; NSD is three."""
    return sum(process_cpu(pgid).values())


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


def wait_ready(proc: Proc, timeout: float = 15.0) -> None:
    """Poll until the server answers its probe question. Raises SetupError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise SetupError(f"{proc.name} exited:\n{proc.log.read_text()[-2000:]}")
        if ask(proc.port, *proc.probe, timeout=0.5) is not None:
            return
        time.sleep(0.1)
    raise SetupError(f"{proc.name} did not answer on {HOST}:{proc.port} within {timeout:.0f} s")


def query_file(workload: str) -> Path:
    """The dnsperf input of a fixed workload: benchmarks/queries/WORKLOAD.txt."""
    return QUERIES / f"{workload}.txt"


def read_queries(workload: str) -> list[tuple[str, str]]:
    lines = query_file(workload).read_text().split("\n")
    return [(n, t) for n, t in (line.split() for line in lines if line.strip())]


def check_answers(proc: Proc, queries: Sequence[tuple[str, str]]) -> None:
    """Each query gets NOERROR with at least one answer record. Raises SetupError."""
    for name, qtype in queries:
        reply = ask(proc.port, name, qtype)
        if reply is None or reply.header.rcode != RCODE.NOERROR or not reply.rr:
            got = "no reply" if reply is None else f"{RCODE[reply.header.rcode]}, {reply.rr}"
            raise SetupError(f"{proc.name}: {name} {qtype}: {got}")
        synthesised = name.endswith(("uniq.example.com", "wild.test"))
        if synthesised and QTYPE[reply.rr[0].rtype] != qtype:
            raise SetupError(f"{proc.name}: {name} {qtype}: got {reply.rr[0]}")


class Counter(Protocol):
    """An upstream's own count of the queries it received or answered."""

    def read(self) -> int: ...


class UpstreamCounter:
    """The upstream dnsmasq's "queries answered locally" counter, read through SIGUSR1."""

    _LINE = re.compile(rb"queries answered locally (\d+)")

    def __init__(self, proc: Proc) -> None:
        self.proc = proc

    def read(self) -> int:
        before = len(self._LINE.findall(self.proc.log.read_bytes()))
        os.kill(self.proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            found = self._LINE.findall(self.proc.log.read_bytes())
            if len(found) > before:
                return int(found[-1])
            time.sleep(0.02)
        raise SetupError("the upstream dnsmasq did not report its counters on SIGUSR1")


# --------------------------------------------------------------------------- servers


def upstream_proc(tmp: Path) -> Proc:
    """The dnsmasq upstream of the ``zone`` and ``unique`` workloads, answering locally."""
    port = free_port()
    argv = ["taskset", "-c", LOAD_CORE, "dnsmasq", *DNSMASQ_COMMON, f"--port={port}"]
    return Proc(CEILING, [*argv, *UPSTREAM_RECORDS], tmp / "upstream.log", port)


# The daemon has an answer cache: off, so that every query is forwarded.
CACHE_OFF = "[cache]\nenabled = false\n"


def ours_proc(
    tmp: Path,
    tag: str,
    upstream_port: int,
    toml: str,
    probe: tuple[str, str],
    name: str = OURS,
    *,
    cores: str = SERVER_CORE,
    workers: int = 1,
    build: Path | None = None,
) -> Proc:
    """``resolver serve`` from this checkout (``sys.executable -m resolver``, run in the
    repository root) with the TOML text given, on ``cores`` (the server core), with
    ``workers`` worker processes (forked: in the same process group). With ``build``, the
    package installed in that directory instead (see :func:`build_python`)."""
    config = tmp / f"{tag}.toml"
    config.write_text(toml)
    port = free_port()
    python = [sys.executable] if build is None else build_python(build)
    argv = [
        "taskset", "-c", cores, *python, "-m", "resolver", "serve",
        "--config", str(config), "--listen", f"{HOST}:{port}",
        "--upstream", f"{HOST}:{upstream_port}", "--workers", str(workers),
        "--log-level", "warning",
    ]  # fmt: skip
    return Proc(name, argv, tmp / f"{tag}.log", port, probe)


def build_python(build: Path) -> list[str]:
    """The command that runs Python with the package installed in ``build`` (``pip install
    --target``) first on its path: ``-P`` keeps the working directory, this checkout, off it,
    and ``env`` sets PYTHONPATH without changing the environment of anything else."""
    return ["env", f"PYTHONPATH={build}", sys.executable, "-P"]


def build_version(build: Path) -> str:
    """``resolver --version`` of the package installed in ``build``; SetupError if it fails."""
    try:
        done = subprocess.run(
            [*build_python(build), "-m", "resolver", "--version"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise SetupError(f"cannot run the build in {build}: {exc}") from exc
    if done.returncode != 0:
        raise SetupError(f"no resolver runs from {build}: {done.stderr.strip()}")
    return done.stdout.strip()


def before_proc(
    tmp: Path, checkout: Path, upstream_port: int, toml: str, probe: tuple[str, str]
) -> Proc:
    """``resolver serve`` as ``ours_proc`` makes it, but importing the package from another
    checkout (a copy of the tree before a change), to measure before and after in one run."""
    proc = ours_proc(tmp, "before", upstream_port, toml, probe, name=BEFORE)
    python = proc.argv.index(sys.executable)
    # ``python -m`` puts its working directory first on sys.path: run it in the checkout.
    proc.argv[python:python] = ["env", "-C", str(checkout), f"PYTHONPATH={checkout}"]
    return proc


def forwarder_procs(
    tmp: Path,
    upstream_port: int,
    tag: str,
    probe: tuple[str, str],
    servers: Sequence[str],
    compiled: Path | None = None,
) -> dict[str, Proc]:
    """The forwarders named in ``servers`` (CEILING is the upstream itself: skipped), all
    forwarding to HOST:upstream_port, each alone on the server core. ``tag`` keeps the file
    names of forwarders of different upstreams apart; ``compiled`` is where the compiled build
    is installed, for COMPILED."""
    pinned = ["taskset", "-c", SERVER_CORE]
    python = [*pinned, sys.executable, "-m"]

    def dnsmasq() -> Proc:
        port = free_port()
        argv = [*pinned, "dnsmasq", *DNSMASQ_COMMON, "--cache-size=0",
                f"--server={HOST}#{upstream_port}", f"--port={port}"]  # fmt: skip
        return Proc(DNSMASQ, argv, tmp / f"{tag}-dnsmasq.log", port, probe)

    def floor() -> Proc:
        port = free_port()
        argv = [*python, "benchmarks.serve_bench.floor", "--listen", f"{HOST}:{port}",
                "--upstream", f"{HOST}:{upstream_port}"]  # fmt: skip
        return Proc(FLOOR, argv, tmp / f"{tag}-floor.log", port, probe)

    def dnslib() -> Proc:
        port = free_port()
        argv = [*python, "dnslib.proxy", "--address", HOST, "--port", str(port),
                "--upstream", f"{HOST}:{upstream_port}", DNSLIB_QUIET]  # fmt: skip
        return Proc(DNSLIB, argv, tmp / f"{tag}-dnslib.log", port, probe)

    def ours() -> Proc:
        return ours_proc(tmp, f"{tag}-ours", upstream_port, CACHE_OFF, probe)

    def ours_compiled() -> Proc:
        assert compiled is not None
        return ours_proc(
            tmp, f"{tag}-compiled", upstream_port, CACHE_OFF, probe, COMPILED, build=compiled
        )

    build = {OURS: ours, COMPILED: ours_compiled, DNSMASQ: dnsmasq, FLOOR: floor, DNSLIB: dnslib}
    return {name: build[name]() for name in servers if name in build}


def candidate_procs(tmp: Path) -> list[Proc]:
    """The upstreams considered, each pinned to SERVER_CORE for a fair solo measurement."""
    pinned = ["taskset", "-c", SERVER_CORE]
    dnsmasq, authority, fixed = free_port(), free_port(), free_port()
    zone = str(ROOT / "fixtures" / "zones" / "example.com.zone")
    return [
        Proc(
            "dnsmasq (local records)",
            [*pinned, "dnsmasq", *DNSMASQ_COMMON, f"--port={dnsmasq}", *UPSTREAM_RECORDS],
            tmp / "cand-dnsmasq.log",
            dnsmasq,
        ),
        Proc(
            "resolver authority",
            [*pinned, sys.executable, "-m", "resolver", "authority", "--zone", zone,
             "--listen", f"{HOST}:{authority}", "--log-level", "warning"],
            tmp / "cand-authority.log",
            authority,
        ),
        Proc(
            "dnslib fixedresolver",
            [*pinned, sys.executable, "-m", "dnslib.fixedresolver", "--address", HOST,
             "--port", str(fixed), "-r", "www.example.com. 300 IN A 127.1.0.1", DNSLIB_QUIET],
            tmp / "cand-fixed.log",
            fixed,
        ),
    ]  # fmt: skip


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
