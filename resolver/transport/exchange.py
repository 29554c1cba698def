"""One query to one server, in flight: the :class:`Exchange` that ends exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from time import perf_counter
from typing import Protocol

from resolver.config import Address
from resolver.errors import BadResponse, CaseMismatch, UpstreamTimeout, WireError
from resolver.transport.addresses import format_address
from resolver.wire.query import CASE_DIFFERS, reply_mismatch
from resolver.wire.view import ReplyView, scan

__all__ = ["Carrier", "Checkout", "Exchange", "Owner", "Report"]

# What an exchange reports: the view of the validated reply (read once, here), or the error
# that ended it.
Report = Callable[[ReplyView | None, BaseException | None], None]


class Owner(Protocol):
    """What an exchange needs of whoever started it (an Upstream, the Servers)."""

    # Whether a reply that matches a 0x20 query in everything but the name's case ends the
    # exchange with CaseMismatch (so that the caller can ask again without 0x20) instead of
    # being a stray.
    @property
    def case_fallback(self) -> bool: ...

    def track_deadline(self, exchange: Exchange) -> None: ...

    def count_reply(self, sent_at: float) -> None: ...

    def count_failure(self, exc: BaseException) -> None: ...


class Carrier(Protocol):
    """The socket an exchange's query leaves from: it waits for the reply of ``pending``."""

    pending: Exchange | None
    retire: bool

    def send(self, data: bytes) -> None: ...


class Checkout(Protocol):
    """A pooled socket checked out for one exchange (a :class:`resolver.pool.Guard`)."""

    @property
    def obj(self) -> Carrier: ...

    def release(self) -> None: ...

    def discard(self) -> None: ...


class Exchange:
    """One query to one server, in flight: it ends exactly once, by ``report`` being called
    with the validated reply or with the error that ended it (UpstreamTimeout at the deadline,
    UpstreamUnreachable, BadResponse, CaseMismatch, LocalError). ``cancel`` abandons it without
    a report."""

    __slots__ = (
        "case_exact",
        "deadline",
        "done",
        "guard",
        "owner",
        "qid",
        "query",
        "question",
        "report",
        "sent_at",
        "server",
        "task",
    )

    def __init__(
        self,
        owner: Owner,
        server: Address,
        query: bytes,
        question: bytes,
        deadline: float,
        report: Report,
        case_exact: bool,
    ) -> None:
        self.owner = owner
        self.server = server
        self.query = query
        self.qid = query[0] << 8 | query[1]
        self.question = question
        self.case_exact = case_exact
        self.deadline = deadline
        self.report = report
        self.guard: Checkout | None = None
        self.task: asyncio.Task[None] | None = None
        self.done = False
        self.sent_at = 0.0  # perf_counter() when the query left

    @property
    def name(self) -> str:
        """The server as errors name it."""
        return format_address(self.server)

    def send_on(self, guard: Checkout) -> None:
        """Send over the checked-out socket, which then waits for the matching reply."""
        self.guard = guard
        sock = guard.obj
        sock.pending = self
        self.owner.track_deadline(self)
        self.sent_at = perf_counter()
        sock.send(self.query)

    def take(self, data: bytes) -> bool:
        """Offer ``data``, a datagram or TCP message from the server: True when it ended the
        exchange (our reply, read once into the view that is reported; our reply but with
        records that cannot be read: BadResponse; or, with the owner's ``case_fallback``, our
        reply but for the case of the 0x20 name: CaseMismatch); False for a stray, which the
        caller counts."""
        problem = reply_mismatch(data, self.qid, self.question, case_exact=self.case_exact)
        if problem is None:
            try:
                view = scan(data)
            except WireError as exc:
                self.fail(BadResponse(self.name, f"malformed reply: {exc}"))
                return True
            self.succeed(view)
            return True
        if problem is CASE_DIFFERS and self.owner.case_fallback:
            self.mismatch()
            return True
        return False

    def succeed(self, reply: ReplyView) -> None:
        if self.done:
            return
        self.done = True
        self._let_go(keep=True)
        self.owner.count_reply(self.sent_at)
        self.report(reply, None)

    def fail(self, exc: BaseException) -> None:
        if self.done:
            return
        self.done = True
        self._let_go(keep=False)
        self.owner.count_failure(exc)
        self.report(None, exc)

    def expire(self) -> None:
        if not self.done:
            self.fail(UpstreamTimeout(self.name, "no matching reply before the deadline"))

    def mismatch(self) -> None:
        """End with CaseMismatch: the server replied, but did not echo the name's case."""
        self.fail(CaseMismatch(self.name, "the reply's question differs in case only"))

    def cancel(self) -> None:
        """Abandon the exchange: no report; a socket it held is discarded (a late reply must
        not reach another query), a TCP exchange or a wait for a socket is cancelled."""
        if self.done:
            return
        self.done = True
        self._let_go(keep=False)
        if self.task is not None:
            self.task.cancel()

    def _let_go(self, *, keep: bool) -> None:
        guard = self.guard
        if guard is None:
            return
        self.guard = None
        sock = guard.obj
        sock.pending = None
        if keep and not sock.retire:
            guard.release()
        else:
            guard.discard()
