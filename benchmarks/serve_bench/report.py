"""The tables, the VERDICT lines and the description of the machine and the run."""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import statistics
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from benchmarks.serve_bench.dnsperf import Run
from benchmarks.serve_bench.servers import (
    CEILING,
    DNSLIB,
    DNSMASQ,
    LOAD_CORE,
    OURS,
    ROOT,
    SERVER_CORE,
)

# From the issue: ours at least 0.75x dnsmasq's qps and at least 10x dnslib's, 0 lost.
TARGET_VS_DNSMASQ = 0.75
TARGET_VS_DNSLIB = 10.0


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
