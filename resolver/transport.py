"""One exchange with one upstream: a pooled, pre-bound UDP socket or a TCP connection, and a
validated reply, reported by callback.

Every reply is matched as RFC 5452 section 9.1 asks before it is accepted: it must come from
the upstream's address and port, to the socket the query left from, with our random ID, QR set,
opcode QUERY and the same question (name, type, class; the name case-exact when 0x20
randomisation is on). The one exception is a FORMERR or NOTIMP without a question section,
which servers that cannot parse a query send: it is accepted (with the ID and source checked)
so that the caller can move on at once instead of waiting for the deadline. Anything else is a
stray: counted and dropped, and the socket keeps listening until the deadline, so one forged
datagram cannot end a query. A socket whose query timed out, failed or was abandoned is
discarded, never reused, so a late reply cannot reach the next query. Past
``unwanted_reply_threshold`` strays to an upstream's sockets within a minute, a warning is
logged and every socket that receives another is retired (Unbound's option of that name).

The transport decides nothing: a truncated reply is reported as it is, and the caller (the
engine) decides whether to ask again over TCP.
"""

from __future__ import annotations

import asyncio
import errno
import heapq
import itertools
import logging
import os
import secrets
import socket
import struct
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass

from resolver.config import Address, TransportConfig
from resolver.errors import (
    BadResponse,
    LocalError,
    PoolClosed,
    PoolTimeout,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from resolver.pool import Guard, Pool, PoolStatistics

__all__ = ["Exchange", "Report", "Upstream", "UpstreamStatistics", "format_address"]

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
# Timeouts are checked by one timer per upstream, re-armed at most this often: a query's
# deadline may pass up to this late, and no query pays for a timer of its own.
_SWEEP_GRAIN = 0.01
# Unwanted replies are counted per upstream in windows of this many seconds; the attack warning
# is logged at most once per window.
_UNWANTED_WINDOW = 60.0
# Failures to open a socket that say our machine is short of something, not that the
# upstream cannot be reached.
_LOCAL_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

# What an exchange reports: the validated reply, or the error that ended it.
Report = Callable[[bytes | None, BaseException | None], None]


def format_address(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class UpstreamStatistics:
    """Counts for one upstream: queries sent, replies accepted, strays dropped (over UDP and
    TCP), failures; ``attacks``: windows in which the pooled sockets' strays reached the
    unwanted-reply threshold; ``retired_sockets``: sockets retired for receiving strays then."""

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


def _randomize_case(name: bytes) -> bytes:
    """0x20 encoding (draft-vixie-dnsext-dns0x20): flip the case of letters at random."""
    noise = secrets.token_bytes(len(name))
    out = bytearray(name)
    pos = 0
    while pos < len(out) and out[pos]:
        end = pos + 1 + out[pos]
        for i in range(pos + 1, end):
            c = out[i] | 0x20
            if 0x61 <= c <= 0x7A:
                out[i] = c ^ (noise[i] & 0x20)
        pos = end
    return bytes(out)


class Exchange:
    """One query to one upstream, in flight: it ends exactly once, by ``report`` being called
    with the validated reply or with the error that ended it (UpstreamTimeout at the deadline,
    UpstreamUnreachable, BadResponse, LocalError). ``cancel`` abandons it without a report."""

    __slots__ = (
        "case_exact",
        "deadline",
        "done",
        "guard",
        "qid",
        "query",
        "question",
        "report",
        "task",
        "upstream",
    )

    def __init__(
        self,
        upstream: Upstream,
        query: bytes,
        question: bytes,
        deadline: float,
        report: Report,
    ) -> None:
        self.upstream = upstream
        self.query = query
        self.qid = query[:2]
        self.question = question
        self.case_exact = upstream.config.randomize_case
        self.deadline = deadline
        self.report = report
        self.guard: Guard[_UdpSocket] | None = None
        self.task: asyncio.Task[None] | None = None
        self.done = False

    def send_on(self, guard: Guard[_UdpSocket]) -> None:
        """Send over the checked-out socket, which then waits for the matching reply."""
        self.guard = guard
        sock = guard.obj
        sock.pending = self
        self.upstream.track_deadline(self)
        sock.send(self.query)

    def accepts(self, data: bytes) -> bool:
        return _matches(data, self.qid, self.question, self.case_exact)

    def succeed(self, reply: bytes) -> None:
        if self.done:
            return
        self.done = True
        self._let_go(keep=True)
        self.upstream.count_reply()
        self.report(reply, None)

    def fail(self, exc: BaseException) -> None:
        if self.done:
            return
        self.done = True
        self._let_go(keep=False)
        self.upstream.count_failure(exc)
        self.report(None, exc)

    def expire(self) -> None:
        if not self.done:
            self.fail(UpstreamTimeout(self.upstream.name, "no matching reply before the deadline"))

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


class _UdpSocket:
    """A connected, non-blocking UDP socket the loop watches for readability; it accepts only
    the reply its pending exchange expects. Being connected, it gets datagrams from the
    upstream's address and port only: the kernel makes RFC 5452's source check. Opened and
    closed synchronously (no transport object, nothing to await), so a cancelled creation
    cannot leave a half-made socket behind."""

    __slots__ = ("_fd", "_loop", "_sock", "_upstream", "pending", "retire")

    def __init__(
        self, upstream: Upstream, loop: asyncio.AbstractEventLoop, sock: socket.socket
    ) -> None:
        self._upstream = upstream
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self.pending: Exchange | None = None
        # Set when this socket got unwanted replies during an attack: it is discarded when its
        # current (or, idle, its next) exchange ends, instead of going back to the pool.
        self.retire = False
        loop.add_reader(self._fd, self._readable)

    def send(self, data: bytes) -> None:
        """Send ``data``; an error ends the pending exchange (refused: the upstream cannot be
        reached; no buffer space: our side)."""
        try:
            self._sock.send(data)
        except OSError as exc:
            pending = self.pending
            if pending is not None:
                pending.fail(self._upstream.send_error(exc))

    def _readable(self) -> None:
        # One datagram per call: the loop calls again while more are queued, and an empty
        # socket costs no extra recv that fails with EAGAIN.
        try:
            data = self._sock.recv(65535)
        except BlockingIOError:
            return
        except OSError as exc:  # ICMP port unreachable comes back as ECONNREFUSED
            pending = self.pending
            if pending is not None:
                reason = exc.strerror or str(exc)
                pending.fail(UpstreamUnreachable(self._upstream.name, reason))
            return
        pending = self.pending
        if pending is None or not pending.accepts(data):
            self._upstream.count_unwanted(self)
            return
        pending.succeed(data)

    def close(self) -> None:
        self._loop.remove_reader(self._fd)
        self._sock.close()
        pending = self.pending
        if pending is not None:
            pending.fail(UpstreamUnreachable(self._upstream.name, "socket closed"))


class Upstream:
    """One upstream server: a Pool of pre-bound connected UDP sockets, and TCP on request.

    ``send`` starts one exchange and reports its outcome by callback; ``exchange`` is the same
    awaited, with TCP after a truncated UDP reply, for clients that ask one question at a time.
    """

    def __init__(self, address: Address, config: TransportConfig | None = None) -> None:
        self.address = address
        self.name = format_address(address)
        self.config = config or TransportConfig()
        pool_config = self.config.pool
        self._family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.pool: Pool[_UdpSocket] = Pool(
            factory=self._open_socket,
            close=self._close_socket,
            min_size=pool_config.min_size,
            max_size=pool_config.max_size,
            max_uses=pool_config.max_uses,
            max_age=pool_config.max_age,
            order=pool_config.order,
            min_idle=pool_config.min_idle,
            idle_timeout=pool_config.idle_timeout,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # Exchanges in flight by deadline, checked by one re-armed timer: ``_due`` in the
        # order they were sent, which is deadline order as long as each deadline is no
        # earlier than the one before (nearly always: the upstream timeout is one number);
        # an earlier one (cut short by its query's deadline) goes to the heap ``_early``.
        self._due: deque[Exchange] = deque()
        self._early: list[tuple[float, int, Exchange]] = []
        self._sequence = itertools.count()
        self._sweep: asyncio.TimerHandle | None = None
        self._sweep_at = 0.0
        self._queries = 0
        self._replies = 0
        self._strays = 0
        self._unwanted = 0  # strays to the pooled sockets in the current window
        self._unwanted_since = 0.0
        self._attacks = 0
        self._retired = 0
        self._timeouts = 0
        self._unreachable = 0
        self._bad = 0
        self._local = 0
        self._tcp = 0

    async def start(self) -> None:
        """Bind the pool's first sockets. Raises UpstreamUnreachable if binding fails."""
        self._loop = asyncio.get_running_loop()
        try:
            await self.pool.start()
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise UpstreamUnreachable(self.name, f"cannot open a socket: {reason}") from exc

    async def aclose(self) -> None:
        """Close every socket and end every exchange in flight. Idempotent."""
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
        await self.pool.aclose(timeout=1.0)

    async def _open_socket(self) -> _UdpSocket:
        """A fresh connected UDP socket. connect() binds a fresh random ephemeral port and
        makes the kernel drop datagrams from any other source. Done with the socket module:
        the address is numeric, so no resolver thread is involved, and nothing is awaited."""
        sock = socket.socket(self._family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect(self.address)
            return _UdpSocket(self, self._loop or asyncio.get_running_loop(), sock)
        except BaseException:
            sock.close()
            raise

    def _close_socket(self, sock: _UdpSocket) -> None:
        sock.close()

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
        qid = _random_ids.next()
        if self.config.randomize_case:
            name = _randomize_case(name)
        question = name + _TYPE_CLASS.pack(qtype, qclass)
        flags = (_RD if rd else 0) | (_AD if ad else 0) | (_CD if cd else 0)
        if not edns:
            return _HEADER.pack(qid, flags, 1, 0, 0, 0) + question, question
        opt = _OPT.pack(0, 41, self.config.edns_size, 0, 0, _DO if do else 0, 0)
        return _HEADER.pack(qid, flags, 1, 0, 0, 1) + question + opt, question

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
        exchange = Exchange(self, query, question, deadline, report)
        self._queries += 1
        if tcp:
            self._tcp += 1
            self._start_task(exchange, self._over_tcp(exchange))
            return exchange
        try:
            guard = self._idle_socket()
        except PoolTimeout:
            self._start_task(exchange, self._wait_for_socket(exchange))
        except PoolClosed:
            exchange.fail(LocalError(f"{self.name}: the upstream is shutting down"))
        else:
            exchange.send_on(guard)
        return exchange

    def _idle_socket(self) -> Guard[_UdpSocket]:
        """An idle socket, skipping (and discarding) those retired while idle for receiving
        unwanted replies. Raises PoolTimeout when none is idle, PoolClosed."""
        for _ in range(self.config.pool.max_size):
            guard = self.pool.acquire_nowait()
            if not guard.obj.retire:
                return guard
            guard.discard()
        return self.pool.acquire_nowait()

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

    # ----------------------------------------------------------------- machinery

    def _start_task(self, exchange: Exchange, work: Coroutine[None, None, None]) -> None:
        loop = self._loop or asyncio.get_running_loop()
        task = loop.create_task(work)
        exchange.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _wait_for_socket(self, exchange: Exchange) -> None:
        loop = self._loop or asyncio.get_running_loop()
        remaining = exchange.deadline - loop.time()
        try:
            if remaining <= 0:
                raise PoolTimeout("no time left")
            guard = await self.pool.acquire(timeout=remaining)
        except PoolTimeout:
            exchange.fail(LocalError(f"{self.name}: no free socket before the deadline"))
            return
        except PoolClosed:
            exchange.fail(LocalError(f"{self.name}: the upstream is shutting down"))
            return
        except OSError as exc:
            exchange.fail(self._socket_error(exc))
            return
        if exchange.done:  # abandoned while waiting
            guard.release()
            return
        exchange.send_on(guard)

    def send_error(self, exc: OSError) -> BaseException:
        """What a failed send means: our side short of buffers, or the upstream unreachable."""
        if exc.errno in _LOCAL_ERRNOS or isinstance(exc, BlockingIOError):
            return LocalError(f"{self.name}: cannot send: {exc.strerror or exc}")
        return UpstreamUnreachable(self.name, exc.strerror or str(exc))

    def _socket_error(self, exc: OSError) -> BaseException:
        if exc.errno in _LOCAL_ERRNOS:
            return LocalError(f"{self.name}: cannot open a socket: {exc.strerror or exc}")
        return UpstreamUnreachable(self.name, f"cannot open a socket: {exc.strerror or exc}")

    def track_deadline(self, exchange: Exchange) -> None:
        """Expire ``exchange`` at its deadline, by the one sweep timer of this upstream."""
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
        try:
            async with asyncio.timeout_at(exchange.deadline):
                reader, writer = await asyncio.open_connection(*self.address)
                try:
                    writer.write(len(query).to_bytes(2, "big") + query)
                    while True:
                        size = int.from_bytes(await reader.readexactly(2), "big")
                        reply = await reader.readexactly(size)
                        if exchange.accepts(reply):
                            break
                        self._strays += 1
                finally:
                    writer.close()
        except TimeoutError:
            exchange.fail(UpstreamTimeout(self.name, "no TCP reply before the deadline"))
        except asyncio.IncompleteReadError:
            exchange.fail(BadResponse(self.name, "TCP connection closed before a whole reply"))
        except OSError as exc:
            exchange.fail(UpstreamUnreachable(self.name, f"TCP: {exc.strerror or exc}"))
        else:
            exchange.succeed(reply)

    # ----------------------------------------------------------------- counting

    def count_reply(self) -> None:
        self._replies += 1

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

    def count_failure(self, exc: BaseException) -> None:
        """Count a failed exchange by its kind."""
        if isinstance(exc, UpstreamTimeout):
            self._timeouts += 1
        elif isinstance(exc, UpstreamUnreachable):
            self._unreachable += 1
        elif isinstance(exc, BadResponse):
            self._bad += 1
        elif isinstance(exc, LocalError):
            self._local += 1

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
        )

    def __repr__(self) -> str:
        s = self.statistics()
        return (
            f"<Upstream {self.name} queries={s.queries} replies={s.replies} strays={s.strays} "
            f"timeouts={s.timeouts} sockets={s.pool.size}>"
        )
