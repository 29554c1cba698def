"""DNS over HTTPS for our clients (RFC 8484): one HTTP/2 connection per client, on
``/dns-query``, with GET (``?dns=`` base64url, no padding) and POST
(``application/dns-message``).

HTTP/2 is the ``h2`` library's (sans-I/O): this protocol feeds it what the TLS transport
delivers and writes what it says to. Each request's DNS message goes to ``handle``, the
server's one path for a query (access control was applied at accept; triage, engine, query
log, counts), and its reply comes back as a 200 ``application/dns-message`` response. A
request we cannot take gets an HTTP error, never a traceback: 404 for another path, 405 for
another method, 415 for another media type, 413 for a body longer than a DNS message, 400
for a missing or malformed message (or one the server drops). A client that speaks HTTP/1.1
gets a ``505 HTTP Version Not Supported`` in its own protocol and the connection is closed.

Limits: ``max_streams`` requests in flight per connection (announced as
SETTINGS_MAX_CONCURRENT_STREAMS); the connection is not read while its unsent replies are
above the transport's high-water mark, and closed when they stay unread for
``write_timeout`` seconds or it sends nothing for ``idle_timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Callable
from typing import cast
from urllib.parse import parse_qs, urlsplit

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

__all__ = ["HttpsSession", "Reply"]

_MEDIA_TYPE = b"application/dns-message"
_PATH = "/dns-query"
_MAX_MESSAGE = 65535
_HTTP1_REFUSAL = (
    b"HTTP/1.1 505 HTTP Version Not Supported\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 29\r\nConnection: close\r\n\r\n"
    b"DNS over HTTPS needs HTTP/2\r\n"
)
_WRITE_HIGH = 64 * 1024

# Called with the reply to one query (None: the server answers nothing: 400).
Reply = Callable[[bytes | None], None]
# The server's path for one query: the message, the client's address, where the reply goes.
Handle = Callable[[bytes, tuple[str, int], Reply], None]


class HttpsSession(asyncio.Protocol):
    """One client's HTTP/2 connection (see the module). ``on_close`` is told when it ends."""

    def __init__(
        self,
        handle: Handle,
        *,
        max_streams: int,
        idle_timeout: float,
        write_timeout: float,
        on_close: Callable[[HttpsSession], None] | None = None,
    ) -> None:
        self._handle = handle
        self._max_streams = max_streams
        self._idle_timeout = idle_timeout
        self._write_timeout = write_timeout
        self._on_close = on_close
        self._h2 = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=False, header_encoding=None)
        )
        self._transport: asyncio.Transport | None = None
        self._peer: tuple[str, int] = ("", 0)
        self._requests: dict[int, tuple[bytes, bytes, bytearray, bytes]] = {}
        self._unsent: dict[int, bytes] = {}  # reply bytes waiting for flow-control window
        self._timer: asyncio.TimerHandle | None = None
        self._stalled: asyncio.TimerHandle | None = None
        self._first = True
        self.closed = False
        self.requests = 0
        self.in_flight = 0

    # ----------------------------------------------------------------- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; they have its methods.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        transport.set_write_buffer_limits(high=_WRITE_HIGH)
        peer = transport.get_extra_info("peername")
        self._peer = (peer[0], peer[1]) if peer else ("", 0)
        self._h2.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self._max_streams,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 16384,
            },
        )
        self._arm_idle()

    def data_received(self, data: bytes) -> None:
        if self._first:
            # Our preface waits for the client's: an HTTP/1.1 client gets an answer it reads.
            self._first = False
            if not data.startswith(b"PRI * HTTP/2.0"[: len(data)]):
                self._refuse_http1()
                return
            self._h2.initiate_connection()
        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            self._flush()  # h2 has queued a GOAWAY saying why
            self._abort()
            return
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                self._request(event)
            elif isinstance(event, h2.events.DataReceived):
                self._data(event)
            elif isinstance(event, h2.events.StreamEnded):
                self._ended(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                self._forget(event.stream_id)
            elif isinstance(event, h2.events.WindowUpdated):
                self._send_unsent()
            elif isinstance(event, h2.events.ConnectionTerminated):
                self._abort()
                return
        self._flush()
        self._arm_idle()

    def pause_writing(self) -> None:
        # The client does not read its replies: stop reading its requests, and give up on it
        # if that lasts.
        assert self._transport is not None
        self._transport.pause_reading()
        loop = asyncio.get_running_loop()
        self._stalled = loop.call_later(self._write_timeout, self._abort)

    def resume_writing(self) -> None:
        assert self._transport is not None
        if self._stalled is not None:
            self._stalled.cancel()
            self._stalled = None
        if not self.closed:
            self._transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        for timer in (self._timer, self._stalled):
            if timer is not None:
                timer.cancel()
        self._requests.clear()
        self._unsent.clear()
        if self._on_close is not None:
            self._on_close(self)

    # ----------------------------------------------------------------- requests

    def _request(self, event: h2.events.RequestReceived) -> None:
        headers = {bytes(k): bytes(v) for k, v in event.headers or ()}
        stream = event.stream_id
        method = headers.get(b":method", b"")
        path = headers.get(b":path", b"")
        media = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        self._requests[stream] = (method, path, bytearray(), media)
        if event.stream_ended is not None:
            self._ended(stream)

    def _data(self, event: h2.events.DataReceived) -> None:
        stream = event.stream_id
        self._h2.acknowledge_received_data(event.flow_controlled_length, stream)
        request = self._requests.get(stream)
        if request is None:
            return
        body = request[2]
        body += event.data or b""
        if len(body) > _MAX_MESSAGE:
            del self._requests[stream]
            self._respond(stream, 413, b"")

    def _ended(self, stream: int) -> None:
        request = self._requests.pop(stream, None)
        if request is None:
            return
        method, raw_path, body, media = request
        try:
            target = urlsplit(raw_path.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            self._respond(stream, 400, b"")
            return
        if target.path != _PATH:
            self._respond(stream, 404, b"")
            return
        if method == b"GET":
            message = _from_query(target.query)
        elif method == b"POST":
            if media != _MEDIA_TYPE:
                self._respond(stream, 415, b"")
                return
            message = bytes(body)
        else:
            self._respond(stream, 405, b"")
            return
        if message is None or len(message) < 12:
            self._respond(stream, 400, b"")
            return
        self.requests += 1
        self.in_flight += 1

        def reply(answer: bytes | None) -> None:
            self.in_flight -= 1
            if self.closed:
                return
            if answer is None:
                self._respond(stream, 400, b"")
            else:
                self._respond(stream, 200, answer)
            self._flush()

        self._handle(message, self._peer, reply)

    def _forget(self, stream: int) -> None:
        self._requests.pop(stream, None)
        self._unsent.pop(stream, None)

    # ----------------------------------------------------------------- responses

    def _respond(self, stream: int, status: int, body: bytes) -> None:
        headers = [(b":status", str(status).encode()), (b"content-length", str(len(body)).encode())]
        if status == 200:
            headers.append((b"content-type", _MEDIA_TYPE))
        try:
            self._h2.send_headers(stream, headers, end_stream=not body)
        except h2.exceptions.H2Error:
            return  # the stream was reset or closed meanwhile
        if body:
            self._unsent[stream] = body
            self._send_unsent()

    def _send_unsent(self) -> None:
        conn = self._h2
        for stream, body in list(self._unsent.items()):
            try:
                window = min(conn.local_flow_control_window(stream), conn.max_outbound_frame_size)
            except h2.exceptions.H2Error:
                del self._unsent[stream]
                continue
            if window <= 0:
                continue
            chunk, rest = body[:window], body[window:]
            try:
                conn.send_data(stream, chunk, end_stream=not rest)
            except h2.exceptions.H2Error:
                del self._unsent[stream]
                continue
            if rest:
                self._unsent[stream] = rest
            else:
                del self._unsent[stream]

    def _flush(self) -> None:
        data = self._h2.data_to_send()
        if data and self._transport is not None and not self.closed:
            self._transport.write(data)

    # ----------------------------------------------------------------- ending

    def _refuse_http1(self) -> None:
        assert self._transport is not None
        self._transport.write(_HTTP1_REFUSAL)
        self._transport.close()

    def _arm_idle(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if not self.closed:
            self._timer = asyncio.get_running_loop().call_later(self._idle_timeout, self._idle)

    def _idle(self) -> None:
        if self.in_flight or self._unsent:
            self._arm_idle()
            return
        self._h2.close_connection()
        self._flush()
        if self._transport is not None:
            self._transport.close()

    def _abort(self) -> None:
        if self._transport is not None and not self.closed:
            self._transport.abort()

    def close(self) -> None:
        """Close the connection (at shutdown): GOAWAY, then the transport."""
        if self.closed or self._transport is None:
            return
        self._h2.close_connection()
        self._flush()
        self._transport.close()


def _from_query(query: str) -> bytes | None:
    """The DNS message of a GET's ``dns`` parameter (base64url without padding), or None."""
    values = parse_qs(query).get("dns")
    if not values or len(values) != 1:
        return None
    text = values[0]
    if len(text) > 2 * _MAX_MESSAGE:
        return None
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
