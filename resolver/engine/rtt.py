"""Round-trip time estimates: the one rule for upstreams (``selection``) and for the servers
recursive mode asks (``delegations.ServerTimes``). Plain code, no clock of its own.

As TCP's retransmission timer (RFC 6298) and Unbound's infrastructure cache keep them: a reply
updates the smoothed RTT, 7/8 old and 1/8 new; a timeout leaves the smoothed RTT alone and
backs the estimate off instead, to at least twice what was waited and twice the estimate before,
so a silent server sorts behind the ones that answer and is retried later with more patience.
The next reply clears the back-off: a server that recovers is judged by its replies again, not
by its silence.
"""

from __future__ import annotations

__all__ = ["MAX_RTT", "RoundTrip"]

MAX_RTT = 120.0
"""No estimate grows beyond this many seconds, however many timeouts in a row."""

_WEIGHT = 0.875  # RFC 6298 section 2: SRTT <- (1 - 1/8) * SRTT + 1/8 * R'


class RoundTrip:
    """The estimate for one server: ``value`` is the backed-off figure after a timeout, else
    the smoothed RTT of its replies, else None (never measured)."""

    __slots__ = ("backoff", "srtt")

    def __init__(self) -> None:
        self.srtt: float | None = None
        self.backoff = 0.0

    @property
    def value(self) -> float | None:
        return self.backoff or self.srtt

    def succeeded(self, rtt: float) -> None:
        """A reply after ``rtt`` seconds."""
        rtt = max(rtt, 0.0)
        srtt = self.srtt
        self.srtt = rtt if srtt is None else _WEIGHT * srtt + (1 - _WEIGHT) * rtt
        self.backoff = 0.0

    def failed(self, waited: float) -> None:
        """No reply in ``waited`` seconds (or none could be sent): back off."""
        self.backoff = min(MAX_RTT, max(2 * waited, 2 * (self.value or 0.0)))

    def __repr__(self) -> str:
        return f"<RoundTrip srtt={self.srtt} backoff={self.backoff}>"
