"""What :class:`~resolver.transport.upstream.Upstream` and
:class:`~resolver.transport.servers.Servers` share: exchanges started over a pool of UDP
sockets (waiting for a socket in a task only when none is idle) or over TCP, their deadlines
kept by one sweep, and the counts."""

from __future__ import annotations

import asyncio
import functools
import socket
from collections.abc import Coroutine
from dataclasses import dataclass, field
from time import perf_counter

from resolver.config import Address, TransportConfig
from resolver.errors import (
    BadResponse,
    CaseMismatch,
    LocalError,
    PoolClosed,
    PoolTimeout,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from resolver.histogram import Histogram
from resolver.pool import Guard, Pool
from resolver.transport.addresses import WILDCARD
from resolver.transport.exchange import Exchange
from resolver.transport.readiness import Watcher
from resolver.transport.stream import StreamPool
from resolver.transport.sweep import DeadlineSweep
from resolver.transport.tcp import over_tcp
from resolver.transport.udp import FreshUdpSocket, UdpSocket, socket_error

__all__ = ["Counts", "Exchanges"]


@dataclass(slots=True)
class Counts:
    """The running counts of an owner's exchanges (see the statistics classes)."""

    queries: int = 0
    replies: int = 0
    strays: int = 0
    timeouts: int = 0
    unreachable: int = 0
    bad_responses: int = 0
    local_failures: int = 0
    tcp_queries: int = 0
    case_mismatches: int = 0
    socket_waits: int = 0
    rtt: Histogram = field(default_factory=Histogram)


class Exchanges:
    """The base of an owner of exchanges: starts them (:meth:`dispatch`), keeps their
    deadlines, counts them, and closes everything with :meth:`aclose`."""

    # Whether a reply that matches a 0x20 query in everything but the name's case ends the
    # exchange with CaseMismatch (so that the caller can ask again without 0x20) instead of
    # being a stray.
    case_fallback = False

    def __init__(self, config: TransportConfig | None) -> None:
        self.config = config or TransportConfig()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._watcher: Watcher | None = None  # made with the first socket, on its loop
        self.closed = False
        self.counts = Counts()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing: asyncio.Task[None] | None = None
        self._sweep = DeadlineSweep()

    def make_pool(self, family: int, connect: Address | None, max_uses: int) -> Pool[UdpSocket]:
        """A pool of UDP sockets of ``family``, connected to ``connect`` when made, or bound
        to a random port and left unconnected with None; sized as ``config.pool`` says."""
        config = self.config.pool
        return Pool(
            create=functools.partial(self._open_socket, family, connect),
            close=UdpSocket.close,
            min_size=config.min_size,
            max_size=config.max_size,
            max_uses=max_uses,
            max_age=config.max_age,
            order=config.order,
            min_idle=config.min_idle,
            idle_timeout=config.idle_timeout,
        )

    def _open_socket(self, family: int, connect: Address | None) -> UdpSocket:
        """A fresh UDP socket. connect() binds a fresh random ephemeral port and makes the
        kernel drop datagrams from any other source; bind() to port 0 (with ``connect``
        None) only the first, the connect() waiting for the socket's one query. Done with the
        socket module, made non-blocking at birth (no fcntl calls): the address is numeric,
        so no resolver thread is involved, and nothing is awaited, so the pool makes sockets
        in a loop callback rather than a task."""
        sock = socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
        try:
            watcher = self._watcher
            if watcher is None:
                watcher = self._watcher = Watcher(self.loop or asyncio.get_running_loop())
            if connect is not None:
                sock.connect(connect)
                return UdpSocket(self, watcher, sock)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(WILDCARD[family])
            return FreshUdpSocket(self, watcher, sock)
        except BaseException:
            sock.close()
            raise

    async def aclose(self) -> None:
        """Close every socket and end every exchange in flight, without reports. Idempotent:
        every call waits for the same closing work, which finishes even when a caller is
        cancelled."""
        if self._closing is None:
            self.closed = True  # refuse new exchanges from now on
            self._closing = asyncio.get_running_loop().create_task(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        for exchange in self._sweep.stop():
            exchange.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for streams in self.streams_to_close():
            await streams.aclose()
        for pool in self.pools_to_close():
            await pool.aclose(timeout=1.0)
        if self._watcher is not None:
            self._watcher.close()

    def pools_to_close(self) -> list[Pool[UdpSocket]]:
        """The pools :meth:`aclose` closes."""
        raise NotImplementedError

    def streams_to_close(self) -> list[StreamPool]:
        """The pools of stream connections :meth:`aclose` closes (none here)."""
        return []

    def dispatch(self, exchange: Exchange, pool: Pool[UdpSocket], tcp: bool) -> None:
        """Start ``exchange``: over TCP with ``tcp``, else on an idle socket of ``pool``, or in
        a task waiting for one when none is idle."""
        counts = self.counts
        counts.queries += 1
        if tcp:
            counts.tcp_queries += 1
            if self.closed:
                exchange.fail(LocalError(f"{exchange.name}: the transport is shutting down"))
            else:
                self.send_tcp(exchange)
            return
        try:
            guard = self._idle_socket(pool)
        except PoolTimeout:
            counts.socket_waits += 1
            self._start_task(exchange, self._wait_for_socket(exchange, pool))
        except PoolClosed:
            exchange.fail(LocalError(f"{exchange.name}: the transport is shutting down"))
        else:
            exchange.send_on(guard)

    def send_tcp(self, exchange: Exchange) -> None:
        """Send ``exchange`` over TCP: here over a connection of its own, opened and closed by
        its task (an owner with persistent connections sends it over one of those)."""
        self._start_task(exchange, over_tcp(exchange, self._count_tcp_stray))

    def _idle_socket(self, pool: Pool[UdpSocket]) -> Guard[UdpSocket]:
        """An idle socket, skipping (and discarding) those retired while idle for receiving
        unwanted replies. Raises PoolTimeout when none is idle, PoolClosed."""
        for _ in range(self.config.pool.max_size):
            guard = pool.acquire_nowait()
            if not guard.obj.retire:
                return guard
            guard.discard()
        return pool.acquire_nowait()

    def _start_task(self, exchange: Exchange, work: Coroutine[None, None, None]) -> None:
        loop = self.loop or asyncio.get_running_loop()
        task = loop.create_task(work)
        exchange.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _wait_for_socket(self, exchange: Exchange, pool: Pool[UdpSocket]) -> None:
        loop = self.loop or asyncio.get_running_loop()
        remaining = exchange.deadline - loop.time()
        try:
            if remaining <= 0:
                raise PoolTimeout("no time left")
            guard = await pool.acquire(timeout=remaining)
        except PoolTimeout:
            exchange.fail(LocalError(f"{exchange.name}: no free socket before the deadline"))
            return
        except PoolClosed:
            exchange.fail(LocalError(f"{exchange.name}: the transport is shutting down"))
            return
        except OSError as exc:
            exchange.fail(socket_error(exchange.name, exc))
            return
        if exchange.done:  # abandoned while waiting
            guard.release()
            return
        exchange.send_on(guard)

    def track_deadline(self, exchange: Exchange) -> None:
        """Expire ``exchange`` at its deadline, by the one sweep timer of this owner."""
        self._sweep.track(exchange)

    # ----------------------------------------------------------------- counting

    def count_reply(self, sent_at: float) -> None:
        """Count an accepted reply to a query sent at ``sent_at`` (``perf_counter``: the loop's
        clock moves in whole milliseconds on uvloop, as long as a round trip on a LAN)."""
        self.counts.replies += 1
        self.counts.rtt.observe(perf_counter() - sent_at)

    def count_unwanted(self, sock: UdpSocket) -> None:
        """Count a datagram that ``sock`` received and no query of its wanted."""
        self.counts.strays += 1

    def _count_tcp_stray(self) -> None:
        self.counts.strays += 1

    def count_failure(self, exc: BaseException) -> None:
        """Count a failed exchange by its kind."""
        counts = self.counts
        if isinstance(exc, UpstreamTimeout):
            counts.timeouts += 1
        elif isinstance(exc, UpstreamUnreachable):
            counts.unreachable += 1
        elif isinstance(exc, BadResponse):
            counts.bad_responses += 1
        elif isinstance(exc, CaseMismatch):
            counts.case_mismatches += 1
        elif isinstance(exc, LocalError):
            counts.local_failures += 1
