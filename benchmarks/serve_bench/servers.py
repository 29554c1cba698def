"""The processes: the upstream, the forwarders under test, the upstream candidates; each in
its own process group, stopped whatever happens."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from dnslib import QTYPE, RCODE, DNSRecord

ROOT = Path(__file__).resolve().parents[2]
QUERIES = ROOT / "benchmarks" / "queries"
WORKLOADS = ("zone", "unique")
HOST = "127.0.0.1"
SERVER_CORE = "0"  # the server under test, alone
LOAD_CORE = "1"  # dnsperf and the upstream

CEILING = "upstream (ceiling)"
OURS = "resolver serve"
DNSMASQ = "dnsmasq forwarder"
DNSLIB = "dnslib ProxyResolver"
SERVERS = (CEILING, OURS, DNSMASQ, DNSLIB)

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
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("wb") as out:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                start_new_session=True,
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
    """Poll until the server answers www.example.com A. Raises SetupError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise SetupError(f"{proc.name} exited:\n{proc.log.read_text()[-2000:]}")
        if ask(proc.port, "www.example.com", "A", timeout=0.5) is not None:
            return
        time.sleep(0.1)
    raise SetupError(f"{proc.name} did not answer on {HOST}:{proc.port} within {timeout:.0f} s")


def read_queries(workload: str) -> list[tuple[str, str]]:
    lines = (QUERIES / f"{workload}.txt").read_text().split("\n")
    return [(n, t) for n, t in (line.split() for line in lines if line.strip())]


def check_answers(proc: Proc, queries: Sequence[tuple[str, str]]) -> None:
    """Each query gets NOERROR with at least one answer record. Raises SetupError."""
    for name, qtype in queries:
        reply = ask(proc.port, name, qtype)
        if reply is None or reply.header.rcode != RCODE.NOERROR or not reply.rr:
            got = "no reply" if reply is None else f"{RCODE[reply.header.rcode]}, {reply.rr}"
            raise SetupError(f"{proc.name}: {name} {qtype}: {got}")
        if name.endswith("uniq.example.com") and QTYPE[reply.rr[0].rtype] != qtype:
            raise SetupError(f"{proc.name}: {name} {qtype}: got {reply.rr[0]}")


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
    port = free_port()
    argv = ["taskset", "-c", LOAD_CORE, "dnsmasq", *DNSMASQ_COMMON, f"--port={port}"]
    return Proc(CEILING, [*argv, *UPSTREAM_RECORDS], tmp / "upstream.log", port)


def forwarder_procs(tmp: Path, upstream_port: int) -> dict[str, Proc]:
    up = f"{HOST}:{upstream_port}"
    config = tmp / "serve.toml"
    # The daemon has an answer cache: off, so that every query is forwarded.
    config.write_text("[cache]\nenabled = false\n")
    pinned = ["taskset", "-c", SERVER_CORE]
    python = [*pinned, sys.executable, "-m"]
    ours, dnsmasq, dnslib = free_port(), free_port(), free_port()
    return {
        OURS: Proc(
            OURS,
            [*python, "resolver", "serve", "--config", str(config), "--listen",
             f"{HOST}:{ours}", "--upstream", up, "--log-level", "warning"],
            tmp / "ours.log",
            ours,
        ),
        DNSMASQ: Proc(
            DNSMASQ,
            [*pinned, "dnsmasq", *DNSMASQ_COMMON, "--cache-size=0",
             f"--server={HOST}#{upstream_port}", f"--port={dnsmasq}"],
            tmp / "dnsmasq.log",
            dnsmasq,
        ),
        DNSLIB: Proc(
            DNSLIB,
            [*python, "dnslib.proxy", "--address", HOST, "--port", str(dnslib),
             "--upstream", up, DNSLIB_QUIET],
            tmp / "dnslib.log",
            dnslib,
        ),
    }  # fmt: skip


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
