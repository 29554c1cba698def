"""Readiness of an owner's UDP sockets: one epoll set of our own, watched by the loop once."""

from __future__ import annotations

import asyncio
import contextlib
import select
from collections.abc import Callable

__all__ = ["Watcher"]


class Watcher:
    """Readiness of one owner's UDP sockets, so that a socket's life costs the loop nothing.

    Each socket joins an epoll set of our own when opened (one ``epoll_ctl``) and leaves it
    by being closed: the kernel drops a closed descriptor from every epoll set, so closing
    costs no call of its own. The loop watches only the set's descriptor, registered once; a
    wake-up calls every ready socket's reader in one callback. Watching each socket with
    ``loop.add_reader`` instead made the loop probe, register and unregister the descriptor
    per socket: about seven ``epoll_ctl``, ``ioctl`` and ``io_uring_enter`` calls over a
    socket's life under uvloop, three of them failing, for each of the sockets that
    ``max_uses`` rotates through. Where there is no epoll (not Linux), the loop watches each
    socket itself."""

    __slots__ = ("_epoll", "_loop", "_readers")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._readers: dict[int, Callable[[], None]] = {}
        self._epoll: select.epoll | None = None
        if hasattr(select, "epoll"):
            self._epoll = select.epoll()
            loop.add_reader(self._epoll.fileno(), self._ready)

    def __repr__(self) -> str:
        kind = "epoll" if self._epoll is not None else "loop readers"
        return f"<Watcher {kind} sockets={len(self._readers)}>"

    def add(self, fd: int, reader: Callable[[], None]) -> None:
        """Call ``reader`` whenever ``fd`` is readable (or has an error to report), until
        ``remove``."""
        if self._epoll is None:
            self._loop.add_reader(fd, reader)
            return
        self._epoll.register(fd, select.EPOLLIN)
        self._readers[fd] = reader

    def remove(self, fd: int) -> None:
        """Stop watching ``fd``, which its owner closes right after (closing takes it out of
        the epoll set)."""
        if self._epoll is None:
            self._loop.remove_reader(fd)
            return
        self._readers.pop(fd, None)

    def _ready(self) -> None:
        epoll = self._epoll
        assert epoll is not None
        readers = self._readers
        for fd, _ in epoll.poll(0):
            reader = readers.get(fd)
            if reader is not None:
                reader()
            else:
                # Removed but still open (its close failed), or closed by a reader earlier in
                # this batch: stop reports that would otherwise come back at every wake-up.
                with contextlib.suppress(OSError):
                    epoll.unregister(fd)

    def close(self) -> None:
        """Stop watching; idempotent. The sockets are closed by their owner."""
        if self._epoll is not None and not self._epoll.closed:
            self._loop.remove_reader(self._epoll.fileno())
            self._epoll.close()
        self._readers.clear()
