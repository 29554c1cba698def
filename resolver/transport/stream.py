"""The pool of persistent, pipelined stream connections to one upstream (:mod:`.connection`)
that its queries share, and the :class:`Ticket` that puts an exchange on it.

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
BadResponse, except a query sent over a connection that had already carried replies: the
server may have closed it just as the query left (RFC 7766 section 6.2.3), so such a query is
sent once more over a fresh connection, and nobody's health pays for it. A connection on which
queries in a row end without a reply (the server stopped reading it) is closed the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from time import perf_counter

from resolver.config import Address, TransportConfig
from resolver.errors import BadResponse, LocalError, UpstreamTimeout, UpstreamUnreachable
from resolver.transport.connection import Pending, StreamConnection, open_stream
from resolver.transport.exchange import Exchange

__all__ = [
    "Opener",
    "StreamPool",
    "StreamStatistics",
    "Ticket",
    "plain_opener",
    "send_over",
    "stream_pool",
]

# Queries in a row that end without a reply on one connection before it is closed.
_UNANSWERED_LIMIT = 3


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
        else:
            # Also when a sweep is planned: this connection's keepalive may be due before it.
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
        loop = self._loop or self._bind()
        due = max(min(c.idle_since + self._timeout_of(c) for c in idle), loop.time()) + 0.001
        planned = self._sweep
        if planned is not None:
            if planned.when() <= due:
                return
            planned.cancel()
        self._sweep = loop.call_at(due, self._sweep_idle)

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
