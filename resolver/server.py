"""The daemon's listeners: UDP and TCP, per-query tasks, access control, graceful shutdown.

Nothing a client sends can crash the server: a datagram shorter than a header or with QR set is
dropped, a malformed query gets FORMERR, an unsupported opcode NOTIMP, a client outside the
allowed networks REFUSED. Every query runs in its own task under one deadline; the server keeps
its in-flight tasks and drains them on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import struct
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Protocol, cast

from resolver.config import Address, ServerConfig
from resolver.errors import ResolutionFailed, WireError
from resolver.wire.message import minimal_any_reply
from resolver.wire.raw import (
    CD,
    FORMERR,
    HEADER_SIZE,
    NOTIMP,
    OPCODE_QUERY,
    QR,
    RD,
    REFUSED,
    SERVFAIL,
    TYPE_ANY,
    TYPE_AXFR,
    TYPE_IXFR,
    QueryEdns,
    error_reply,
    read_header,
    read_query_edns,
    read_question,
    truncated_reply,
)

__all__ = ["Answerer", "Server", "ServerStatistics"]

log = logging.getLogger(__name__)

_OPT = struct.Struct("!BHHBBHH")
_DO = 0x8000
# What we advertise to clients and the most we send over UDP (the DNS flag day 2020 value).
_OUR_UDP_SIZE = 1232
_BADVERS_HIGH = 1  # rcode 16 = extended rcode 1 << 4 | 0
_UNANSWERABLE_TYPES = (TYPE_AXFR, TYPE_IXFR)
_SPECIAL_TYPES = (TYPE_ANY, TYPE_AXFR, TYPE_IXFR)
# Flag bits as seen in the first flags byte (message byte 2).
_QR_HIGH = QR >> 8
_RD_HIGH = RD >> 8
_OPCODE_HIGH = 0x78


class Answerer(Protocol):
    """What the server asks for answers: a forwarder or the recursive resolver.

    Both return replies in normalized form: no OPT record, RA set, AA clear; the ID and the
    question's case are the server's to set."""

    def answer_cached(
        self, name: bytes, qtype: int, qclass: int, *, do: bool, cd: bool
    ) -> bytes | None: ...

    async def resolve(
        self, name: bytes, qtype: int, qclass: int, *, do: bool, cd: bool, deadline: float
    ) -> bytes: ...


@dataclass(frozen=True, slots=True)
class ServerStatistics:
    udp_queries: int
    tcp_queries: int
    answered: int
    servfail: int
    formerr: int
    refused: int
    dropped: int
    truncated: int
    inflight: int
    tcp_connections: int


def _opt(udp_size: int, do: bool, ext_rcode: int = 0) -> bytes:
    return _OPT.pack(0, 41, udp_size, ext_rcode, 0, _DO if do else 0, 0)


def _with_opt(reply: bytes, edns: QueryEdns | None) -> bytes:
    """Add our OPT to a locally made reply (which has none) when the client used EDNS."""
    if edns is None:
        return reply
    arcount = int.from_bytes(reply[10:12], "big") + 1
    return reply[:10] + arcount.to_bytes(2, "big") + reply[12:] + _opt(_OUR_UDP_SIZE, edns.do)


class Server:
    """UDP and TCP listeners in front of an :class:`Answerer`.

    ``start`` binds every listener before it returns (port 0 picks a free port; ``addresses``
    tells which). ``request_stop`` may be called from a signal handler; ``serve_until_stopped``
    then stops listening, lets in-flight queries finish (up to ``shutdown_grace``) and returns.
    """

    def __init__(
        self,
        config: ServerConfig,
        answerer: Answerer,
        *,
        query_timeout: float = 5.0,
    ) -> None:
        self.config = config
        self.answerer = answerer
        self.query_timeout = query_timeout
        self._allowed = [ipaddress.ip_network(n, strict=False) for n in config.allow]
        self._allow_memo: dict[str, bool] = {}
        self._udp: list[asyncio.DatagramTransport] = []
        self._tcp: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._connections: set[asyncio.StreamWriter] = set()
        self._stop = asyncio.Event()
        self._closed = False
        self._closing: asyncio.Task[None] | None = None
        self.addresses: list[Address] = []
        self._counts = dict.fromkeys(
            ("udp", "tcp", "answered", "servfail", "formerr", "refused", "dropped", "truncated"), 0
        )

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Bind UDP (and TCP unless disabled) on every listen address. Raises OSError."""
        loop = asyncio.get_running_loop()
        for host, port in self.config.listen:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UdpListener(self), local_addr=(host, port)
            )
            self._udp.append(transport)
            bound = transport.get_extra_info("sockname")
            self.addresses.append((bound[0], bound[1]))
            if self.config.tcp:
                server = await asyncio.start_server(self._tcp_connection, host, bound[1])
                self._tcp.append(server)

    def request_stop(self) -> None:
        """Ask the server to shut down; safe to call from a signal handler, and more than once."""
        self._stop.set()

    async def serve_until_stopped(self) -> None:
        await self._stop.wait()
        await self.aclose()

    async def aclose(self) -> None:
        """Shut down gracefully. Idempotent: every call waits for the same closing work,
        which goes on even if a caller is cancelled.

        New TCP connections are refused and new UDP queries dropped at once; queries in flight
        get their answers (up to ``shutdown_grace`` seconds; then they are cancelled); then the
        UDP sockets close (they stay open until then so those answers can still be sent from
        the port the clients asked) and the TCP connections are closed.
        """
        if self._closing is None:
            self._closed = True
            self._stop.set()
            for server in self._tcp:
                server.close()
            self._closing = asyncio.get_running_loop().create_task(self._drain_and_close())
        await asyncio.shield(self._closing)

    async def _drain_and_close(self) -> None:
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=self.config.shutdown_grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for transport in self._udp:
            transport.close()
        for writer in list(self._connections):
            writer.close()
        for server in self._tcp:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), timeout=1.0)

    def statistics(self) -> ServerStatistics:
        c = self._counts
        return ServerStatistics(
            udp_queries=c["udp"],
            tcp_queries=c["tcp"],
            answered=c["answered"],
            servfail=c["servfail"],
            formerr=c["formerr"],
            refused=c["refused"],
            dropped=c["dropped"],
            truncated=c["truncated"],
            inflight=len(self._tasks),
            tcp_connections=len(self._connections),
        )

    def __repr__(self) -> str:
        s = self.statistics()
        return (
            f"<Server {self.addresses} udp={s.udp_queries} tcp={s.tcp_queries} "
            f"inflight={s.inflight} connections={s.tcp_connections}>"
        )

    # ----------------------------------------------------------------- answering

    def _track(self, coro: Coroutine[None, None, None]) -> bool:
        if len(self._tasks) >= self.config.max_inflight or self._closed:
            coro.close()
            self._counts["dropped"] += 1
            return False
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    def _allowed_client(self, host: str) -> bool:
        known = self._allow_memo.get(host)
        if known is not None:
            return known
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        allowed = any(address in network for network in self._allowed)
        if len(self._allow_memo) >= 4096:  # bounded: a spray of sources cannot grow it
            self._allow_memo.clear()
        self._allow_memo[host] = allowed
        return allowed

    async def answer(self, query: bytes, client_host: str, *, tcp: bool) -> bytes | None:
        """The reply to one raw query, or None when it must be dropped. Never raises
        (except CancelledError): whatever goes wrong becomes FORMERR or SERVFAIL."""
        try:
            return await self._answer(query, client_host, tcp=tcp)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("query from %s failed unexpectedly", client_host)
            self._counts["servfail"] += 1
            try:
                return error_reply(query, SERVFAIL)
            except WireError:
                return None

    async def _answer(self, query: bytes, client_host: str, *, tcp: bool) -> bytes | None:
        if len(query) < HEADER_SIZE:
            self._counts["dropped"] += 1
            return None
        header = read_header(query)
        if header.flags & QR:
            self._counts["dropped"] += 1  # a response sent to us: answering could loop
            return None
        if header.opcode != OPCODE_QUERY:
            return error_reply(query, NOTIMP)
        try:
            question = read_question(query)
            edns = read_query_edns(query, question.end)
        except WireError:
            self._counts["formerr"] += 1
            return error_reply(query, FORMERR)
        if edns is not None and edns.version > 0:
            # RFC 6891 6.1.3: BADVERS for an EDNS version we do not implement.
            reply = error_reply(query, 0)
            arcount = int.from_bytes(reply[10:12], "big") + 1
            return (
                reply[:10]
                + arcount.to_bytes(2, "big")
                + reply[12:]
                + _opt(_OUR_UDP_SIZE, edns.do, _BADVERS_HIGH)
            )
        if not self._allowed_client(client_host):
            self._counts["refused"] += 1
            return _with_opt(error_reply(query, REFUSED), edns)
        if question.qtype == TYPE_ANY:
            return self._fit(_with_opt(minimal_any_reply(query), edns), edns, tcp)
        if question.qtype in _UNANSWERABLE_TYPES:
            self._counts["refused"] += 1
            return _with_opt(error_reply(query, REFUSED), edns)
        deadline = asyncio.get_running_loop().time() + self.query_timeout
        do = edns.do if edns is not None else False
        try:
            upstream_reply = await self.answerer.resolve(
                question.name,
                question.qtype,
                question.qclass,
                do=do,
                cd=header.cd,
                deadline=deadline,
            )
            reply = self._for_client(upstream_reply, query, question.end, edns)
        except (ResolutionFailed, WireError):
            self._counts["servfail"] += 1
            return _with_opt(error_reply(query, SERVFAIL), edns)
        self._counts["answered"] += 1
        return self._fit(reply, edns, tcp)

    def _for_client(
        self, reply: bytes, query: bytes, question_end: int, edns: QueryEdns | None
    ) -> bytes:
        """A normalized reply made the client's: its ID, its RD, its question case, our OPT."""
        if reply[12:question_end].lower() != query[12:question_end].lower():
            raise WireError("reply question does not match the query")
        flags = (reply[2] & ~_RD_HIGH) | (query[2] & _RD_HIGH)
        reply = (
            query[:2]
            + bytes((flags,))
            + reply[3:12]
            + query[12:question_end]
            + reply[question_end:]
        )
        return _with_opt(reply, edns)

    def answer_fast(self, query: bytes, client_host: str) -> bytes | None:
        """The hot path, without a task: a well-formed query from an allowed client whose
        answer is fresh in the cache. None means "take the full path" (which also handles
        every error), so this never raises for bad input."""
        try:
            flags = query[2]
            if flags & _QR_HIGH or flags & _OPCODE_HIGH:
                return None
            question = read_question(query)
            if question.qtype in _SPECIAL_TYPES:
                return None
            edns = read_query_edns(query, question.end)
            if edns is not None and edns.version:
                return None
            if not self._allowed_client(client_host):
                return None
            do = edns.do if edns is not None else False
            reply = self.answerer.answer_cached(
                question.name, question.qtype, question.qclass, do=do, cd=bool(query[3] & CD)
            )
            if reply is None:
                return None
            reply = self._for_client(reply, query, question.end, edns)
        except (WireError, IndexError):
            return None
        self._counts["answered"] += 1
        return self._fit(reply, edns, tcp=False)

    def _fit(self, reply: bytes, edns: QueryEdns | None, tcp: bool) -> bytes:
        """Truncate (TC, header and question only) what exceeds the client's UDP size."""
        if tcp:
            return reply
        limit = 512 if edns is None else max(512, min(edns.udp_size, _OUR_UDP_SIZE))
        if len(reply) <= limit:
            return reply
        self._counts["truncated"] += 1
        return _with_opt(truncated_reply(reply), edns)

    # ----------------------------------------------------------------- UDP

    async def _udp_query(
        self, transport: asyncio.DatagramTransport, data: bytes, addr: tuple[str, int]
    ) -> None:
        reply = await self.answer(data, addr[0], tcp=False)
        if reply is not None and not transport.is_closing():
            transport.sendto(reply, addr)

    # ----------------------------------------------------------------- TCP

    async def _tcp_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if len(self._connections) >= self.config.max_tcp_connections or self._closed:
            self._counts["dropped"] += 1
            writer.close()
            return
        self._connections.add(writer)
        peer = writer.get_extra_info("peername")
        host = peer[0] if peer else ""
        pending: set[asyncio.Task[None]] = set()
        try:
            while not self._closed:
                try:
                    async with asyncio.timeout(self.config.tcp_idle_timeout):
                        size = int.from_bytes(await reader.readexactly(2), "big")
                        data = await reader.readexactly(size)
                except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                    break
                self._counts["tcp"] += 1
                task = asyncio.get_running_loop().create_task(self._tcp_query(writer, data, host))
                pending.add(task)
                self._tasks.add(task)
                task.add_done_callback(pending.discard)
                task.add_done_callback(self._tasks.discard)
            if pending:
                await asyncio.wait(pending, timeout=self.config.shutdown_grace)
        finally:
            self._connections.discard(writer)
            writer.close()

    async def _tcp_query(self, writer: asyncio.StreamWriter, data: bytes, host: str) -> None:
        reply = await self.answer(data, host, tcp=True)
        if reply is not None and not writer.is_closing():
            # One write call per frame: frames of concurrent answers never interleave.
            writer.write(len(reply).to_bytes(2, "big") + reply)


class _UdpListener(asyncio.DatagramProtocol):
    def __init__(self, server: Server) -> None:
        self._server = server
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport does not subclass asyncio.DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        server = self._server
        if server._closed:  # draining for shutdown: answer what is in flight, nothing new
            server._counts["dropped"] += 1
            return
        server._counts["udp"] += 1
        transport = self._transport
        assert transport is not None
        reply = server.answer_fast(data, addr[0])
        if reply is not None:
            transport.sendto(reply, addr)
            return
        server._track(server._udp_query(transport, data, addr))

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for replies to clients that went away: nothing to do, keep serving.
        log.debug("UDP listener error: %s", exc)
