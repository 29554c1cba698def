"""The fuzz campaign, shared by the test and ``python -m benchmarks.fuzz``: hypothesis batches
and mutated batches, over UDP and TCP, against one target."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.fuzz.drive import Tally, Target, tcp_batch, udp_batch
from benchmarks.fuzz.packets import Mutator, messages

Batch = Callable[[int, Sequence[bytes], Tally], None]
HYPOTHESIS_BATCH = 50  # messages per hypothesis example (at least)
MUTATED_BATCH = 500


def hypothesis_batches(target: Target, send: Batch, examples: int, tally: Tally) -> None:
    """``examples`` hypothesis examples, each a batch of at least HYPOTHESIS_BATCH messages.
    Shrinking is on: a failure ends with the smallest batch that still fails."""

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(messages(), min_size=HYPOTHESIS_BATCH, max_size=HYPOTHESIS_BATCH + 10))
    def run(packets: list[bytes]) -> None:
        send(target.port, packets, tally)
        target.check_alive()

    run()


def mutated_batches(target: Target, send: Batch, count: int, seed: int, tally: Tally) -> None:
    """``count`` mutated queries in batches of MUTATED_BATCH, from ``seed``."""
    mutator = Mutator(seed)
    while count > 0:
        size = min(count, MUTATED_BATCH)
        send(target.port, [mutator.next() for _ in range(size)], tally)
        target.check_alive()
        count -= size


SENDERS: dict[str, Batch] = {"udp": udp_batch, "tcp": tcp_batch}
