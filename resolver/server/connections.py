"""The TCP connection policy: which connections stay open, and how long they may idle.

Idle connections wait ``tcp_idle_timeout`` for their next query, or at most
``tcp_busy_idle_timeout`` while more than half the connection cap is in use (pressure); when
pressure begins, those already waiting are cut short once. At the cap, the connection that
sent a whole query longest ago (or never) and has none in flight is closed to make room.
The connections themselves (reading, framing, their timers) are the server's; this module
sees them through :class:`Connection`.
"""

from __future__ import annotations

from typing import Protocol

from resolver.config import ServerConfig

__all__ = ["TCP_WRITE_HIGH", "Connection", "Connections"]

TCP_WRITE_HIGH = 64 * 1024  # unsent reply bytes above which a connection is not read


class Connection(Protocol):
    """What the policy needs of one open TCP (or TLS, or HTTPS) connection."""

    @property
    def outstanding(self) -> int:
        """Its queries in flight."""
        ...

    def shorten_idle(self, limit: float) -> None:
        """Wait no longer than ``limit`` seconds for the next query, counted from when the
        connection began to wait (if it is waiting)."""
        ...

    def end(self) -> None:
        """Read no more; close once the queries in flight are answered (or after
        ``shutdown_grace``)."""
        ...

    def close(self) -> None:
        """Close now, after the replies framed this turn."""
        ...

    def abort(self) -> None:
        """Close now, dropping whatever is unsent."""
        ...


class Connections:
    """Every open TCP connection, the one that sent a whole query longest ago (or never)
    first, under the limits of ``config`` (which a reload replaces)."""

    __slots__ = ("_clients", "_pressed", "config")

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self._clients: dict[Connection, None] = {}  # ordered: the idlest first
        self._pressed = False  # more than half the TCP connection cap in use

    def __len__(self) -> int:
        return len(self._clients)

    def end_all(self) -> None:
        """Stop reading every connection (shutdown): each closes once its queries in flight
        are answered."""
        for client in list(self._clients):
            client.end()

    def close_all(self) -> None:
        """Close every connection, each after the replies framed for it this turn."""
        for client in list(self._clients):
            client.close()

    def full(self) -> bool:
        """Whether the connection cap is reached."""
        return len(self._clients) >= self.config.max_tcp_connections

    def add(self, client: Connection) -> None:
        self._clients[client] = None
        self.pressure_changed()

    def active(self, client: Connection) -> None:
        """``client`` sent a whole query: most recently active last, so that the first
        without queries in flight is the idlest."""
        clients = self._clients
        del clients[client]
        clients[client] = None

    def remove(self, client: Connection) -> None:
        """Forget ``client`` (unless it was forgotten already: evicted, or closed)."""
        if client in self._clients:
            del self._clients[client]
            self.pressure_changed()

    def busy(self) -> bool:
        return len(self._clients) * 2 > self.config.max_tcp_connections

    def idle_timeout(self) -> float:
        """How long a connection may now wait for its next query."""
        if self.busy():
            return min(self.config.tcp_idle_timeout, self.config.tcp_busy_idle_timeout)
        return self.config.tcp_idle_timeout

    def reconfigure(self, config: ServerConfig) -> None:
        """New limits (a reload): connections waiting for their next query wait no longer
        than the idle timeout now says, from when they began to wait."""
        self.config = config
        limit = self.idle_timeout()
        for client in self._clients:
            client.shorten_idle(limit)
        self._pressed = self.busy()

    def pressure_changed(self) -> None:
        """After a connection came or went (or the limits changed). Waits begun under
        pressure get the short timeout anyway; when pressure begins, those begun before it
        are cut short once."""
        busy = self.busy()
        if busy and not self._pressed:
            limit = self.idle_timeout()
            for client in self._clients:
                client.shorten_idle(limit)
        self._pressed = busy

    def evict_idlest(self) -> bool:
        """Close the connection that sent a whole query longest ago (or never) and has none in
        flight; False if every connection has queries in flight."""
        for client in self._clients:
            if not client.outstanding:
                del self._clients[client]
                client.abort()
                return True
        return False
