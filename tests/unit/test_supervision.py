"""The decision of the worker supervisor, without processes: when a worker that exited starts
again, and when the parent gives up; and what a forked worker must not share with its parent."""

from __future__ import annotations

import subprocess
import sys

from resolver.workers import DELAYS, STABLE_AFTER, Backoff


def test_a_worker_dying_quickly_again_and_again_waits_longer_each_time_then_is_given_up() -> None:
    backoff = Backoff()
    assert [backoff.after_exit(0.5) for _ in DELAYS] == list(DELAYS)
    assert list(DELAYS) == sorted(DELAYS)
    assert DELAYS[0] == 0.0  # the first restart does not wait
    assert backoff.after_exit(0.5) is None


def test_a_worker_that_lived_long_enough_starts_again_at_once_with_its_count_reset() -> None:
    backoff = Backoff()
    for _ in range(len(DELAYS) - 1):
        backoff.after_exit(1.0)
    assert backoff.after_exit(STABLE_AFTER) == DELAYS[0]
    assert backoff.quick_exits == 1
    for delay in DELAYS[1:]:
        assert backoff.after_exit(STABLE_AFTER - 0.1) == delay
    assert backoff.after_exit(0.0) is None


# In a fresh interpreter: the test process may run threads, which a fork does not copy.
FORK_AND_DRAW = """
import os, struct
from resolver.transport.ids import random_ids as _random_ids

_random_ids.next()  # the parent has IDs drawn and left over
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(write, struct.pack("!8H", *(_random_ids.next() for _ in range(8))))
    os._exit(0)
os.close(write)
child = struct.unpack("!8H", os.read(read, 16))
os.waitpid(pid, 0)
print(child != tuple(_random_ids.next() for _ in range(8)))
"""


def test_a_forked_worker_draws_message_ids_of_its_own() -> None:
    done = subprocess.run(
        [sys.executable, "-c", FORK_AND_DRAW], capture_output=True, text=True, timeout=30
    )
    assert done.stdout == "True\n", done.stderr
