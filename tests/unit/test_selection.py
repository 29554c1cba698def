"""Upstream selection without sockets: policies, smoothed RTT, marking servers down."""

from __future__ import annotations

import random

import pytest

from resolver.config import ForwarderConfig
from resolver.engine.selection import Selector


def selector(policy: str, count: int = 3, **kwargs: object) -> Selector:
    config = ForwarderConfig(policy=policy, **kwargs)  # type: ignore[arg-type]
    return Selector(count, config, rng=random.Random(1))


def test_sequential_keeps_configured_order() -> None:
    assert [selector("sequential").order(0.0) for _ in range(2)] == [[0, 1, 2], [0, 1, 2]]


def test_round_robin_rotates_the_first_choice() -> None:
    chosen = selector("round_robin")
    assert [chosen.order(0.0)[0] for _ in range(4)] == [0, 1, 2, 0]


def test_random_is_a_permutation_and_varies() -> None:
    chosen = selector("random")
    orders = [tuple(chosen.order(0.0)) for _ in range(20)]
    assert all(sorted(o) == [0, 1, 2] for o in orders)
    assert len(set(orders)) > 1


def test_fastest_measures_unknown_servers_first_then_prefers_lowest_srtt() -> None:
    chosen = selector("fastest")
    chosen.succeeded(0, 0.050)
    assert chosen.order(0.0)[0] in (1, 2)  # never measured: tried first
    chosen.succeeded(1, 0.010)
    chosen.succeeded(2, 0.030)
    assert chosen.order(0.0) == [1, 2, 0]


def test_srtt_is_smoothed_seven_eighths_old() -> None:
    chosen = selector("fastest", count=1)
    chosen.succeeded(0, 0.080)
    chosen.succeeded(0, 0.000)
    assert chosen.srtt(0) == pytest.approx(0.070)


def test_server_goes_down_after_consecutive_failures_and_comes_back() -> None:
    chosen = selector("sequential", down_after=2, down_for=30.0)
    chosen.failed(0, 100.0)
    assert chosen.order(100.0)[0] == 0
    chosen.failed(0, 101.0)
    assert chosen.is_down(0, 101.0)
    assert chosen.order(101.0) == [1, 2, 0]  # still tried, but last
    assert chosen.order(131.0)[0] == 0  # down_for elapsed


def test_success_clears_failures() -> None:
    chosen = selector("sequential", down_after=2)
    chosen.failed(0, 0.0)
    chosen.succeeded(0, 0.01)
    chosen.failed(0, 1.0)
    assert not chosen.is_down(0, 1.0)
