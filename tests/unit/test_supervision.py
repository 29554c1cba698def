"""The decisions of the worker supervisor without processes: when a worker that exited starts
again, when the parent gives up, and what a worker is told on its command line."""

from __future__ import annotations

import pytest

from resolver.workers import DELAYS, STABLE_AFTER, Backoff, WorkerArgs


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


def test_worker_args_go_through_the_command_line_unchanged() -> None:
    args = WorkerArgs(number=2, status=5, lifeline=6, listeners=(7, 8, 9))
    assert WorkerArgs.decode(args.encode()) == args
    assert WorkerArgs.decode("1:3:4:5") == WorkerArgs(1, 3, 4, (5,))


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("1:3:4", id="no-listeners"),
        pytest.param("1:3:4:", id="empty-listeners"),
        pytest.param("1:3:4:5,x", id="not-a-number"),
        pytest.param("1:3:-4:5", id="negative"),
        pytest.param("1:3:4:5:6", id="too-many-parts"),
    ],
)
def test_worker_args_that_no_parent_makes_are_refused(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - int() and the split say it in their words
        WorkerArgs.decode(text)
