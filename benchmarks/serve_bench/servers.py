"""The processes: the dnsmasq upstream, the forwarders under test, the upstream candidates;
each in its own process group, stopped whatever happens. (NSD, the other upstream: nsd.py.)"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from dnslib import QTYPE, RCODE

from benchmarks import daemon
from benchmarks.errors import SetupError
from benchmarks.ports import free_port
from benchmarks.processes import HOST, LOAD_CORE, ROOT, SERVER_CORE, Proc, ask
from benchmarks.serve_bench.floor import command as floor_command

QUERIES = ROOT / "benchmarks" / "queries"

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


# --------------------------------------------------------------------------- queries


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


def upstream_proc(
    tmp: Path, records: Sequence[str] = UPSTREAM_RECORDS, name: str = CEILING
) -> Proc:
    """The dnsmasq upstream of the ``zone`` and ``unique`` workloads, answering locally from
    ``records`` (dnsmasq options), on the load core."""
    port = free_port()
    argv = ["taskset", "-c", LOAD_CORE, "dnsmasq", *DNSMASQ_COMMON, f"--port={port}"]
    return Proc(name, [*argv, *records], tmp / "upstream.log", port)


def dnsmasq_proc(
    tmp: Path,
    name: str,
    upstream_port: int,
    cache_size: int,
    probe: tuple[str, str] = ("www.example.com", "A"),
    log: str = "dnsmasq",
) -> Proc:
    """dnsmasq forwarding to HOST:upstream_port with a cache of ``cache_size`` entries (0:
    none), alone on the server core; logging to LOG.log."""
    port = free_port()
    argv = ["taskset", "-c", SERVER_CORE, "dnsmasq", *DNSMASQ_COMMON,
            f"--cache-size={cache_size}", f"--server={HOST}#{upstream_port}",
            f"--port={port}"]  # fmt: skip
    return Proc(name, argv, tmp / f"{log}.log", port, probe)


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
    python: Sequence[str] = daemon.PYTHON,
) -> Proc:
    """``resolver serve`` from this checkout (``sys.executable -m resolver``, run in the
    repository root) with the TOML text given, on ``cores`` (the server core), with
    ``workers`` worker processes (forked: in the same process group). ``python`` runs another
    interpreter or package instead (``daemon.from_build``, ``daemon.from_checkout``)."""
    config = daemon.write_config(tmp / f"{tag}.toml", toml)
    port = free_port()
    argv = daemon.serve(
        config=config,
        listen=f"{HOST}:{port}",
        upstream=f"{HOST}:{upstream_port}",
        extra=["--workers", str(workers)],
        python=python,
    )
    return Proc(name, ["taskset", "-c", cores, *argv], tmp / f"{tag}.log", port, probe)


def build_version(build: Path) -> str:
    """``resolver --version`` of the package installed in ``build``; SetupError if it fails."""
    try:
        done = subprocess.run(
            daemon.resolver("--version", python=daemon.from_build(build)),
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
    python = daemon.from_checkout(checkout)
    return ours_proc(tmp, "before", upstream_port, toml, probe, name=BEFORE, python=python)


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
        return dnsmasq_proc(tmp, DNSMASQ, upstream_port, 0, probe, f"{tag}-dnsmasq")

    def floor() -> Proc:
        port = free_port()
        argv = [*pinned, *floor_command(f"{HOST}:{port}", f"{HOST}:{upstream_port}")]
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
        python = daemon.from_build(compiled)
        return ours_proc(
            tmp, f"{tag}-compiled", upstream_port, CACHE_OFF, probe, COMPILED, python=python
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
            [*pinned, *daemon.resolver("authority", "--zone", zone, "--listen",
             f"{HOST}:{authority}", "--log-level", "warning")],
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
