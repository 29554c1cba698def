"""The metrics listener: just enough HTTP/1.0 on the daemon's own loop for a Prometheus
scraper, so that no thread contends with the queries and shutdown closes it like the rest.

``GET /metrics`` (or ``HEAD``) answers 200 with the rendered metrics; any other path 404,
any other method 405. A request whose line and headers do not arrive whole within 8 KiB and
``timeout`` seconds, or that is not HTTP/1.x, gets 400. Every connection carries one request
and is closed after its reply; beyond ``max_connections`` at once, new ones are closed
unread. Nothing here can stop the DNS listeners: a failure ends one connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable

from resolver.config import Address
from resolver.transport import format_address

__all__ = ["MetricsEndpoint"]

log = logging.getLogger(__name__)

_MAX_HEAD = 8 * 1024  # bytes of request line and headers
_PATH = "/metrics"
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
}


class MetricsEndpoint:
    """Serves ``render()`` (bytes of ``content_type``) at ``/metrics`` on ``address``.

    ``timeout``: seconds a client has to send its request, and again to read the reply.
    ``start`` binds before it returns (port 0 picks a free port; ``address`` then tells which)
    and raises OSError naming the listener when it cannot. ``aclose`` stops listening and
    ends the connections still open; it is idempotent."""

    def __init__(
        self,
        address: Address,
        render: Callable[[], bytes],
        *,
        content_type: str,
        timeout: float = 5.0,
        max_connections: int = 16,
    ) -> None:
        self.address = address
        self._render = render
        self._content_type = content_type
        self._timeout = timeout
        self._max_connections = max_connections
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._closed = False
        self._counts = dict.fromkeys(("scrapes", "bad_requests", "not_found", "refused"), 0)

    async def start(self) -> None:
        host, port = self.address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            self._server = await asyncio.start_server(self._connection, sock=sock, limit=_MAX_HEAD)
        except OSError as exc:
            sock.close()
            where = format_address(self.address)
            raise OSError(exc.errno, f"metrics listener {where}: {exc.strerror or exc}") from exc
        except BaseException:
            sock.close()
            raise
        bound = sock.getsockname()
        self.address = (bound[0], bound[1])

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), timeout=1.0)

    def statistics(self) -> dict[str, int]:
        """Scrapes answered, bad requests, requests for other paths, connections refused at
        the cap, and connections open now."""
        return {**self._counts, "connections": len(self._connections)}

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if self._closed or len(self._connections) >= self._max_connections:
            self._counts["refused"] += 1
            writer.transport.abort()
            return
        self._connections.add(task)
        try:
            try:
                async with asyncio.timeout(self._timeout):
                    head = await reader.readuntil(b"\r\n\r\n")
            except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                head = b""
            status, body, head_only = self._respond(head)
            lines = [f"HTTP/1.0 {status} {_REASONS[status]}", "Connection: close"]
            if status == 200:
                lines.append(f"Content-Type: {self._content_type}")
            else:
                lines.append("Content-Type: text/plain; charset=utf-8")
            if status == 405:
                lines.append("Allow: GET, HEAD")
            lines.append(f"Content-Length: {len(body)}")
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("ascii"))
            if not head_only:
                writer.write(body)
            async with asyncio.timeout(self._timeout):
                await writer.drain()
        except (TimeoutError, ConnectionError):
            pass  # the scraper went away or stopped reading: nothing to tell it
        finally:
            self._connections.discard(task)
            if self._closed:
                writer.transport.abort()
            else:
                writer.close()

    def _respond(self, head: bytes) -> tuple[int, bytes, bool]:
        """(status, body, whether to send the headers only) for a request's head."""
        line = head.split(b"\r\n", 1)[0]
        parts = line.split(b" ")
        if len(parts) != 3 or not line.isascii() or not parts[2].startswith(b"HTTP/1."):
            self._counts["bad_requests"] += 1
            return 400, b"bad request\n", False
        method, target = parts[0].decode("ascii"), parts[1].decode("ascii")
        if method not in ("GET", "HEAD"):
            return 405, b"only GET and HEAD\n", False
        head_only = method == "HEAD"
        if target.split("?", 1)[0] != _PATH:
            self._counts["not_found"] += 1
            return 404, b"not found: the metrics are at /metrics\n", head_only
        try:
            body = self._render()
        except Exception:  # a broken collector costs its scrape, never the daemon
            log.exception("metrics: rendering failed")
            return 500, b"rendering the metrics failed\n", head_only
        self._counts["scrapes"] += 1
        return 200, body, head_only

    def __repr__(self) -> str:
        s = self.statistics()
        return (
            f"<MetricsEndpoint {format_address(self.address)} scrapes={s['scrapes']} "
            f"connections={s['connections']}>"
        )
