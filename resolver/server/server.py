"""The :class:`Server`: UDP and TCP listeners in front of the engine, graceful shutdown.

Nothing a client sends can crash the server: a datagram shorter than a header or with QR set is
dropped; a client outside the allowed networks gets REFUSED (or nothing, as configured) before
anything else is looked at, and its TCP connections are closed unread; a malformed query gets
FORMERR, an unsupported opcode NOTIMP. Every other query goes to the engine
(``Engine.answer``) under one deadline set here, over UDP and TCP alike; the server counts what
is in flight and drains it on shutdown. UDP queries run on callbacks, a TCP connection in a
task of its own. Who may ask is :mod:`.access`'s to say, which TCP connections stay open
:mod:`.connections`'s; the sockets come from :mod:`.listeners`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import ClassVar, Protocol, cast

from resolver.cache import Cache, Rendered
from resolver.config import Address, PeerAddress, ServerConfig
from resolver.engine import EDE_STALE_ANSWER, Ask, Client, Outcome
from resolver.errors import WireError
from resolver.histogram import Histogram
from resolver.querylog import QueryLog
from resolver.server.access import AccessControl
from resolver.server.connections import TCP_WRITE_HIGH, Connections, TcpClient
from resolver.server.https import HttpsSession, Reply
from resolver.server.listeners import Listener, bind_listeners
from resolver.transport.tls import server_context
from resolver.triage import Local, Parsed, fit, for_client, servfail, triage
from resolver.wire.message import qtype_value
from resolver.wire.options import RESPONSE_BLOCK, pad
from resolver.wire.raw import AA, FORMERR, SERVFAIL, error_reply, read_question

__all__ = ["COUNTED_TYPES", "Answerer", "ReplyCounts", "Server", "ServerStatistics"]

log = logging.getLogger(__name__)

# Question types whose replies are counted by type; every other type counts as type 0, so that
# clients cannot make a count (and a metrics series) per type number.
_COUNTED_NAMES = """A AAAA CNAME MX NS PTR SOA SRV TXT NAPTR CAA HINFO DNAME LOC SSHFP TLSA SVCB
HTTPS DS DNSKEY RRSIG NSEC NSEC3 NSEC3PARAM CDS CDNSKEY ANY AXFR IXFR"""
COUNTED_TYPES = frozenset(qtype_value(name) for name in _COUNTED_NAMES.split())
# Replies are counted in one dict per server, under one int per kind: bit 0 TCP, bits 1-2 how
# the reply was made, bits 3-6 its rcode, the rest its question type (0 for those not in
# COUNTED_TYPES). How: after waiting for the engine (_DEFERRED, the only ones timed), in the
# callback that read the query (_AT_ONCE), or as a repeat of a reply the cache keeps rendered,
# to a local answer (_REPEAT_LOCAL) or a cached one (_REPEAT_CACHE).
_DEFERRED = 0
_AT_ONCE = 1 << 1
_REPEAT_LOCAL = 2 << 1
_REPEAT_CACHE = 3 << 1
_HOW = 3 << 1


def _count_key(qtype: int, reply: bytes, tcp: bool, how: int) -> int:
    counted = qtype if qtype in COUNTED_TYPES else 0
    return counted << 7 | (reply[3] & 0x0F) << 3 | how | tcp


class Answerer(Protocol):
    """What the server asks for answers: the engine (see ``resolver.engine.Engine``), and its
    cache, where the server keeps finished replies for exact repeats (None: no cache)."""

    @property
    def query_timeout(self) -> float: ...

    @property
    def cache(self) -> Cache | None: ...

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
    tls_queries: int = 0  # DNS over TLS (RFC 7858); counted in tcp_queries too
    https_queries: int = 0  # DNS over HTTPS (RFC 8484); counted in tcp_queries too
    accepted: Mapping[str, int] | None = None  # connections accepted by transport


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
    ``cache_repeats``: UDP queries answered as repeats of a cached answer's rendered reply
    (``Cache.repeat``), which never reach the engine (the cache's hits do not count them)."""

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
        self._access = AccessControl(config.allow, config.outside_allow)
        self._udp: list[asyncio.DatagramTransport] = []
        self._tcp: list[asyncio.Server] = []
        self._connection_tasks: set[asyncio.Task[None]] = set()
        self._connections = Connections(config)
        self._room: asyncio.Event | None = None  # set when a query in flight settles
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
                "tls",
                "https",
                "accepted_tcp",
                "accepted_tls",
                "accepted_https",
            ),
            0,
        )
        # The TLS and HTTPS listeners' contexts, made at start, their certificate and key read
        # again at each reconfigure (SIGHUP).
        self._contexts: dict[str, ssl.SSLContext] = {}
        self.tls_addresses: list[Address] = []
        self.https_addresses: list[Address] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        # Queries handed to the engine and not yet answered, and what shutdown waits on.
        self._inflight = 0
        self._drained: asyncio.Event | None = None
        # Where finished replies are kept for exact repeats (Server.repeat).
        self._cache: Cache | None = answerer.cache
        self._replies: defaultdict[int, int] = defaultdict(int)  # by _count_key
        self._durations = (Histogram(), Histogram())  # deferred replies, over UDP and TCP
        self._clock: Callable[[], float] = answerer.clock()
        # Where each answered query is logged, if anywhere (the daemon sets and replaces it).
        self.query_log: QueryLog | None = None

    # Settings that belong to the bound sockets (and how many sets of them worker processes
    # hold): a reload cannot change them.
    # ClassVar: a class attribute in the compiled build too (else it becomes a per-instance slot).
    RESTART_FIELDS: ClassVar[tuple[str, ...]] = (
        "listen",
        "tcp",
        "udp_receive_buffer",
        "udp_send_buffer",
        "workers",
        "listen_tls",
        "listen_https",
    )

    def reconfigure(self, config: ServerConfig, answerer: Answerer | None = None) -> None:
        """Apply ``config`` to the running listeners (a reload): the allow list and what is
        done outside it, the TCP timeouts and limits, ``max_inflight``, ``shutdown_grace``;
        new queries go to ``answerer`` when given (those in flight finish where they are).
        (The cache forgets its rendered replies when it is reconfigured, so the next answers
        come from the possibly reloaded engine; the allow list is checked for every repeat.)
        The fields in ``RESTART_FIELDS`` must equal the running ones (the
        caller keeps them)."""
        for name in self.RESTART_FIELDS:
            assert getattr(config, name) == getattr(self.config, name), name
        self.config = config
        if answerer is not None:
            self.answerer = answerer
            self._clock = answerer.clock()
            self._cache = answerer.cache
        self._access = AccessControl(config.allow, config.outside_allow)
        self._connections.config = config
        self._connections.pressure_changed()
        self._reload_certificate()

    def _reload_certificate(self) -> None:
        """Read the certificate and key again into the running contexts (new connections get
        them); a pair that cannot be loaded is logged and the running one kept."""
        config = self.config
        for kind, context in self._contexts.items():
            assert config.tls_cert is not None
            assert config.tls_key is not None
            try:
                context.load_cert_chain(str(config.tls_cert), str(config.tls_key))
            except (OSError, ssl.SSLError) as exc:
                log.error(
                    "%s listener keeps its certificate: cannot load the new one: %s", kind, exc
                )

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Serve on the listeners given to the constructor (a worker's, bound by its parent),
        or else bind UDP (and TCP unless disabled) on every listen address and TCP on every
        TLS and HTTPS one (see :func:`bind_listeners`). Raises ConfigError for a certificate or
        key that cannot be loaded, OSError; every listening socket is closed then."""
        self._loop = asyncio.get_running_loop()
        listeners, self._given = self._given, []
        if not listeners:
            listeners = bind_listeners(self.config)
        served = 0
        try:
            for listener in listeners:
                if listener.kind == "dns":
                    await self._serve_on(listener)
                else:
                    await self._serve_encrypted(listener)
                served += 1
        except BaseException:
            for listener in listeners[served:]:
                listener.close()
            self._close_listeners()
            raise

    async def _serve_encrypted(self, listener: Listener) -> None:
        """Serve DNS over TLS or HTTPS on ``listener``'s socket, with the kind's context (made
        at its first listener: the certificate and key read then). Raises ConfigError for a
        certificate or key that cannot be loaded, OSError."""
        config = self.config
        kind, sock = listener.kind, listener.tcp
        assert sock is not None
        context = self._contexts.get(kind)
        if context is None:
            assert config.tls_cert is not None
            assert config.tls_key is not None
            alpn = ("dot",) if kind == "tls" else ("h2",)
            context = server_context(config.tls_cert, config.tls_key, alpn=alpn)
            self._contexts[kind] = context
        handler = functools.partial(self._tcp_connection, kind=kind)
        # The handshake comes before the handler (as in Unbound, whose access control applies
        # to the queries): started by hand after the handler's checks, it would race the
        # client's first bytes into the plain reader.
        server = await asyncio.start_server(
            handler, sock=sock, ssl=context, ssl_handshake_timeout=config.tcp_idle_timeout
        )
        self._tcp.append(server)
        (self.tls_addresses if kind == "tls" else self.https_addresses).append(listener.address)

    async def _serve_on(self, listener: Listener) -> None:
        assert self._loop is not None
        assert listener.udp is not None
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
        self.tls_addresses.clear()
        self.https_addresses.clear()

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
        self._connections.close_all()
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
        # UDP queries answered as repeats: counted there only.
        remembered = sum(n for key, n in self._replies.items() if key & _HOW >= _REPEAT_LOCAL)
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
            tcp_connections=len(self._connections),
            tcp_evicted=c["tcp_evicted"],
            tcp_stalled=c["tcp_stalled"],
            tls_queries=c["tls"],
            https_queries=c["https"],
            accepted={
                "tcp": c["accepted_tcp"],
                "tls": c["accepted_tls"],
                "https": c["accepted_https"],
            },
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
            if how == _REPEAT_CACHE:
                cache_repeats += count
        return ReplyCounts(replies, {"udp": durations[0], "tcp": durations[1]}, cache_repeats)

    def __repr__(self) -> str:
        s = self.statistics()
        return (
            f"<Server {self.addresses} udp={s.udp_queries} tcp={s.tcp_queries} "
            f"inflight={s.inflight} connections={s.tcp_connections}>"
        )

    # ----------------------------------------------------------------- answering

    def _triage(self, query: bytes, client_host: str) -> bytes | Parsed | None:
        """A reply made at once (an error, ANY), None to drop the query, or the parsed query
        to hand to the engine."""
        try:
            sorted_ = triage(query, lambda: self._access.allows(client_host))
        except (WireError, ValueError, IndexError):
            log.debug("malformed query from %s", client_host, exc_info=True)
            return self._formerr(query)
        if isinstance(sorted_, Local):
            self._counts[sorted_.outcome] += 1
            if sorted_.outcome == "denied" and not self._access.refuse_outsiders:
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

    def repeat(self, query: bytes, client: PeerAddress) -> bytes | None:
        """The reply to a UDP ``query`` that exactly repeats (but for its ID) one answered at
        once a moment ago, from the reply the cache keeps rendered, if it still holds, the
        client is allowed and the server is not shutting down; else None (``datagram`` then
        handles the query). Counted and logged as the reply it repeats."""
        cache = self._cache
        if cache is None:
            return None
        rendered = cache.repeat(query[2:], self._clock())
        if rendered is None or self._closed or not self._access.allows(client[0]):
            return None
        tag = rendered.tag
        self._replies[tag] += 1
        query_log = self.query_log
        if query_log is not None:
            source = "local" if tag & _HOW == _REPEAT_LOCAL else "cache"
            rcode = tag >> 3 & 0x0F
            query_log.record(client, "udp", rendered.name, rendered.qtype, rcode, 0.0, source)
        return query[:2] + rendered.reply_tail

    def datagram(
        self, transport: asyncio.DatagramTransport, query: bytes, addr: PeerAddress
    ) -> None:
        """One UDP query (not a repeat, which ``repeat`` answers): answered at once, or by
        callback when the engine has the answer."""
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
            self._log(query_log, addr, "udp", parsed, reply, started, outcome, True)
        if outcome.until and self._cache is not None:
            self._render(query, parsed, reply, outcome, self._cache)
        transport.sendto(reply, addr)

    def _now(self) -> float:
        return (self._loop or asyncio.get_running_loop()).time()

    def _log(
        self,
        query_log: QueryLog,
        client: PeerAddress,
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
        client: PeerAddress,
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

    def _render(
        self, query: bytes, parsed: Parsed, reply: bytes, outcome: Outcome, cache: Cache
    ) -> None:
        """Keep a finished UDP reply to a cache hit (or a local answer) in the cache for as
        long as it stays byte-identical (``outcome.until``, which the cache gives from an
        answer's second hit within a second: see ``CacheHit.until``). The key is the query
        without its ID (flags, question with its case, EDNS settings: everything the reply
        depends on), so a repeat costs one lookup."""
        local = outcome.reply is not None and outcome.reply[2] & (AA >> 8)
        question = parsed.question
        tag = _count_key(question.qtype, reply, False, _REPEAT_LOCAL if local else _REPEAT_CACHE)
        cache.render(
            query[2:], Rendered(reply[2:], outcome.until, question.name, question.qtype, tag)
        )

    # ----------------------------------------------------------------- TCP

    async def _tcp_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, kind: str = "tcp"
    ) -> None:
        """One client's TCP connection: length-prefixed queries, each answered as its answer
        is ready (pipelined, in any order); closed after the idle timeout, at EOF, or at
        shutdown. ``kind`` "tls" (DNS over TLS) and "https" (DNS over HTTPS): connections
        whose TLS handshake is done (within the idle timeout), under the same rules (an
        HTTPS connection's queries are HTTP/2 requests; see :mod:`.https`); their replies are
        padded to RFC 8467's 468-byte blocks.

        The connection is read only while it has fewer than ``max_tcp_outstanding`` queries
        in flight, the server fewer than ``max_inflight``, and its unsent replies fit under
        the write buffer's high-water mark; replies left unread for ``tcp_write_timeout``
        close it. At the connection cap, the connection that sent a whole query longest ago
        (and has none in flight) is closed to make room; with more than half the cap in use,
        connections wait at most ``tcp_busy_idle_timeout`` for their next query."""
        peername = writer.get_extra_info("peername")
        peer: tuple[str, int] = (peername[0], peername[1]) if peername else ("", 0)
        host = peer[0]
        if not self._access.allows(host):
            self._counts["denied"] += 1
            writer.transport.abort()  # not a byte read: nothing it sends is looked at
            return
        connections = self._connections
        # At the cap, the idlest connection makes room (see resolver.server.connections).
        if not self._closed and connections.full() and connections.evict_idlest():
            self._counts["tcp_evicted"] += 1
        elif self._closed or connections.full():
            self._counts["dropped"] += 1
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        loop = self._loop or asyncio.get_running_loop()
        client = TcpClient(writer, loop.time())
        self._connection_tasks.add(task)
        connections.add(client)
        self._counts["accepted_" + kind] += 1
        try:
            writer.transport.set_write_buffer_limits(high=TCP_WRITE_HIGH)
            if kind == "https":
                await self._https_session(client, reader, peer)
                return
            while not self._closed and await self._tcp_room(client):
                client.reading_since = loop.time()
                query = await self._tcp_read(reader, client)
                if query is None:
                    break
                connections.active(client)
                self._counts["tcp"] += 1
                if kind == "tls":
                    self._counts["tls"] += 1
                self._tcp_query(client, query, peer, kind)
            if client.outstanding and not writer.is_closing():
                await asyncio.wait(client.outstanding, timeout=self.config.shutdown_grace)
        finally:
            connections.remove(client)
            self._connection_tasks.discard(task)
            client.flush()  # the last replies, framed this turn, go before the close
            writer.close()

    async def _tcp_read(self, reader: asyncio.StreamReader, client: TcpClient) -> bytes | None:
        """The next query of ``client``'s connection (RFC 1035 section 4.2.2: a two-byte length,
        then the message), or None when the connection ends first or its idle time runs out.
        A method of its own: mypyc compiles no ``break`` inside ``try``/``finally``."""
        try:
            async with asyncio.timeout(self._connections.idle_timeout()) as client.read_timeout:
                size = int.from_bytes(await reader.readexactly(2), "big")
                return await reader.readexactly(size)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            return None
        finally:
            client.read_timeout = None

    async def _https_read(self, reader: asyncio.StreamReader, client: TcpClient) -> bytes:
        """What an HTTPS connection sent next, up to 64 KiB; empty when the connection ends
        first or its idle time runs out. Apart, as :meth:`_tcp_read` is, for mypyc."""
        try:
            async with asyncio.timeout(self._connections.idle_timeout()) as client.read_timeout:
                return await reader.read(65536)
        except (TimeoutError, ConnectionError):
            return b""
        finally:
            client.read_timeout = None

    async def _https_session(
        self, client: TcpClient, reader: asyncio.StreamReader, peer: tuple[str, int]
    ) -> None:
        """Feed an HTTPS connection's bytes to its HTTP/2 session while it may send more (as
        :meth:`_tcp_room` says: requests in flight, unread replies, the server's load)."""
        writer = client.writer
        connections = self._connections
        loop = self._loop or asyncio.get_running_loop()

        def handle(message: bytes, reply: Reply) -> None:
            self._counts["tcp"] += 1
            self._counts["https"] += 1
            connections.active(client)
            self._stream_query(message, peer, "https", reply, client.outstanding)

        session = HttpsSession(handle, writer.write, max_streams=self.config.max_tcp_outstanding)
        try:
            while not self._closed and await self._tcp_room(client):
                client.reading_since = loop.time()
                data = await self._https_read(reader, client)
                if not data or not session.receive(data):
                    break
            if client.outstanding and not writer.is_closing():
                await asyncio.wait(client.outstanding, timeout=self.config.shutdown_grace)
        finally:
            if not writer.is_closing():
                session.close()

    async def _tcp_room(self, client: TcpClient) -> bool:
        """Wait until ``client`` may send one more query; False when its connection is to be
        closed (its replies stayed unread, or it is gone)."""
        writer = client.writer
        while True:
            if writer.transport.get_write_buffer_size() > TCP_WRITE_HIGH:
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

    def _tcp_query(
        self, client: TcpClient, query: bytes, peer: tuple[str, int], kind: str = "tcp"
    ) -> None:
        writer = client.writer
        padded = kind != "tcp"

        def send(reply: bytes | None) -> None:
            if reply is not None and not writer.is_closing():
                if padded:
                    reply = pad(reply, RESPONSE_BLOCK)
                # Whole frames, written together at the end of the loop's turn: frames of
                # concurrent answers never interleave.
                client.send(len(reply).to_bytes(2, "big") + reply)

        self._stream_query(query, peer, kind, send, client.outstanding)

    def _stream_query(
        self,
        query: bytes,
        peer: tuple[str, int],
        kind: str,
        send: Callable[[bytes | None], None],
        outstanding: set[asyncio.Future[None]],
    ) -> None:
        """One query read from a connection (``kind``: tcp, tls or https): triaged, answered,
        logged; its reply (None: none) goes to ``send``, padded on encrypted transports;
        ``outstanding`` holds it while it is in flight."""
        query_log = self.query_log
        started = self._now()
        if kind == "https":
            plain_send = send

            def send(reply: bytes | None) -> None:
                plain_send(None if reply is None else pad(reply, RESPONSE_BLOCK))

        first = self._triage(query, peer[0])
        if not isinstance(first, Parsed):
            send(first)
            if first is not None:
                self._count_made_here(query, first, True)
                if query_log is not None:
                    self._log_made_here(query_log, peer, kind, query, first, started)
            return
        parsed = first
        loop = self._loop or asyncio.get_running_loop()
        finished: asyncio.Future[None] = loop.create_future()
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
                self._log(query_log, peer, kind, parsed, reply, started, outcome, at_once)

        ask, deadline = self._ask(parsed, started)
        asked = perf_counter()
        self._inflight += 1
        outcome = self.answerer.answer(ask, deadline, done, Client(peer[0], True))
        if outcome is not None:
            done(outcome, True)


class _UdpListener(asyncio.DatagramProtocol):
    """The UDP socket of one listen address; each datagram is one query for the server."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport does not subclass asyncio.DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: PeerAddress) -> None:
        transport = self._transport
        assert transport is not None
        # The hottest path: a repeat of a recent cache hit is one lookup and one send.
        server = self._server
        reply = server.repeat(data, addr)
        if reply is not None:
            transport.sendto(reply, addr)
            return
        server.datagram(transport, data, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for replies to clients that went away: nothing to do, keep serving.
        log.debug("UDP listener error: %s", exc)
