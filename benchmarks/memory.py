"""Memory from /proc: this process's resident set, and a field of another process's status."""

from __future__ import annotations

import os
from pathlib import Path

from benchmarks.errors import SetupError


def rss_bytes() -> int:
    """This process's resident set size (``/proc/self/statm``), in bytes."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def status_kib(pid: int, field: str) -> int:
    """A field of /proc/PID/status given in KiB (VmRSS, VmHWM). Raises SetupError when the
    process has no such field."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise SetupError(f"no {field} for {pid}")
