"""``python -m benchmarks.spoof [--rounds R]``: the poisoning rate of a blind flood of forged
upstream replies, measured against the running daemon (in-process, on uvloop), next to the
model. Needs root (raw sockets); loopback only.

Per round: a client asks a new name; the upstream holds its answer while the attacker, told
the query's source port, sends K forged replies from the upstream's address and port with K
distinct random IDs (the question lowercased, as an attacker who cannot see the 0x20 case
would); then the upstream answers. A round is poisoned when the client gets the forged address.
With 0x20 off the model is K/65536; with it on, K/65536 x 2^-27 for the 27 letters of the name.
The unwanted-reply threshold is off, so that only ID and case are measured.
"""

from __future__ import annotations

import argparse
import platform
import random
import sys
import time

import uvloop

from benchmarks.report import now
from benchmarks.spoof.forge import POISON, Attacker, attacked_round, random_ids, target


async def measure(randomize_case: bool, forged: int, rounds: int, seed: int) -> tuple[int, int]:
    """Poisoned rounds and datagrams sent."""
    rng = random.Random(seed)
    attacker = Attacker()
    poisoned = sent = 0
    try:
        async with target(randomize_case=randomize_case, threshold=0) as running:
            for index in range(rounds):
                before = running.upstream.statistics()
                reply, _ = await attacked_round(
                    running, attacker, index, random_ids(forged, rng), lower=True
                )
                after = running.upstream.statistics()
                sent += after.strays - before.strays + after.replies - before.replies
                poisoned += reply.endswith(POISON)
    finally:
        attacker.close()
    return poisoned, sent


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.spoof")
    parser.add_argument("--rounds", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(f"# spoof {now()}, Python {platform.python_version()}")
    print(f"# {args.rounds} rounds per row; 'taken in' counts forgeries the daemon read")
    print("| 0x20 | K forged per query | poisoned | measured rate | model | taken in | seconds |")
    print("|---|---|---|---|---|---|---|")
    for randomize_case in (False, True):
        for forged in (1024, 4096, 16384):
            began = time.monotonic()
            poisoned, taken = uvloop.run(
                measure(randomize_case, forged, args.rounds, args.seed + forged)
            )
            model = forged / 65536 * (2**-27 if randomize_case else 1)
            print(
                f"| {'on' if randomize_case else 'off'} | {forged} | {poisoned}/{args.rounds} "
                f"| {poisoned / args.rounds:.4f} | {model:.4g} | {taken} "
                f"| {time.monotonic() - began:.1f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
