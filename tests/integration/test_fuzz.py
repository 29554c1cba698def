"""Fuzzing a `resolver serve` subprocess over UDP and TCP with 100,000 packets: hypothesis
messages and mutated queries. No crash, no hang, no traceback; every reply well-formed (FORMERR
or an answer to what was asked) or none; a good query answered after every batch.
benchmarks/fuzz runs the same with a million."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from benchmarks.fuzz.drive import Tally, Target, target
from benchmarks.fuzz.run import HYPOTHESIS_BATCH, SENDERS, hypothesis_batches, mutated_batches

# 100,000 in all: mutated 83,000 UDP + 15,000 TCP; hypothesis >= 1,500 UDP + >= 500 TCP.
# Drawing a hypothesis message costs about 5 ms, a mutated one microseconds: the time goes to
# the kind that is cheap, the structure-aware kind gets enough to reach what mutation misses.
MUTATED = {"udp": 83_000, "tcp": 15_000}
EXAMPLES = {"udp": 1_500 // HYPOTHESIS_BATCH, "tcp": 500 // HYPOTHESIS_BATCH}

# A fixed amount of work, mostly CPU: with every core of the machine busy it takes minutes, not
# the seconds of a quiet one. The bound only catches a hang (the daemon's own health is checked
# after every batch), so it is generous.
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[Target]:
    """One daemon for the module; leaving it fails if it died or logged a traceback."""
    with target() as running:
        yield running


@pytest.mark.parametrize("protocol", ["udp", "tcp"])
def test_mutated_queries_get_formerr_an_answer_or_nothing(fuzzed: Target, protocol: str) -> None:
    tally = Tally()
    mutated_batches(fuzzed, SENDERS[protocol], MUTATED[protocol], seed=9, tally=tally)
    assert tally.sent == MUTATED[protocol]
    assert tally.replies[1] > 0  # FORMERR: the mutations reached the parser


@pytest.mark.parametrize("protocol", ["udp", "tcp"])
def test_hypothesis_messages_get_formerr_an_answer_or_nothing(
    fuzzed: Target, protocol: str
) -> None:
    tally = Tally()
    hypothesis_batches(fuzzed, SENDERS[protocol], EXAMPLES[protocol], tally)
    assert tally.sent >= EXAMPLES[protocol] * HYPOTHESIS_BATCH
