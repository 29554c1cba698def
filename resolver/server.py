"""The daemon's listeners: UDP and TCP, access control, graceful shutdown.

Nothing a client sends can crash the server: a datagram shorter than a header or with QR set is
dropped; a client outside the allowed networks gets REFUSED (or nothing, as configured) before
anything else is looked at, and its TCP connections are closed unread; a malformed query gets
FORMERR, an unsupported opcode NOTIMP. Every other query goes to the engine
(``Engine.answer``) under one deadline set here, over UDP and TCP alike; the server counts what
is in flight and drains it on shutdown. UDP queries run on callbacks, a TCP connection in a
task of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import socket
import sys
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import Protocol, cast

from resolver.config import Address, ServerConfig
from resolver.engine import EDE_STALE_ANSWER, Ask, Client, Outcome
from resolver.errors import WireError
from resolver.histogram import Histogram
from resolver.querylog import QueryLog
from resolver.transport import format_address
from resolver.triage import Local, Parsed, fit, for_client, servfail, triage
from resolver.wire.message import qtype_value
from resolver.wire.raw import AA, FORMERR, SERVFAIL, error_reply, read_question

__all__ = [
    "COUNTED_TYPES",
    "Answerer",
    "Listener",
    "ReplyCounts",
    "Server",
    "ServerStatistics",
    "bind_listeners",
]

log = logging.getLogger(__name__)

_MEMO_MAX = 10_000  # finished replies to recent cache hits (see Server._remember)
_BIND_ATTEMPTS = 20  # port 0: tries at a UDP port whose TCP twin is free too
_TCP_WRITE_HIGH = 64 * 1024  # unsent reply bytes above which a connection is not read
_TCP_SEND_BUFFER = 64 * 1024  # a TCP connection's kernel send buffer (Linux doubles it)
# Linux's setsockopt options that pass net.core.rmem_max / wmem_max (asm-generic/socket.h),
# and the factor by which it reports a buffer size (it doubles what it is given).
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
_SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)
_KERNEL_DOUBLES = 2 if sys.platform == "linux" else 1

# Question types whose replies are counted by type; every other type counts as type 0, so that
# clients cannot make a count (and a metrics series) per type number.
_COUNTED_NAMES = """A AAAA CNAME MX NS PTR SOA SRV TXT NAPTR CAA HINFO DNAME LOC SSHFP TLSA SVCB
HTTPS DS DNSKEY RRSIG NSEC NSEC3 NSEC3PARAM CDS CDNSKEY ANY AXFR IXFR"""
COUNTED_TYPES = frozenset(qtype_value(name) for name in _COUNTED_NAMES.split())
# Replies are counted in one dict per server, under one int per kind: bit 0 TCP, bits 1-2 how
# the reply was made, bits 3-6 its rcode, the rest its question type (0 for those not in
# COUNTED_TYPES). How: after waiting for the engine (_DEFERRED, the only ones timed), in the
# callback that read the query (_AT_ONCE), or from the memo of recent replies, which holds
# local answers (_MEMO_LOCAL) and cache answers (_MEMO_CACHE).
_DEFERRED = 0
_AT_ONCE = 1 << 1
_MEMO_LOCAL = 2 << 1
_MEMO_CACHE = 3 << 1
_HOW = 3 << 1


def _count_key(qtype: int, reply: bytes, tcp: bool, how: int) -> int:
    counted = qtype if qtype in COUNTED_TYPES else 0
    return counted << 7 | (reply[3] & 0x0F) << 3 | how | tcp


@dataclass(frozen=True, slots=True)
class Listener:
    """The bound sockets of one listen address: UDP, and TCP on the same port unless TCP is
    off. Whoever binds them closes them, unless a Server took them over."""

    udp: socket.socket
    tcp: socket.socket | None

    @property
    def address(self) -> Address:
        host, port = self.udp.getsockname()[:2]
        return host, port

    def sockets(self) -> list[socket.socket]:
        return [self.udp] if self.tcp is None else [self.udp, self.tcp]

    def close(self) -> None:
        for sock in self.sockets():
            sock.close()


def bind_listeners(
    config: ServerConfig, *, reuse_port: bool = False, like: Sequence[Listener] = ()
) -> list[Listener]:
    """Bind UDP (and TCP unless ``config.tcp`` is off) on every address of ``config.listen``.
    Raises OSError, after closing whatever it had bound.

    With port 0 the UDP port is picked first and TCP takes the same number; if that TCP port
    is taken, both are tried again on another port (a bounded number of times). An IPv6
    socket is dual-stack (it serves IPv4 clients too, as ``::ffff:a.b.c.d``) unless an IPv4
    address in ``listen`` has the same port: then each family has its own socket, so that
    ``0.0.0.0:53`` and ``[::]:53`` can both be bound.

    ``reuse_port`` sets SO_REUSEPORT, so that more sets can be bound on the same addresses
    and the kernel spreads the clients over them; ``like`` (listeners bound so before, one
    per address) binds such a further set on their very ports, port 0 included. Its buffer
    sizes are not reported again."""
    assert not like or len(like) == len(config.listen)
    v4_ports = {port for host, port in config.listen if ":" not in host and port}
    bound: list[Listener] = []
    try:
        for index, (host, port) in enumerate(config.listen):
            v6only = port in v4_ports
            if like:
                bound.append(_bind(config, host, like[index].address[1], v6only, reuse_port, False))
                continue
            for attempt in range(_BIND_ATTEMPTS):
                try:
                    bound.append(_bind(config, host, port, v6only, reuse_port, True))
                    break
                except OSError as exc:
                    last = attempt == _BIND_ATTEMPTS - 1
                    if port != 0 or exc.errno != errno.EADDRINUSE or last:
                        raise
    except BaseException:
        for listener in bound:
            listener.close()
        raise
    return bound


def _bind(
    config: ServerConfig, host: str, port: int, v6only: bool, reuse_port: bool, report: bool
) -> Listener:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    udp = _listening_socket(family, socket.SOCK_DGRAM, v6only, reuse_port)
    try:
        udp.bind((host, port))
        _size_buffers(config, udp, host, report)
    except BaseException:
        udp.close()
        raise
    if not config.tcp:
        return Listener(udp, None)
    tcp = _listening_socket(family, socket.SOCK_STREAM, v6only, reuse_port)
    try:
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Inherited by every accepted connection: the kernel keeps at most this much of a
        # client's unread replies (autotuned, it would take megabytes), so the rest waits in
        # our write buffer, where it stops the reading of more queries.
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _TCP_SEND_BUFFER)
        tcp.bind((host, udp.getsockname()[1]))
    except BaseException:
        tcp.close()
        udp.close()
        raise
    return Listener(udp, tcp)


def _listening_socket(family: int, kind: int, v6only: bool, reuse_port: bool) -> socket.socket:
    sock = socket.socket(family, kind)
    try:
        sock.setblocking(False)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    except BaseException:
        sock.close()
        raise
    return sock


def _size_buffers(config: ServerConfig, sock: socket.socket, host: str, report: bool) -> None:
    """The configured buffer sizes, forced past the system's limit when we may (as Unbound's
    so-rcvbuf); a warning when less was granted (if ``report``)."""
    for option, forced, size, name in (
        (socket.SO_RCVBUF, _SO_RCVBUFFORCE, config.udp_receive_buffer, "receive"),
        (socket.SO_SNDBUF, _SO_SNDBUFFORCE, config.udp_send_buffer, "send"),
    ):
        if not size:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, forced, size)
        except OSError:  # no CAP_NET_ADMIN (or no such option): capped at the limit
            sock.setsockopt(socket.SOL_SOCKET, option, size)
        granted = sock.getsockopt(socket.SOL_SOCKET, option) // _KERNEL_DOUBLES
        if granted < size and report:
            log.warning(
                "UDP %s buffer of %s is %d bytes, not the %d configured (raise net.core.%s)",
                name,
                format_address((host, sock.getsockname()[1])),
                granted,
                size,
                "rmem_max" if option == socket.SO_RCVBUF else "wmem_max",
            )


class Answerer(Protocol):
    """What the server asks for answers: the engine (see ``resolver.engine.Engine``)."""

    @property
    def query_timeout(self) -> float: ...

    def clock(self) -> Callable[[], float]: ...

    def answer(
        self,
        ask: Ask,
        deadline: float,
        done: Callable[[Outcome], None],
        client: Client | None = None,
    ) -> Outcome | None: ...


@dataclass(frozen=True, slots=True)
class ServerStatistics:
    udp_queries: int
    tcp_queries: int
    answered: int
    servfail: int
    formerr: int
    refused: int
    denied: int
    dropped: int
    truncated: int
    inflight: int
    tcp_connections: int
    tcp_evicted: int  # idle connections closed to make room for a new one at the cap
    tcp_stalled: int  # connections closed because their replies stayed unread


@dataclass(frozen=True, slots=True)
class ReplyCounts:
    """The replies a server sent, as counted on its query path.

    ``replies``: (transport, question type, rcode) -> replies sent; the type is 0 for a type
    not in COUNTED_TYPES or a query whose question could not be read, the rcode is the
    header's four bits. ``durations``, per transport: from handing a query to the engine to
    sending its reply, by ``time.perf_counter`` (the loop's clock moves in whole milliseconds
    on uvloop); a reply made in the callback that read its query (a local or cached answer,
    or one the server made itself) is not timed and counts as 0 s: it took microseconds, below
    the smallest bucket.
    ``cache_repeats``: UDP queries answered from the memo of recent cache answers, which never
    reach the cache (the cache's hits do not count them)."""

    replies: Mapping[tuple[str, int, int], int]
    durations: Mapping[str, Histogram]
    cache_repeats: int


class Server:
    """UDP and TCP listeners in front of an :class:`Answerer`.

    ``start`` binds every listener before it returns (port 0 picks a free port; ``addresses``
    tells which), or serves on ``listeners`` bound beforehand (by a parent process: see
    ``resolver.workers``), which the server then owns and closes. ``request_stop`` may be
    called from a signal handler; ``serve_until_stopped`` then stops listening, lets in-flight
    queries finish (up to ``shutdown_grace``) and returns.
    """

    def __init__(
        self, config: ServerConfig, answerer: Answerer, listeners: Sequence[Listener] = ()
    ) -> None:
        self.config = config
        self._given = list(listeners)
        self.answerer = answerer
        self._allowed = [ipaddress.ip_network(n, strict=False) for n in config.allow]
        self._allow_memo: dict[str, bool] = {}
        self._refuse_outsiders = config.outside_allow == "refuse"
        self._udp: list[asyncio.DatagramTransport] = []
        self._tcp: list[asyncio.Server] = []
        self._connection_tasks: set[asyncio.Task[None]] = set()
        # Every TCP connection, the one that sent a whole query longest ago (or never) first.
        self._clients: dict[asyncio.StreamWriter, _TcpClient] = {}
        self._room: asyncio.Event | None = None  # set when a query in flight settles
        self._pressed = False  # more than half the TCP connection cap in use
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
                "denied",
                "dropped",
                "truncated",
                "tcp_evicted",
                "tcp_stalled",
            ),
            0,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        # Queries handed to the engine and not yet answered, and what shutdown waits on.
        self._inflight = 0
        self._drained: asyncio.Event | None = None
        # Recent replies by query without its ID: the reply's bytes but its ID, until when they
        # hold, and the reply's count key (see _count_key).
        self._memo: dict[bytes, tuple[bytes, float, int]] = {}
        self._replies: defaultdict[int, int] = defaultdict(int)  # by _count_key
        self._durations = (Histogram(), Histogram())  # deferred replies, over UDP and TCP
        self._clock: Callable[[], float] = answerer.clock()
        # Where each answered query is logged, if anywhere (the daemon sets and replaces it).
        self.query_log: QueryLog | None = None

    # Settings that belong to the bound sockets (and how many sets of them worker processes
    # hold): a reload cannot change them.
    RESTART_FIELDS = ("listen", "tcp", "udp_receive_buffer", "udp_send_buffer", "workers")

    def reconfigure(self, config: ServerConfig, answerer: Answerer | None = None) -> None:
        """Apply ``config`` to the running listeners (a reload): the allow list and what is
        done outside it, the TCP timeouts and limits, ``max_inflight``, ``shutdown_grace``;
        new queries go to ``answerer`` when given (those in flight finish where they are).
        Remembered replies are forgotten, so that the next answers come from the (possibly
        reloaded) engine. The fields in ``RESTART_FIELDS`` must equal the running ones (the
        caller keeps them)."""
        for name in self.RESTART_FIELDS:
            assert getattr(config, name) == getattr(self.config, name), name
        self.config = config
        if answerer is not None:
            self.answerer = answerer
            self._clock = answerer.clock()
        self._allowed = [ipaddress.ip_network(n, strict=False) for n in config.allow]
        self._allow_memo.clear()
        self._refuse_outsiders = config.outside_allow == "refuse"
        self._memo.clear()  # cleared, not replaced: the UDP listeners hold this dict
        self._pressure_changed()

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Serve on the listeners given to the constructor, or else bind UDP (and TCP unless
        disabled) on every listen address (see :func:`bind_listeners`). Raises OSError, after
        closing every listening socket."""
        self._loop = asyncio.get_running_loop()
        listeners, self._given = self._given, []
        if not listeners:
            listeners = bind_listeners(self.config)
        served = 0
        try:
            for listener in listeners:
                await self._serve_on(listener)
                served += 1
        except BaseException:
            for listener in listeners[served:]:
                listener.close()
            self._close_listeners()
            raise

    async def _serve_on(self, listener: Listener) -> None:
        assert self._loop is not None
        try:
            transport, _ = await self._loop.create_datagram_endpoint(
                lambda: _UdpListener(self), sock=listener.udp
            )
        except BaseException:
            listener.close()
            raise
        if listener.tcp is not None:
            try:
                server = await asyncio.start_server(self._tcp_connection, sock=listener.tcp)
            except BaseException:
                listener.tcp.close()
                transport.close()
                raise
            self._tcp.append(server)
        self._udp.append(transport)
        self.addresses.append(listener.address)

    def _close_listeners(self) -> None:
        for server in self._tcp:
            server.close()
        for transport in self._udp:
            transport.close()
        self._tcp.clear()
        self._udp.clear()
        self.addresses.clear()

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
        get their answers (up to ``shutdown_grace`` seconds); then the UDP sockets close (they
        stay open until then so those answers can still be sent from the port the clients
        asked) and the TCP connections are closed.
        """
        if self._closing is None:
            self._closed = True
            self._stop.set()
            for listener in self._given:  # never served: a start that did not come
                listener.close()
            self._given.clear()
            for server in self._tcp:
                server.close()
            self._closing = asyncio.get_running_loop().create_task(self._drain_and_close())
        await asyncio.shield(self._closing)

    async def _drain_and_close(self) -> None:
        loop = asyncio.get_running_loop()
        grace_ends = loop.time() + self.config.shutdown_grace
        if self._inflight:
            self._drained = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(grace_ends):
                    await self._drained.wait()
        for transport in self._udp:
            transport.close()
        for writer in list(self._clients):
            writer.close()
        if self._connection_tasks:
            timeout = max(0.0, grace_ends - loop.time())
            _, pending = await asyncio.wait(set(self._connection_tasks), timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for server in self._tcp:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), timeout=1.0)

    def statistics(self) -> ServerStatistics:
        c = self._counts
        # UDP queries answered from the memo: counted there only.
        remembered = sum(n for key, n in self._replies.items() if key & _HOW >= _MEMO_LOCAL)
        return ServerStatistics(
            udp_queries=c["udp"] + remembered,
            tcp_queries=c["tcp"],
            answered=c["answered"] + remembered,
            servfail=c["servfail"],
            formerr=c["formerr"],
            refused=c["refused"],
            denied=c["denied"],
            dropped=c["dropped"],
            truncated=c["truncated"],
            inflight=self._inflight,
            tcp_connections=len(self._clients),
            tcp_evicted=c["tcp_evicted"],
            tcp_stalled=c["tcp_stalled"],
        )

    def reply_counts(self) -> ReplyCounts:
        """A snapshot of the replies sent, by kind, and how long they took."""
        replies: dict[tuple[str, int, int], int] = {}
        durations = [histogram.copy() for histogram in self._durations]
        cache_repeats = 0
        for key, count in self._replies.items():
            tcp = key & 1
            kind = ("tcp" if tcp else "udp", key >> 7, key >> 3 & 0x0F)
            replies[kind] = replies.get(kind, 0) + count
            how = key & _HOW
            if how != _DEFERRED:
                durations[tcp].counts[0] += count
            if how == _MEMO_CACHE:
                cache_repeats += count
        return ReplyCounts(replies, {"udp": durations[0], "tcp": durations[1]}, cache_repeats)

    def __repr__(self) -> str:
        s = self.statistics()
        return (
            f"<Server {self.addresses} udp={s.udp_queries} tcp={s.tcp_queries} "
            f"inflight={s.inflight} connections={s.tcp_connections}>"
        )

    # ----------------------------------------------------------------- answering

    def _allowed_client(self, host: str) -> bool:
        known = self._allow_memo.get(host)
        if known is not None:
            return known
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        # An IPv4 client of a dual-stack socket arrives as ::ffff:a.b.c.d.
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        allowed = any(address in network for network in self._allowed)
        if len(self._allow_memo) >= 4096:  # bounded: a spray of sources cannot grow it
            self._allow_memo.clear()
        self._allow_memo[host] = allowed
        return allowed

    def _triage(self, query: bytes, client_host: str) -> bytes | Parsed | None:
        """A reply made at once (an error, ANY), None to drop the query, or the parsed query
        to hand to the engine."""
        try:
            sorted_ = triage(query, lambda: self._allowed_client(client_host))
        except (WireError, ValueError, IndexError):
            log.debug("malformed query from %s", client_host, exc_info=True)
            return self._formerr(query)
        if isinstance(sorted_, Local):
            self._counts[sorted_.outcome] += 1
            if sorted_.outcome == "denied" and not self._refuse_outsiders:
                return None
            return sorted_.reply
        return sorted_

    def _ask(self, parsed: Parsed, now: float) -> tuple[Ask, float]:
        question = parsed.question
        ask = Ask.of(question.name, question.qtype, question.qclass, parsed.do, parsed.cd)
        return ask, now + self.answerer.query_timeout

    def _reply(
        self, query: bytes, parsed: Parsed, outcome: Outcome, tcp: bool, asked: float | None
    ) -> bytes:
        """The engine's outcome made this client's reply, or SERVFAIL when there is none or it
        cannot be relayed; counted, and timed from ``asked`` (``perf_counter`` when the engine
        was asked; None: made at once)."""
        reply: bytes | None = None
        if outcome.reply is not None:
            try:
                reply = for_client(outcome.reply, query, parsed, outcome.ede)
            except WireError:
                pass
            else:
                self._counts["answered"] += 1
                reply, truncated = fit(reply, parsed.edns, tcp)
                if truncated:
                    self._counts["truncated"] += 1
        if reply is None:
            self._counts["servfail"] += 1
            reply = servfail(query, parsed, outcome.ede)
        # _count_key written out: this is every resolved query's path.
        qtype = parsed.question.qtype
        key = (qtype << 7 if qtype in COUNTED_TYPES else 0) | (reply[3] & 0x0F) << 3 | tcp
        if asked is None:
            key |= _AT_ONCE
        else:
            self._durations[tcp].observe(perf_counter() - asked)
        self._replies[key] += 1
        return reply

    def _count_made_here(self, query: bytes, reply: bytes, tcp: bool) -> None:
        """Count a reply the server made itself (REFUSED, FORMERR, NOTIMP...)."""
        try:
            qtype = read_question(query).qtype
        except WireError:
            qtype = 0
        self._replies[_count_key(qtype, reply, tcp, _AT_ONCE)] += 1

    def _formerr(self, query: bytes) -> bytes | None:
        self._counts["formerr"] += 1
        try:
            return error_reply(query, FORMERR)
        except WireError:
            return None

    def _settled(self) -> None:
        self._inflight -= 1
        if self._drained is not None and not self._inflight:
            self._drained.set()
        if self._room is not None:  # TCP connections wait for room under max_inflight
            self._room.set()
            self._room = None

    # ----------------------------------------------------------------- UDP

    def datagram(
        self, transport: asyncio.DatagramTransport, query: bytes, addr: tuple[str, int]
    ) -> None:
        """One UDP query (not a remembered repeat, which the listener answers itself):
        answered at once, or by callback when the engine has the answer."""
        if self._closed:  # draining for shutdown: answer what is in flight, nothing new
            self._counts["dropped"] += 1
            return
        self._counts["udp"] += 1
        query_log = self.query_log
        started = self._now()
        first = self._triage(query, addr[0])
        if first is None:
            return
        if isinstance(first, bytes):
            transport.sendto(first, addr)
            self._count_made_here(query, first, False)
            if query_log is not None:
                self._log_made_here(query_log, addr, "udp", query, first, started)
            return
        if self._inflight >= self.config.max_inflight:
            self._counts["dropped"] += 1
            return
        parsed = first

        def done(outcome: Outcome) -> None:
            self._settled()
            if outcome.reply is None and outcome.policy is not None:
                self._counts["dropped"] += 1  # the response policy's DROP
            elif not transport.is_closing():
                reply = self._reply(query, parsed, outcome, False, asked)
                transport.sendto(reply, addr)
                if query_log is not None:
                    self._log(query_log, addr, "udp", parsed, reply, started, outcome, False)

        ask, deadline = self._ask(parsed, started)
        asked = perf_counter()  # before: ``done`` may be called before ``answer`` returns
        self._inflight += 1
        outcome = self.answerer.answer(ask, deadline, done, Client(addr[0], False))
        if outcome is None:
            return
        self._inflight -= 1
        if outcome.reply is None and outcome.policy is not None:
            self._counts["dropped"] += 1  # the response policy's DROP
            return
        reply = self._reply(query, parsed, outcome, False, None)
        if query_log is not None:
            # Every query reaches this path, none the listener's memo: each one is logged.
            self._log(query_log, addr, "udp", parsed, reply, started, outcome, True)
        elif outcome.until:
            self._remember(query, parsed, reply, outcome)
        transport.sendto(reply, addr)

    def _now(self) -> float:
        return (self._loop or asyncio.get_running_loop()).time()

    def _log(
        self,
        query_log: QueryLog,
        client: tuple[str, int],
        transport: str,
        parsed: Parsed,
        reply: bytes,
        started: float,
        outcome: Outcome,
        at_once: bool,
    ) -> None:
        hit = outcome.policy
        if hit is not None:
            question = parsed.question
            rcode = reply[3] & 0x0F if len(reply) > 3 else SERVFAIL
            query_log.record(
                client,
                transport,
                question.name,
                question.qtype,
                rcode,
                self._now() - started,
                "policy",
                (hit.source, hit.rule.text) if hit.log else None,
            )
            return
        if outcome.ede == EDE_STALE_ANSWER:
            source = "stale"
        elif not at_once:
            source = "upstream"
        elif outcome.reply is not None and outcome.reply[2] & (AA >> 8):
            source = "local"  # only our own answers carry AA (see Outcome)
        else:
            source = "cache"
        question = parsed.question
        rcode = reply[3] & 0x0F if len(reply) > 3 else SERVFAIL
        duration = self._now() - started
        query_log.record(client, transport, question.name, question.qtype, rcode, duration, source)

    def _log_made_here(
        self,
        query_log: QueryLog,
        client: tuple[str, int],
        transport: str,
        query: bytes,
        reply: bytes,
        started: float,
    ) -> None:
        """A reply the server made itself (REFUSED, FORMERR, NOTIMP...)."""
        try:
            question = read_question(query)
            name, qtype = question.name, question.qtype
        except WireError:
            name, qtype = b"\x00", 0
        rcode = reply[3] & 0x0F if len(reply) > 3 else SERVFAIL
        query_log.record(client, transport, name, qtype, rcode, self._now() - started, "server")

    def _remember(self, query: bytes, parsed: Parsed, reply: bytes, outcome: Outcome) -> None:
        """Keep a finished UDP reply to a cache hit (or a local answer) for as long as it stays
        byte-identical. The key is the query without its ID (flags, question with its case,
        EDNS settings: everything the reply depends on), so a repeat costs one dict lookup."""
        memo = self._memo
        if len(memo) >= _MEMO_MAX:
            memo.clear()  # bounded; entries live at most a second anyway
        local = outcome.reply is not None and outcome.reply[2] & (AA >> 8)
        how = _MEMO_LOCAL if local else _MEMO_CACHE
        memo[query[2:]] = (
            reply[2:],
            outcome.until,
            _count_key(parsed.question.qtype, reply, False, how),
        )

    def _remembered(
        self, query: bytes, found: tuple[bytes, float, int], client_host: str
    ) -> bytes | None:
        """``found``, the memo's entry for this query, as this client's reply, if it still
        holds, the client is allowed and the server is not shutting down."""
        if found[1] <= self._clock():
            self._memo.pop(query[2:], None)
            return None
        if self._closed or not self._allowed_client(client_host):
            return None
        self._replies[found[2]] += 1
        return query[:2] + found[0]

    # ----------------------------------------------------------------- TCP

    async def _tcp_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """One client's TCP connection: length-prefixed queries, each answered as its answer
        is ready (pipelined, in any order); closed after the idle timeout, at EOF, or at
        shutdown.

        The connection is read only while it has fewer than ``max_tcp_outstanding`` queries
        in flight, the server fewer than ``max_inflight``, and its unsent replies fit under
        the write buffer's high-water mark; replies left unread for ``tcp_write_timeout``
        close it. At the connection cap, the connection that sent a whole query longest ago
        (and has none in flight) is closed to make room; with more than half the cap in use,
        connections wait at most ``tcp_busy_idle_timeout`` for their next query."""
        peername = writer.get_extra_info("peername")
        peer: tuple[str, int] = (peername[0], peername[1]) if peername else ("", 0)
        host = peer[0]
        if not self._allowed_client(host):
            self._counts["denied"] += 1
            writer.transport.abort()  # not a byte read: nothing it sends is looked at
            return
        if self._closed or (
            len(self._clients) >= self.config.max_tcp_connections and not self._evict_idlest()
        ):
            self._counts["dropped"] += 1
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        loop = self._loop or asyncio.get_running_loop()
        client = _TcpClient(writer, loop.time())
        self._connection_tasks.add(task)
        self._clients[writer] = client
        writer.transport.set_write_buffer_limits(high=_TCP_WRITE_HIGH)
        self._pressure_changed()
        try:
            while not self._closed and await self._tcp_room(client):
                client.reading_since = loop.time()
                try:
                    async with asyncio.timeout(self._idle_timeout()) as client.read_timeout:
                        size = int.from_bytes(await reader.readexactly(2), "big")
                        query = await reader.readexactly(size)
                except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                    break
                finally:
                    client.read_timeout = None
                # Most recently active last: the first without queries in flight is the idlest.
                del self._clients[writer]
                self._clients[writer] = client
                self._counts["tcp"] += 1
                self._tcp_query(client, query, peer)
            if client.outstanding and not writer.is_closing():
                await asyncio.wait(client.outstanding, timeout=self.config.shutdown_grace)
        finally:
            if self._clients.get(writer) is client:
                del self._clients[writer]
                self._pressure_changed()
            self._connection_tasks.discard(task)
            writer.close()

    async def _tcp_room(self, client: _TcpClient) -> bool:
        """Wait until ``client`` may send one more query; False when its connection is to be
        closed (its replies stayed unread, or it is gone)."""
        writer = client.writer
        while True:
            if writer.transport.get_write_buffer_size() > _TCP_WRITE_HIGH:
                try:
                    async with asyncio.timeout(self.config.tcp_write_timeout):
                        await writer.drain()
                except TimeoutError:
                    self._counts["tcp_stalled"] += 1
                    writer.transport.abort()
                    return False
                except ConnectionError:
                    return False
            elif len(client.outstanding) >= self.config.max_tcp_outstanding:
                await asyncio.wait(set(client.outstanding), return_when=asyncio.FIRST_COMPLETED)
            elif self._inflight >= self.config.max_inflight:
                if self._room is None:
                    self._room = asyncio.Event()
                await self._room.wait()
            else:
                return not writer.is_closing()

    def _busy(self) -> bool:
        return len(self._clients) * 2 > self.config.max_tcp_connections

    def _idle_timeout(self) -> float:
        if self._busy():
            return min(self.config.tcp_idle_timeout, self.config.tcp_busy_idle_timeout)
        return self.config.tcp_idle_timeout

    def _pressure_changed(self) -> None:
        """After a connection came or went. Reads begun under pressure get the short timeout
        anyway; when pressure begins, those begun before it are cut short once."""
        busy = self._busy()
        if busy and not self._pressed:
            self._shorten_idle_timeouts()
        self._pressed = busy

    def _shorten_idle_timeouts(self) -> None:
        """Every connection waiting for its next query waits no longer than the busy timeout
        from when it began to wait."""
        busy = self._idle_timeout()
        for client in self._clients.values():
            timeout = client.read_timeout
            if timeout is None:
                continue
            when = timeout.when()
            limit = client.reading_since + busy
            if when is None or when > limit:
                timeout.reschedule(limit)

    def _evict_idlest(self) -> bool:
        """Close the connection that sent a whole query longest ago (or never) and has none in
        flight; False if every connection has queries in flight."""
        for writer, client in self._clients.items():
            if not client.outstanding:
                del self._clients[writer]
                self._counts["tcp_evicted"] += 1
                writer.transport.abort()
                return True
        return False

    def _tcp_query(self, client: _TcpClient, query: bytes, peer: tuple[str, int]) -> None:
        writer = client.writer
        query_log = self.query_log
        started = self._now()

        def send(reply: bytes | None) -> None:
            if reply is not None and not writer.is_closing():
                # One write call per frame: frames of concurrent answers never interleave.
                writer.write(len(reply).to_bytes(2, "big") + reply)

        first = self._triage(query, peer[0])
        if not isinstance(first, Parsed):
            send(first)
            if first is not None:
                self._count_made_here(query, first, True)
                if query_log is not None:
                    self._log_made_here(query_log, peer, "tcp", query, first, started)
            return
        parsed = first
        loop = self._loop or asyncio.get_running_loop()
        finished: asyncio.Future[None] = loop.create_future()
        outstanding = client.outstanding
        outstanding.add(finished)

        def done(outcome: Outcome, at_once: bool = False) -> None:
            self._settled()
            outstanding.discard(finished)
            finished.set_result(None)
            if outcome.reply is None and outcome.policy is not None:
                self._counts["dropped"] += 1  # the response policy's DROP
                return
            reply = self._reply(query, parsed, outcome, True, None if at_once else asked)
            send(reply)
            if query_log is not None:
                self._log(query_log, peer, "tcp", parsed, reply, started, outcome, at_once)

        ask, deadline = self._ask(parsed, started)
        asked = perf_counter()
        self._inflight += 1
        outcome = self.answerer.answer(ask, deadline, done, Client(peer[0], True))
        if outcome is not None:
            done(outcome, True)


class _TcpClient:
    """One TCP connection's state: its queries in flight, and since when and until when it
    waits for its next query (the timeout pressure may shorten)."""

    __slots__ = ("outstanding", "read_timeout", "reading_since", "writer")

    def __init__(self, writer: asyncio.StreamWriter, now: float) -> None:
        self.writer = writer
        self.outstanding: set[asyncio.Future[None]] = set()
        self.reading_since = now
        self.read_timeout: asyncio.Timeout | None = None


class _UdpListener(asyncio.DatagramProtocol):
    """The UDP socket of one listen address; each datagram is one query for the server."""

    def __init__(self, server: Server) -> None:
        self._server = server
        # The server's own dict of remembered replies (it is cleared, never replaced).
        self._memo = server._memo
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport does not subclass asyncio.DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        transport = self._transport
        assert transport is not None
        # The hottest path: a repeat of a recent cache hit is one dict lookup and one send.
        found = self._memo.get(data[2:])
        if found is not None:
            reply = self._server._remembered(data, found, addr[0])
            if reply is not None:
                transport.sendto(reply, addr)
                return
        self._server.datagram(transport, data, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for replies to clients that went away: nothing to do, keep serving.
        log.debug("UDP listener error: %s", exc)
