"""The daemon's listeners: UDP and TCP, per-query tasks, access control, graceful shutdown.

Nothing a client sends can crash the server: a datagram shorter than a header or with QR set is
dropped, a malformed query gets FORMERR, an unsupported opcode NOTIMP, a client outside the
allowed networks REFUSED. Every query runs in its own task under one deadline; the server keeps
its in-flight tasks and drains them on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import ipaddress
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Protocol

from resolver.config import Address, ServerConfig
from resolver.errors import ResolutionFailed, WireError
from resolver.server.listeners import UdpListener, tcp_connection
from resolver.triage import Local, Parsed, fit, for_client, servfail, triage
from resolver.wire.raw import FORMERR, error_reply

__all__ = ["Answerer", "Server", "ServerStatistics"]

log = logging.getLogger(__name__)

_MEMO_MAX = 10_000  # finished replies to recent cache hits (see Server._remember)
_BIND_ATTEMPTS = 20  # port 0: tries at a UDP port whose TCP twin is free too


class Answerer(Protocol):
    """What the server asks for answers: a forwarder or the recursive resolver.

    Both return replies in normalized form: no OPT record, RA set, AA clear; the ID and the
    question's case are the server's to set."""

    def answer_cached_until(
        self, name: bytes, qtype: int, qclass: int, *, do: bool, cd: bool
    ) -> tuple[bytes, float] | None: ...

    def now(self) -> float: ...

    def clock(self) -> Callable[[], float]: ...

    async def resolve(
        self, name: bytes, qtype: int, qclass: int, *, do: bool, cd: bool, deadline: float
    ) -> bytes: ...

    def resolve_nowait(
        self,
        name: bytes,
        qtype: int,
        qclass: int,
        *,
        do: bool,
        cd: bool,
        deadline: float,
        done: Callable[[bytes | None, BaseException | None], None],
    ) -> bool: ...


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
            (
                "udp",
                "tcp",
                "answered",
                "servfail",
                "formerr",
                "notimp",
                "refused",
                "dropped",
                "truncated",
            ),
            0,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        # Queries answered by callbacks rather than tasks (resolve_nowait), and what shutdown
        # waits on until they are all done.
        self._callbacks_inflight = 0
        self._memo: dict[bytes, tuple[bytes, float]] = {}
        self._remembered_answers = 0  # UDP queries answered from _memo (count as udp, answered)
        self._clock: Callable[[], float] = answerer.now
        self._callbacks_drained: asyncio.Event | None = None

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Bind UDP (and TCP unless disabled) on every listen address. Raises OSError.

        With port 0 the UDP port is picked first and TCP takes the same number; if that TCP
        port is taken, both are tried again on another port (a bounded number of times)."""
        self._loop = asyncio.get_running_loop()
        self._clock = self.answerer.clock()
        for host, port in self.config.listen:
            for attempt in range(_BIND_ATTEMPTS):
                try:
                    await self._bind(host, port)
                    break
                except OSError as exc:
                    if port != 0 or exc.errno != errno.EADDRINUSE or attempt == _BIND_ATTEMPTS - 1:
                        raise

    async def _bind(self, host: str, port: int) -> None:
        assert self._loop is not None
        transport, _ = await self._loop.create_datagram_endpoint(
            lambda: UdpListener(self), local_addr=(host, port)
        )
        bound = transport.get_extra_info("sockname")
        if self.config.tcp:
            try:
                server = await asyncio.start_server(
                    functools.partial(tcp_connection, self), host, bound[1]
                )
            except BaseException:
                transport.close()
                raise
            self._tcp.append(server)
        self._udp.append(transport)
        self.addresses.append((bound[0], bound[1]))

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
        loop = asyncio.get_running_loop()
        grace_ends = loop.time() + self.config.shutdown_grace
        if self._callbacks_inflight:
            self._callbacks_drained = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(grace_ends):
                    await self._callbacks_drained.wait()
        if self._tasks:
            timeout = max(0.0, grace_ends - loop.time())
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
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
            udp_queries=c["udp"] + self._remembered_answers,
            tcp_queries=c["tcp"],
            answered=c["answered"] + self._remembered_answers,
            servfail=c["servfail"],
            formerr=c["formerr"],
            refused=c["refused"],
            dropped=c["dropped"],
            truncated=c["truncated"],
            inflight=len(self._tasks) + self._callbacks_inflight,
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

    def local_or_cached(
        self, query: bytes, client_host: str, *, tcp: bool
    ) -> bytes | Parsed | None:
        """The synchronous part of answering: a reply made at once (an error, ANY, or a fresh
        cache hit), None to drop the query, or the parsed query to resolve in a task."""
        try:
            sorted_ = triage(query, lambda: self._allowed_client(client_host))
            if isinstance(sorted_, Local):
                self._counts[sorted_.outcome] += 1
                return sorted_.reply
            question = sorted_.question
            cached = self.answerer.answer_cached_until(
                question.name, question.qtype, question.qclass, do=sorted_.do, cd=sorted_.cd
            )
            if cached is None:
                return sorted_
            reply = self._finish(for_client(cached[0], query, sorted_), sorted_, tcp)
            if not tcp:
                self._remember(query, reply, cached[1])
            return reply
        except (WireError, ValueError, IndexError):
            log.debug("malformed query from %s", client_host, exc_info=True)
            return self._formerr(query)

    async def answer(self, query: bytes, client_host: str, *, tcp: bool) -> bytes | None:
        """The reply to one raw query, or None when it must be dropped. Never raises
        (except CancelledError): whatever goes wrong becomes FORMERR or SERVFAIL."""
        first = self.local_or_cached(query, client_host, tcp=tcp)
        if not isinstance(first, Parsed):
            return first
        return await self.resolve_for(query, first, client_host, tcp=tcp)

    async def resolve_for(
        self, query: bytes, parsed: Parsed, client_host: str, *, tcp: bool
    ) -> bytes:
        """Resolve a triaged query under one deadline; SERVFAIL when that fails."""
        loop = self._loop or asyncio.get_running_loop()
        question = parsed.question
        try:
            reply = await self.answerer.resolve(
                question.name,
                question.qtype,
                question.qclass,
                do=parsed.do,
                cd=parsed.cd,
                deadline=loop.time() + self.query_timeout,
            )
        except asyncio.CancelledError:
            raise
        except ResolutionFailed:
            return self._client_reply(query, parsed, None, tcp)
        except Exception:
            log.exception("query from %s failed unexpectedly", client_host)
            return self._client_reply(query, parsed, None, tcp)
        return self._client_reply(query, parsed, reply, tcp)

    def _client_reply(self, query: bytes, parsed: Parsed, reply: bytes | None, tcp: bool) -> bytes:
        """The resolved ``reply`` made this client's, or SERVFAIL when there is none or it
        cannot be relayed."""
        if reply is not None:
            try:
                return self._finish(for_client(reply, query, parsed), parsed, tcp)
            except WireError:
                pass
        self._counts["servfail"] += 1
        return servfail(query, parsed)

    def start_udp_nowait(
        self,
        transport: asyncio.DatagramTransport,
        query: bytes,
        parsed: Parsed,
        addr: tuple[str, int],
    ) -> bool:
        """Answer a UDP query by callbacks instead of a task when the answerer can (the
        common case of a forwarded query). False: nothing started, use a task."""
        loop = self._loop
        if loop is None or self._callbacks_inflight + len(self._tasks) >= self.config.max_inflight:
            return False
        question = parsed.question

        def done(reply: bytes | None, exc: BaseException | None) -> None:
            self._callbacks_inflight -= 1
            out = self._client_reply(query, parsed, reply, tcp=False)
            if not transport.is_closing():
                transport.sendto(out, addr)
            if self._callbacks_drained is not None and not self._callbacks_inflight:
                self._callbacks_drained.set()

        started = self.answerer.resolve_nowait(
            question.name,
            question.qtype,
            question.qclass,
            do=parsed.do,
            cd=parsed.cd,
            deadline=loop.time() + self.query_timeout,
            done=done,
        )
        if started:
            self._callbacks_inflight += 1
        return started

    def _remember(self, query: bytes, reply: bytes, until: float) -> None:
        """Keep a finished UDP reply to a cache hit for as long as it stays byte-identical.
        The key is the query without its ID (flags, question with its case, EDNS settings:
        everything the reply depends on), so a repeat costs one dict lookup."""
        memo = self._memo
        if len(memo) >= _MEMO_MAX:
            memo.clear()  # bounded; entries live at most a second anyway
        memo[query[2:]] = (reply[2:], until)

    def answer_remembered(
        self, query: bytes, found: tuple[bytes, float], client_host: str
    ) -> bytes | None:
        """The hottest path: ``found``, the memo's entry for this query, as this client's
        reply, if it still holds, the client is allowed and the server is not shutting down."""
        if found[1] <= self._clock():
            self._memo.pop(query[2:], None)
            return None
        if self._closed or not self._allowed_client(client_host):
            return None
        self._remembered_answers += 1
        return query[:2] + found[0]

    def _finish(self, reply: bytes, parsed: Parsed, tcp: bool) -> bytes:
        self._counts["answered"] += 1
        reply, truncated = fit(reply, parsed.edns, tcp)
        if truncated:
            self._counts["truncated"] += 1
        return reply

    def _formerr(self, query: bytes) -> bytes | None:
        self._counts["formerr"] += 1
        try:
            return error_reply(query, FORMERR)
        except WireError:
            return None

    # ----------------------------------------------------------------- UDP

    async def _udp_query(
        self,
        transport: asyncio.DatagramTransport,
        data: bytes,
        parsed: Parsed,
        addr: tuple[str, int],
    ) -> None:
        reply = await self.resolve_for(data, parsed, addr[0], tcp=False)
        if not transport.is_closing():
            transport.sendto(reply, addr)
