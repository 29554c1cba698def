"""The one RTT estimate, for upstreams and authorities alike (RFC 6298's rules)."""

from __future__ import annotations

import pytest

from resolver.engine.rtt import MAX_RTT, RoundTrip


def test_a_server_never_measured_has_no_estimate() -> None:
    assert RoundTrip().value is None


def test_replies_are_smoothed_seven_eighths_old() -> None:
    rtt = RoundTrip()
    rtt.succeeded(0.080)
    assert rtt.value == pytest.approx(0.080)
    rtt.succeeded(0.0)
    assert rtt.value == pytest.approx(0.070)


def test_timeouts_back_off_doubling_up_to_the_ceiling() -> None:
    rtt = RoundTrip()
    rtt.succeeded(0.010)
    rtt.failed(1.0)
    assert rtt.value == pytest.approx(2.0)
    rtt.failed(1.0)
    assert rtt.value == pytest.approx(4.0)
    for _ in range(10):
        rtt.failed(1.0)
    assert rtt.value == MAX_RTT


def test_a_reply_after_timeouts_is_judged_by_the_replies_again() -> None:
    rtt = RoundTrip()
    rtt.succeeded(0.010)
    rtt.failed(1.0)
    rtt.succeeded(0.010)
    assert rtt.value == pytest.approx(0.010)
