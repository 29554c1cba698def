"""One persistent, pipelined stream connection to an upstream, over TCP or TLS (RFC 7766
section 6.2.1.1, RFC 7858 section 3.4), and how one is opened.

A :class:`StreamConnection` carries many queries at once, each framed with its two-byte length;
a reply is handed to the query whose ID it carries once it passes the same checks as a UDP
reply (the query's ``take``: QR, opcode, the question), in whatever order replies come. Two
queries in flight on one connection never share an ID: a query whose random ID is taken there
gets a fresh one before it is sent. Queries over a stream carry an empty edns-tcp-keepalive
option (RFC 7828), and over TLS are padded to 128-byte blocks (RFC 8467); the timeout a
server announces in its replies is kept for the pool (:mod:`.stream`).

TLS is the standard ``ssl`` module on a non-blocking socket the loop watches, so that the
session of the last handshake can be offered on the next (``SSLSocket.session``): a reconnect
resumes instead of doing a full handshake. The certificate is checked by the context (chain,
name) and then against the pins, if any.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from resolver.config import Address
from resolver.errors import LocalError, UpstreamUnreachable, WireError
from resolver.transport.tls import describe_failure, spki_pin
from resolver.wire.options import OPTION_KEEPALIVE, QUERY_BLOCK, read_keepalive, stream_query

__all__ = [
    "CertificateRejected",
    "Pending",
    "StreamConnection",
    "TlsClient",
    "connect",
    "handshake",
    "keepalive_query",
    "open_stream",
]

_READ_SIZE = 65536
# Unsent bytes a connection may hold before it takes no more queries: a server that stops
# reading cannot grow our memory without bound.
_WRITE_HIGH_WATER = 256 * 1024
# An edns-tcp-keepalive option with a timeout: code 11, length 2. A reply without these bytes
# has none, and is not walked to look for one.
_KEEPALIVE_MARK = OPTION_KEEPALIVE.to_bytes(2, "big") + b"\x00\x02"


class Pending(Protocol):
    """What a stream connection needs of a query in flight (the transport's exchange)."""

    query: bytes
    qid: int
    retried: bool

    @property
    def done(self) -> bool: ...

    def take(self, data: bytes) -> bool:
        """Offer a message: True when it ended the query (its reply), False for a stray."""
        ...

    def fail(self, exc: BaseException) -> None: ...


@dataclass(frozen=True, slots=True)
class TlsClient:
    """How to speak TLS to one upstream: the context (CA store, ALPN), the name its
    certificate must carry (None: no name check, only the chain, which ``pins`` then must
    make up for), and optional SPKI pins (base64 SHA-256): when given, the certificate's key
    must be one of them."""

    context: ssl.SSLContext
    server_name: str | None
    pins: tuple[str, ...] = ()


class CertificateRejected(UpstreamUnreachable):
    """The upstream's certificate was not accepted (unknown CA, expired, wrong name, pin)."""


class StreamConnection:
    """One open TCP or TLS connection carrying many queries (see the module). Made by
    :func:`open_stream`; closed with :meth:`close`, which ends what is in flight."""

    __slots__ = (
        "_buffer",
        "_fd",
        "_loop",
        "_out",
        "_pending",
        "_sock",
        "_writing",
        "carried",
        "closed",
        "idle_since",
        "keepalive",
        "on_close",
        "on_idle",
        "on_stray",
        "replies",
        "tls",
        "unanswered",
    )

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, tls: ssl.SSLSocket | None
    ) -> None:
        self._loop = loop
        self._sock: socket.socket = tls if tls is not None else sock
        self.tls = tls
        self._fd = sock.fileno()
        self._buffer = bytearray()
        self._out = bytearray()
        self._writing = False
        self._pending: dict[int, Pending] = {}
        self.closed = False
        self.carried = 0  # queries sent over it
        self.unanswered = 0  # queries ended here without a reply since the last reply
        self.replies = 0
        self.idle_since = loop.time()
        self.keepalive: float | None = None  # the server's idle timeout (RFC 7828)
        self.on_close: Callable[[StreamConnection, list[Pending], bool], None] | None = None
        self.on_idle: Callable[[StreamConnection], None] | None = None
        self.on_stray: Callable[[], None] | None = None
        loop.add_reader(self._fd, self._readable)

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    @property
    def backlogged(self) -> bool:
        """Whether the server has stopped reading (too many unsent bytes)."""
        return len(self._out) > _WRITE_HIGH_WATER

    @property
    def room(self) -> int:
        """Queries the server lets us have in flight besides those already (over plain DNS
        framing, no limit but the pool's ``max_inflight``)."""
        return _READ_SIZE

    def send(self, exchange: Pending) -> None:
        """Send ``exchange``'s query over this connection; its reply (or the connection's end)
        is reported to it. The ID is changed first when another query here has it."""
        assert not self.closed
        self._track(exchange)
        query = keepalive_query(exchange.query, padded=self.tls is not None)
        self._write(len(query).to_bytes(2, "big") + query)

    def _track(self, exchange: Pending) -> None:
        """``exchange`` is in flight here, under an ID no other query here has."""
        pending = self._pending
        qid = exchange.qid
        while qid in pending:
            qid = secrets.randbelow(0x10000)
        if qid != exchange.qid:
            exchange.query = qid.to_bytes(2, "big") + exchange.query[2:]
            exchange.qid = qid
        pending[qid] = exchange
        self.carried += 1

    def _untrack(self, exchange: Pending) -> None:
        if self._pending.get(exchange.qid) is exchange:
            del self._pending[exchange.qid]

    def forget(self, exchange: Pending) -> None:
        """``exchange`` ended elsewhere (its deadline, a cancel): its late reply is dropped."""
        if self._pending.get(exchange.qid) is exchange:
            del self._pending[exchange.qid]
            self.unanswered += 1
            if not self._pending:
                self._went_idle()

    def _write(self, data: bytes) -> None:
        """Queue ``data``; what is queued in one turn of the loop goes out together at its
        end (one send, one TLS record, for the queries of one burst)."""
        out = self._out
        if not out and not self._writing:
            self._loop.call_soon(self._writable)
        out += data

    def _writable(self) -> None:
        """Send what is queued; wait for the socket to take the rest."""
        out = self._out
        if self.closed or not out:
            return
        try:
            # An SSLSocket must be given the same bytes again after a want-write: sending from
            # the front of the buffer does that.
            sent = self._sock.send(out[: 1 << 16])
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            sent = 0
        except OSError as exc:
            self.close(UpstreamUnreachable("", f"send failed: {exc.strerror or exc}"), peer=True)
            return
        del out[:sent]
        if out and not self._writing:
            self._writing = True
            self._loop.add_writer(self._fd, self._writable)
        elif not out and self._writing:
            self._writing = False
            self._loop.remove_writer(self._fd)

    def _readable(self) -> None:
        sock, buffer = self._sock, self._buffer
        # An SSLSocket may hold decrypted bytes the file descriptor no longer signals: read
        # until it says it wants more from the network.
        while True:
            try:
                data = sock.recv(_READ_SIZE)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            except (OSError, ssl.SSLError) as exc:
                reason = getattr(exc, "strerror", None) or str(exc)
                self.close(UpstreamUnreachable("", f"connection failed: {reason}"), peer=True)
                return
            if not data:
                self.close(UpstreamUnreachable("", "the server closed the connection"), peer=True)
                return
            buffer += data
            if self.tls is None:
                break  # a plain socket is level-triggered: the loop calls again if more waits
        self._received(buffer)

    def _received(self, buffer: bytearray) -> None:
        """Take the whole messages from the front of ``buffer`` (two-byte length framing)."""
        pos, end = 0, len(buffer)
        while end - pos >= 2:
            size = (buffer[pos] << 8) | buffer[pos + 1]
            if end - pos - 2 < size:
                break
            self._deliver(bytes(buffer[pos + 2 : pos + 2 + size]))
            if self.closed:
                return
            pos += 2 + size
        del buffer[:pos]

    def _deliver(self, message: bytes) -> None:
        pending = self._pending
        qid = (message[0] << 8) | message[1] if len(message) >= 2 else -1
        # Out of the table before it is offered: what its end sets off may send again here.
        exchange = pending.pop(qid, None)
        if exchange is None or not exchange.take(message):
            if exchange is not None:
                pending[qid] = exchange
            if self.on_stray is not None:
                self.on_stray()
            return
        self._answered(message)

    def _answered(self, message: bytes) -> None:
        """``message`` ended the query it answered, which is no longer pending."""
        self.replies += 1
        self.unanswered = 0
        # RFC 7828 section 3.3.2: each reply that carries a timeout resets it.
        if _KEEPALIVE_MARK in message:
            with contextlib.suppress(WireError):
                timeout = read_keepalive(message)
                if timeout is not None:
                    self.keepalive = timeout
        if not self._pending:
            self._went_idle()

    def _went_idle(self) -> None:
        self.idle_since = self._loop.time()
        if self.on_idle is not None and not self.closed:
            self.on_idle(self)

    def close(self, exc: BaseException | None = None, *, peer: bool = False) -> None:
        """Close the connection; what is in flight is handed to ``on_close`` (which retries or
        fails it) or failed with ``exc``. Idempotent."""
        if self.closed:
            return
        self.closed = True
        self._loop.remove_reader(self._fd)
        if self._writing:
            self._loop.remove_writer(self._fd)
        self._sock.close()
        stranded = [e for e in self._pending.values() if not e.done]
        self._pending.clear()
        if self.on_close is not None:
            self.on_close(self, stranded, peer)
        else:
            for exchange in stranded:
                exchange.fail(exc or UpstreamUnreachable("", "connection closed"))

    def __repr__(self) -> str:
        kind = "TLS" if self.tls is not None else "TCP"
        state = "closed" if self.closed else f"in_flight={len(self._pending)}"
        return f"<StreamConnection {kind} {state} carried={self.carried}>"


async def _fd_ready(loop: asyncio.AbstractEventLoop, fd: int, *, write: bool) -> None:
    future: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not future.done():
            future.set_result(None)

    if write:
        loop.add_writer(fd, ready)
    else:
        loop.add_reader(fd, ready)
    try:
        await future
    finally:
        if write:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


async def connect(address: Address, name: str) -> socket.socket:
    """A non-blocking TCP socket connected to ``address`` (a numeric IP address). Raises
    UpstreamUnreachable, LocalError when our side runs short of descriptors."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    except OSError as exc:
        raise LocalError(f"{name}: cannot open a socket: {exc.strerror or exc}") from exc
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await loop.sock_connect(sock, address)
    except OSError as exc:
        sock.close()
        raise UpstreamUnreachable(name, f"cannot connect: {exc.strerror or exc}") from exc
    except BaseException:
        sock.close()
        raise
    return sock


async def handshake(
    sock: socket.socket, tls: TlsClient, session: ssl.SSLSession | None, name: str
) -> ssl.SSLSocket:
    """The TLS handshake over the connected ``sock`` (which it takes over), offering
    ``session`` for resumption, then the pin check. Raises CertificateRejected when the
    certificate is not accepted, UpstreamUnreachable when the handshake fails otherwise."""
    loop = asyncio.get_running_loop()
    context = tls.context
    if tls.server_name is None and context.check_hostname:
        sock.close()
        raise UpstreamUnreachable(name, "no certificate name to check (give #NAME)")
    try:
        wrapped = context.wrap_socket(
            sock, server_hostname=tls.server_name, session=session, do_handshake_on_connect=False
        )
    except BaseException:
        sock.close()
        raise
    try:
        fd = wrapped.fileno()
        while True:
            try:
                wrapped.do_handshake()
                break
            except ssl.SSLWantReadError:
                await _fd_ready(loop, fd, write=False)
            except ssl.SSLWantWriteError:
                await _fd_ready(loop, fd, write=True)
            except (ssl.SSLError, ssl.CertificateError) as exc:
                raise CertificateRejected(name, describe_failure(exc)) from exc
            except OSError as exc:
                raise UpstreamUnreachable(
                    name, f"TLS handshake failed: {exc.strerror or exc}"
                ) from exc
        if tls.pins:
            der = wrapped.getpeercert(binary_form=True)
            if der is None or spki_pin(der) not in tls.pins:
                raise CertificateRejected(name, "certificate not accepted: no pinned key matches")
    except BaseException:
        wrapped.close()
        raise
    return wrapped


async def open_stream(
    address: Address, tls: TlsClient | None, session: ssl.SSLSession | None, name: str
) -> StreamConnection:
    """Connect to ``address`` (a numeric IP address), and with ``tls`` make the TLS handshake,
    offering ``session`` for resumption, then check the pins. Raises UpstreamUnreachable
    (CertificateRejected when the certificate is not accepted), LocalError when our side runs
    short of descriptors. The caller bounds the time."""
    sock = await connect(address, name)
    loop = asyncio.get_running_loop()
    if tls is None:
        return StreamConnection(loop, sock, None)
    wrapped = await handshake(sock, tls, session, name)
    return StreamConnection(loop, wrapped, wrapped)


# Opens one connection: the pool passes the session to resume (None for plain TCP).
def keepalive_query(query: bytes, *, padded: bool) -> bytes:
    """``query`` as sent over a stream: with an empty edns-tcp-keepalive option (RFC 7828
    section 3.2.1: the server may then say how long it keeps an idle connection), and with
    ``padded`` (an encrypted stream) padded to RFC 8467's 128-byte blocks. Unchanged when it
    has no OPT record (EDNS off)."""
    try:
        return stream_query(query, QUERY_BLOCK if padded else 0)
    except WireError:
        return query
