"""The daemon with and without the response policy, under dnsperf, in one run.

Two ``resolver serve`` daemons, the same but for ``[policy]``: one has none, the other a
1,000,000-name hosts list and a 100,000-rule RPZ zone (made up as ``benchmarks/policy_bench.py``
makes them; none of the workloads' names is in them, so every query pays the checks and
gets its normal answer). Each is measured by ``benchmarks/serve_bench``'s machinery, in turns:

* ``zone``: cache hits (the zone's names, repeated; dnsmasq upstream);
* ``distinct``: distinct-name forwarding (never-asked names, the cache off; NSD upstream).

Issue 21's target: at least 0.95x the qps of the daemon without the policy, on both.

Run from the repository root (dnsperf, dnsmasq, NSD with ``nsd-control`` and taskset installed;
see benchmarks/README.md, section "Policy")::

    python -m benchmarks.policy_serve                 # 3 rounds of 6 s per daemon and workload
    python -m benchmarks.policy_serve --rounds 1 --seconds 3
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from benchmarks.policy_bench import names, write_list, write_rpz
from benchmarks.processes import Proc, running, wait_ready
from benchmarks.report import Row
from benchmarks.serve_bench.main import run_once, start_upstream
from benchmarks.serve_bench.report import sweep_table
from benchmarks.serve_bench.servers import CACHE_OFF, check_answers, ours_proc
from benchmarks.serve_bench.workloads import WORKLOADS, Inputs

STARTUP = 300.0  # seconds: loading the policy, on a busy machine
PLAIN = "without policy"
POLICED = "with policy"


@contextlib.contextmanager
def started(proc: Proc) -> Iterator[None]:
    """``proc`` started and answering: a daemon loading a big policy takes longer than the
    serve benchmark's startup bound."""
    try:
        proc.start()
        wait_ready(proc, timeout=STARTUP)
        yield
    finally:
        proc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--outstanding", type=int, default=100)
    parser.add_argument("--pause", type=float, default=1.0)
    parser.add_argument("--distinct-names", type=int, default=300_000)
    parser.add_argument("--names", type=int, default=1_000_000)
    parser.add_argument("--rpz", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="policy-serve-") as directory:
        tmp = Path(directory)
        listed = names(args.names + args.rpz)
        write_list(tmp / "list.hosts", "hosts", listed[: args.names])
        write_rpz(tmp / "bench.rpz", listed[args.names :])
        policy = (
            f'[[policy.rpz]]\nfile = "{tmp / "bench.rpz"}"\n'
            f'[[policy.lists]]\nfile = "{tmp / "list.hosts"}"\nformat = "hosts"\n'
        )
        inputs = Inputs(tmp, args.distinct_names)
        for workload_name in ("zone", "distinct"):
            workload = WORKLOADS[workload_name]
            upstream = start_upstream(workload.upstream, tmp)
            probe = upstream[0].probe
            base = CACHE_OFF if workload.fresh else ""
            daemons = {
                PLAIN: ours_proc(tmp, f"plain-{workload_name}", upstream[0].port, base, probe),
                POLICED: ours_proc(
                    tmp, f"policed-{workload_name}", upstream[0].port, base + policy, probe
                ),
            }
            rows = {name: Row(name) for name in daemons}
            policed = daemons[POLICED]
            with running([upstream[0], daemons[PLAIN]]), started(policed):
                for daemon in daemons.values():
                    check_answers(daemon, workload.checks())
                for round_ in range(args.rounds):
                    print(f"{workload_name}: round {round_ + 1} of {args.rounds}", flush=True)
                    order = [PLAIN, POLICED] if round_ % 2 == 0 else [POLICED, PLAIN]
                    for name in order:
                        rows[name].runs.append(
                            run_once(args, inputs, workload, name, daemons[name], upstream)
                        )
            print(f"\n{workload_name}:")
            for line in sweep_table([rows[POLICED], rows[PLAIN]]):
                print(line)
            print(flush=True)


if __name__ == "__main__":
    main()
