"""A question in flight, shared by everyone who asks it, and the form replies travel in.

``normalize`` turns an upstream's reply into the form the forwarder stores and serves;
``Shared`` lets identical questions asked while one is in flight wait for that one's outcome.
"""

from __future__ import annotations

import asyncio

from resolver.wire.message import strip_opt
from resolver.wire.raw import AA, RA

__all__ = ["Shared", "normalize"]


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
