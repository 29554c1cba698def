"""DNS over HTTPS to an upstream (RFC 8484): queries as HTTP/2 POST requests with
``application/dns-message`` bodies, many at once on one connection, one stream each.

The HTTP/2 protocol is the ``h2`` library's (sans-I/O: it is fed the bytes our socket reads and
says what to write), so the connection is a :class:`.connection.StreamConnection` with another
framing: the same socket handling, pool, idle close and retry. As RFC 8484 section 4.1
asks, the query goes with ID 0 (cache friendly); the reply is matched to its query by stream
and then checked like any other reply (with our ID put back first).
"""

from __future__ import annotations

import asyncio
import ssl

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from resolver.config import Address
from resolver.errors import BadResponse, UpstreamUnreachable
from resolver.transport.connection import (
    Pending,
    StreamConnection,
    TlsClient,
    connect,
    handshake,
)
from resolver.wire.options import QUERY_BLOCK, pad

__all__ = ["HttpsConnection", "open_https"]

_MEDIA_TYPE = b"application/dns-message"
_MAX_BODY = 65535


class HttpsConnection(StreamConnection):
    """One HTTP/2 connection to a DoH server (see the module)."""

    __slots__ = ("_authority", "_bodies", "_h2", "_path", "_statuses", "_streams")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: ssl.SSLSocket,
        authority: str,
        path: str,
    ) -> None:
        super().__init__(loop, sock, sock)
        self._authority = authority.encode()
        self._path = path.encode()
        self._h2 = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self._streams: dict[int, Pending] = {}
        self._bodies: dict[int, bytearray] = {}
        self._statuses: dict[int, bytes] = {}
        self._h2.initiate_connection()
        self._flush()

    @property
    def room(self) -> int:
        """Streams the server lets us open besides those in flight."""
        return self._h2.remote_settings.max_concurrent_streams - len(self._streams)

    def send(self, exchange: Pending) -> None:
        """Send ``exchange``'s query as one POST request (ID 0 on the wire)."""
        assert not self.closed
        conn = self._h2
        self._track(exchange)
        # ID 0 (RFC 8484 section 4.1), padded to RFC 8467's 128-byte blocks.
        body = pad(b"\x00\x00" + exchange.query[2:], QUERY_BLOCK)
        stream = conn.get_next_available_stream_id()
        self._streams[stream] = exchange
        try:
            conn.send_headers(
                stream,
                [
                    (b":method", b"POST"),
                    (b":scheme", b"https"),
                    (b":authority", self._authority),
                    (b":path", self._path),
                    (b"content-type", _MEDIA_TYPE),
                    (b"accept", _MEDIA_TYPE),
                    (b"content-length", str(len(body)).encode()),
                ],
            )
            conn.send_data(stream, body, end_stream=True)
        except h2.exceptions.H2Error as exc:
            self.close(UpstreamUnreachable("", f"HTTP/2: {exc}"), peer=True)
            return
        self._flush()

    def forget(self, exchange: Pending) -> None:
        for stream, pending in list(self._streams.items()):
            if pending is exchange:
                del self._streams[stream]
                self._bodies.pop(stream, None)
                self._statuses.pop(stream, None)
                if not self.closed:
                    try:
                        self._h2.reset_stream(stream)
                    except h2.exceptions.H2Error:
                        pass  # already closed on the server's side
                    else:
                        self._flush()
        super().forget(exchange)

    def _flush(self) -> None:
        data = self._h2.data_to_send()
        if data:
            self._write(data)

    def _received(self, buffer: bytearray) -> None:
        data = bytes(buffer)
        buffer.clear()
        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.H2Error as exc:
            self.close(UpstreamUnreachable("", f"HTTP/2 protocol error: {exc}"), peer=True)
            return
        for event in events:
            self._event(event)
            if self.closed:
                return
        self._flush()

    def _event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            for name, value in event.headers or ():
                if name == b":status":
                    self._statuses[event.stream_id] = bytes(value)
        elif isinstance(event, h2.events.DataReceived):
            stream = event.stream_id
            body = self._bodies.setdefault(stream, bytearray())
            body += event.data or b""
            self._h2.acknowledge_received_data(event.flow_controlled_length, stream)
            if len(body) > _MAX_BODY:
                self._stream_failed(stream, "the reply is longer than a DNS message can be")
        elif isinstance(event, h2.events.StreamEnded):
            self._complete(event.stream_id)
        elif isinstance(event, h2.events.StreamReset):
            self._stream_failed(event.stream_id, "the server reset the request")
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.close(UpstreamUnreachable("", "the server closed the connection"), peer=True)

    def _complete(self, stream: int) -> None:
        exchange = self._streams.pop(stream, None)
        body = bytes(self._bodies.pop(stream, b""))
        status = self._statuses.pop(stream, b"")
        if exchange is None:
            return
        if status != b"200":
            self._fail(exchange, f"HTTP status {status.decode(errors='replace') or 'missing'}")
            return
        reply = exchange.qid.to_bytes(2, "big") + body[2:]
        self._untrack(exchange)
        if len(body) < 12 or not exchange.take(reply):
            if self.on_stray is not None:
                self.on_stray()
            self._fail(exchange, "the reply does not answer the query")
            return
        self._answered(reply)

    def _stream_failed(self, stream: int, reason: str) -> None:
        exchange = self._streams.pop(stream, None)
        self._bodies.pop(stream, None)
        self._statuses.pop(stream, None)
        if exchange is not None:
            self._fail(exchange, reason)

    def _fail(self, exchange: Pending, reason: str) -> None:
        self._untrack(exchange)
        exchange.fail(BadResponse("", reason))
        if not self.in_flight:
            self._went_idle()


async def open_https(
    address: Address,
    tls: TlsClient,
    session: ssl.SSLSession | None,
    name: str,
    authority: str,
    path: str,
) -> HttpsConnection:
    """Connect to ``address``, make the TLS handshake (ALPN must settle on h2) and start
    HTTP/2 with ``authority`` and ``path`` for the requests. Raises as
    :func:`~resolver.transport.stream.open_stream` does."""
    sock = await connect(address, name)
    wrapped = await handshake(sock, tls, session, name)
    if wrapped.selected_alpn_protocol() != "h2":
        wrapped.close()
        raise UpstreamUnreachable(name, "the server does not speak HTTP/2 (ALPN h2)")
    return HttpsConnection(asyncio.get_running_loop(), wrapped, authority, path)
