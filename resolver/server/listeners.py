"""The listeners' I/O: the UDP protocol and the TCP connection loop, in front of a Server.

The answering itself is the Server's (``answer_remembered``, ``local_or_cached``,
``start_udp_nowait``, ``resolve_for``); these only move bytes and count.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from resolver.server.core import Server

__all__ = ["UdpListener", "tcp_connection"]

log = logging.getLogger("resolver.server")


async def tcp_connection(
    server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """One client's TCP connection: length-prefixed queries, each answered in its own task as
    it completes; closed after the idle timeout, at EOF, or at shutdown."""
    if len(server._connections) >= server.config.max_tcp_connections or server._closed:
        server._counts["dropped"] += 1
        writer.close()
        return
    server._connections.add(writer)
    peer = writer.get_extra_info("peername")
    host = peer[0] if peer else ""
    pending: set[asyncio.Task[None]] = set()
    try:
        while not server._closed:
            try:
                async with asyncio.timeout(server.config.tcp_idle_timeout):
                    size = int.from_bytes(await reader.readexactly(2), "big")
                    data = await reader.readexactly(size)
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                break
            server._counts["tcp"] += 1
            task = asyncio.get_running_loop().create_task(_tcp_query(server, writer, data, host))
            pending.add(task)
            server._tasks.add(task)
            task.add_done_callback(pending.discard)
            task.add_done_callback(server._tasks.discard)
        if pending:
            await asyncio.wait(pending, timeout=server.config.shutdown_grace)
    finally:
        server._connections.discard(writer)
        writer.close()


async def _tcp_query(server: Server, writer: asyncio.StreamWriter, data: bytes, host: str) -> None:
    reply = await server.answer(data, host, tcp=True)
    if reply is not None and not writer.is_closing():
        # One write call per frame: frames of concurrent answers never interleave.
        writer.write(len(reply).to_bytes(2, "big") + reply)


class UdpListener(asyncio.DatagramProtocol):
    """The UDP socket of one listen address; each datagram is one query."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport does not subclass asyncio.DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        server = self._server
        transport = self._transport
        assert transport is not None
        # The hottest path: a repeat of a recent cache hit is one dict lookup and one send.
        found = server._memo.get(data[2:])
        if found is not None:
            reply = server.answer_remembered(data, found, addr[0])
            if reply is not None:
                transport.sendto(reply, addr)
                return
        if server._closed:  # draining for shutdown: answer what is in flight, nothing new
            server._counts["dropped"] += 1
            return
        server._counts["udp"] += 1
        first = server.local_or_cached(data, addr[0], tcp=False)
        if first is None:
            return
        if isinstance(first, bytes):
            transport.sendto(first, addr)
            return
        if not server.start_udp_nowait(transport, data, first, addr):
            server._track(server._udp_query(transport, data, first, addr))

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for replies to clients that went away: nothing to do, keep serving.
        log.debug("UDP listener error: %s", exc)
