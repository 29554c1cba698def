"""Exchanges with DNS servers: one query over a pooled, pre-bound UDP socket or a TCP
connection, and a validated reply, reported by callback.

Two kinds of owner share that machinery (the exchange, the socket wrapper, reply matching, the
deadline sweep, TCP, waiting for a socket, counting, building the query):

* :class:`Upstream`, one forwarding upstream: a pool of sockets connected to it when bound,
  each serving a few queries (``transport.pool.max_uses``);
* :class:`Servers`, any server by address (recursive mode): per address family one pool of
  sockets bound to a random port and connected to a server only when checked out, each serving
  exactly one query, since an authority run by an attacker sees the source port of every query
  sent to it (RFC 5452 section 4.5). Replacements are bound in the background, so a fresh port
  costs no bind on the query path.

Every reply is matched as RFC 5452 section 9.1 asks before it is accepted: it must come from
the server's address and port, to the socket the query left from, with our random ID, QR set,
opcode QUERY and the same question (name, type, class; the name case-exact when 0x20
randomisation is on). The one exception is a FORMERR or NOTIMP without a question section,
which servers that cannot parse a query send: it is accepted (with the ID and source checked)
so that the caller can move on at once instead of waiting for the deadline. Anything else is a
stray: counted and dropped, and the socket keeps listening until the deadline, so one forged
datagram cannot end a query. Except, for :class:`Servers`, a reply that matches in everything
but the case of a 0x20 name: it ends the exchange with CaseMismatch, so that the iteration can
ask again without 0x20 and compare (Unbound's caps fallback). A socket whose query timed out,
failed or was abandoned is discarded, never reused, so a late reply cannot reach the next
query. Past ``unwanted_reply_threshold`` strays to an upstream's sockets within a minute, a
warning is logged and every socket that receives another is retired (Unbound's option of that
name).

The transport decides nothing: a truncated reply is reported as it is, and the caller (the
engine) decides whether to ask again over TCP.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import heapq
import itertools
import logging
import os
import secrets
import select
import socket
import struct
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
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
from resolver.pool import Guard, Pool, PoolStatistics
from resolver.wire.raw import randomize_case as _randomize_case

__all__ = [
    "Exchange",
    "Report",
    "Servers",
    "ServersStatistics",
    "Upstream",
    "UpstreamStatistics",
    "format_address",
]

log = logging.getLogger(__name__)

_HEADER = struct.Struct("!6H")
_TYPE_CLASS = struct.Struct("!HH")
_OPT = struct.Struct("!BHHBBHH")  # root owner, type 41, udp size, ext rcode, version, flags, rdlen
_RD = 0x0100
_AD = 0x0020
_CD = 0x0010
_DO = 0x8000
_TC_BYTE2 = 0x02  # TC in the first flags byte
_QR_BYTE2 = 0x80
_OPCODE_BYTE2 = 0x78
_ONE_QUESTION = b"\x00\x01"
_NO_QUESTION = b"\x00\x00"
_FORMERR = 1
_NOTIMP = 4
# Timeouts are checked by one timer per owner (an Upstream, the Servers), re-armed at most this
# often: a query's deadline may pass up to this late, and no query pays for a timer of its own.
_SWEEP_GRAIN = 0.01
# Unwanted replies are counted per upstream in windows of this many seconds; the attack warning
# is logged at most once per window.
_UNWANTED_WINDOW = 60.0
# Failures to open a socket that say our machine is short of something, not that the
# upstream cannot be reached.
_LOCAL_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

# A Servers' sockets are bound to these with a port the kernel picks at random.
_WILDCARD: dict[int, Address] = {socket.AF_INET: ("0.0.0.0", 0), socket.AF_INET6: ("::", 0)}

# What an exchange reports: the validated reply, or the error that ended it.
Report = Callable[[bytes | None, BaseException | None], None]


def format_address(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class UpstreamStatistics:
    """Counts for one upstream: queries sent, replies accepted, strays dropped (over UDP and
    TCP), failures; ``attacks``: windows in which the pooled sockets' strays reached the
    unwanted-reply threshold; ``retired_sockets``: sockets retired for receiving strays then;
    ``rtt``: the time from sending each accepted query to its reply (over TCP, the connection's
    setup included)."""

    address: str
    queries: int
    replies: int
    strays: int
    attacks: int
    retired_sockets: int
    timeouts: int
    unreachable: int
    bad_responses: int
    local_failures: int
    tcp_queries: int
    pool: PoolStatistics
    rtt: Histogram


def _matches(data: bytes, qid: bytes, question: bytes, case_exact: bool) -> bool:
    """RFC 5452 9.1 checks on the raw bytes: ID, QR, opcode, the single question."""
    if data[0:2] != qid or len(data) < 12:
        return False
    flags = data[2]
    if not flags & _QR_BYTE2 or flags & _OPCODE_BYTE2:
        return False
    if data[4:6] == _NO_QUESTION:
        # A server that could not parse our query may answer without a question.
        return data[3] & 0x0F in (_FORMERR, _NOTIMP)
    end = 12 + len(question)
    if len(data) < end or data[4:6] != _ONE_QUESTION:
        return False
    got = data[12:end]
    if case_exact:
        return got == question
    # Type and class must match exactly; only the name is compared without case (RFC 4343).
    return got[-4:] == question[-4:] and got[:-4].lower() == question[:-4].lower()


class _RandomIds:
    """Message IDs from the OS's CSPRNG (RFC 5452 section 9.2), drawn 2 KiB at a time: one
    urandom call per thousand queries instead of one per query."""

    __slots__ = ("_ids",)

    def __init__(self) -> None:
        self._ids: list[int] = []

    def next(self) -> int:
        if not self._ids:
            self._ids = list(memoryview(secrets.token_bytes(2048)).cast("H"))
        return self._ids.pop()

    def forget(self) -> None:
        self._ids = []


_random_ids = _RandomIds()
# A forked process (a worker of `serve --workers`) draws IDs of its own: the ones left of its
# parent's draw would be the same in every worker, and one worker's IDs would give away another's.
os.register_at_fork(after_in_child=_random_ids.forget)


@dataclass(frozen=True, slots=True)
class ServersStatistics:
    """Counts for the queries sent to any server (recursive mode): queries sent, replies
    accepted, strays dropped (over UDP and TCP, idle sockets included), failures by kind, TCP
    queries, ``case_mismatches`` (replies that matched a 0x20 query in everything but the
    name's case: ended with CaseMismatch), ``socket_waits`` (queries that found no idle socket
    and waited for one to be bound), and each address family's pool (None when that family
    could not be opened or ``start`` has not run)."""

    queries: int
    replies: int
    strays: int
    timeouts: int
    unreachable: int
    bad_responses: int
    local_failures: int
    tcp_queries: int
    case_mismatches: int
    socket_waits: int
    ipv4: PoolStatistics | None
    ipv6: PoolStatistics | None


def _build_query(
    name: bytes,
    qtype: int,
    qclass: int,
    flags: int,
    opt_flags: int,
    edns_size: int | None,
    randomize_case: bool,
) -> tuple[bytes, bytes]:
    """A query with a random ID, ``flags`` in its header and, unless ``edns_size`` is None, an
    OPT record with ``opt_flags``; the name's case randomised with ``randomize_case``. Returns
    the query bytes and the question bytes as sent (for matching the reply)."""
    qid = _random_ids.next()
    if randomize_case:
        name = _randomize_case(name)
    question = name + _TYPE_CLASS.pack(qtype, qclass)
    if edns_size is None:
        return _HEADER.pack(qid, flags, 1, 0, 0, 0) + question, question
    opt = _OPT.pack(0, 41, edns_size, 0, 0, opt_flags, 0)
    return _HEADER.pack(qid, flags, 1, 0, 0, 1) + question + opt, question


def _send_error(server: str, exc: OSError) -> BaseException:
    """What a failed send (or connect) means: our side short of buffers, or the server
    unreachable."""
    if exc.errno in _LOCAL_ERRNOS or isinstance(exc, BlockingIOError):
        return LocalError(f"{server}: cannot send: {exc.strerror or exc}")
    return UpstreamUnreachable(server, exc.strerror or str(exc))


def _socket_error(server: str, exc: OSError) -> BaseException:
    """What a failure to open a socket for a query to ``server`` means."""
    if exc.errno in _LOCAL_ERRNOS:
        return LocalError(f"{server}: cannot open a socket: {exc.strerror or exc}")
    return UpstreamUnreachable(server, f"cannot open a socket: {exc.strerror or exc}")


class Exchange:
    """One query to one server, in flight: it ends exactly once, by ``report`` being called
    with the validated reply or with the error that ended it (UpstreamTimeout at the deadline,
    UpstreamUnreachable, BadResponse, CaseMismatch, LocalError). ``cancel`` abandons it without
    a report."""

    __slots__ = (
        "case_exact",
        "deadline",
        "done",
        "guard",
        "owner",
        "qid",
        "query",
        "question",
        "report",
        "sent_at",
        "server",
        "task",
    )

    def __init__(
        self,
        owner: _Exchanges,
        server: Address,
        query: bytes,
        question: bytes,
        deadline: float,
        report: Report,
        case_exact: bool,
    ) -> None:
        self.owner = owner
        self.server = server
        self.query = query
        self.qid = query[:2]
        self.question = question
        self.case_exact = case_exact
        self.deadline = deadline
        self.report = report
        self.guard: Guard[_UdpSocket] | None = None
        self.task: asyncio.Task[None] | None = None
        self.done = False
        self.sent_at = 0.0  # perf_counter() when the query left

    @property
    def name(self) -> str:
        """The server as errors name it."""
        return format_address(self.server)

    def send_on(self, guard: Guard[_UdpSocket]) -> None:
        """Send over the checked-out socket, which then waits for the matching reply."""
        self.guard = guard
        sock = guard.obj
        sock.pending = self
        self.owner.track_deadline(self)
        self.sent_at = perf_counter()
        sock.send(self.query)

    def accepts(self, data: bytes) -> bool:
        return _matches(data, self.qid, self.question, self.case_exact)

    def case_differs(self, data: bytes) -> bool:
        """Whether ``data``, which ``accepts`` refused, is our reply but for the case of the
        0x20 name, and the owner ends an exchange on that (``case_fallback``)."""
        return (
            self.case_exact
            and self.owner.case_fallback
            and _matches(data, self.qid, self.question, False)
        )

    def succeed(self, reply: bytes) -> None:
        if self.done:
            return
        self.done = True
        self._let_go(keep=True)
        self.owner.count_reply(self.sent_at)
        self.report(reply, None)

    def fail(self, exc: BaseException) -> None:
        if self.done:
            return
        self.done = True
        self._let_go(keep=False)
        self.owner.count_failure(exc)
        self.report(None, exc)

    def expire(self) -> None:
        if not self.done:
            self.fail(UpstreamTimeout(self.name, "no matching reply before the deadline"))

    def mismatch(self) -> None:
        """End with CaseMismatch: the server replied, but did not echo the name's case."""
        self.fail(CaseMismatch(self.name, "the reply's question differs in case only"))

    def cancel(self) -> None:
        """Abandon the exchange: no report; a socket it held is discarded (a late reply must
        not reach another query), a TCP exchange or a wait for a socket is cancelled."""
        if self.done:
            return
        self.done = True
        self._let_go(keep=False)
        if self.task is not None:
            self.task.cancel()

    def _let_go(self, *, keep: bool) -> None:
        guard = self.guard
        if guard is None:
            return
        self.guard = None
        sock = guard.obj
        sock.pending = None
        if keep and not sock.retire:
            guard.release()
        else:
            guard.discard()


# Datagrams read per wake-up of one socket at most, before the loop gets its turn again.
_READS_PER_WAKEUP = 64


class _Watcher:
    """Readiness of one owner's UDP sockets, so that a socket's life costs the loop nothing.

    Each socket joins an epoll set of our own when opened (one ``epoll_ctl``) and leaves it
    by being closed: the kernel drops a closed descriptor from every epoll set, so closing
    costs no call of its own. The loop watches only the set's descriptor, registered once; a
    wake-up calls every ready socket's reader in one callback. Watching each socket with
    ``loop.add_reader`` instead made the loop probe, register and unregister the descriptor
    per socket: about seven ``epoll_ctl``, ``ioctl`` and ``io_uring_enter`` calls over a
    socket's life under uvloop, three of them failing, and ``max_uses`` sockets per query.
    Where there is no epoll (not Linux), the loop watches each socket itself."""

    __slots__ = ("_epoll", "_loop", "_readers")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._readers: dict[int, Callable[[], None]] = {}
        self._epoll: select.epoll | None = None
        if hasattr(select, "epoll"):
            self._epoll = select.epoll()
            loop.add_reader(self._epoll.fileno(), self._ready)

    def add(self, fd: int, reader: Callable[[], None]) -> None:
        """Call ``reader`` whenever ``fd`` is readable (or has an error to report), until
        ``remove``."""
        if self._epoll is None:
            self._loop.add_reader(fd, reader)
            return
        self._epoll.register(fd, select.EPOLLIN)
        self._readers[fd] = reader

    def remove(self, fd: int) -> None:
        """Stop watching ``fd``, which its owner closes right after (closing takes it out of
        the epoll set)."""
        if self._epoll is None:
            self._loop.remove_reader(fd)
            return
        self._readers.pop(fd, None)

    def _ready(self) -> None:
        assert self._epoll is not None
        readers = self._readers
        for fd, _ in self._epoll.poll(0):
            reader = readers.get(fd)
            if reader is not None:
                reader()
            else:
                # Removed but still open (its close failed), or closed by a reader earlier in
                # this batch: stop reports that would otherwise come back at every wake-up.
                with contextlib.suppress(OSError):
                    self._epoll.unregister(fd)

    def close(self) -> None:
        """Stop watching; idempotent. The sockets are closed by their owner."""
        if self._epoll is not None and not self._epoll.closed:
            self._loop.remove_reader(self._epoll.fileno())
            self._epoll.close()
        self._readers.clear()


class _UdpSocket:
    """A non-blocking UDP socket the loop watches for readability; it accepts only the reply
    its pending exchange expects. Connected (an Upstream's when bound, a Servers' at its
    first send), it gets datagrams from the server's address and port only: the kernel makes
    RFC 5452's source check. Opened and closed synchronously (no transport object, nothing to
    await), so a cancelled creation cannot leave a half-made socket behind."""

    __slots__ = ("_fd", "_owner", "_sock", "_watcher", "pending", "retire")

    def __init__(self, owner: _Exchanges, watcher: _Watcher, sock: socket.socket) -> None:
        self._owner = owner
        self._watcher = watcher
        self._sock = sock
        self._fd = sock.fileno()
        self.pending: Exchange | None = None
        # Set when this socket got unwanted replies during an attack: it is discarded when its
        # current (or, idle, its next) exchange ends, instead of going back to the pool.
        self.retire = False
        watcher.add(self._fd, self._readable)

    def send(self, data: bytes) -> None:
        """Send ``data``; an error ends the pending exchange (refused: the server cannot be
        reached; no buffer space: our side)."""
        try:
            self._sock.send(data)
        except OSError as exc:
            pending = self.pending
            if pending is not None:
                pending.fail(_send_error(pending.name, exc))

    def _readable(self) -> None:
        # Datagrams until the one that ends the exchange, the socket is empty (EAGAIN), or
        # the bound: a reply alone costs one recv (no extra one failing with EAGAIN), and
        # strays queued before it (a flood of forgeries) are read in the same wake-up.
        for _ in range(_READS_PER_WAKEUP):
            try:
                data = self._sock.recv(65535)
            except BlockingIOError:
                return
            except OSError as exc:  # ICMP port unreachable comes back as ECONNREFUSED
                self._unreachable(exc)
                return
            if self._deliver(data):
                return

    def _unreachable(self, exc: OSError) -> None:
        pending = self.pending
        if pending is not None:
            pending.fail(UpstreamUnreachable(pending.name, exc.strerror or str(exc)))

    def _deliver(self, data: bytes) -> bool:
        """``data`` arrived from the right source: the pending exchange's reply, or a stray.
        Returns whether it ended the exchange (the socket may be closed or reused now)."""
        pending = self.pending
        if pending is None or not pending.accepts(data):
            if pending is not None and pending.case_differs(data):
                pending.mismatch()
                return True
            self._owner.count_unwanted(self)
            return False
        pending.succeed(data)
        return True

    def close(self) -> None:
        self._watcher.remove(self._fd)
        self._sock.close()
        pending = self.pending
        if pending is not None:
            pending.fail(UpstreamUnreachable(pending.name, "socket closed"))


class _FreshUdpSocket(_UdpSocket):
    """A UDP socket bound to a random port and connected to the server of its one exchange
    at its first send (Servers): from then on the kernel drops datagrams from any other
    source. Datagrams that came before are still queued (connect() does not flush them), so
    each datagram's source is checked here too, at no extra system call: one from elsewhere
    is a stray."""

    __slots__ = ()

    def send(self, data: bytes) -> None:
        pending = self.pending
        assert pending is not None
        server = pending.server
        try:
            # A name instead of an address would make connect() look it up, blocking the loop.
            socket.inet_pton(_family(server), server[0])
            self._sock.connect(server)
        except OSError as exc:
            pending.fail(_send_error(pending.name, exc))
            return
        super().send(data)

    def _readable(self) -> None:
        for _ in range(_READS_PER_WAKEUP):  # as _UdpSocket._readable
            try:
                data, source = self._sock.recvfrom(65535)
            except BlockingIOError:
                return
            except OSError as exc:
                self._unreachable(exc)
                return
            pending = self.pending
            # Addresses compare as the kernel prints them: servers are given in that form (as
            # the ipaddress module prints them too).
            if pending is None or source[1] != pending.server[1] or source[0] != pending.server[0]:
                self._owner.count_unwanted(self)
            elif self._deliver(data):
                return


class _Exchanges:
    """What Upstream and Servers share: exchanges started over a pool of UDP sockets (waiting
    for a socket in a task only when none is idle) or over TCP, their deadlines kept by one
    re-armed timer, and the counts."""

    # Whether a reply that matches a 0x20 query in everything but the name's case ends the
    # exchange with CaseMismatch (so that the caller can ask again without 0x20) instead of
    # being a stray.
    case_fallback = False

    def __init__(self, config: TransportConfig | None) -> None:
        self.config = config or TransportConfig()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watcher: _Watcher | None = None  # made with the first socket, on its loop
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._closing: asyncio.Task[None] | None = None
        # Exchanges in flight by deadline, checked by one re-armed timer: ``_due`` in the
        # order they were sent, which is deadline order as long as each deadline is no
        # earlier than the one before (nearly always: the timeout is one number); an earlier
        # one (cut short by its query's deadline) goes to the heap ``_early``.
        self._due: deque[Exchange] = deque()
        self._early: list[tuple[float, int, Exchange]] = []
        self._sequence = itertools.count()
        self._sweep: asyncio.TimerHandle | None = None
        self._sweep_at = 0.0
        self._queries = 0
        self._replies = 0
        self._strays = 0
        self._timeouts = 0
        self._unreachable = 0
        self._bad = 0
        self._local = 0
        self._tcp = 0
        self._case_mismatches = 0
        self._waits = 0
        self._rtt = Histogram()

    def _make_pool(self, family: int, connect: Address | None, max_uses: int) -> Pool[_UdpSocket]:
        """A pool of UDP sockets of ``family``, connected to ``connect`` when made, or bound
        to a random port and left unconnected with None; sized as ``config.pool`` says."""
        config = self.config.pool
        return Pool(
            create=functools.partial(self._open_socket, family, connect),
            close=_UdpSocket.close,
            min_size=config.min_size,
            max_size=config.max_size,
            max_uses=max_uses,
            max_age=config.max_age,
            order=config.order,
            min_idle=config.min_idle,
            idle_timeout=config.idle_timeout,
        )

    def _open_socket(self, family: int, connect: Address | None) -> _UdpSocket:
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
                watcher = self._watcher = _Watcher(self._loop or asyncio.get_running_loop())
            if connect is not None:
                sock.connect(connect)
                return _UdpSocket(self, watcher, sock)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(_WILDCARD[family])
            return _FreshUdpSocket(self, watcher, sock)
        except BaseException:
            sock.close()
            raise

    async def aclose(self) -> None:
        """Close every socket and end every exchange in flight, without reports. Idempotent:
        every call waits for the same closing work, which finishes even when a caller is
        cancelled."""
        if self._closing is None:
            self._closed = True  # refuse new exchanges from now on
            self._closing = asyncio.get_running_loop().create_task(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for exchange in [*self._due, *(entry[2] for entry in self._early)]:
            exchange.cancel()
        self._due.clear()
        self._early.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for pool in self._pools_to_close():
            await pool.aclose(timeout=1.0)
        if self._watcher is not None:
            self._watcher.close()

    def _pools_to_close(self) -> list[Pool[_UdpSocket]]:
        raise NotImplementedError

    def _dispatch(self, exchange: Exchange, pool: Pool[_UdpSocket], tcp: bool) -> None:
        """Start ``exchange``: over TCP with ``tcp``, else on an idle socket of ``pool``, or in
        a task waiting for one when none is idle."""
        self._queries += 1
        if tcp:
            self._tcp += 1
            if self._closed:
                exchange.fail(LocalError(f"{exchange.name}: the transport is shutting down"))
            else:
                self._start_task(exchange, self._over_tcp(exchange))
            return
        try:
            guard = self._idle_socket(pool)
        except PoolTimeout:
            self._waits += 1
            self._start_task(exchange, self._wait_for_socket(exchange, pool))
        except PoolClosed:
            exchange.fail(LocalError(f"{exchange.name}: the transport is shutting down"))
        else:
            exchange.send_on(guard)

    def _idle_socket(self, pool: Pool[_UdpSocket]) -> Guard[_UdpSocket]:
        """An idle socket, skipping (and discarding) those retired while idle for receiving
        unwanted replies. Raises PoolTimeout when none is idle, PoolClosed."""
        for _ in range(self.config.pool.max_size):
            guard = pool.acquire_nowait()
            if not guard.obj.retire:
                return guard
            guard.discard()
        return pool.acquire_nowait()

    def _start_task(self, exchange: Exchange, work: Coroutine[None, None, None]) -> None:
        loop = self._loop or asyncio.get_running_loop()
        task = loop.create_task(work)
        exchange.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _wait_for_socket(self, exchange: Exchange, pool: Pool[_UdpSocket]) -> None:
        loop = self._loop or asyncio.get_running_loop()
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
            exchange.fail(_socket_error(exchange.name, exc))
            return
        if exchange.done:  # abandoned while waiting
            guard.release()
            return
        exchange.send_on(guard)

    def track_deadline(self, exchange: Exchange) -> None:
        """Expire ``exchange`` at its deadline, by the one sweep timer of this owner."""
        deadline = exchange.deadline
        due = self._due
        if not due or deadline >= due[-1].deadline:
            due.append(exchange)
        else:
            heapq.heappush(self._early, (deadline, next(self._sequence), exchange))
        if self._sweep is None or deadline < self._sweep_at:
            self._arm(deadline)

    def _arm(self, when: float) -> None:
        loop = self._loop or asyncio.get_running_loop()
        if self._sweep is not None:
            self._sweep.cancel()
        when = max(when, loop.time() + _SWEEP_GRAIN)
        self._sweep_at = when
        self._sweep = loop.call_at(when, self._expire_due)

    def _expire_due(self) -> None:
        """Expire what is due; drop what ended; re-arm for the next deadline in flight."""
        self._sweep = None
        loop = self._loop or asyncio.get_running_loop()
        now = loop.time()
        due, early = self._due, self._early
        while due and (due[0].done or due[0].deadline <= now):
            due.popleft().expire()
        while early and (early[0][2].done or early[0][0] <= now):
            heapq.heappop(early)[2].expire()
        nearest = [due[0].deadline] if due else []
        if early:
            nearest.append(early[0][0])
        if nearest:
            self._arm(min(nearest))

    async def _over_tcp(self, exchange: Exchange) -> None:
        query = exchange.query
        name = exchange.name
        exchange.sent_at = perf_counter()
        try:
            async with asyncio.timeout_at(exchange.deadline):
                reader, writer = await asyncio.open_connection(*exchange.server)
                try:
                    writer.write(len(query).to_bytes(2, "big") + query)
                    while True:
                        size = int.from_bytes(await reader.readexactly(2), "big")
                        reply = await reader.readexactly(size)
                        if exchange.accepts(reply):
                            break
                        if exchange.case_differs(reply):
                            exchange.mismatch()
                            return
                        self._strays += 1
                finally:
                    writer.close()
        except TimeoutError:
            exchange.fail(UpstreamTimeout(name, "no TCP reply before the deadline"))
        except asyncio.IncompleteReadError:
            exchange.fail(BadResponse(name, "TCP connection closed before a whole reply"))
        except OSError as exc:
            exchange.fail(UpstreamUnreachable(name, f"TCP: {exc.strerror or exc}"))
        else:
            exchange.succeed(reply)

    # ----------------------------------------------------------------- counting

    def count_reply(self, sent_at: float) -> None:
        """Count an accepted reply to a query sent at ``sent_at`` (``perf_counter``: the loop's
        clock moves in whole milliseconds on uvloop, as long as a round trip on a LAN)."""
        self._replies += 1
        self._rtt.observe(perf_counter() - sent_at)

    def count_unwanted(self, sock: _UdpSocket) -> None:
        """Count a datagram that ``sock`` received and no query of its wanted."""
        self._strays += 1

    def count_failure(self, exc: BaseException) -> None:
        """Count a failed exchange by its kind."""
        if isinstance(exc, UpstreamTimeout):
            self._timeouts += 1
        elif isinstance(exc, UpstreamUnreachable):
            self._unreachable += 1
        elif isinstance(exc, BadResponse):
            self._bad += 1
        elif isinstance(exc, CaseMismatch):
            self._case_mismatches += 1
        elif isinstance(exc, LocalError):
            self._local += 1


class Upstream(_Exchanges):
    """One upstream server: a Pool of pre-bound connected UDP sockets, and TCP on request.

    ``send`` starts one exchange and reports its outcome by callback; ``exchange`` is the same
    awaited, with TCP after a truncated UDP reply, for clients that ask one question at a time.
    A reply that differs from a 0x20 query in the name's case is a stray here (the forwarder
    has no fallback without 0x20 to offer, and one forged datagram must not end a query).
    """

    def __init__(self, address: Address, config: TransportConfig | None = None) -> None:
        super().__init__(config)
        self.address = address
        self.name = format_address(address)
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.pool = self._make_pool(family, address, self.config.pool.max_uses)
        self._case_exact = self.config.randomize_case
        self._unwanted = 0  # strays to the pooled sockets in the current window
        self._unwanted_since = 0.0
        self._attacks = 0
        self._retired = 0

    async def start(self) -> None:
        """Bind the pool's first sockets. Raises UpstreamUnreachable if binding fails."""
        self._loop = asyncio.get_running_loop()
        try:
            await self.pool.start()
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise UpstreamUnreachable(self.name, f"cannot open a socket: {reason}") from exc

    def _pools_to_close(self) -> list[Pool[_UdpSocket]]:
        return [self.pool]

    def build_query(
        self,
        name: bytes,
        qtype: int,
        qclass: int,
        *,
        cd: bool = False,
        do: bool = False,
        ad: bool = False,
        rd: bool = True,
        edns: bool = True,
    ) -> tuple[bytes, bytes]:
        """Our query for a question: a random ID, RD, EDNS with our size unless ``edns`` is
        False, 0x20 if configured. Returns the query bytes and the question bytes as sent
        (for matching the reply)."""
        flags = (_RD if rd else 0) | (_AD if ad else 0) | (_CD if cd else 0)
        config = self.config
        return _build_query(
            name,
            qtype,
            qclass,
            flags,
            _DO if do else 0,
            config.edns_size if edns else None,
            config.randomize_case,
        )

    def send(
        self,
        query: bytes,
        question: bytes,
        *,
        deadline: float,
        report: Report,
        tcp: bool = False,
    ) -> Exchange:
        """Send ``query`` (made by ``build_query``; ``question`` as it returned) and report the
        validated reply or the error by calling ``report`` exactly once, at the latest at
        ``deadline`` (loop time). Over UDP from an idle pooled socket (waiting for one in a
        task only when none is idle), or over TCP with ``tcp``. Never raises."""
        exchange = Exchange(self, self.address, query, question, deadline, report, self._case_exact)
        self._dispatch(exchange, self.pool, tcp)
        return exchange

    async def exchange(
        self,
        name: bytes,
        qtype: int,
        qclass: int,
        *,
        deadline: float,
        cd: bool = False,
        do: bool = False,
        rd: bool = True,
        tcp: bool = False,
    ) -> bytes:
        """Ask this upstream one question by ``deadline``; return its raw reply, asking again
        over TCP when the UDP reply is truncated (or at once with ``tcp``). Raises
        UpstreamError (UpstreamTimeout, UpstreamUnreachable, BadResponse) or LocalError."""
        query, question = self.build_query(name, qtype, qclass, cd=cd, do=do, rd=rd)
        reply = await self._awaited(query, question, deadline, tcp)
        if not tcp and reply[2] & _TC_BYTE2:
            reply = await self._awaited(query, question, deadline, True)
        return reply

    async def _awaited(self, query: bytes, question: bytes, deadline: float, tcp: bool) -> bytes:
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()

        def report(reply: bytes | None, exc: BaseException | None) -> None:
            if future.done():
                return
            if exc is not None:
                future.set_exception(exc)
            else:
                assert reply is not None
                future.set_result(reply)

        exchange = self.send(query, question, deadline=deadline, report=report, tcp=tcp)
        try:
            return await future
        except asyncio.CancelledError:
            exchange.cancel()
            raise

    def count_unwanted(self, sock: _UdpSocket) -> None:
        """Count a datagram that ``sock`` received and no query of its wanted. Past the
        threshold within one window, warn (once per window) and retire ``sock``."""
        self._strays += 1
        threshold = self.config.unwanted_reply_threshold
        if not threshold:
            return
        now = (self._loop or asyncio.get_running_loop()).time()
        if now - self._unwanted_since >= _UNWANTED_WINDOW:
            self._unwanted_since = now
            self._unwanted = 0
        self._unwanted += 1
        if self._unwanted < threshold:
            return
        if self._unwanted == threshold:
            self._attacks += 1
            log.warning(
                "upstream %s: %d unwanted replies within %.0f s, possibly a spoofing attack; "
                "retiring the sockets that receive them",
                self.name,
                threshold,
                _UNWANTED_WINDOW,
            )
        if not sock.retire:
            sock.retire = True
            self._retired += 1

    def statistics(self) -> UpstreamStatistics:
        return UpstreamStatistics(
            address=self.name,
            queries=self._queries,
            replies=self._replies,
            strays=self._strays,
            attacks=self._attacks,
            retired_sockets=self._retired,
            timeouts=self._timeouts,
            unreachable=self._unreachable,
            bad_responses=self._bad,
            local_failures=self._local,
            tcp_queries=self._tcp,
            pool=self.pool.statistics(),
            rtt=self._rtt.copy(),
        )

    def __repr__(self) -> str:
        s = self.statistics()
        return (
            f"<Upstream {self.name} queries={s.queries} replies={s.replies} strays={s.strays} "
            f"timeouts={s.timeouts} sockets={s.pool.size}>"
        )


_FAMILIES = ((socket.AF_INET, "IPv4"), (socket.AF_INET6, "IPv6"))


class Servers(_Exchanges):
    """Queries to any server by address (recursive mode): per address family one shared Pool of
    pre-bound UDP sockets, each handed out exactly once (max_uses=1), replacements bound ahead.

    A socket is bound to the family's wildcard address and a port the kernel picks at random,
    connected to the exchange's server when its query is sent (the kernel then drops
    datagrams from any other source), and closed when the exchange ends: every query leaves
    from a fresh random port (RFC 5452 section 4.5), and the pool's spares (``min_idle``) and
    the replacement started at each checkout do the binding in the background, off the query
    path. The pools' sizes, ``max_age`` and ``idle_timeout`` are ``config.pool``'s; its
    ``max_uses`` is ignored (always 1), and so is ``unwanted_reply_threshold``: strays are
    counted, but every socket retires after its one exchange anyway. With 0x20
    (``randomize_case``, on by default here), a reply that matches in everything but the
    name's case ends the exchange with CaseMismatch: the caller may ask again without 0x20
    and compare (Unbound's caps fallback).
    """

    case_fallback = True

    def __init__(self, config: TransportConfig | None = None) -> None:
        super().__init__(config)
        self._pools: dict[int, Pool[_UdpSocket]] = {}
        self._started = False

    async def start(self) -> None:
        """Bind the IPv4 pool's first sockets, and the IPv6 pool's when the machine can. A
        family whose sockets cannot be opened is left out with a warning; queries to its
        servers then fail with UpstreamUnreachable. Raises UpstreamUnreachable when neither
        family can be opened."""
        self._loop = asyncio.get_running_loop()
        self._started = True
        reasons = []
        for family, label in _FAMILIES:
            if family in self._pools or self._closed:
                continue
            pool = self._make_pool(family, None, 1)
            # In the table before the first await, so that aclose closes it whatever happens.
            self._pools[family] = pool
            try:
                # Opened here too: with min_size 0 the pool would not try before a query.
                _probe(family)
                await pool.start()
            except OSError as exc:
                del self._pools[family]
                await pool.aclose(timeout=0.0)
                reason = exc.strerror or str(exc)
                reasons.append(f"{label}: {reason}")
                log.warning("no %s queries: cannot open a UDP socket: %s", label, reason)
        if not self._pools and not self._closed:
            raise UpstreamUnreachable("any server", f"cannot open a socket ({'; '.join(reasons)})")

    def _pools_to_close(self) -> list[Pool[_UdpSocket]]:
        return list(self._pools.values())

    def can_send_to(self, server: Address) -> bool:
        """Whether sockets of ``server``'s address family are open (after ``start``)."""
        return _family(server) in self._pools

    def build_query(
        self,
        name: bytes,
        qtype: int,
        qclass: int,
        *,
        rd: bool = False,
        cd: bool = False,
        do: bool = False,
        edns: bool = True,
        randomize_case: bool = True,
    ) -> tuple[bytes, bytes]:
        """Our query for a question: a random ID, no RD unless ``rd``, EDNS with our size
        unless ``edns`` is False, the name's case randomised (0x20) unless ``randomize_case``
        is False. Returns the query bytes and the question bytes as sent (for ``send``)."""
        flags = (_RD if rd else 0) | (_CD if cd else 0)
        return _build_query(
            name,
            qtype,
            qclass,
            flags,
            _DO if do else 0,
            self.config.edns_size if edns else None,
            randomize_case,
        )

    def send(
        self,
        server: Address,
        query: bytes,
        question: bytes,
        *,
        deadline: float,
        report: Report,
        tcp: bool = False,
        case_exact: bool = True,
    ) -> Exchange:
        """Send ``query`` (made by ``build_query``; ``question`` as it returned) to ``server``
        (a numeric address) and report the validated reply or the error by calling ``report``
        exactly once, at the latest at ``deadline`` (loop time). Over UDP from a fresh socket
        (waiting for one to be bound in a task only when none is idle), or over TCP with
        ``tcp``. ``case_exact`` must be False for a query built without ``randomize_case``:
        the reply's name is then compared without case, and a case mismatch ends nothing.
        With it, a reply that differs in the name's case only ends the exchange with
        CaseMismatch. Never raises."""
        exchange = Exchange(self, server, query, question, deadline, report, case_exact)
        pool = self._pools.get(_family(server))
        if pool is None:
            self._queries += 1
            if self._closed or not self._started:
                exchange.fail(LocalError(f"{exchange.name}: the transport is not running"))
            else:
                family = "IPv6" if _family(server) == socket.AF_INET6 else "IPv4"
                exchange.fail(UpstreamUnreachable(exchange.name, f"no {family} socket here"))
            return exchange
        self._dispatch(exchange, pool, tcp)
        return exchange

    def statistics(self) -> ServersStatistics:
        ipv4 = self._pools.get(socket.AF_INET)
        ipv6 = self._pools.get(socket.AF_INET6)
        return ServersStatistics(
            queries=self._queries,
            replies=self._replies,
            strays=self._strays,
            timeouts=self._timeouts,
            unreachable=self._unreachable,
            bad_responses=self._bad,
            local_failures=self._local,
            tcp_queries=self._tcp,
            case_mismatches=self._case_mismatches,
            socket_waits=self._waits,
            ipv4=None if ipv4 is None else ipv4.statistics(),
            ipv6=None if ipv6 is None else ipv6.statistics(),
        )

    def __repr__(self) -> str:
        s = self.statistics()
        sockets = sum(p.size for p in (s.ipv4, s.ipv6) if p is not None)
        return (
            f"<Servers queries={s.queries} replies={s.replies} strays={s.strays} "
            f"timeouts={s.timeouts} case_mismatches={s.case_mismatches} sockets={sockets}>"
        )


def _family(server: Address) -> int:
    return socket.AF_INET6 if ":" in server[0] else socket.AF_INET


def _probe(family: int) -> None:
    """Open and bind one socket of ``family`` and close it. Raises OSError when the machine
    cannot (no IPv6, say)."""
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind(_WILDCARD[family])
