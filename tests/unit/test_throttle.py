"""Rate-limited logging: once per kind per interval, a cap for all kinds, the held back counted."""

from __future__ import annotations

import logging

import pytest

from resolver.config import ForwarderConfig
from resolver.engine.selection import Selector
from resolver.throttle import LogThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records]


def test_a_kind_is_logged_once_per_interval_then_with_the_count_held_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    throttle = LogThrottle(logging.getLogger("test.throttle"), interval=10.0, clock=clock)
    caplog.set_level(logging.INFO, "test.throttle")
    for _ in range(1000):
        throttle.log(logging.INFO, "a", "upstream %s failed", "a")
    throttle.log(logging.INFO, "b", "upstream %s failed", "b")
    clock.now = 10.0
    throttle.log(logging.INFO, "a", "upstream %s failed", "a")
    assert messages(caplog) == [
        "upstream a failed",
        "upstream b failed",
        "upstream a failed (999 more like it not logged)",
    ]
    assert (throttle.logged, throttle.suppressed) == (3, 999)


def test_all_kinds_together_are_capped_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    throttle = LogThrottle(logging.getLogger("test.throttle"), burst=5, clock=clock)
    caplog.set_level(logging.INFO, "test.throttle")
    for key in range(100):  # a flood of distinct kinds (say, spoofed sources)
        throttle.log(logging.INFO, key, "kind %d", key)
    assert messages(caplog) == [f"kind {key}" for key in range(5)]
    clock.now = 10.0
    throttle.log(logging.INFO, 50, "kind %d", 50)
    assert messages(caplog)[-1] == "kind 50 (1 more like it not logged)"


def test_nothing_is_counted_when_the_level_is_off(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "test.throttle")
    throttle = LogThrottle(logging.getLogger("test.throttle"))
    assert not throttle.log(logging.INFO, "a", "quiet")
    assert (throttle.logged, throttle.suppressed) == (0, 0)


def test_the_selector_tells_when_a_server_goes_down_and_comes_back() -> None:
    changes: list[tuple[int, bool]] = []
    config = ForwarderConfig(upstreams=(("192.0.2.1", 53), ("192.0.2.2", 53)), down_after=2)
    selector = Selector(2, config, on_health=lambda index, up: changes.append((index, up)))
    selector.failed(1, 0.0)
    assert changes == []
    selector.failed(1, 0.1)
    selector.failed(1, 0.2)  # still down: no second report
    assert changes == [(1, False)]
    selector.succeeded(0, 0.01)  # never down: nothing to report
    selector.succeeded(1, 0.01)
    assert changes == [(1, False), (1, True)]
