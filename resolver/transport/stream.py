"""Persistent, pipelined stream connections to one upstream, over TCP or TLS (RFC 7766 section
6.2.1.1, RFC 7858 section 3.4), and the pool that shares them among queries.

A :class:`StreamConnection` carries many queries at once, each framed with its two-byte length;
a reply is handed to the query whose ID it carries once it passes the same checks as a UDP
reply (the exchange's ``take``: QR, opcode, the question), in whatever order replies come.
Two queries in flight on one connection never share an ID: a query whose random ID is taken
there gets a fresh one before it is sent.

A :class:`StreamPool` is the pool idea one layer up: its state changes only in plain
synchronous methods and one of them, ``_reconcile``, draws every consequence (hands waiting
queries to connections with room, opens connections while there is demand and room under
``max_connections``, arms the idle sweep); the awaiting happens only in the pool's own tasks
(opening a connection) and in ``aclose``. A query is put on the oldest open connection with
room (at most ``max_inflight`` in flight on each), so that a light load travels over one
connection; a new connection is opened only when every open one is full. A connection with
nothing in flight for ``idle_timeout`` seconds, or for the idle timeout the server itself
announced with edns-tcp-keepalive (RFC 7828), whichever is shorter, is closed.

A connection the server closes (or resets) while queries are in flight on it ends them with
UpstreamUnreachable, except a query sent over a connection that had already carried replies and
then sat idle: the server may have closed it just as the query left (RFC 7766 section 6.2.3),
so such a query is sent once more over a fresh connection, and nobody's health pays for it.

TLS is the standard ``ssl`` module on a non-blocking socket the loop watches, so that the
session of the last handshake can be offered on the next (``SSLSocket.session``): a reconnect
resumes instead of doing a full handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from time import perf_counter
from typing import Protocol

from resolver.config import Address, TransportConfig
from resolver.errors import BadResponse, LocalError, UpstreamTimeout, UpstreamUnreachable, WireError
from resolver.transport.exchange import Exchange
from resolver.transport.tls import describe_failure, spki_pin
from resolver.wire.options import OPTION_KEEPALIVE, QUERY_BLOCK, add_option, pad, read_keepalive

__all__ = [
    "CertificateRejected",
    "Pending",
    "StreamConnection",
    "StreamPool",
    "StreamStatistics",
    "Ticket",
    "TlsClient",
    "connect",
    "handshake",
    "keepalive_query",
    "open_stream",
    "plain_opener",
    "send_over",
    "stream_pool",
]

log = logging.getLogger(__name__)

_READ_SIZE = 65536
# Queries in a row that end without a reply on one connection before it is closed.
_UNANSWERED_LIMIT = 3
# Unsent bytes a connection may hold before it takes no more queries: a server that stops
# reading cannot grow our memory without bound.
_WRITE_HIGH_WATER = 256 * 1024


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


@dataclass(frozen=True, slots=True)
class StreamStatistics:
    """Counts for one upstream's stream connections: ``opened`` (handshakes made, of them
    ``resumed`` TLS sessions), ``failed_opens``, ``closed`` (of them ``idle_closed`` by us
    for idleness and ``peer_closed`` by the server), ``queries`` sent, ``reused`` (queries sent
    over a connection that had already carried one), ``retried`` (queries sent again after
    the server closed an idle connection under them), ``strays`` (messages matching no query in
    flight), ``open`` and ``in_flight`` now, ``stuck`` (connections closed after queries in
    a row ended on them without a reply)."""

    opened: int
    resumed: int
    failed_opens: int
    closed: int
    idle_closed: int
    peer_closed: int
    queries: int
    reused: int
    retried: int
    strays: int
    open: int
    stuck: int
    in_flight: int


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
        if self.replies == 1 or self.keepalive is not None:
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
Opener = Callable[[ssl.SSLSession | None], Awaitable[StreamConnection]]


def plain_opener(address: Address, name: str) -> Opener:
    """Opens plain TCP connections to ``address``."""

    def opener(session: ssl.SSLSession | None) -> Awaitable[StreamConnection]:
        return open_stream(address, None, None, name)

    return opener


def stream_pool(
    name: str,
    config: TransportConfig,
    opener: Opener,
    on_failure: Callable[[BaseException], None] | None = None,
) -> StreamPool:
    """A pool of connections to the upstream ``name``, sized as ``config`` says."""
    return StreamPool(
        name,
        opener,
        max_connections=config.max_connections,
        max_inflight=config.pipeline_depth,
        idle_timeout=config.connection_idle_timeout,
        on_failure=on_failure,
    )


class StreamPool:
    """The stream connections to one upstream (see the module): ``submit`` puts a query on a
    connection with room, or queues it until one has room or is opened. ``on_failure`` is told
    the error when a connection cannot be opened (certificate rejections included) so that
    the owner can log it once."""

    def __init__(
        self,
        name: str,
        opener: Opener,
        *,
        max_connections: int = 2,
        max_inflight: int = 64,
        idle_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        on_failure: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.name = name
        self._opener = opener
        self._max_connections = max_connections
        self._max_inflight = max_inflight
        self._idle_timeout = idle_timeout
        self._connect_timeout = connect_timeout
        self._on_failure = on_failure
        self._connections: list[StreamConnection] = []
        self._waiting: deque[Pending] = deque()
        self._opening = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweep: asyncio.TimerHandle | None = None
        self._session: ssl.SSLSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._opened = 0
        self._resumed = 0
        self._failed_opens = 0
        self._closed_count = 0
        self._idle_closed = 0
        self._peer_closed = 0
        self._queries = 0
        self._reused = 0
        self._retried = 0
        self._strays = 0
        self._stuck = 0
        self._abandoned: StreamConnection | None = None  # being closed as stuck

    # ----------------------------------------------------------------- public surface

    def submit(self, exchange: Pending) -> None:
        """Send ``exchange`` over a connection with room, or queue it for the next one to have
        room or be opened. Never raises: a failure is reported to the exchange."""
        if self._closed:
            exchange.fail(LocalError(f"{self.name}: the transport is shutting down"))
            return
        self._waiting.append(exchange)
        self._reconcile()

    def forget(self, exchange: Pending) -> None:
        """``exchange`` ended without its reply (deadline, cancel): stop tracking it. A
        connection on which ``_UNANSWERED_LIMIT`` queries in a row ended so is closed (the
        server may have stopped reading it): what is in flight there is asked again on
        another, once."""
        for connection in list(self._connections):
            connection.forget(exchange)
            if connection.unanswered >= _UNANSWERED_LIMIT:
                self._drop(connection)
                self._stuck += 1
                self._abandoned = connection
                connection.close()
                self._abandoned = None

    def statistics(self) -> StreamStatistics:
        return StreamStatistics(
            opened=self._opened,
            resumed=self._resumed,
            failed_opens=self._failed_opens,
            closed=self._closed_count,
            idle_closed=self._idle_closed,
            peer_closed=self._peer_closed,
            queries=self._queries,
            reused=self._reused,
            retried=self._retried,
            strays=self._strays,
            stuck=self._stuck,
            open=len(self._connections),
            in_flight=sum(c.in_flight for c in self._connections),
        )

    async def aclose(self) -> None:
        """Close every connection, fail queued queries, stop opening. Idempotent."""
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        waiting = list(self._waiting)
        self._waiting.clear()
        for exchange in waiting:
            exchange.fail(LocalError(f"{self.name}: the transport is shutting down"))
        for connection in list(self._connections):
            self._drop(connection)
            connection.close(LocalError(f"{self.name}: the transport is shutting down"))
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __repr__(self) -> str:
        s = self.statistics()
        return (
            f"<StreamPool {self.name} open={s.open} in_flight={s.in_flight} "
            f"waiting={len(self._waiting)} opened={s.opened} queries={s.queries}>"
        )

    # ----------------------------------------------------------------- the decision step

    def _reconcile(self) -> None:
        waiting = self._waiting
        while waiting:
            exchange = waiting[0]
            if exchange.done:
                waiting.popleft()
                continue
            connection = self._room()
            if connection is None:
                break
            waiting.popleft()
            self._queries += 1
            if connection.carried:
                self._reused += 1
            connection.send(exchange)
        if self._closed:
            return
        live = sum(not e.done for e in waiting)
        if live:
            room = self._max_connections - len(self._connections) - self._opening
            wanted = -(-live // self._max_inflight) - self._opening
            for _ in range(min(room, wanted)):
                self._open()
        if self._sweep is None and any(not c.in_flight for c in self._connections):
            self._arm_sweep()

    def _room(self) -> StreamConnection | None:
        """The oldest open connection with room for one more query."""
        for connection in self._connections:
            if (
                connection.in_flight < self._max_inflight
                and connection.room > 0
                and not connection.backlogged
            ):
                return connection
        return None

    # ----------------------------------------------------------------- opening

    def _open(self) -> None:
        self._opening += 1
        loop = self._loop or self._bind()
        task = loop.create_task(self._open_one())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _open_one(self) -> None:
        try:
            async with asyncio.timeout(self._connect_timeout):
                connection = await self._opener(self._session)
        except asyncio.CancelledError:
            self._opening -= 1
            raise
        except TimeoutError:
            self._opening -= 1
            self._open_failed(UpstreamTimeout(self.name, "no connection before the timeout"))
            return
        except Exception as exc:  # this task's root: the error goes to the queued queries
            self._opening -= 1
            self._open_failed(exc)
            return
        self._opening -= 1
        self._opened += 1
        tls = connection.tls
        if tls is not None and tls.session_reused:
            self._resumed += 1
        if self._closed:
            connection.close(LocalError(f"{self.name}: the transport is shutting down"))
            return
        connection.on_close = self._connection_closed
        connection.on_idle = self._connection_idle
        connection.on_stray = self._count_stray
        self._connections.append(connection)
        self._reconcile()

    def _open_failed(self, exc: BaseException) -> None:
        """No connection: the queued queries that nothing else can serve get the error."""
        self._failed_opens += 1
        if self._on_failure is not None:
            self._on_failure(exc)
        if self._connections or self._opening:
            self._reconcile()
            return
        waiting = list(self._waiting)
        self._waiting.clear()
        if isinstance(exc, UpstreamUnreachable | UpstreamTimeout | LocalError):
            error: BaseException = exc
        else:
            error = UpstreamUnreachable(self.name, str(exc) or type(exc).__name__)
        for exchange in waiting:
            if not exchange.done:
                exchange.fail(error)

    def _bind(self) -> asyncio.AbstractEventLoop:
        self._loop = asyncio.get_running_loop()
        return self._loop

    # ----------------------------------------------------------------- closing

    def _drop(self, connection: StreamConnection) -> None:
        if connection in self._connections:
            self._connections.remove(connection)
            self._closed_count += 1

    def _connection_closed(
        self, connection: StreamConnection, stranded: list[Pending], peer: bool
    ) -> None:
        # Sent on a connection that had been idle, the server may have closed it just then;
        # or on one we gave up as stuck. Once more on a fresh connection, at no cost to its
        # health.
        again = (peer and connection.replies > 0) or connection is self._abandoned
        if connection in self._connections:
            self._drop(connection)
            self._peer_closed += peer
        for exchange in stranded:
            if again and not exchange.retried and not self._closed:
                exchange.retried = True
                self._retried += 1
                self._waiting.appendleft(exchange)
            else:
                exchange.fail(
                    BadResponse(self.name, "the server closed the connection before replying")
                )
        self._reconcile()

    def _connection_idle(self, connection: StreamConnection) -> None:
        tls = connection.tls
        if tls is not None and connection.replies:
            # The session of a connection that carried replies holds the server's ticket (TLS
            # 1.3 sends it after the handshake): kept, to be resumed by the next handshake.
            with contextlib.suppress(ssl.SSLError, OSError, ValueError):
                session = tls.session
                if session is not None:
                    self._session = session
        if connection.keepalive == 0.0:
            self._drop(connection)
            connection.close()
            return
        if self._waiting:
            self._reconcile()
        elif self._sweep is None:
            self._arm_sweep()

    def _count_stray(self) -> None:
        self._strays += 1

    def _timeout_of(self, connection: StreamConnection) -> float:
        keepalive = connection.keepalive
        return self._idle_timeout if keepalive is None else min(keepalive, self._idle_timeout)

    def _arm_sweep(self) -> None:
        idle = [c for c in self._connections if not c.in_flight]
        if not idle:
            return
        due = min(c.idle_since + self._timeout_of(c) for c in idle)
        loop = self._loop or self._bind()
        self._sweep = loop.call_at(max(due, loop.time()) + 0.001, self._sweep_idle)

    def _sweep_idle(self) -> None:
        self._sweep = None
        now = (self._loop or self._bind()).time()
        for connection in list(self._connections):
            if (
                not connection.in_flight
                and connection.idle_since + self._timeout_of(connection) <= now
            ):
                self._drop(connection)
                self._idle_closed += 1
                connection.close()
        self._reconcile()


def keepalive_query(query: bytes, *, padded: bool) -> bytes:
    """``query`` as sent over a stream: with an empty edns-tcp-keepalive option (RFC 7828
    section 3.2.1: the server may then say how long it keeps an idle connection), and with
    ``padded`` (an encrypted stream) padded to RFC 8467's 128-byte blocks. Unchanged when it
    has no OPT record (EDNS off)."""
    try:
        query = add_option(query, OPTION_KEEPALIVE)
    except WireError:
        return query
    return pad(query, QUERY_BLOCK) if padded else query


class Ticket:
    """An exchange's place in a stream pool (the :class:`Pending` the pool carries) and, as the
    exchange's guard, the way back: when the exchange ends without its reply (its deadline, a
    cancel), :meth:`discard` tells the pool to forget it, so that its late reply is a stray and
    its slot on the connection is free again."""

    __slots__ = ("exchange", "pending", "pool", "retire", "retried")

    def __init__(self, exchange: Exchange, pool: StreamPool) -> None:
        self.exchange = exchange
        self.pool = pool
        self.retried = False
        # As the exchange's carrier: _let_go clears ``pending``; a stream is never retired.
        self.pending: Exchange | None = exchange
        self.retire = False

    @property
    def query(self) -> bytes:
        return self.exchange.query

    @query.setter
    def query(self, value: bytes) -> None:
        self.exchange.query = value

    @property
    def qid(self) -> int:
        return self.exchange.qid

    @qid.setter
    def qid(self, value: int) -> None:
        self.exchange.qid = value

    @property
    def done(self) -> bool:
        return self.exchange.done

    def take(self, data: bytes) -> bool:
        return self.exchange.take(data)

    def fail(self, exc: BaseException) -> None:
        self.exchange.fail(exc)

    # The exchange's guard (transport.exchange.Checkout) and carrier.

    @property
    def obj(self) -> Ticket:
        return self

    def send(self, data: bytes) -> None:
        raise AssertionError("a stream exchange is sent by its pool")

    def release(self) -> None:
        """The exchange got its reply: the connection let go of it already."""

    def discard(self) -> None:
        self.pool.forget(self)


def send_over(pool: StreamPool, exchange: Exchange) -> None:
    """Send ``exchange`` over one of ``pool``'s connections; its owner keeps its deadline."""
    ticket = Ticket(exchange, pool)
    exchange.guard = ticket
    exchange.owner.track_deadline(exchange)
    exchange.sent_at = perf_counter()
    pool.submit(ticket)
