"""The deadline sweep: the exchanges in flight of one owner, expired at their deadlines by one
re-armed timer, so that no query pays for a timer of its own."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque

from resolver.transport.exchange import Exchange

__all__ = ["SWEEP_GRAIN", "DeadlineSweep"]

# The timer is re-armed at most this often: a query's deadline may pass up to this late.
SWEEP_GRAIN = 0.01


class DeadlineSweep:
    """Exchanges in flight by deadline: ``_due`` in the order they were sent, which is
    deadline order as long as each deadline is no earlier than the one before (nearly always:
    the timeout is one number); an earlier one (cut short by its query's deadline) goes to the
    heap ``_early``. Runs in the event loop that calls :meth:`track`."""

    __slots__ = ("_due", "_early", "_sequence", "_timer", "_timer_at")

    def __init__(self) -> None:
        self._due: deque[Exchange] = deque()
        self._early: list[tuple[float, int, Exchange]] = []
        self._sequence = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def track(self, exchange: Exchange) -> None:
        """Expire ``exchange`` at its deadline unless it is done by then."""
        deadline = exchange.deadline
        due = self._due
        if not due or deadline >= due[-1].deadline:
            due.append(exchange)
        else:
            heapq.heappush(self._early, (deadline, next(self._sequence), exchange))
        if self._timer is None or deadline < self._timer_at:
            self._arm(deadline)

    def stop(self) -> list[Exchange]:
        """Stop the timer; return the exchanges tracked (done or not) and forget them."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        tracked = [*self._due, *(entry[2] for entry in self._early)]
        self._due.clear()
        self._early.clear()
        return tracked

    def _arm(self, when: float) -> None:
        loop = asyncio.get_running_loop()
        if self._timer is not None:
            self._timer.cancel()
        when = max(when, loop.time() + SWEEP_GRAIN)
        self._timer_at = when
        self._timer = loop.call_at(when, self._expire_due)

    def _expire_due(self) -> None:
        """Expire what is due; drop what ended; re-arm for the next deadline in flight."""
        self._timer = None
        now = asyncio.get_running_loop().time()
        due, early = self._due, self._early
        while due and (due[0].done or due[0].deadline <= now):
            due.popleft().expire()
        while early and (early[0][2].done or early[0][0] <= now):
            heapq.heappop(early)[2].expire()
        nearest = [due[0].deadline] if due else []
        if early:
            nearest.append(early[0][0])
        if nearest:
            self._arm(min(nearest))
