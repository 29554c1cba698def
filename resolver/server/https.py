"""DNS over HTTPS for our clients (RFC 8484): the HTTP/2 side of one client's connection, on
``/dns-query``, with GET (``?dns=`` base64url, no padding) and POST
(``application/dns-message``).

HTTP/2 is the ``h2`` library's (sans-I/O): the server's connection protocol feeds
:meth:`HttpsSession.receive` what it reads (after access control, the connection cap and the
TLS handshake, as for any TCP connection) and the session writes what h2 says to through
``write``. Each request's DNS message goes to ``handle``, the server's one path for a query
over a stream, and its reply comes back as a 200 ``application/dns-message`` response. A
request we cannot take gets an HTTP error, never a traceback: 404 for another path, 405 for
another method, 415 for another media type, 413 for a body longer than a DNS message, 400 for
a missing or malformed message (or one the server drops). A client that does not open with
HTTP/2's preface is spoken to in HTTP/1.1 (``h11``, sans-I/O as well): the same requests, one
at a time on a kept-alive connection, until one asks to close (``closed`` turns true when its
reply is sent); a request h11 cannot parse gets a 400 and the end of the connection.

At most ``max_streams`` requests are open at once (SETTINGS_MAX_CONCURRENT_STREAMS; h2
refuses more), and the connection is not read while as many are in flight.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import h11

__all__ = ["Handle", "Http1Session", "HttpsSession", "Reply", "dns_message"]

_MEDIA_TYPE = b"application/dns-message"
_PATH = "/dns-query"
_MAX_MESSAGE = 65535
_PREFACE = b"PRI * HTTP/2.0"
_MAX_HEADERS = 16384

# Called with the reply to one query (None: the server answers nothing, which is a 400).
Reply = Callable[[bytes | None], None]
# The server's path for one query: the DNS message and where its reply goes.
Handle = Callable[[bytes, Reply], None]


class HttpsSession:
    """The HTTP/2 state of one client connection (see the module)."""

    __slots__ = (
        "_closed",
        "_first",
        "_h2",
        "_handle",
        "_http1",
        "_requests",
        "_unsent",
        "_write",
        "requests",
    )

    def __init__(self, handle: Handle, write: Callable[[bytes], None], *, max_streams: int) -> None:
        self._handle = handle
        self._write = write
        self._h2 = h2.connection.H2Connection(
            config=h2.config.H2Configuration(
                client_side=False,
                header_encoding=None,
                # Our own response headers, always valid, are not checked and normalized again
                # for every reply; the client's still are (RFC 9113 section 8.1.1).
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
            )
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
        self._http1: Http1Session | None = None
        self._closed = False
        self.requests = 0

    @property
    def closed(self) -> bool:
        """Whether the connection is to be closed (an HTTP/1.1 client's too, which may ask
        for that in a request whose reply is sent later)."""
        return self._closed if self._http1 is None else self._http1.closed

    def receive(self, data: bytes) -> bool:
        """Take what the client sent; False when the connection is to be closed (an HTTP/1.1
        client, a protocol error, the client's GOAWAY)."""
        if self._http1 is not None:
            keep = self._http1.receive(data)
            self.requests = self._http1.requests
            return keep
        if self._first:
            # Our preface waits for the client's: an HTTP/1.1 client is answered in its own.
            self._first = False
            if not data.startswith(_PREFACE[: len(data)]):
                self._http1 = Http1Session(self._handle, self._write)
                return self.receive(data)
            self._h2.initiate_connection()
        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            self._flush()  # h2 has queued a GOAWAY that says why
            self._closed = True
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
                self._closed = True
                return False
        self._flush()
        return True

    def close(self) -> None:
        """Say goodbye (GOAWAY) before the connection closes."""
        if self._http1 is not None:
            self._http1.close()
        elif not self._closed and not self._first:
            self._h2.close_connection()
            self._flush()
        self._closed = True

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
        message = dns_message(method, raw_path, bytes(body), media)
        if isinstance(message, int):
            self._respond(stream, message, b"")
            return
        self.requests += 1

        def reply(answer: bytes | None) -> None:
            if self._closed:
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


class Http1Session:
    """The HTTP/1.1 side of one client connection (``h11``'s state machine): one request at
    a time, the next read once the reply to this one is sent (keep-alive). A request h11
    cannot parse gets a 400 and the connection closes."""

    __slots__ = ("_body", "_conn", "_handle", "_request", "_write", "closed", "requests")

    def __init__(self, handle: Handle, write: Callable[[bytes], None]) -> None:
        self._handle = handle
        self._write = write
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEADERS)
        self._request: tuple[bytes, bytes, bytes] | None = None  # method, target, media type
        self._body = bytearray()
        self.closed = False
        self.requests = 0

    def receive(self, data: bytes) -> bool:
        """Take what the client sent; False when the connection is to be closed."""
        try:
            self._conn.receive_data(data)
            return self._events()
        except h11.RemoteProtocolError:
            self._fail(400)
            return False

    def _events(self) -> bool:
        conn = self._conn
        while not self.closed:
            event = conn.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return True
            if isinstance(event, h11.Request):
                headers = dict(event.headers)
                media = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
                self._request = (bytes(event.method), bytes(event.target), media)
                self._body.clear()
            elif isinstance(event, h11.Data):
                # h11 hands over a bytearray where its types say bytes: read as Any, so that
                # the compiled build checks no type here (it raised TypeError on every body).
                chunk: Any = cast(Any, event).data
                self._body += chunk
                if len(self._body) > _MAX_MESSAGE:
                    self._fail(413)
                    return False
            elif isinstance(event, h11.EndOfMessage):
                self._complete()
            elif isinstance(event, h11.ConnectionClosed):
                self.closed = True
                return False
        return False

    def _complete(self) -> None:
        assert self._request is not None
        method, target, media = self._request
        message = dns_message(method, target, bytes(self._body), media)
        if isinstance(message, int):
            self._respond(message, b"")
            return
        self.requests += 1
        self._handle(message, self._reply)

    def _reply(self, answer: bytes | None) -> None:
        if self.closed:
            return
        self._respond(400 if answer is None else 200, answer or b"")
        if not self.closed:
            try:
                self._events()  # a request the client sent meanwhile
            except h11.RemoteProtocolError:
                self._fail(400)

    def _respond(self, status: int, body: bytes) -> None:
        conn = self._conn
        headers = [(b"content-length", str(len(body)).encode())]
        if status == 200:
            headers.append((b"content-type", _MEDIA_TYPE))
        try:
            data = conn.send(h11.Response(status_code=status, headers=headers))
            if body:
                data = (data or b"") + (conn.send(h11.Data(data=body)) or b"")
            data = (data or b"") + (conn.send(h11.EndOfMessage()) or b"")
        except h11.LocalProtocolError:
            self.closed = True
            return
        self._write(data)
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
            self.closed = True
            return
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()

    def _fail(self, status: int) -> None:
        """A response the client can read, then the end of the connection."""
        conn = self._conn
        if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            try:
                data = conn.send(
                    h11.Response(
                        status_code=status,
                        headers=[(b"content-length", b"0"), (b"connection", b"close")],
                    )
                )
                data = (data or b"") + (conn.send(h11.EndOfMessage()) or b"")
            except h11.LocalProtocolError:
                data = b""
            if data:
                self._write(data)
        self.closed = True

    def close(self) -> None:
        self.closed = True


def dns_message(method: bytes, raw_path: bytes, body: bytes, media: bytes) -> bytes | int:
    """The DNS message of one request, or the HTTP status that refuses it: 404 for another
    path, 405 for another method, 415 for a POST of another media type, 400 for a missing,
    malformed or short message."""
    try:
        target = urlsplit(raw_path.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return 400
    if target.path != _PATH:
        return 404
    if method == b"GET":
        message = _from_query(target.query)
    elif method == b"POST":
        if media != _MEDIA_TYPE:
            return 415
        message = body
    else:
        return 405
    if message is None or len(message) < 12:
        return 400
    return message


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
