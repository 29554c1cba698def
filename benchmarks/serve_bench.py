"""Serve benchmark: dnsperf against three UDP forwarders in front of one fast upstream.

The servers under test all forward to the same upstream on loopback, a dnsmasq that answers
from local records (the fastest of the candidates; ``--compare-upstreams`` measures them):

* ``resolver serve`` (ours, uvloop, answer cache disabled through ``[cache] enabled = false``),
* ``dnsmasq`` as a plain forwarder (``--cache-size=0``),
* dnslib's ProxyResolver (``python -m dnslib.proxy``).

A fourth row, "upstream (ceiling)", is dnsperf straight at the upstream: no forwarder can be
faster than that. Core layout on the 2-core machine: the server under test alone on core 0;
dnsperf and the upstream together on core 1, so the upstream's work never competes with the
server under test (whose cost is what is measured). Every server runs for the whole benchmark;
each round runs every server once, in a rotated order, and the table shows medians.

Two workloads (query files in benchmarks/queries/):

* ``zone``: 11 names and types from fixtures/zones/example.com.zone (A, AAAA, CNAME, TXT, SRV,
  MX). With ~100 queries outstanding the same question is often in flight more than once, and
  both ours and dnsmasq merge identical in-flight questions into one upstream query; the
  ``up/q`` column (upstream queries per client query, from the upstream's own counters) shows it.
* ``unique``: 2000 distinct names under uniq.example.com (A), so no two questions in flight are
  the same and every client query is forwarded.

Targets: ours at least 0.75x dnsmasq's qps and at least 10x dnslib's, with 0 lost queries. They
are printed as VERDICT lines; the exit status is 0 whatever they say (2 when setup fails).

Traffic goes to 127.0.0.1 only; every dnsperf run is bounded (``-l``); every process this
starts is in its own process group and is killed on exit.

Run from the repository root (see benchmarks/README.md, section "Serve")::

    python -m benchmarks.serve_bench              # ~3 minutes
    python -m benchmarks.serve_bench --quick      # ~30 seconds, one round of 3 s
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from types import FrameType

from dnslib import QTYPE, RCODE, DNSRecord

ROOT = Path(__file__).resolve().parent.parent
QUERIES = Path(__file__).resolve().parent / "queries"
WORKLOADS = ("zone", "unique")
HOST = "127.0.0.1"
SERVER_CORE = "0"  # the server under test, alone
LOAD_CORE = "1"  # dnsperf and the upstream

CEILING = "upstream (ceiling)"
OURS = "resolver serve"
DNSMASQ = "dnsmasq forwarder"
DNSLIB = "dnslib ProxyResolver"
SERVERS = (CEILING, OURS, DNSMASQ, DNSLIB)
TARGET_VS_DNSMASQ = 0.75
TARGET_VS_DNSLIB = 10.0

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


# --------------------------------------------------------------------------- dnsperf


@dataclass(frozen=True, slots=True)
class Run:
    server: str
    workload: str
    sent: int
    completed: int
    lost: int
    qps: float
    latency_ms: float
    rcodes: str
    server_cpu: float  # share of one core, 1.0 = 100%
    upstream_cpu: float
    upstream_per_query: float
    wall: float

    @property
    def per_cpu_second(self) -> float:
        """Queries answered per second of the server's own CPU time: less noisy than qps
        on a shared machine, where the server under test rarely gets its core to itself."""
        cpu = self.server_cpu * self.wall
        return self.completed / cpu if cpu else 0.0


def dnsperf_argv(port: int, workload: str, seconds: float, outstanding: int) -> list[str]:
    return [
        "taskset",
        "-c",
        LOAD_CORE,
        "dnsperf",
        "-s",
        HOST,
        "-p",
        str(port),
        "-d",
        str(QUERIES / f"{workload}.txt"),
        "-l",
        f"{seconds:g}",
        "-c",
        "1",
        "-q",
        str(outstanding),
        "-t",
        "2",
    ]


def _field(text: str, label: str) -> str:
    match = re.search(rf"^\s*{re.escape(label)}:\s*(.+)$", text, re.MULTILINE)
    if match is None:
        raise SetupError(f"dnsperf output lacks {label!r}:\n{text}")
    return match.group(1).strip()


def parse_dnsperf(text: str) -> tuple[int, int, int, float, float, str]:
    """(sent, completed, lost, qps, average latency in ms, response codes) from dnsperf."""
    sent = int(_field(text, "Queries sent").split()[0])
    completed = int(_field(text, "Queries completed").split()[0])
    lost = int(_field(text, "Queries lost").split()[0])
    qps = float(_field(text, "Queries per second").split()[0])
    latency = float(_field(text, "Average Latency (s)").split()[0]) * 1000
    rcodes = re.search(r"^\s*Response codes:\s*(.*)$", text, re.MULTILINE)
    return sent, completed, lost, qps, latency, rcodes.group(1).strip() if rcodes else "-"


def measure(
    server: str,
    target: Proc,
    upstream: Proc,
    counter: UpstreamCounter,
    workload: str,
    seconds: float,
    outstanding: int,
) -> Run:
    """One bounded dnsperf run at ``target``, with the CPU both servers used meanwhile."""
    argv = dnsperf_argv(target.port, workload, seconds, outstanding)
    answered_before = counter.read()
    cpu_before = (cpu_seconds(target.pid), cpu_seconds(upstream.pid))
    wall = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=False)
    wall = time.monotonic() - wall
    cpu_after = (cpu_seconds(target.pid), cpu_seconds(upstream.pid))
    answered = counter.read() - answered_before
    if done.returncode != 0:
        raise SetupError(f"dnsperf failed ({done.returncode}):\n{done.stderr}{done.stdout}")
    sent, completed, lost, qps, latency, rcodes = parse_dnsperf(done.stdout)
    if target is upstream:
        answered = completed  # dnsperf's own queries: one upstream query each
    return Run(
        server=server,
        workload=workload,
        sent=sent,
        completed=completed,
        lost=lost,
        qps=qps,
        latency_ms=latency,
        rcodes=rcodes,
        server_cpu=(cpu_after[0] - cpu_before[0]) / wall,
        upstream_cpu=(cpu_after[1] - cpu_before[1]) / wall,
        upstream_per_query=answered / completed if completed else 0.0,
        wall=wall,
    )


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


# --------------------------------------------------------------------------- report


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


@dataclass
class Row:
    server: str
    runs: list[Run] = field(default_factory=list)

    @property
    def qps(self) -> float:
        return median([r.qps for r in self.runs])

    def spread(self) -> str:
        low, high = min(r.qps for r in self.runs), max(r.qps for r in self.runs)
        return f"{low:,.0f}-{high:,.0f}"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def table(rows: Sequence[Row]) -> list[str]:
    by = {row.server: row for row in rows}
    base_dnsmasq = by[DNSMASQ].qps if DNSMASQ in by else 0.0
    base_dnslib = by[DNSLIB].qps if DNSLIB in by else 0.0
    header = (
        "| server | qps (median) | qps range | lost | avg latency ms | server CPU | "
        "queries per CPU-s | upstream CPU | up/q | vs dnsmasq | vs dnslib |"
    )
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        runs = row.runs
        lines.append(
            f"| {row.server} | {row.qps:,.0f} | {row.spread()} | {sum(r.lost for r in runs)} | "
            f"{median([r.latency_ms for r in runs]):.2f} | "
            f"{median([r.server_cpu for r in runs]):.0%} | "
            f"{median([r.per_cpu_second for r in runs]):,.0f} | "
            f"{median([r.upstream_cpu for r in runs]):.0%} | "
            f"{median([r.upstream_per_query for r in runs]):.2f} | "
            f"{ratio(row.qps, base_dnsmasq)} | {ratio(row.qps, base_dnslib)} |"
        )
    return lines


def _met(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def verdicts(workload: str, rows: Sequence[Row]) -> list[str]:
    by = {row.server: row for row in rows}
    if not {OURS, DNSMASQ, DNSLIB} <= by.keys():
        return []
    ours = by[OURS]
    lost = sum(r.lost for r in ours.runs)
    vs_dnsmasq = ours.qps / by[DNSMASQ].qps
    vs_dnslib = ours.qps / by[DNSLIB].qps
    per_cpu = {s: median([r.per_cpu_second for r in by[s].runs]) for s in (OURS, DNSMASQ, DNSLIB)}
    out = [
        f"VERDICT {workload}: qps vs dnsmasq {vs_dnsmasq:.2f}x (target >= "
        f"{TARGET_VS_DNSMASQ}x): {_met(vs_dnsmasq >= TARGET_VS_DNSMASQ)}; "
        f"per CPU-second {ratio(per_cpu[OURS], per_cpu[DNSMASQ])}",
        f"VERDICT {workload}: qps vs dnslib {vs_dnslib:.1f}x (target >= "
        f"{TARGET_VS_DNSLIB:g}x): {_met(vs_dnslib >= TARGET_VS_DNSLIB)}; "
        f"per CPU-second {ratio(per_cpu[OURS], per_cpu[DNSLIB])}",
        f"VERDICT {workload}: lost queries {lost} (target 0): {_met(lost == 0)}",
    ]
    ceiling = by.get(CEILING)
    fastest = max(by[s].qps for s in (OURS, DNSMASQ, DNSLIB))
    if ceiling is not None and fastest > 0.8 * ceiling.qps:
        out.append(
            f"WARNING {workload}: a forwarder reached {fastest / ceiling.qps:.0%} of the "
            "ceiling; the load side may be the limit"
        )
    for row in rows:
        odd = {r.rcodes for r in row.runs if not r.rcodes.startswith("NOERROR")}
        odd |= {r.rcodes for r in row.runs if "%" in r.rcodes and "(100.00%)" not in r.rcodes}
        if odd:
            out.append(f"WARNING {workload}: {row.server} response codes: {sorted(odd)}")
    return out


def tool_version(argv: list[str], pattern: str) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        text = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
        match = re.search(pattern, text)
        if match:
            return match.group(1)
    return "?"


def git_state() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()

    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--", "resolver")
        return f"{head}{' + uncommitted changes in resolver/' if dirty else ''}"
    return "?"


def describe(args: argparse.Namespace) -> list[str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        match = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        cpu = match.group(1) if match else "?"
    dnsmasq = tool_version(["dnsmasq", "--version"], r"version (\S+)")
    dnsperf = tool_version(["dnsperf", "-h"], r"Version (\S+)")
    return [
        f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"machine: {platform.machine()}, {os.cpu_count()} cores ({cpu}), "
        f"{platform.system()} {platform.release()}, load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"python {platform.python_version()}, uvloop {version('uvloop')}, "
        f"dnslib {version('dnslib')}, "
        f"dnsmasq {dnsmasq}, dnsperf {dnsperf}",
        f"resolver tree: {git_state()}",
        f"load: dnsperf -c 1 -q {args.outstanding} -t 2 -l {args.seconds:g}, "
        f"{args.rounds} round(s), medians; server under test on core {SERVER_CORE}, "
        f"dnsperf and upstream on core {LOAD_CORE}",
    ]


# --------------------------------------------------------------------------- main


def bench(args: argparse.Namespace, tmp: Path) -> dict[str, list[Row]]:
    upstream = upstream_proc(tmp)
    forwarders = forwarder_procs(tmp, upstream.port)
    targets = {CEILING: upstream, **forwarders}
    rows = {w: [Row(s) for s in SERVERS] for w in args.workloads}
    with running([upstream, *forwarders.values()]):
        for proc in targets.values():
            for workload in args.workloads:
                check_answers(proc, read_queries(workload)[:20])
        counter = UpstreamCounter(upstream)
        for round_ in range(args.rounds):
            order = SERVERS[round_ % len(SERVERS) :] + SERVERS[: round_ % len(SERVERS)]
            for workload in args.workloads:
                for server in order:
                    time.sleep(args.pause)
                    run = measure(
                        server,
                        targets[server],
                        upstream,
                        counter,
                        workload,
                        args.seconds,
                        args.outstanding,
                    )
                    next(r for r in rows[workload] if r.server == server).runs.append(run)
                    print(
                        f"  round {round_ + 1} {workload:6} {server:22} {run.qps:9,.0f} qps "
                        f"lost {run.lost} cpu {run.server_cpu:.0%}",
                        flush=True,
                    )
    return rows


def compare_upstreams(args: argparse.Namespace, tmp: Path) -> None:
    """Each upstream candidate alone on core 0, dnsperf on core 1, zone workload."""
    procs = candidate_procs(tmp)
    results: dict[str, list[float]] = {p.name: [] for p in procs}
    with running(procs):
        for _ in range(args.rounds):
            for proc in procs:
                time.sleep(args.pause)
                argv = dnsperf_argv(proc.port, "zone", args.seconds, args.outstanding)
                done = subprocess.run(
                    argv, capture_output=True, text=True, timeout=args.seconds + 30, check=False
                )
                _, _, lost, qps, _, _ = parse_dnsperf(done.stdout)
                results[proc.name].append(qps)
                print(f"  {proc.name:24} {qps:9,.0f} qps lost {lost}", flush=True)
    print("\n| upstream candidate | qps (median) |\n|---|---:|")
    for name, values in sorted(results.items(), key=lambda kv: -median(kv[1])):
        print(f"| {name} | {median(values):,.0f} |")


def csv_workloads(text: str) -> list[str]:
    chosen = [w.strip() for w in text.split(",") if w.strip()]
    unknown = sorted(set(chosen) - set(WORKLOADS))
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {list(WORKLOADS)}")
    return chosen


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="dnsperf -l per run")
    parser.add_argument("--rounds", type=int, default=3, help="median of this many rounds")
    parser.add_argument("--outstanding", type=int, default=100, help="dnsperf -q")
    parser.add_argument("--workloads", type=csv_workloads, default=list(WORKLOADS))
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between runs")
    parser.add_argument("--quick", action="store_true", help="one round of 3 s")
    parser.add_argument(
        "--compare-upstreams",
        action="store_true",
        help="measure the upstream candidates alone instead, and exit",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.rounds = 3.0, 1
    if args.seconds <= 0 or args.seconds > 120 or args.rounds < 1 or args.outstanding < 1:
        parser.error("need 0 < --seconds <= 120, --rounds >= 1, --outstanding >= 1")
    return args


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through the finally blocks that stop the servers


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("dnsperf", "dnsmasq", "taskset"):
        if shutil.which(tool) is None:
            print(f"serve_bench: {tool} is not installed", file=sys.stderr)
            return 2
    if len(os.sched_getaffinity(0)) < 2:
        print("serve_bench: needs cores 0 and 1", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    for line in describe(args):
        print(line)
    with tempfile.TemporaryDirectory(prefix="serve_bench.") as name:
        tmp = Path(name)
        try:
            if args.compare_upstreams:
                compare_upstreams(args, tmp)
                return 0
            rows = bench(args, tmp)
        except SetupError as exc:
            print(f"serve_bench: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("serve_bench: interrupted; every server stopped", file=sys.stderr)
            return 130
    for workload, workload_rows in rows.items():
        print(f"\nworkload {workload} (queries/{workload}.txt)")
        print("\n".join(table(workload_rows)))
    print()
    for workload, workload_rows in rows.items():
        print("\n".join(verdicts(workload, workload_rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
