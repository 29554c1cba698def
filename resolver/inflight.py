"""Questions in flight: what the forwarder carries per question, and the form replies take.

``normalize`` turns an upstream's reply into the form the forwarder stores and serves;
``Shared`` lets identical questions asked while one is in flight wait for that one's outcome;
``Ask`` is a question as the forwarder handles it; ``FastQuery`` is one question answered by
callbacks rather than a task.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from resolver.cache import CacheKey
from resolver.errors import ResolutionFailed, UpstreamError, WireError
from resolver.wire.message import strip_opt
from resolver.wire.raw import AA, RA, REFUSED, SERVFAIL

if TYPE_CHECKING:
    from resolver.forwarder import Forwarder

__all__ = ["Ask", "FastQuery", "Shared", "normalize"]

_TC_HIGH = 0x02  # TC in the first flags byte (message byte 2)


def normalize(reply: bytes) -> bytes:
    """An upstream's reply in the form we store and serve: the OPT record removed (it is
    hop-by-hop, RFC 6891), RA set, AA cleared (the answer is not ours). Raises WireError."""
    reply = strip_opt(reply)
    flags = (int.from_bytes(reply[2:4], "big") & ~AA) | RA
    return reply[:2] + flags.to_bytes(2, "big") + reply[4:]


class Shared:
    """One upstream query in flight for a question. Later askers of the same question wait on
    ``future``, made only when the first of them arrives (usually nobody does)."""

    __slots__ = ("future",)

    def __init__(self) -> None:
        self.future: asyncio.Future[bytes] | None = None

    def follow(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[bytes]:
        if self.future is None:
            self.future = loop.create_future()
            # A follower that gave up never reads the outcome; reading it here keeps asyncio
            # from logging "exception was never retrieved".
            self.future.add_done_callback(_retrieve)
        return self.future

    def succeed(self, reply: bytes) -> None:
        if self.future is not None and not self.future.done():
            self.future.set_result(reply)

    def fail(self, exc: BaseException) -> None:
        if self.future is not None and not self.future.done():
            self.future.set_exception(exc)


def _retrieve(future: asyncio.Future[bytes]) -> None:
    if not future.cancelled():
        future.exception()


class Ask(NamedTuple):
    """One question as the forwarder handles it: the cache key and what goes upstream."""

    key: CacheKey
    name: bytes
    qtype: int
    qclass: int
    do: bool
    cd: bool

    @classmethod
    def of(cls, name: bytes, qtype: int, qclass: int, do: bool, cd: bool) -> Ask:
        return cls(CacheKey.of(name, qtype, qclass, do=do, cd=cd), name, qtype, qclass, do, cd)


class FastQuery:
    """The state of one task-free query (see ``Forwarder.resolve_nowait``): its reply is
    handled in ``on_reply``, a callback, and anything unusual is handed to a task."""

    __slots__ = ("ask", "deadline", "done", "forwarder", "index", "shared", "started")

    def __init__(
        self,
        forwarder: Forwarder,
        ask: Ask,
        deadline: float,
        index: int,
        started: float,
        done: Callable[[bytes | None, BaseException | None], None],
    ) -> None:
        self.forwarder = forwarder
        self.ask = ask
        self.deadline = deadline
        self.index = index
        self.started = started
        self.done = done
        self.shared = Shared()

    def on_reply(self, reply: bytes | None, exc: BaseException | None) -> None:
        forwarder = self.forwarder
        loop = forwarder._loop
        assert loop is not None
        if reply is not None:
            forwarder.selector.succeeded(self.index, loop.time() - self.started)
            if not reply[2] & _TC_HIGH and reply[3] & 0x0F not in (SERVFAIL, REFUSED):
                try:
                    normalized = normalize(reply)
                except WireError as error:
                    failure = ResolutionFailed("upstream reply cannot be relayed", [error])
                    forwarder._settle(self.ask.key, self.shared, self.done, None, failure)
                    return
                if forwarder.cache is not None:
                    with contextlib.suppress(WireError, ValueError):
                        forwarder.cache.put(self.ask.key, normalized)
                forwarder._settle(self.ask.key, self.shared, self.done, normalized, None)
                return
        elif isinstance(exc, UpstreamError):
            forwarder.selector.failed(self.index, loop.time())
        # TC, SERVFAIL/REFUSED, a timeout or an error: the full logic takes over in a task
        # (which may ask this upstream again, over TCP, or fail over to another).
        forwarder._failovers += 1
        task = loop.create_task(forwarder._continue(self))
        forwarder._background.add(task)
        task.add_done_callback(forwarder._background.discard)
