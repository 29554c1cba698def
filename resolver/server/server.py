"""The :class:`Server`: UDP and TCP listeners in front of the engine, graceful shutdown.

Nothing a client sends can crash the server: a datagram shorter than a header or with QR set is
dropped; a client outside the allowed networks gets REFUSED (or nothing, as configured) before
anything else is looked at, and its TCP connections are closed unread; a malformed query gets
FORMERR, an unsupported opcode NOTIMP. Every other query goes to the engine
(``Engine.answer``) under one deadline set here, over UDP and TCP alike; the server counts what
is in flight and drains it on shutdown. UDP queries and TCP (TLS, HTTPS) connections alike
run on callbacks (a protocol per socket, no task per connection). Who may ask is
:mod:`.access`'s to say, which TCP connections stay open :mod:`.connections`'s; the sockets
come from :mod:`.listeners`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import ClassVar, Protocol, cast

from resolver.cache import (
    RENDERED_DATAGRAM,
    RENDERED_PADDED,
    RENDERED_STREAM,
    Cache,
    Rendered,
)
from resolver.config import Address, PeerAddress, ServerConfig
from resolver.engine import EDE_STALE_ANSWER, Ask, Client, Outcome
from resolver.errors import WireError
from resolver.histogram import Histogram
from resolver.querylog import QueryLog
from resolver.server.access import AccessControl
from resolver.server.connections import TCP_WRITE_HIGH, Connections
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
    ``cache_repeats``: queries (UDP, TCP, TLS, HTTPS) answered as repeats of a cached
    answer's rendered reply (``Cache.repeat``), which never reach the engine (the cache's hits
    do not count them)."""

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
        self._connections = Connections(config)
        # Stream connections not read until the server has fewer than max_inflight queries
        # in flight.
        self._room_waiters: list[_StreamConnection] = []
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
        self._connections.reconfigure(config)
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
        assert self._loop is not None
        # The handshake comes before the connection's checks (as in Unbound, whose access
        # control applies to the queries): the protocol is made when it is done.
        server = await self._loop.create_server(
            lambda: _StreamConnection(self, kind),
            sock=sock,
            ssl=context,
            ssl_handshake_timeout=config.tcp_idle_timeout,
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
                server = await self._loop.create_server(
                    lambda: _StreamConnection(self, "tcp"), sock=listener.tcp
                )
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

        New TCP connections are refused and new UDP queries dropped at once, and open TCP
        connections are read no more (those without queries in flight close); queries in
        flight get their answers (up to ``shutdown_grace`` seconds); then the UDP sockets close
        (they stay open until then so those answers can still be sent from the port the
        clients asked) and the TCP connections left are closed.
        """
        if self._closing is None:
            self._closed = True
            self._stop.set()
            for listener in self._given:  # never served: a start that did not come
                listener.close()
            self._given.clear()
            for server in self._tcp:
                server.close()
            self._connections.end_all()
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
        for server in self._tcp:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), timeout=1.0)

    def statistics(self) -> ServerStatistics:
        c = self._counts
        # Repeats are counted among the replies only; a stream's query is counted in "tcp"
        # too, as it is read, a datagram's not.
        remembered = udp_remembered = 0
        for key, n in self._replies.items():
            if key & _HOW >= _REPEAT_LOCAL:
                remembered += n
                if not key & 1:
                    udp_remembered += n
        return ServerStatistics(
            udp_queries=c["udp"] + udp_remembered,
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
        waiters = self._room_waiters
        if waiters and self._inflight < self.config.max_inflight:
            self._room_waiters = []
            for connection in waiters:
                connection.unpause(_ROOM)

    def repeat(
        self,
        query: bytes,
        client: PeerAddress,
        transport: str = "udp",
        kind: int = RENDERED_DATAGRAM,
    ) -> bytes | None:
        """The reply to a ``query`` that exactly repeats (but for its ID) one answered at once
        a moment ago over a transport of the same ``kind`` (``RENDERED_DATAGRAM`` for UDP,
        ``RENDERED_STREAM`` for TCP, ``RENDERED_PADDED`` for TLS and HTTPS), from the reply
        the cache keeps rendered, if it still holds, the client is allowed and the server is
        not shutting down; else None (``datagram`` or ``_stream_query`` then handles the
        query). Counted and logged (as ``transport``) as the reply it repeats."""
        cache = self._cache
        if cache is None:
            return None
        rendered = cache.repeat(query[2:], self._clock(), kind)
        if rendered is None or self._closed or not self._access.allows(client[0]):
            return None
        tag = rendered.tag
        self._replies[tag] += 1
        query_log = self.query_log
        if query_log is not None:
            source = "local" if tag & _HOW == _REPEAT_LOCAL else "cache"
            rcode = tag >> 3 & 0x0F
            query_log.record(client, transport, rendered.name, rendered.qtype, rcode, 0.0, source)
        return query[:2] + rendered.reply_tail

    # ----------------------------------------------------------------- UDP

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
        self,
        query: bytes,
        parsed: Parsed,
        reply: bytes,
        outcome: Outcome,
        cache: Cache,
        kind: int = RENDERED_DATAGRAM,
    ) -> None:
        """Keep a finished reply to a cache hit (or a local answer), exactly as it was sent
        (padded on TLS and HTTPS), in the cache among those of its ``kind`` for as long as it
        stays byte-identical (``outcome.until``, which the cache gives from an answer's second
        hit within a second: see ``CacheHit.until``). The key is the query without its ID
        (flags, question with its case, EDNS settings: everything the reply depends on but the
        transport, which picks the kind), so a repeat costs one lookup."""
        local = outcome.reply is not None and outcome.reply[2] & (AA >> 8)
        question = parsed.question
        how = _REPEAT_LOCAL if local else _REPEAT_CACHE
        tag = _count_key(question.qtype, reply, kind != RENDERED_DATAGRAM, how)
        cache.render(
            query[2:], Rendered(reply[2:], outcome.until, question.name, question.qtype, tag), kind
        )

    # ----------------------------------------------------------------- TCP, TLS, HTTPS

    def _stream_query(
        self, query: bytes, connection: _StreamConnection, send: Callable[[bytes | None], None]
    ) -> None:
        """One query read from a connection (TCP, TLS or HTTPS): an exact repeat of one
        answered at once a moment ago is answered from its rendered reply (``repeat``); any
        other is triaged, answered, logged; its reply (None: none) goes to ``send``, padded on
        encrypted transports; the connection counts it among its queries in flight until it
        is answered."""
        peer = connection.peer
        kind = connection.kind
        rendering = connection.rendering
        repeated = self.repeat(query, peer, kind, rendering)
        if repeated is not None:
            send(repeated)
            return
        query_log = self.query_log
        started = self._now()
        padded = connection.padded
        first = self._triage(query, peer[0])
        if not isinstance(first, Parsed):
            send(pad(first, RESPONSE_BLOCK) if padded and first is not None else first)
            if first is not None:
                self._count_made_here(query, first, True)
                if query_log is not None:
                    self._log_made_here(query_log, peer, kind, query, first, started)
            return
        parsed = first

        def done(outcome: Outcome) -> None:
            self._settled()
            if outcome.reply is None and outcome.policy is not None:
                self._counts["dropped"] += 1  # the response policy's DROP
            else:
                reply = self._reply(query, parsed, outcome, True, asked)
                send(pad(reply, RESPONSE_BLOCK) if padded else reply)
                if query_log is not None:
                    self._log(query_log, peer, kind, parsed, reply, started, outcome, False)
            connection.settled()

        ask, deadline = self._ask(parsed, started)
        asked = perf_counter()  # before: ``done`` may be called before ``answer`` returns
        self._inflight += 1
        connection.outstanding += 1
        outcome = self.answerer.answer(ask, deadline, done, Client(peer[0], True))
        if outcome is None:
            if connection.outstanding >= self.config.max_tcp_outstanding:
                connection.pause(_FULL)
            return
        self._inflight -= 1
        connection.outstanding -= 1
        if outcome.reply is None and outcome.policy is not None:
            self._counts["dropped"] += 1  # the response policy's DROP
            return
        reply = self._reply(query, parsed, outcome, True, None)
        sent = pad(reply, RESPONSE_BLOCK) if padded else reply
        send(sent)
        if query_log is not None:
            self._log(query_log, peer, kind, parsed, reply, started, outcome, True)
        if outcome.until and self._cache is not None:
            self._render(query, parsed, sent, outcome, self._cache, rendering)


# Why a stream connection is not read (bits of _StreamConnection.paused): its queries in flight
# are at max_tcp_outstanding; the server's at max_inflight; its unsent replies are above the
# high-water mark; it is at its end (EOF, idle, shutdown: it reads no more).
_FULL = 1
_ROOM = 2
_WRITE = 4
_END = 8


class _StreamConnection(asyncio.Protocol):
    """One client's TCP connection (``kind`` "tcp"), DNS over TLS ("tls") or DNS over HTTPS
    ("https"), on callbacks: length-prefixed queries parsed from what arrives (HTTP requests:
    see :mod:`.https`), each answered as its answer is ready (pipelined, in any order).

    Made when the connection is accepted (after the TLS handshake, within the idle timeout):
    a client outside the allowed networks is aborted unread; at the connection cap the
    connection that sent a whole query longest ago (and has none in flight) is closed to make
    room, else this one. It is not read while it has ``max_tcp_outstanding`` queries in
    flight, the server ``max_inflight``, or its unsent replies are above the write buffer's
    high-water mark; replies left unread for ``tcp_write_timeout`` close it. It waits its
    idle timeout (shorter under pressure: see :mod:`.connections`) for each next query, on
    one timer that is not moved per query: when it fires, the wait is measured again from the
    last whole query. At EOF, idle time out or shutdown it reads no more and closes once its
    queries in flight are answered, or after ``shutdown_grace``. Over TCP and TLS, replies are
    framed and written together at the end of the read that made them (or of the loop's
    turn): one write, one TLS record; an HTTPS session writes each reply on its own (dnsperf's
    DoH client loses replies that share a record: see benchmarks/README.md). On TLS and HTTPS
    replies are padded to RFC 8467's 468-byte blocks.
    """

    def __init__(self, server: Server, kind: str) -> None:
        self._server = server
        self.kind = kind
        self.padded = kind != "tcp"
        # Where its rendered replies are kept in the cache (Server.repeat): TCP's unpadded
        # apart from the padded ones of TLS and HTTPS (the same query gets the same bytes on
        # those two).
        self.rendering = RENDERED_STREAM if kind == "tcp" else RENDERED_PADDED
        self.peer: tuple[str, int] = ("", 0)
        self.outstanding = 0
        self.paused = 0  # why it is not read: _FULL, _ROOM, _WRITE, _END
        self.idle_since = 0.0  # when it began to wait for its next query
        self._transport: asyncio.Transport | None = None
        self._loop = server._loop or asyncio.get_running_loop()
        self._buffer = bytearray()  # what arrived and is not read yet (part of a query)
        self._unsent: list[bytes] = []  # replies framed, written at the end of the read or turn
        self._unsent_size = 0
        self._reading = False  # in data_received: its replies are written at its end
        self._idle_timer: asyncio.TimerHandle | None = None
        self._idle_from = 0.0  # the idle_since that the idle timer measures from
        self._write_timer: asyncio.TimerHandle | None = None
        self._end_timer: asyncio.TimerHandle | None = None
        self._resuming = False
        self._session: HttpsSession | None = None

    # ----------------------------------------------------------------- opening and closing

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream = cast(asyncio.Transport, transport)
        self._transport = stream
        server = self._server
        peername = stream.get_extra_info("peername")
        self.peer = (peername[0], peername[1]) if peername else ("", 0)
        counts = server._counts
        if not server._access.allows(self.peer[0]):
            counts["denied"] += 1
            stream.abort()  # not a byte read: nothing it sends is looked at
            return
        connections = server._connections
        # At the cap, the idlest connection makes room (see resolver.server.connections).
        if not server._closed and connections.full() and connections.evict_idlest():
            counts["tcp_evicted"] += 1
        elif server._closed or connections.full():
            counts["dropped"] += 1
            stream.close()
            return
        connections.add(self)
        counts["accepted_" + self.kind] += 1
        stream.set_write_buffer_limits(high=TCP_WRITE_HIGH)
        if self.kind == "https":
            self._session = HttpsSession(
                self._request, self._write, max_streams=server.config.max_tcp_outstanding
            )
        self.idle_since = self._loop.time()
        self._arm_idle(connections.idle_timeout())

    def connection_lost(self, exc: Exception | None) -> None:
        self._server._connections.remove(self)
        self.paused |= _END
        self._buffer.clear()
        self._unsent.clear()
        for timer in (self._idle_timer, self._write_timer, self._end_timer):
            if timer is not None:
                timer.cancel()
        self._idle_timer = self._write_timer = self._end_timer = None

    def eof_received(self) -> bool:
        self.end()
        # Plain TCP stays open for the replies still to come; over TLS the transport closes
        # anyway (and says so if asked to stay open).
        return self.kind == "tcp" and self.outstanding > 0

    def end(self) -> None:
        """Read no more; close once the queries in flight are answered (or after
        ``shutdown_grace``)."""
        if self.paused & _END:
            return
        self.pause(_END)
        self._buffer.clear()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if not self.outstanding:
            self.close()
        else:
            self._end_timer = self._loop.call_later(self._server.config.shutdown_grace, self.close)

    def close(self) -> None:
        """Close after the replies framed this turn (and, on HTTPS, a GOAWAY)."""
        transport = self._transport
        self._server._connections.remove(self)
        self.paused |= _END
        if transport is None or transport.is_closing():
            return
        self.flush()
        if self._session is not None:
            self._session.close()
        transport.close()

    def abort(self) -> None:
        """Close now, unsent replies dropped (an eviction, a stalled reader)."""
        self.paused |= _END
        if self._transport is not None:
            self._transport.abort()

    def settled(self) -> None:
        """One of its queries in flight was answered (its reply sent)."""
        self.outstanding -= 1
        if self.paused & _END:
            if not self.outstanding:
                self.close()
        elif self.paused & _FULL:
            self.unpause(_FULL)

    # ----------------------------------------------------------------- reading

    def data_received(self, data: bytes) -> None:
        if self.paused & _END:
            return  # nothing more is read
        buffer = self._buffer
        if self._session is not None:
            if self.paused:
                buffer += data
                return
            self.idle_since = self._loop.time()
            self._feed(data)
            return
        if buffer:
            buffer += data
            if self.paused or len(buffer) < 2 or len(buffer) < 2 + (buffer[0] << 8 | buffer[1]):
                return
            data = bytes(buffer)
            buffer.clear()
        elif self.paused:
            buffer += data
            return
        self._frames(data)

    def _frames(self, data: bytes) -> None:
        """Every whole query in ``data`` (while the connection may be read); the rest is kept
        for the next read."""
        server = self._server
        counts = server._counts
        tls = self.kind == "tls"
        limit = server.config.max_inflight
        send = self._send
        end = len(data)
        start = 0
        self._reading = True
        try:
            while end - start >= 2 and not self.paused:
                if server._inflight >= limit:
                    self.pause(_ROOM)
                    server._room_waiters.append(self)
                    break
                stop = start + 2 + (data[start] << 8 | data[start + 1])
                if stop > end:
                    break
                query = data[start + 2 : stop]
                start = stop
                counts["tcp"] += 1
                if tls:
                    counts["tls"] += 1
                server._connections.active(self)
                server._stream_query(query, self, send)
        finally:
            self._reading = False
        if start:
            self.idle_since = self._loop.time()
        if start < end and not self.paused & _END:
            self._buffer += memoryview(data)[start:]
        if self._unsent:
            self.flush()

    def _feed(self, data: bytes) -> None:
        """Give what an HTTPS connection sent to its HTTP session; its end when the session
        says so (an HTTP/1.1 client's close, a protocol error, a GOAWAY)."""
        session = self._session
        assert session is not None
        if not session.receive(data):
            self.end()

    def _request(self, message: bytes, reply: Reply) -> None:
        """One DNS message an HTTPS request carried, and where its reply goes."""
        server = self._server
        counts = server._counts
        counts["tcp"] += 1
        counts["https"] += 1
        server._connections.active(self)
        session = self._session
        assert session is not None

        def send(answer: bytes | None) -> None:
            reply(answer)
            if session.closed:  # an HTTP/1.1 client that asked to close after this reply
                self.end()

        if server._inflight >= server.config.max_inflight and not self.paused & _ROOM:
            self.pause(_ROOM)
            server._room_waiters.append(self)
        server._stream_query(message, self, send)

    # ----------------------------------------------------------------- flow control

    def pause(self, why: int) -> None:
        """Stop reading, for reason ``why`` (until it is lifted: :meth:`unpause`)."""
        if not self.paused and self._transport is not None:
            self._transport.pause_reading()
        self.paused |= why

    def unpause(self, why: int) -> None:
        """Lift reason ``why``; with none left, reading goes on (in a later callback: never
        inside the caller's)."""
        if not self.paused & why:
            return
        self.paused &= ~why
        if not self.paused and not self._resuming:
            self._resuming = True
            self._loop.call_soon(self._resume)

    def _resume(self) -> None:
        self._resuming = False
        transport = self._transport
        if self.paused or transport is None or transport.is_closing():
            return
        transport.resume_reading()
        self.idle_since = self._loop.time()
        if self._idle_timer is None:
            self._arm_idle(self._server._connections.idle_timeout())
        buffer = self._buffer
        if buffer:
            data = bytes(buffer)
            buffer.clear()
            if self._session is not None:
                self._feed(data)
            else:
                self._frames(data)

    def pause_writing(self) -> None:
        self.pause(_WRITE)
        if self._write_timer is None:
            self._write_timer = self._loop.call_later(
                self._server.config.tcp_write_timeout, self._stalled
            )

    def resume_writing(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        self.unpause(_WRITE)

    def _stalled(self) -> None:
        """Its replies stayed unread for ``tcp_write_timeout``."""
        self._write_timer = None
        self._server._counts["tcp_stalled"] += 1
        self._server._connections.remove(self)
        self.abort()

    # ----------------------------------------------------------------- idle time

    def _arm_idle(self, limit: float) -> None:
        self._idle_from = self.idle_since
        self._idle_timer = self._loop.call_at(self.idle_since + limit, self._idle)

    def _idle(self) -> None:
        """The idle timer fired: the end, if no whole query came since it was set (and the
        connection is read); else wait again, for what is left of the wait since the last."""
        self._idle_timer = None
        if self.paused:
            return  # armed again when reading goes on
        since = self.idle_since
        if since != self._idle_from:
            limit = self._server._connections.idle_timeout()
            if since + limit > self._loop.time():
                self._arm_idle(limit)
                return
        self.end()

    def shorten_idle(self, limit: float) -> None:
        timer = self._idle_timer
        if timer is None:
            return
        deadline = self.idle_since + limit
        if timer.when() > deadline:
            timer.cancel()
            self._arm_idle(limit)

    # ----------------------------------------------------------------- writing

    def _send(self, reply: bytes | None) -> None:
        """Frame ``reply`` (a DNS message; None: nothing) to be written with the others of
        this read or turn: frames of concurrent answers never interleave."""
        if reply is None:
            return
        unsent = self._unsent
        if not unsent and not self._reading:
            self._loop.call_soon(self.flush)
        unsent.append(len(reply).to_bytes(2, "big") + reply)
        self._unsent_size += len(reply) + 2
        if self._unsent_size > TCP_WRITE_HIGH:
            self.flush()

    def flush(self) -> None:
        """Write the replies framed so far, in one write."""
        unsent = self._unsent
        if not unsent:
            return
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(unsent[0] if len(unsent) == 1 else b"".join(unsent))
        unsent.clear()
        self._unsent_size = 0

    def _write(self, data: bytes) -> None:
        """What the HTTPS session writes (each reply on its own: see benchmarks/README.md)."""
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(data)


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
