"""The fixed-bucket histogram behind the duration metrics: Prometheus's `le` buckets."""

from __future__ import annotations

import itertools
import math

import pytest

from resolver.histogram import DURATION_BOUNDS, Histogram


def test_a_value_on_a_bound_counts_in_that_bound_s_bucket() -> None:
    histogram = Histogram((0.1, 0.2))
    for value in (0.0, 0.1, 0.15, 0.2, 0.25, 7.0):
        histogram.observe(value)
    assert histogram.counts == [2, 2, 2]
    assert histogram.cumulative() == [(0.1, 2), (0.2, 4), (math.inf, 6)]
    assert histogram.count == 6
    assert histogram.total == pytest.approx(7.7)


def test_a_copy_is_left_alone_by_later_observations() -> None:
    histogram = Histogram()
    histogram.observe(0.003)
    snapshot = histogram.copy()
    histogram.observe(0.003)
    assert (snapshot.count, histogram.count) == (1, 2)
    assert str(snapshot) == "1 (mean 3.000 ms)"
    assert str(Histogram()) == "none"


def test_duration_bounds_are_core_dns_s_from_a_quarter_millisecond_doubling() -> None:
    assert DURATION_BOUNDS[0] == 0.00025
    assert DURATION_BOUNDS[-1] == pytest.approx(8.192)
    assert len(DURATION_BOUNDS) == 16
    assert all(b == pytest.approx(2 * a) for a, b in itertools.pairwise(DURATION_BOUNDS))


def test_bounds_must_increase() -> None:
    with pytest.raises(AssertionError):
        Histogram((0.2, 0.1))
