"""CPU time from /proc: of one process, of a process group, and of the whole machine."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def _stat_fields(stat: Path) -> list[str]:
    """The fields of a /proc/PID/stat file after the command name (field 3 onwards): the name
    is in parentheses and may hold spaces, so the split starts after the last ")"."""
    return stat.read_text().rsplit(")", 1)[1].split()


def _ticks(fields: list[str]) -> int:
    return int(fields[11]) + int(fields[12])  # utime and stime, fields 14 and 15


def process_seconds(pid: int) -> float:
    """User + system CPU seconds of the process ``pid`` (all its threads) so far."""
    return _ticks(_stat_fields(Path(f"/proc/{pid}/stat"))) / os.sysconf("SC_CLK_TCK")


def process_cpu(pgid: int) -> dict[int, float]:
    """User + system CPU seconds (utime and stime, fields 14 and 15 of /proc/PID/stat) of each
    live process in the process group, by pid, all threads included."""
    ticks: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = _stat_fields(stat)
            if int(fields[2]) == pgid:  # field 5, the process group
                ticks[int(stat.parent.name)] = _ticks(fields)
    return {pid: n / os.sysconf("SC_CLK_TCK") for pid, n in ticks.items()}


def cpu_seconds(pgid: int) -> float:
    """The CPU time of the whole process group (see ``process_cpu``). The servers under test
    are one process each (``taskset`` execs them, so the group leader is the server), but
    ``resolver serve --workers N``, whose workers are forked into its group; NSD is three."""
    return sum(process_cpu(pgid).values())


def machine_times() -> tuple[int, int]:
    """The machine's idle and total CPU time so far, in ticks (the ``cpu`` line of
    /proc/stat; idle includes iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[3] + fields[4], sum(fields)
