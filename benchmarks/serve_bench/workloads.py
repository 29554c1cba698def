"""The workloads: which questions dnsperf asks, and which upstream answers them.

* ``zone`` and ``unique``: fixed files in benchmarks/queries/, answered by the dnsmasq upstream
  (servers.py); dnsperf loops over the file for the whole run.
* ``distinct``: a new file for every run, of names under NSD's wildcard zone (nsd.py) that no
  earlier run asked, read once (``dnsperf -n 1``), so no question repeats in the benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from benchmarks.serve_bench.nsd import ZONE
from benchmarks.serve_bench.servers import query_file, read_queries

Upstream = Literal["dnsmasq", "nsd"]

# More queries per second than any server reached on this machine (NSD alone, sharing its
# core with dnsperf: 125-150 k); a run that still exhausts its file is flagged in the output.
DISTINCT_QPS_BOUND = 250_000


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    upstream: Upstream
    fresh: bool  # a file of never-asked names per run, read once

    def checks(self) -> list[tuple[str, str]]:
        """A few of its questions, asked once at every server before measuring."""
        if self.fresh:
            return [(f"check{i}.{ZONE}", "A") for i in range(5)]
        return read_queries(self.name)[:20]


WORKLOADS = {
    "zone": Workload("zone", "dnsmasq", fresh=False),
    "unique": Workload("unique", "dnsmasq", fresh=False),
    "distinct": Workload("distinct", "nsd", fresh=True),
}


class Inputs:
    """The dnsperf input of each run. For a fresh workload, a new file of ``names`` names
    ``q<N>.r<RUN>.wild.test A`` (same lengths in every run), replacing the previous one."""

    def __init__(self, tmp: Path, names: int) -> None:
        self.tmp = tmp
        self.names = names
        self.runs = 0

    def next(self, workload: Workload) -> Path:
        if not workload.fresh:
            return query_file(workload.name)
        self.runs += 1
        path = self.tmp / f"{workload.name}.txt"
        label = f"r{self.runs:04d}"
        path.write_text("".join(f"q{i}.{label}.{ZONE} A\n" for i in range(self.names)))
        return path
