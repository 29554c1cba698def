"""DNS over HTTPS for our clients (RFC 8484): the HTTP/2 side of one client's connection, on
``/dns-query``, with GET (``?dns=`` base64url, no padding) and POST
(``application/dns-message``).

HTTP/2 is the ``h2`` library's (sans-I/O): the server's connection task feeds
:meth:`HttpsSession.receive` what it reads (after access control, the connection cap and the
TLS handshake, as for any TCP connection) and the session writes what h2 says to through
``write``. Each request's DNS message goes to ``handle``, the server's one path for a query
over a stream, and its reply comes back as a 200 ``application/dns-message`` response. A
request we cannot take gets an HTTP error, never a traceback: 404 for another path, 405 for
another method, 415 for another media type, 413 for a body longer than a DNS message, 400 for
a missing or malformed message (or one the server drops). A client that speaks HTTP/1.1 gets
a ``505 HTTP Version Not Supported`` in its own protocol, and the connection is closed.

At most ``max_streams`` requests are open at once (SETTINGS_MAX_CONCURRENT_STREAMS; h2
refuses more), and the connection task stops reading while as many are in flight.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

__all__ = ["Handle", "HttpsSession", "Reply"]

_MEDIA_TYPE = b"application/dns-message"
_PATH = "/dns-query"
_MAX_MESSAGE = 65535
_PREFACE = b"PRI * HTTP/2.0"
_HTTP1_REFUSAL = (
    b"HTTP/1.1 505 HTTP Version Not Supported\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 29\r\nConnection: close\r\n\r\n"
    b"DNS over HTTPS needs HTTP/2\r\n"
)

# Called with the reply to one query (None: the server answers nothing, which is a 400).
Reply = Callable[[bytes | None], None]
# The server's path for one query: the DNS message and where its reply goes.
Handle = Callable[[bytes, Reply], None]


class HttpsSession:
    """The HTTP/2 state of one client connection (see the module)."""

    __slots__ = ("_first", "_h2", "_handle", "_requests", "_unsent", "_write", "closed", "requests")

    def __init__(self, handle: Handle, write: Callable[[bytes], None], *, max_streams: int) -> None:
        self._handle = handle
        self._write = write
        self._h2 = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=False, header_encoding=None)
        )
        self._h2.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: max_streams,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 16384,
            },
        )
        # stream -> (method, path, body, media type) of a request still being received
        self._requests: dict[int, tuple[bytes, bytes, bytearray, bytes]] = {}
        self._unsent: dict[int, bytes] = {}  # reply bytes waiting for flow-control window
        self._first = True
        self.closed = False
        self.requests = 0

    def receive(self, data: bytes) -> bool:
        """Take what the client sent; False when the connection is to be closed (an HTTP/1.1
        client, a protocol error, the client's GOAWAY)."""
        if self._first:
            # Our preface waits for the client's: an HTTP/1.1 client gets an answer it reads.
            self._first = False
            if not data.startswith(_PREFACE[: len(data)]):
                self._write(_HTTP1_REFUSAL)
                self.closed = True
                return False
            self._h2.initiate_connection()
        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            self._flush()  # h2 has queued a GOAWAY that says why
            self.closed = True
            return False
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                self._request(event)
            elif isinstance(event, h2.events.DataReceived):
                self._data(event)
            elif isinstance(event, h2.events.StreamEnded):
                self._ended(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                self._requests.pop(event.stream_id, None)
                self._unsent.pop(event.stream_id, None)
            elif isinstance(event, h2.events.WindowUpdated):
                self._send_unsent()
            elif isinstance(event, h2.events.ConnectionTerminated):
                self._flush()
                self.closed = True
                return False
        self._flush()
        return True

    def close(self) -> None:
        """Say goodbye (GOAWAY) before the connection closes."""
        if not self.closed and not self._first:
            self._h2.close_connection()
            self._flush()
        self.closed = True

    # ----------------------------------------------------------------- requests

    def _request(self, event: h2.events.RequestReceived) -> None:
        headers = {bytes(k): bytes(v) for k, v in event.headers or ()}
        method = headers.get(b":method", b"")
        path = headers.get(b":path", b"")
        media = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        self._requests[event.stream_id] = (method, path, bytearray(), media)
        if event.stream_ended is not None:
            self._ended(event.stream_id)

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

        def reply(answer: bytes | None) -> None:
            if self.closed:
                return
            self._respond(stream, 400 if answer is None else 200, answer or b"")
            self._flush()

        self._handle(message, reply)

    # ----------------------------------------------------------------- responses

    def _respond(self, stream: int, status: int, body: bytes) -> None:
        headers = [(b":status", str(status).encode()), (b"content-length", str(len(body)).encode())]
        if status == 200:
            headers.append((b"content-type", _MEDIA_TYPE))
        try:
            self._h2.send_headers(stream, headers, end_stream=not body)
        except h2.exceptions.H2Error:
            return  # the client reset the stream meanwhile
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
        if data:
            self._write(data)


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
