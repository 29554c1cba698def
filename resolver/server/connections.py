"""The TCP connection policy: which connections stay open, and how long they may idle.

Idle connections wait ``tcp_idle_timeout`` for their next query, or at most
``tcp_busy_idle_timeout`` while more than half the connection cap is in use (pressure); when
pressure begins, those already waiting are cut short once. At the cap, the connection that
sent a whole query longest ago (or never) and has none in flight is closed to make room.
"""

from __future__ import annotations

import asyncio

from resolver.config import ServerConfig

__all__ = ["TCP_WRITE_HIGH", "Connections", "TcpClient"]

TCP_WRITE_HIGH = 64 * 1024  # unsent reply bytes above which a connection is not read


class TcpClient:
    """One TCP connection's state: its queries in flight, and since when and until when it
    waits for its next query (the timeout pressure may shorten); the replies framed in this
    turn of the loop, written together at its end (one write, so one TLS record, for all the
    replies that the queries of one read make)."""

    __slots__ = ("_loop", "outstanding", "read_timeout", "reading_since", "unsent", "writer")

    def __init__(self, writer: asyncio.StreamWriter, now: float) -> None:
        self.writer = writer
        self.outstanding: set[asyncio.Future[None]] = set()
        self.reading_since = now
        self.read_timeout: asyncio.Timeout | None = None
        self.unsent = bytearray()
        self._loop = asyncio.get_running_loop()

    def send(self, frame: bytes) -> None:
        """Write ``frame`` (a whole length-prefixed message) at the end of this loop turn."""
        if not self.unsent:
            self._loop.call_soon(self.flush)
        self.unsent += frame

    def flush(self) -> None:
        unsent = self.unsent
        if unsent and not self.writer.is_closing():
            self.writer.write(bytes(unsent))
        unsent.clear()


class Connections:
    """Every open TCP connection, the one that sent a whole query longest ago (or never)
    first, under the limits of ``config`` (which a reload replaces)."""

    __slots__ = ("_clients", "_pressed", "config")

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self._clients: dict[asyncio.StreamWriter, TcpClient] = {}
        self._pressed = False  # more than half the TCP connection cap in use

    def __len__(self) -> int:
        return len(self._clients)

    def close_all(self) -> None:
        """Close every connection, each after the replies framed for it this turn."""
        for client in list(self._clients.values()):
            client.flush()
            client.writer.close()

    def full(self) -> bool:
        """Whether the connection cap is reached."""
        return len(self._clients) >= self.config.max_tcp_connections

    def add(self, client: TcpClient) -> None:
        self._clients[client.writer] = client
        self.pressure_changed()

    def active(self, client: TcpClient) -> None:
        """``client`` sent a whole query: most recently active last, so that the first
        without queries in flight is the idlest."""
        writer = client.writer
        del self._clients[writer]
        self._clients[writer] = client

    def remove(self, client: TcpClient) -> None:
        """Forget ``client`` (unless it was evicted already)."""
        if self._clients.get(client.writer) is client:
            del self._clients[client.writer]
            self.pressure_changed()

    def busy(self) -> bool:
        return len(self._clients) * 2 > self.config.max_tcp_connections

    def idle_timeout(self) -> float:
        """How long a connection may now wait for its next query."""
        if self.busy():
            return min(self.config.tcp_idle_timeout, self.config.tcp_busy_idle_timeout)
        return self.config.tcp_idle_timeout

    def pressure_changed(self) -> None:
        """After a connection came or went (or the limits changed). Reads begun under
        pressure get the short timeout anyway; when pressure begins, those begun before it
        are cut short once."""
        busy = self.busy()
        if busy and not self._pressed:
            self._shorten_idle_timeouts()
        self._pressed = busy

    def _shorten_idle_timeouts(self) -> None:
        """Every connection waiting for its next query waits no longer than the busy timeout
        from when it began to wait."""
        busy = self.idle_timeout()
        for client in self._clients.values():
            timeout = client.read_timeout
            if timeout is None:
                continue
            when = timeout.when()
            limit = client.reading_since + busy
            if when is None or when > limit:
                timeout.reschedule(limit)

    def evict_idlest(self) -> bool:
        """Close the connection that sent a whole query longest ago (or never) and has none in
        flight; False if every connection has queries in flight."""
        for writer, client in self._clients.items():
            if not client.outstanding:
                del self._clients[writer]
                writer.transport.abort()
                return True
        return False
