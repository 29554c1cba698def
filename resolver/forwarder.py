"""Forwarding: choose an upstream, ask it, fail over to the next, within one deadline.

The selection and health bookkeeping (:class:`Selector`) is plain code with an injected clock;
:class:`Forwarder` is the short async loop around it. An answer is never invented: when every
attempt fails the caller gets ResolutionFailed and answers SERVFAIL, never NXDOMAIN.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from resolver.config import ForwarderConfig, TransportConfig
from resolver.errors import ResolutionFailed, UpstreamError, UpstreamUnreachable
from resolver.transport import Upstream, UpstreamStatistics
from resolver.wire.raw import REFUSED, SERVFAIL

__all__ = ["Forwarder", "ForwarderStatistics", "Selector"]

# Smoothing for the RTT estimate, as TCP's SRTT (RFC 6298) and BIND/Unbound use: 7/8 old.
_SRTT_WEIGHT = 0.875
# Tries per upstream within one client query: a lost datagram deserves one retry.
_ROUNDS = 2


class _Health:
    __slots__ = ("down_until", "failures", "srtt")

    def __init__(self) -> None:
        self.srtt: float | None = None
        self.failures = 0
        self.down_until = 0.0


class Selector:
    """Orders upstreams for one query by policy and health. No I/O, injected clock and rng.

    Policies: ``sequential`` (configured order), ``round_robin`` (the first choice rotates per
    query), ``random``, ``fastest`` (smallest smoothed RTT; servers never measured go first so
    that each gets measured). A server with ``down_after`` consecutive failures goes to the back
    for ``down_for`` seconds; if all are down, all are still tried.
    """

    def __init__(
        self, count: int, config: ForwarderConfig, *, rng: random.Random | None = None
    ) -> None:
        assert count > 0
        self._health = [_Health() for _ in range(count)]
        self._config = config
        self._rng = rng or random.Random()
        self._next = 0

    def order(self, now: float) -> list[int]:
        count = len(self._health)
        policy = self._config.policy
        if policy == "round_robin":
            start = self._next
            self._next = (self._next + 1) % count
            indices = [(start + i) % count for i in range(count)]
        elif policy == "random":
            indices = list(range(count))
            self._rng.shuffle(indices)
        elif policy == "fastest":
            indices = sorted(range(count), key=lambda i: self._health[i].srtt or 0.0)
        else:
            indices = list(range(count))
        up = [i for i in indices if self._health[i].down_until <= now]
        down = [i for i in indices if self._health[i].down_until > now]
        return up + down

    def succeeded(self, index: int, rtt: float) -> None:
        health = self._health[index]
        health.failures = 0
        health.down_until = 0.0
        if health.srtt is None:
            health.srtt = rtt
        else:
            health.srtt = _SRTT_WEIGHT * health.srtt + (1 - _SRTT_WEIGHT) * rtt

    def failed(self, index: int, now: float) -> None:
        health = self._health[index]
        health.failures += 1
        if health.failures >= self._config.down_after:
            health.down_until = now + self._config.down_for

    def is_down(self, index: int, now: float) -> bool:
        return self._health[index].down_until > now

    def srtt(self, index: int) -> float | None:
        return self._health[index].srtt


@dataclass(frozen=True, slots=True)
class ForwarderStatistics:
    queries: int
    answered: int
    failed: int
    failovers: int
    upstreams: tuple[UpstreamStatistics, ...]


class Forwarder:
    """Answers questions by asking upstreams (see :class:`Selector` for the order).

    A SERVFAIL or REFUSED from one upstream moves on to the next; if that was the best any
    upstream could do, that reply is returned. Raises ResolutionFailed (carrying each attempt's
    error) when no upstream replied before the deadline.
    """

    def __init__(
        self,
        config: ForwarderConfig,
        transport: TransportConfig | None = None,
        *,
        upstreams: Sequence[Upstream] | None = None,
        clock: Callable[[], float] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        if upstreams is None:
            upstreams = [Upstream(address, transport) for address in config.upstreams]
        if not upstreams:
            raise ValueError("a forwarder needs at least one upstream")
        self.upstreams = list(upstreams)
        self.selector = Selector(len(self.upstreams), config, rng=rng)
        self._clock = clock
        self._queries = 0
        self._answered = 0
        self._failed = 0
        self._failovers = 0

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    async def start(self) -> None:
        async with asyncio.TaskGroup() as group:
            for upstream in self.upstreams:
                group.create_task(upstream.start())

    async def aclose(self) -> None:
        await asyncio.gather(*(u.aclose() for u in self.upstreams))

    async def resolve(
        self, name: bytes, qtype: int, qclass: int, *, do: bool, cd: bool, deadline: float
    ) -> bytes:
        """The upstream's raw reply to one question (ID and question case are ours)."""
        self._queries += 1
        attempts: list[BaseException] = []
        fallback: bytes | None = None
        unreachable: set[int] = set()
        loop = asyncio.get_running_loop()
        for round_ in range(_ROUNDS):
            for index in self.selector.order(self._now()):
                if index in unreachable:
                    continue
                now = loop.time()
                if now >= deadline:
                    break
                if attempts or round_:
                    self._failovers += 1
                upstream = self.upstreams[index]
                try:
                    reply = await upstream.exchange(
                        name,
                        qtype,
                        qclass,
                        deadline=min(deadline, now + self.config.upstream_timeout),
                        do=do,
                        cd=cd,
                    )
                except UpstreamError as exc:
                    attempts.append(exc)
                    self.selector.failed(index, self._now())
                    if isinstance(exc, UpstreamUnreachable):
                        unreachable.add(index)
                    continue
                self.selector.succeeded(index, loop.time() - now)
                if reply[3] & 0x0F in (SERVFAIL, REFUSED):
                    fallback = reply
                    attempts.append(UpstreamError(upstream.name, "answered SERVFAIL/REFUSED"))
                    continue
                self._answered += 1
                return reply
            if fallback is not None:
                break
        if fallback is not None:
            self._answered += 1
            return fallback
        self._failed += 1
        raise ResolutionFailed("no upstream answered", attempts)

    def statistics(self) -> ForwarderStatistics:
        return ForwarderStatistics(
            queries=self._queries,
            answered=self._answered,
            failed=self._failed,
            failovers=self._failovers,
            upstreams=tuple(u.statistics() for u in self.upstreams),
        )

    def __repr__(self) -> str:
        s = self.statistics()
        return (
            f"<Forwarder upstreams={len(self.upstreams)} policy={self.config.policy} "
            f"queries={s.queries} answered={s.answered} failed={s.failed}>"
        )
