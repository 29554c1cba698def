"""Choosing an upstream: policies, smoothed RTT and health. No I/O, no clock of its own."""

from __future__ import annotations

import random
from collections.abc import Callable

from resolver.config import ForwarderConfig
from resolver.engine.rtt import RoundTrip

__all__ = ["Selector"]


class _Health:
    __slots__ = ("down_until", "failures", "rtt")

    def __init__(self) -> None:
        self.rtt = RoundTrip()
        self.failures = 0
        self.down_until = 0.0


class Selector:
    """Orders upstreams for one query by policy and health. No I/O, injected clock and rng.

    Policies: ``sequential`` (configured order), ``round_robin`` (the first choice rotates per
    query), ``random``, ``fastest`` (smallest RTT estimate, ``rtt.RoundTrip``; servers never
    measured go first so that each gets measured). A failure (timeout, unreachable) backs the
    estimate off to at least twice the upstream timeout, doubling each time, so a failing
    server never keeps its place as the fastest, and one that never answered is measured (as
    slow) after its first failure. A server with ``down_after``
    consecutive failures goes to the back for ``down_for`` seconds; if all are down, all are
    still tried. Failures on our side (no free socket) are not reported here at all.

    ``on_health(index, up)`` is called when a server is marked down (``up`` False) and when
    a server marked down answers again (``up`` True).
    """

    def __init__(
        self,
        count: int,
        config: ForwarderConfig,
        *,
        rng: random.Random | None = None,
        on_health: Callable[[int, bool], None] | None = None,
    ) -> None:
        self._health = [_Health() for _ in range(count)]
        self._config = config
        self._rng = rng or random.Random()
        self._next = 0
        self._on_health = on_health

    def order(self, now: float) -> list[int]:
        count = len(self._health)
        if count == 1:
            return [0]
        policy = self._config.policy
        if policy == "round_robin":
            start = self._next
            self._next = (self._next + 1) % count
            indices = [(start + i) % count for i in range(count)]
        elif policy == "random":
            indices = list(range(count))
            self._rng.shuffle(indices)
        elif policy == "fastest":
            indices = sorted(range(count), key=lambda i: self._health[i].rtt.value or 0.0)
        else:
            indices = list(range(count))
        up = [i for i in indices if self._health[i].down_until <= now]
        down = [i for i in indices if self._health[i].down_until > now]
        return up + down

    def succeeded(self, index: int, rtt: float) -> None:
        health = self._health[index]
        was_down = health.failures >= self._config.down_after
        health.failures = 0
        health.down_until = 0.0
        if was_down and self._on_health is not None:
            self._on_health(index, True)
        health.rtt.succeeded(rtt)

    def failed(self, index: int, now: float) -> None:
        health = self._health[index]
        health.rtt.failed(self._config.upstream_timeout)
        health.failures += 1
        if health.failures >= self._config.down_after:
            health.down_until = now + self._config.down_for
            if health.failures == self._config.down_after and self._on_health is not None:
                self._on_health(index, False)

    def is_down(self, index: int, now: float) -> bool:
        return self._health[index].down_until > now

    def srtt(self, index: int) -> float | None:
        """The RTT estimate of upstream ``index`` (backed off after a failure), or None."""
        return self._health[index].rtt.value
