"""The decisions for one forwarded question, as plain code: no I/O, no clock of its own.

A :class:`Forwarding` is told what happened (``start``, ``on_reply``, ``on_failure``, each
with the time) and answers with the next action: :class:`Send` (ask upstream N, over UDP or
TCP, with or without EDNS, by a deadline) or :class:`Done` (the upstream reply to relay, or
none, with the Extended DNS Error that says why). The engine's driver performs the actions.

The rules, for one client query under one deadline:

* Upstreams are tried in the selector's order, each once per round. A truncated UDP reply is
  asked again of the same upstream over TCP, once: UDP then TCP, never UDP twice.
* A FORMERR to a query with EDNS is asked again without EDNS (RFC 6891 section 7: the
  server may not know EDNS); a FORMERR or NOTIMP otherwise moves on to the next upstream.
* SERVFAIL or REFUSED moves on to the next upstream; that upstream is not asked again. If no
  upstream does better, the first such reply is relayed.
* A reply that cannot be relayed (its OPT carries extended rcode bits, which cannot be kept
  once the hop-by-hop OPT is removed) moves on to the next upstream, as a FORMERR does.
* The reply relayed is in the form the engine stores and serves (``normalize``).
* A timeout or an unreachable upstream counts against its health and moves on; a second round
  asks the upstreams that timed out again (a lost datagram deserves one retry), time allowing.
* A failure on our side (no free socket, out of descriptors) moves on without blaming anyone.
* Nothing usable by the deadline: Done without a reply, EDE 22 (No Reachable Authority) when
  upstreams stayed silent, 23 (Network Error) when they could not be reached.
"""

from __future__ import annotations

from resolver.engine.actions import (
    EDE_NETWORK_ERROR,
    EDE_NO_REACHABLE_AUTHORITY,
    EDE_STALE_ANSWER,
    Done,
    Send,
)
from resolver.engine.selection import Selector
from resolver.errors import LocalError, UpstreamTimeout, UpstreamUnreachable, WireError
from resolver.wire.view import ReplyView, normalize

__all__ = [
    "EDE_NETWORK_ERROR",
    "EDE_NO_REACHABLE_AUTHORITY",
    "EDE_STALE_ANSWER",
    "Done",
    "Forwarding",
    "Send",
]

_ROUNDS = 2
_FORMERR = 1
_SERVFAIL = 2
_NOTIMP = 4
_REFUSED = 5
# Outcomes of one upstream within a query.
_UNTRIED, _ANSWERED, _TIMED_OUT, _GONE = range(4)


Action = Send | Done


class Forwarding:
    """One question's way through the upstreams (see the module's rules)."""

    __slots__ = (
        "_current",
        "_deadline",
        "_edns",
        "_fallback",
        "_order",
        "_position",
        "_round",
        "_selector",
        "_sent_at",
        "_state",
        "_tcp",
        "_timeout",
        "_unreachable",
    )

    def __init__(self, selector: Selector, upstream_timeout: float, deadline: float) -> None:
        self._selector = selector
        self._timeout = upstream_timeout
        self._deadline = deadline
        self._order: list[int] = []
        self._state: list[int] = []
        self._position = 0
        self._round = 0
        self._current = -1
        self._tcp = False
        self._edns = True
        self._sent_at = 0.0
        self._fallback: ReplyView | None = None
        self._unreachable = False

    def start(self, now: float) -> Action:
        self._order = self._selector.order(now)
        self._state = [_UNTRIED] * len(self._order)  # order is a permutation of the indices
        return self._next(now)

    def on_reply(self, reply: ReplyView, now: float) -> Action:
        """The validated reply to the last Send, read once where it was matched."""
        index = self._current
        self._selector.succeeded(index, now - self._sent_at)
        rcode = reply.message[3] & 0x0F
        if rcode == _FORMERR and self._edns:
            return self._send(index, now, tcp=self._tcp, edns=False)
        if reply.truncated and not self._tcp:
            return self._send(index, now, tcp=True, edns=self._edns)
        self._state[index] = _ANSWERED
        if rcode in (_FORMERR, _NOTIMP):
            return self._next(now)
        try:
            served = normalize(reply)
        except WireError:
            return self._next(now)
        if rcode in (_SERVFAIL, _REFUSED):
            if self._fallback is None:
                self._fallback = served
            return self._next(now)
        return Done(served, None)

    def on_failure(self, exc: BaseException, now: float) -> Action:
        """The last Send ended without a reply: ``exc`` says how."""
        index = self._current
        if isinstance(exc, LocalError):
            self._state[index] = _GONE
        elif isinstance(exc, UpstreamTimeout):
            self._selector.failed(index, now)
            self._state[index] = _TIMED_OUT
        else:
            self._selector.failed(index, now)
            self._state[index] = _GONE
            self._unreachable = self._unreachable or isinstance(exc, UpstreamUnreachable)
        return self._next(now)

    def _next(self, now: float) -> Action:
        """The next upstream to ask, or the end."""
        order, state = self._order, self._state
        while self._round < _ROUNDS:
            wanted = _UNTRIED if self._round == 0 else _TIMED_OUT
            while self._position < len(order):
                index = order[self._position]
                self._position += 1
                if state[index] == wanted:
                    state[index] = _GONE  # asked in this round; its outcome overwrites this
                    return self._send(index, now, tcp=False, edns=True)
            self._round += 1
            self._position = 0
        return self._finish()

    def _send(self, index: int, now: float, *, tcp: bool, edns: bool) -> Action:
        if now >= self._deadline:
            return self._finish()
        failover = self._current not in (-1, index)
        self._current = index
        self._tcp = tcp
        self._edns = edns
        self._sent_at = now
        return Send(index, tcp, edns, min(self._deadline, now + self._timeout), failover)

    def _finish(self) -> Done:
        if self._fallback is not None:
            return Done(self._fallback, None)
        if self._unreachable:
            return Done(None, EDE_NETWORK_ERROR)
        return Done(None, EDE_NO_REACHABLE_AUTHORITY)
