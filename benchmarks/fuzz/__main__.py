"""``python -m benchmarks.fuzz [--packets N] [--seed S]``: the fuzz test's campaign, longer.

Of N packets (default 1,000,000): 2% hypothesis messages, the rest mutated queries; 85% of
each over UDP, 15% over TCP. Prints what happened per part and exits 1 on the first failure
(the failing packet and reply are in the message).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

from benchmarks.fuzz.drive import FuzzFailure, Tally, target
from benchmarks.fuzz.run import HYPOTHESIS_BATCH, SENDERS, hypothesis_batches, mutated_batches
from benchmarks.report import now


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fuzz")
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    hypothesis_share = args.packets // 50
    print(f"# fuzz {now()}, Python {platform.python_version()}")
    print(f"# {args.packets} packets, seed {args.seed}")
    try:
        with target() as running:
            for protocol, share in (("udp", 0.85), ("tcp", 0.15)):
                tally = Tally()
                began = time.monotonic()
                examples = max(1, int(hypothesis_share * share) // HYPOTHESIS_BATCH)
                hypothesis_batches(running, SENDERS[protocol], examples, tally)
                print(f"hypothesis {protocol}: {tally} in {time.monotonic() - began:.0f} s")
                tally = Tally()
                began = time.monotonic()
                count = int((args.packets - hypothesis_share) * share)
                mutated_batches(running, SENDERS[protocol], count, args.seed, tally)
                print(f"mutated {protocol}: {tally} in {time.monotonic() - began:.0f} s")
    except FuzzFailure as exc:
        print(f"FAILED: {exc}")
        return 1
    print("daemon alive, no traceback, a good query answered after every batch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
