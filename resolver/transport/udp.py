"""The UDP sockets exchanges send from: pooled, pre-bound, non-blocking, read by the loop."""

from __future__ import annotations

import errno
import socket
from typing import Protocol

from resolver.errors import LocalError, UpstreamUnreachable
from resolver.transport.addresses import family
from resolver.transport.exchange import Exchange
from resolver.transport.readiness import Watcher

__all__ = ["FreshUdpSocket", "StrayCounter", "UdpSocket", "send_error", "socket_error"]

# Failures to open a socket that say our machine is short of something, not that the
# upstream cannot be reached.
_LOCAL_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# Datagrams read per wake-up of one socket at most, before the loop gets its turn again.
_READS_PER_WAKEUP = 64


def send_error(server: str, exc: OSError) -> BaseException:
    """What a failed send (or connect) means: our side short of buffers, or the server
    unreachable."""
    if exc.errno in _LOCAL_ERRNOS or isinstance(exc, BlockingIOError):
        return LocalError(f"{server}: cannot send: {exc.strerror or exc}")
    return UpstreamUnreachable(server, exc.strerror or str(exc))


def socket_error(server: str, exc: OSError) -> BaseException:
    """What a failure to open a socket for a query to ``server`` means."""
    if exc.errno in _LOCAL_ERRNOS:
        return LocalError(f"{server}: cannot open a socket: {exc.strerror or exc}")
    return UpstreamUnreachable(server, f"cannot open a socket: {exc.strerror or exc}")


class StrayCounter(Protocol):
    """Whoever owns a socket's pool counts the datagrams no query of it wanted."""

    def count_unwanted(self, sock: UdpSocket) -> None: ...


class UdpSocket:
    """A non-blocking UDP socket watched for readability (by its owner's Watcher); it accepts
    only the reply
    its pending exchange expects. Connected (an Upstream's when bound, a Servers' at its
    first send), it gets datagrams from the server's address and port only: the kernel makes
    RFC 5452's source check. Opened and closed synchronously (no transport object, nothing to
    await), so a cancelled creation cannot leave a half-made socket behind."""

    __slots__ = ("_fd", "_owner", "_sock", "_watcher", "pending", "retire")

    def __init__(self, owner: StrayCounter, watcher: Watcher, sock: socket.socket) -> None:
        self._owner = owner
        self._watcher = watcher
        self._sock = sock
        self._fd = sock.fileno()
        self.pending: Exchange | None = None
        # Set when this socket got unwanted replies during an attack: it is discarded when its
        # current (or, idle, its next) exchange ends, instead of going back to the pool.
        self.retire = False
        watcher.add(self._fd, self._readable)

    def send(self, data: bytes) -> None:
        """Send ``data``; an error ends the pending exchange (refused: the server cannot be
        reached; no buffer space: our side)."""
        try:
            self._sock.send(data)
        except OSError as exc:
            pending = self.pending
            if pending is not None:
                pending.fail(send_error(pending.name, exc))

    def _readable(self) -> None:
        # Datagrams until the one that ends the exchange, the socket is empty (EAGAIN), or
        # the bound: a reply alone costs one recv (no extra one failing with EAGAIN), and
        # strays queued ahead of it (a flood of forgeries) are read in the same wake-up.
        for _ in range(_READS_PER_WAKEUP):
            try:
                data = self._sock.recv(65535)
            except BlockingIOError:
                return
            except OSError as exc:  # ICMP port unreachable comes back as ECONNREFUSED
                self._unreachable(exc)
                return
            if self._deliver(data):
                return

    def _unreachable(self, exc: OSError) -> None:
        pending = self.pending
        if pending is not None:
            pending.fail(UpstreamUnreachable(pending.name, exc.strerror or str(exc)))

    def _deliver(self, data: bytes) -> bool:
        """``data`` arrived from the right source: the pending exchange's reply, or a stray.
        Returns whether it ended the exchange (the socket may be closed or reused now)."""
        pending = self.pending
        if pending is not None and pending.take(data):
            return True
        self._owner.count_unwanted(self)
        return False

    def close(self) -> None:
        self._watcher.remove(self._fd)
        self._sock.close()
        pending = self.pending
        if pending is not None:
            pending.fail(UpstreamUnreachable(pending.name, "socket closed"))


class FreshUdpSocket(UdpSocket):
    """A UDP socket bound to a random port and connected to the server of its one exchange
    at its first send (Servers): from then on the kernel drops datagrams from any other
    source. Datagrams that came before are still queued (connect() does not flush them), so
    each datagram's source is checked here too, at no extra system call: one from elsewhere
    is a stray."""

    __slots__ = ()

    def send(self, data: bytes) -> None:
        pending = self.pending
        assert pending is not None
        server = pending.server
        try:
            # A name instead of an address would make connect() look it up, blocking the loop.
            socket.inet_pton(family(server), server[0])
            self._sock.connect(server)
        except OSError as exc:
            pending.fail(send_error(pending.name, exc))
            return
        super().send(data)

    def _readable(self) -> None:
        for _ in range(_READS_PER_WAKEUP):  # as UdpSocket._readable
            try:
                data, source = self._sock.recvfrom(65535)
            except BlockingIOError:
                return
            except OSError as exc:
                self._unreachable(exc)
                return
            pending = self.pending
            # Addresses compare as the kernel prints them: servers are given in that form (as
            # the ipaddress module prints them too).
            if pending is None or source[1] != pending.server[1] or source[0] != pending.server[0]:
                self._owner.count_unwanted(self)
            elif self._deliver(data):
                return
