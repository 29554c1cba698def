"""What the benchmarks print: rows of dnsperf runs with their medians, ratios ("0.53x"), the
leading cells every table of rows has, "ours / peer" lines, and the description of the tree and
the machine measured."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.dnsperf import Run
from benchmarks.processes import ROOT

# A server under load that used less of its core than this was not alone on it (another
# tenant of the machine) or waited for something else.
BUSY_CPU = 0.9


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


@dataclass
class Row:
    """One server's runs on one workload, one per round (runs[i] is round i + 1); the
    properties are medians over the runs, ``lost`` their sum."""

    server: str
    runs: list[Run] = field(default_factory=list)

    @property
    def qps(self) -> float:
        return median([r.qps for r in self.runs])

    @property
    def per_cpu_second(self) -> float:
        return median([r.per_cpu_second for r in self.runs])

    @property
    def lost(self) -> int:
        return sum(r.lost for r in self.runs)

    @property
    def latency_ms(self) -> float:
        return median([r.latency_ms for r in self.runs])

    @property
    def server_cpu(self) -> float:
        return median([r.server_cpu for r in self.runs])

    @property
    def cpu_us_per_query(self) -> float:
        return median([r.cpu_us_per_query for r in self.runs])

    @property
    def upstream_cpu(self) -> float:
        return median([r.upstream_cpu for r in self.runs])

    @property
    def upstream_per_query(self) -> float:
        return median([r.upstream_per_query for r in self.runs])

    def spread(self) -> str:
        low, high = min(r.qps for r in self.runs), max(r.qps for r in self.runs)
        return f"{low:,.0f}-{high:,.0f}"


def paired(row: Row, base: Row, per_cpu: bool = False) -> float:
    """The median over rounds of row/base, each round's ratio from runs taken minutes apart
    at most: closer to the truth on a shared machine than a ratio of two medians."""
    ratios = []
    for mine, theirs in zip(row.runs, base.runs, strict=False):
        a, b = (mine.per_cpu_second, theirs.per_cpu_second) if per_cpu else (mine.qps, theirs.qps)
        if b:
            ratios.append(a / b)
    return median(ratios)


def ratio(a: float, b: float) -> str:
    """a/b as "0.53x"; "-" when b is 0."""
    return f"{a / b:.2f}x" if b else "-"


def times(value: float) -> str:
    """A ratio already taken, as "0.53x"; "-" when it is 0 (nothing to compare with)."""
    return f"{value:.2f}x" if value else "-"


def met(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def leading_header(first: str = "server") -> str:
    """The header cells every table of rows starts with (see ``leading_cells``)."""
    return f"| {first} | qps (median) | qps range | lost | avg latency ms | server CPU | "


def leading_cells(row: Row) -> str:
    """The cells every table of rows starts with: the server, its qps, their range, queries
    lost, latency and the server's share of its core."""
    return (
        f"| {row.server} | {row.qps:,.0f} | {row.spread()} | {row.lost} | "
        f"{row.latency_ms:.2f} | {row.server_cpu:.0%} | "
    )


def run_figures(run: Run, per_cpu: bool = True) -> str:
    """One run's figures as the progress lines print them."""
    text = f"{run.qps:9,.0f} qps lost {run.lost} cpu {run.server_cpu:.0%}"
    return text + (f" {run.per_cpu_second:9,.0f} q/cpu-s" if per_cpu else "")


def busy_warning(row: Row, where: str = "") -> str | None:
    """A WARNING line when ``row``'s server used less than BUSY_CPU of its core (median);
    ``where`` names the workload after WARNING."""
    if row.server_cpu >= BUSY_CPU:
        return None
    return (
        f"WARNING{f' {where}' if where else ''}: {row.server} used {row.server_cpu:.0%} of its "
        "core (median): it did not get the core or was not CPU-bound, so its qps says less "
        "than its queries per CPU-second"
    )


def cpu_line(name: str, qps: float, spent: float, per_cpu: float, lost: str, width: int) -> str:
    """One measurement of a server's own CPU time: qps, CPU seconds spent, queries per
    CPU-second (figures ``width`` wide) and dnsperf's line of queries lost."""
    return (
        f"{name:<22} {qps:>{width},.0f} qps  {spent:>6.2f} CPU s  "
        f"{per_cpu:>{width},.0f} q/CPU-s  {lost}"
    )


def ours_over(peer: str, mine: float, theirs: float) -> str | None:
    """The "ours / peer per CPU-second" line; None when the peer's figure is 0."""
    return f"ours / {peer} per CPU-second: {mine / theirs:.2f}x" if theirs else None


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def now() -> str:
    """The date and time, as every benchmark's header has it."""
    return f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo; "?" when it says none."""
    with contextlib.suppress(OSError):
        match = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        return match.group(1) if match else "?"
    return "?"


def machine() -> str:
    """The machine line of a description: architecture, cores, CPU, kernel, load average."""
    return (
        f"machine: {platform.machine()}, {os.cpu_count()} cores ({cpu_model()}), "
        f"{platform.system()} {platform.release()}, load average {load_average()}"
    )


# How each peer tool says its version: the command and the pattern of its output.
VERSIONS = {
    "dnsmasq": (["dnsmasq", "--version"], r"version (\S+)"),
    "dnsperf": (["dnsperf", "-h"], r"Version (\S+)"),
    "nsd": (["nsd", "-v"], r"NSD version (\S+)"),
    "unbound": (["unbound", "-V"], r"Version (\S+)"),
}


def version_of(tool: str) -> str:
    """The version of a tool of VERSIONS; "?" when it cannot be told."""
    argv, pattern = VERSIONS[tool]
    return tool_version(argv, pattern)


def tool_version(argv: list[str], pattern: str) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        text = done.stdout + done.stderr
        match = re.search(pattern, text)
        if match:
            return match.group(1)
    return "?"


def measured_package() -> str:
    """Where ``python -m resolver``, started in ROOT as the servers are, imports it from."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            [sys.executable, "-c", "import resolver; print(resolver.__file__)"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
        if done.returncode == 0:
            return str(Path(done.stdout.strip()).parent)
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
