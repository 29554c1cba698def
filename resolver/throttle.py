"""Log messages rate-limited, so that a flood of failures cannot fill a disk.

Each kind of message (a key, such as one upstream's timeouts) is logged at most once per
``interval``, and all kinds together at most ``burst`` times per interval; what is held back is
counted and told with the next message of its kind ("... (41 more like it not logged)").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable

__all__ = ["LogThrottle"]

_MAX_KEYS = 4096  # kinds remembered; beyond, the memory starts afresh


class LogThrottle:
    """Logs through ``logger`` with the limits of the module. Clock injected for tests."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval: float = 10.0,
        burst: int = 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._burst = burst
        self._clock = clock
        self._last: dict[Hashable, float] = {}
        self._held: dict[Hashable, int] = {}
        self._window_start = float("-inf")
        self._in_window = 0
        self.logged = 0
        self.suppressed = 0

    def log(self, level: int, key: Hashable, message: str, *args: object) -> bool:
        """Log ``message % args`` at ``level`` unless a limit holds it back; True if logged."""
        if not self._logger.isEnabledFor(level):
            return False
        now = self._clock()
        if now - self._window_start >= self._interval:
            self._window_start, self._in_window = now, 0
        last = self._last.get(key)
        if (last is not None and now - last < self._interval) or self._in_window >= self._burst:
            self._held[key] = self._held.get(key, 0) + 1
            self.suppressed += 1
            return False
        if len(self._last) >= _MAX_KEYS:
            self._last.clear()
            self._held.clear()
        self._last[key] = now
        self._in_window += 1
        self.logged += 1
        held = self._held.pop(key, 0)
        if held:
            message += f" ({held} more like it not logged)"
        self._logger.log(level, message, *args)
        return True

    def __repr__(self) -> str:
        return f"<LogThrottle logged={self.logged} suppressed={self.suppressed}>"
