"""One exchange with one upstream: a pooled, pre-bound UDP socket, a validated reply, TCP on TC.

Every reply is matched as RFC 5452 section 9.1 asks before it is accepted: it must come from
the upstream's address and port, to the socket the query left from, with our random ID, QR set,
opcode QUERY and the same question (name, type, class; the name case-exact when 0x20
randomisation is on). Anything else is a stray: counted and dropped, and the socket keeps
listening until the deadline, so one forged datagram cannot end a query. A socket whose query
timed out, failed or was cancelled is discarded, never reused, so a late reply cannot reach the
next query.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from resolver.config import Address, TransportConfig
from resolver.errors import (
    BadResponse,
    PoolClosed,
    PoolTimeout,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from resolver.pool import Pool, PoolStatistics

__all__ = ["Upstream", "UpstreamStatistics", "format_address"]

_HEADER = struct.Struct("!6H")
_TYPE_CLASS = struct.Struct("!HH")
_OPT = struct.Struct("!BHHBBHH")  # root owner, type 41, udp size, ext rcode, version, flags, rdlen
_RD = 0x0100
_CD = 0x0010
_DO = 0x8000
_TC_BYTE2 = 0x02  # TC in the first flags byte
_QR_BYTE2 = 0x80
_OPCODE_BYTE2 = 0x78
_ONE_QUESTION = b"\x00\x01"


def format_address(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class UpstreamStatistics:
    """Counts for one upstream: queries sent, replies accepted, strays dropped, failures."""

    address: str
    queries: int
    replies: int
    strays: int
    timeouts: int
    unreachable: int
    bad_responses: int
    tcp_queries: int
    pool: PoolStatistics


class _Expectation:
    """The one reply a socket waits for: its ID and question bytes, and where to deliver it."""

    __slots__ = ("case_exact", "future", "qid", "question")

    def __init__(
        self, qid: bytes, question: bytes, case_exact: bool, future: asyncio.Future[bytes]
    ) -> None:
        self.qid = qid
        self.question = question
        self.case_exact = case_exact
        self.future = future


def _matches(data: bytes, qid: bytes, question: bytes, case_exact: bool) -> bool:
    """RFC 5452 9.1 checks on the raw bytes: ID, QR, opcode, the single question."""
    end = 12 + len(question)
    if len(data) < end or data[0:2] != qid or data[4:6] != _ONE_QUESTION:
        return False
    flags = data[2]
    if not flags & _QR_BYTE2 or flags & _OPCODE_BYTE2:
        return False
    got = data[12:end]
    if case_exact:
        return got == question
    # Type and class must match exactly; only the name is compared without case (RFC 4343).
    return got[-4:] == question[-4:] and got[:-4].lower() == question[:-4].lower()


class _UdpSocket(asyncio.DatagramProtocol):
    """A connected UDP socket that accepts only the reply it expects."""

    def __init__(self, upstream: Upstream) -> None:
        self._upstream = upstream
        self.transport: asyncio.DatagramTransport | None = None
        self.peer: tuple[str, int] | None = None
        self.expecting: _Expectation | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport does not subclass asyncio.DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = (peer[0], peer[1]) if peer else None

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...] | None) -> None:
        exp = self.expecting
        if (
            exp is None
            or exp.future.done()
            or (addr is not None and self.peer is not None and tuple(addr[:2]) != self.peer)
            or not _matches(data, exp.qid, exp.question, exp.case_exact)
        ):
            self._upstream._strays += 1
            return
        exp.future.set_result(data)

    def error_received(self, exc: Exception) -> None:
        exp = self.expecting
        if exp is not None and not exp.future.done():
            name = self._upstream.name
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            exp.future.set_exception(UpstreamUnreachable(name, reason))

    def connection_lost(self, exc: Exception | None) -> None:
        exp = self.expecting
        if exp is not None and not exp.future.done():
            exp.future.set_exception(UpstreamUnreachable(self._upstream.name, "socket closed"))


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


_random_ids = _RandomIds()


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


class Upstream:
    """One upstream server: a Pool of pre-bound connected UDP sockets, and TCP for TC replies.

    ``exchange`` sends one question and returns the upstream's validated raw reply (with our
    ID and our question case). It raises UpstreamTimeout at the deadline, UpstreamUnreachable
    when the server cannot be reached, BadResponse for a broken TCP reply.
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
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queries = 0
        self._replies = 0
        self._strays = 0
        self._timeouts = 0
        self._unreachable = 0
        self._bad = 0
        self._tcp = 0

    async def start(self) -> None:
        """Bind the pool's first sockets. Raises UpstreamUnreachable if binding fails."""
        self._loop = asyncio.get_running_loop()
        try:
            await self.pool.start()
        except OSError as exc:
            raise UpstreamUnreachable(self.name, f"cannot open a socket: {exc}") from exc

    async def aclose(self) -> None:
        """Close every socket. Idempotent."""
        await self.pool.aclose(timeout=1.0)

    async def _open_socket(self) -> _UdpSocket:
        """A fresh connected UDP socket. Cancellation-safe: a socket finished after its
        opener was cancelled is closed, never leaked (uvloop hangs at close on a leaked one)."""
        loop = asyncio.get_running_loop()
        opening = loop.create_task(self._bind_and_wrap(loop))
        try:
            return await asyncio.shield(opening)
        except asyncio.CancelledError:
            opening.add_done_callback(_close_if_opened)
            raise

    async def _bind_and_wrap(self, loop: asyncio.AbstractEventLoop) -> _UdpSocket:
        # connect() binds a fresh random ephemeral port and makes the kernel drop datagrams
        # from any other source (the protocol checks the source itself too). Done here with
        # the socket module: the address is numeric, so no resolver thread is involved.
        sock = socket.socket(self._family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect(self.address)
            _, protocol = await loop.create_datagram_endpoint(lambda: _UdpSocket(self), sock=sock)
        except BaseException:
            sock.close()
            raise
        return protocol

    async def _close_socket(self, sock: _UdpSocket) -> None:
        if sock.transport is not None:
            sock.transport.close()

    def build_query(
        self,
        name: bytes,
        qtype: int,
        qclass: int,
        *,
        cd: bool = False,
        do: bool = False,
        rd: bool = True,
    ) -> tuple[bytes, bytes]:
        """Our query for a question: a random ID, RD, EDNS with our size, 0x20 if configured.

        Returns the query bytes and the question bytes as sent (for matching the reply)."""
        qid = _random_ids.next()
        if self.config.randomize_case:
            name = _randomize_case(name)
        question = name + _TYPE_CLASS.pack(qtype, qclass)
        header = _HEADER.pack(qid, (_RD if rd else 0) | (_CD if cd else 0), 1, 0, 0, 1)
        opt = _OPT.pack(0, 41, self.config.edns_size, 0, 0, _DO if do else 0, 0)
        return header + question + opt, question

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
        """Ask this upstream one question by ``deadline`` (loop time); return its raw reply.

        UDP first from a pooled socket, TCP when the reply is truncated (or at once with
        ``tcp``). ``name`` is the question name in wire form."""
        query, question = self.build_query(name, qtype, qclass, cd=cd, do=do, rd=rd)
        self._queries += 1
        try:
            reply = b"" if tcp else await self._udp(query, question, deadline)
            if tcp or reply[2] & _TC_BYTE2:
                self._tcp += 1
                reply = await self._over_tcp(query, question, deadline)
        except UpstreamError as exc:
            self._count_failure(exc)
            raise
        self._replies += 1
        return reply

    def exchange_nowait(
        self,
        name: bytes,
        qtype: int,
        qclass: int,
        *,
        deadline: float,
        on_reply: Callable[[bytes | None, BaseException | None], None],
        cd: bool = False,
        do: bool = False,
    ) -> bool:
        """The common case of ``exchange`` without a task: send over an idle pooled socket and
        call ``on_reply(reply, None)`` with the validated reply (which may have TC set: TCP is
        the caller's to do) or ``on_reply(None, error)`` with an UpstreamError. Returns False,
        having sent nothing, when no socket is idle right now (use ``exchange``)."""
        loop = self._loop
        if loop is None:
            return False
        try:
            guard = self.pool.acquire_nowait()
        except (PoolTimeout, PoolClosed):
            return False
        query, question = self.build_query(name, qtype, qclass, cd=cd, do=do)
        self._queries += 1
        sock = guard.obj
        future, timer = self._send(loop, sock, query, question, deadline)

        def finished(done: asyncio.Future[bytes]) -> None:
            timer.cancel()
            sock.expecting = None
            exc = done.exception() if not done.cancelled() else UpstreamTimeout(self.name, "")
            if exc is not None:
                guard.discard()  # as in _udp: a late reply must not reach another query
                self._count_failure(exc)
                on_reply(None, exc)
                return
            guard.release()
            self._replies += 1
            on_reply(done.result(), None)

        future.add_done_callback(finished)
        return True

    def _send(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: _UdpSocket,
        query: bytes,
        question: bytes,
        deadline: float,
    ) -> tuple[asyncio.Future[bytes], asyncio.TimerHandle]:
        """Send ``query`` on ``sock``, which then accepts its matching reply until ``deadline``
        (the future fails with UpstreamTimeout then). The caller cancels the timer."""
        future: asyncio.Future[bytes] = loop.create_future()
        sock.expecting = _Expectation(query[:2], question, self.config.randomize_case, future)
        timer = loop.call_at(deadline, _expire, future, self.name)
        assert sock.transport is not None
        sock.transport.sendto(query)
        return future, timer

    def _count_failure(self, exc: BaseException) -> None:
        """Count a failed exchange by its kind."""
        if isinstance(exc, UpstreamTimeout):
            self._timeouts += 1
        elif isinstance(exc, UpstreamUnreachable):
            self._unreachable += 1
        elif isinstance(exc, BadResponse):
            self._bad += 1

    async def _udp(self, query: bytes, question: bytes, deadline: float) -> bytes:
        loop = self._loop or asyncio.get_running_loop()
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise UpstreamTimeout(self.name, "no time left for this query")
        try:
            guard = await self.pool.acquire(timeout=remaining)
        except PoolTimeout as exc:
            raise UpstreamTimeout(self.name, "no free socket before the deadline") from exc
        except PoolClosed as exc:
            raise UpstreamUnreachable(self.name, "upstream is shutting down") from exc
        except OSError as exc:
            raise UpstreamUnreachable(self.name, f"cannot open a socket: {exc}") from exc
        sock = guard.obj
        timer: asyncio.TimerHandle | None = None
        try:
            future, timer = self._send(loop, sock, query, question, deadline)
            reply = await future
        except BaseException:
            # Timed out, failed or cancelled: a late reply may still come, so this socket
            # must never serve another query.
            sock.expecting = None
            guard.discard()
            raise
        finally:
            if timer is not None:
                timer.cancel()
        sock.expecting = None
        guard.release()
        return reply

    async def _over_tcp(self, query: bytes, question: bytes, deadline: float) -> bytes:
        case_exact = self.config.randomize_case
        try:
            async with asyncio.timeout_at(deadline):
                reader, writer = await asyncio.open_connection(*self.address)
                try:
                    writer.write(len(query).to_bytes(2, "big") + query)
                    while True:
                        size = int.from_bytes(await reader.readexactly(2), "big")
                        reply = await reader.readexactly(size)
                        if _matches(reply, query[:2], question, case_exact):
                            return reply
                        self._strays += 1
                finally:
                    writer.close()
        except TimeoutError as exc:
            raise UpstreamTimeout(self.name, "no TCP reply before the deadline") from exc
        except asyncio.IncompleteReadError as exc:
            raise BadResponse(self.name, "TCP connection closed before a whole reply") from exc
        except OSError as exc:
            raise UpstreamUnreachable(self.name, f"TCP: {exc.strerror or exc}") from exc

    def statistics(self) -> UpstreamStatistics:
        return UpstreamStatistics(
            address=self.name,
            queries=self._queries,
            replies=self._replies,
            strays=self._strays,
            timeouts=self._timeouts,
            unreachable=self._unreachable,
            bad_responses=self._bad,
            tcp_queries=self._tcp,
            pool=self.pool.statistics(),
        )

    def __repr__(self) -> str:
        s = self.statistics()
        return (
            f"<Upstream {self.name} queries={s.queries} replies={s.replies} strays={s.strays} "
            f"timeouts={s.timeouts} sockets={s.pool.size}>"
        )


def _close_if_opened(task: asyncio.Task[_UdpSocket]) -> None:
    if not task.cancelled() and task.exception() is None:
        transport = task.result().transport
        if transport is not None:
            transport.close()


def _expire(future: asyncio.Future[bytes], name: str) -> None:
    if not future.done():
        future.set_exception(UpstreamTimeout(name, "no matching reply before the deadline"))
