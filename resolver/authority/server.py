"""The authoritative server's I/O: UDP and TCP listeners on one port, with fault injection.

All answering is `Responder.answer`; this module only moves bytes, records what arrived and
bends the replies as `Faults` asks, so that tests can provoke every failure a resolver meets.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import random
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

from resolver.authority.respond import EDNS_UDP_SIZE, Responder, error_response
from resolver.authority.zone import Zone, load_zone
from resolver.errors import ConfigError, WireError
from resolver.wire import (
    HEADER_SIZE,
    QTYPE,
    REFUSED,
    SERVFAIL,
    qtype_name,
    rcode_name,
    read_header,
    read_question,
    set_id,
    skip_name,
)

__all__ = ["Authority", "Faults", "ReceivedQuery", "serve_authority"]

_BIND_ATTEMPTS = 20  # port 0: tries at finding a UDP port whose TCP twin is free too
_TCP_LENGTH = 2
_RCODE_MASK = 0x0F

_log = logging.getLogger("resolver.authority")


@dataclass(slots=True)
class Faults:
    """Misbehaviour to inject; tests may change the fields while the server runs.

    Each field is read when a query arrives. ``drop`` ignores UDP queries (TCP still answers);
    ``delay`` waits that many seconds before replying; ``wrong_id`` sends the reply with a
    different ID, followed by the correct reply too when ``also_right_id`` is set; ``garbage``
    sends random bytes instead of a reply; ``always_tc`` truncates every UDP answer; ``servfail``
    and ``refuse`` answer every query with that rcode; ``close_tcp`` closes a TCP connection
    once a query arrived on it, without answering; ``other_port`` sends UDP replies from a
    second socket (another source port) so that the client's source matching is exercised;
    ``lowercase`` writes the reply's question name in lowercase, as servers that do not echo
    the case of a 0x20 query do.
    """

    drop: bool = False
    delay: float = 0.0
    wrong_id: bool = False
    also_right_id: bool = False
    garbage: bool = False
    always_tc: bool = False
    servfail: bool = False
    refuse: bool = False
    close_tcp: bool = False
    other_port: bool = False
    lowercase: bool = False


@dataclass(frozen=True, slots=True)
class ReceivedQuery:
    """One query as it arrived: ``qname`` is text with the case as received, ``qtype`` the
    numeric type; both are ``""`` and 0 when the message had no readable question."""

    transport: Literal["udp", "tcp"]
    qname: str
    qtype: int
    client: tuple[str, int]
    id: int

    @property
    def qtype_name(self) -> str:
        """The type as text, e.g. ``"AAAA"``."""
        return str(QTYPE.get(self.qtype))


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, authority: Authority | None) -> None:
        self._authority = authority

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if self._authority is not None:
            self._authority._on_datagram(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for clients that went away: nothing to do, the next query is unrelated.
        pass


class Authority:
    """An authoritative DNS server for ``zones`` on one UDP and TCP port of a loopback address.

    ``queries`` lists every message received, in order. ``faults`` may be replaced or changed
    at any time. Use ``async with Authority(zones) as authority`` or `start` and `aclose`.
    Raises ConfigError on construction if two zones share an origin.
    """

    def __init__(
        self,
        zones: Iterable[Zone],
        *,
        faults: Faults | None = None,
        tcp_idle_timeout: float = 10.0,
    ) -> None:
        self.responder = Responder(zones)
        self.faults = faults if faults is not None else Faults()
        self.queries: list[ReceivedQuery] = []
        self.tcp_idle_timeout = tcp_idle_timeout
        self._address: tuple[str, int] | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._other_udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # delayed UDP replies
        self._connections: set[asyncio.Task[None]] = set()  # one per TCP client
        self._closing = asyncio.Event()
        self._writers: set[asyncio.StreamWriter] = set()
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._closed = False
        self._replies = 0
        self._dropped = 0
        self._tcp_connections = 0

    @classmethod
    def from_files(
        cls, paths: Iterable[str | os.PathLike[str]], *, faults: Faults | None = None
    ) -> Authority:
        """Load every zone file in ``paths``; raises ConfigError as `load_zone` does."""
        return cls([load_zone(path) for path in paths], faults=faults)

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("listening" if self._address else "new")
        stats = " ".join(f"{k}={v}" for k, v in self.statistics().items())
        return f"<Authority {state} {self._address} {stats}>"

    def statistics(self) -> dict[str, int]:
        """Counts of queries by transport, replies sent, UDP queries dropped, TCP connections."""
        udp = sum(1 for q in self.queries if q.transport == "udp")
        return {
            "udp_queries": udp,
            "tcp_queries": len(self.queries) - udp,
            "replies": self._replies,
            "dropped": self._dropped,
            "tcp_connections": self._tcp_connections,
            "open_tcp_connections": len(self._writers),
        }

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) both listeners are bound to; RuntimeError before `start`."""
        if self._address is None:
            raise RuntimeError("the authority has not been started")
        return self._address

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Bind UDP and TCP to ``host``:``port`` and return the address once both listen.

        With port 0 a free UDP port is picked and TCP bound to the same number, retrying with
        another port when TCP finds it taken. Raises OSError if binding fails and
        RuntimeError if the server was already started or closed.
        """
        if self._closed or self._address is not None:
            raise RuntimeError("an Authority can be started once")
        loop = asyncio.get_running_loop()
        # The other port first: once TCP listens a client may be answered, and nothing is
        # awaited from then until the server counts as started (a stop then says so).
        other, _ = await loop.create_datagram_endpoint(lambda: _Udp(None), local_addr=(host, 0))
        try:
            for _ in range(_BIND_ATTEMPTS):
                udp, _ = await loop.create_datagram_endpoint(
                    lambda: _Udp(self), local_addr=(host, port)
                )
                bound = int(udp.get_extra_info("sockname")[1])
                try:
                    self._tcp = await asyncio.start_server(self._serve_tcp, host, bound)
                except OSError as exc:
                    udp.close()
                    if port != 0 or exc.errno != errno.EADDRINUSE:
                        raise
                    continue
                self._udp = udp
                break
            else:
                raise OSError(errno.EADDRINUSE, f"no port free for both UDP and TCP on {host}")
        except BaseException:
            other.close()
            raise
        self._other_udp = other
        self._address = (host, bound)
        zones = ", ".join(f"{z.origin} (serial {z.serial})" for z in self.responder.zones)
        _log.info("authority for %s on %s:%d (udp and tcp)", zones or "no zones", host, bound)
        return self._address

    async def aclose(self) -> None:
        """Stop listening, close TCP connections and cancel pending replies. Idempotent.

        Everything is closed before the first await, so a cancelled aclose still leaves no
        socket open; waiters in `wait_queries` get RuntimeError. A connected TCP client sees
        its connection closed; its handler ends on that, not by cancellation.
        """
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        for transport in (self._udp, self._other_udp):
            if transport is not None:
                transport.close()
        if self._tcp is not None:
            self._tcp.close()
        for writer in self._writers:
            writer.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for _, waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(RuntimeError("the authority was closed"))
        # Connection handlers are not cancelled: asyncio's stream server (3.11) logs a
        # traceback for a handler that ends cancelled. Their reads end at the closed
        # transport and their fault delays at _closing, so they finish on their own.
        await asyncio.gather(*tasks, *self._connections, return_exceptions=True)
        if self._tcp is not None:
            await self._tcp.wait_closed()
        if self._address is not None:
            _log.info(
                "authority on %s:%d stopped after %d queries", *self._address, len(self.queries)
            )

    async def __aenter__(self) -> Authority:
        if self._address is None:
            await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def wait_queries(self, count: int) -> list[ReceivedQuery]:
        """Wait until at least ``count`` queries arrived in total; return them all.

        Waits without limit: wrap it in ``asyncio.timeout``. Raises RuntimeError if the
        server is closed meanwhile.
        """
        if len(self.queries) >= count:
            return list(self.queries)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (count, waiter)
        self._waiters.append(entry)
        try:
            await waiter
        finally:
            self._waiters.remove(entry)
        return list(self.queries)

    def _record(
        self, transport: Literal["udp", "tcp"], data: bytes, client: tuple[str, int]
    ) -> ReceivedQuery:
        try:
            question = read_question(data)
            qname, qtype = question.text, question.qtype
        except WireError:
            qname, qtype = "", 0
        # Even a message too short for a header may carry the ID a test wants to see.
        qid = int.from_bytes(data[:2], "big")
        received = ReceivedQuery(transport, qname, qtype, client, qid)
        self.queries.append(received)
        for count, waiter in self._waiters:
            if count <= len(self.queries) and not waiter.done():
                waiter.set_result(None)
        return received

    @staticmethod
    def _log_query(received: ReceivedQuery, replies: list[bytes]) -> None:
        if not _log.isEnabledFor(logging.DEBUG):
            return
        if not replies:
            outcome = "no reply"
        elif len(replies[-1]) < 4:
            outcome = "garbage"
        else:
            outcome = rcode_name(replies[-1][3] & _RCODE_MASK)
        host, port = received.client
        _log.debug(
            "%s %s:%d %s %s id %d: %s",
            received.transport,
            host,
            port,
            received.qname or "(no question)",
            qtype_name(received.qtype),
            received.id,
            outcome,
        )

    def _on_datagram(self, data: bytes, client: tuple[str, int]) -> None:
        if len(data) < 2 or self._closed:
            return
        received = self._record("udp", data, client)
        faults = self.faults
        if faults.drop:
            self._dropped += 1
            self._log_query(received, [])
        elif faults.delay > 0:
            self._spawn(self._reply_udp_later(faults.delay, data, received))
        else:
            self._reply_udp(data, received)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reply_udp_later(self, delay: float, data: bytes, received: ReceivedQuery) -> None:
        await asyncio.sleep(delay)
        self._reply_udp(data, received)

    def _reply_udp(self, data: bytes, received: ReceivedQuery) -> None:
        faults = self.faults
        transport = self._other_udp if faults.other_port else self._udp
        if transport is None or transport.is_closing():
            return
        replies = self._build_replies(data, 0 if faults.always_tc else EDNS_UDP_SIZE)
        for reply in replies:
            transport.sendto(reply, received.client)
            self._replies += 1
        self._log_query(received, replies)

    def _build_replies(self, data: bytes, max_udp: int | None) -> list[bytes]:
        """The datagrams or TCP messages to send for ``data``, as the faults bend them."""
        faults = self.faults
        if faults.garbage:
            return [os.urandom(random.randint(1, 64))]
        if faults.refuse or faults.servfail:
            reply = error_response(data, REFUSED if faults.refuse else SERVFAIL)
        else:
            reply = self.responder.answer(data, max_udp=max_udp)
        if reply is None:
            return []
        if faults.lowercase and read_header(reply).qdcount == 1:
            end = skip_name(reply, HEADER_SIZE)  # length bytes are below b"A": lower() spares them
            reply = reply[:HEADER_SIZE] + reply[HEADER_SIZE:end].lower() + reply[end:]
        if not faults.wrong_id:
            return [reply]
        qid = read_header(reply).id
        forged = set_id(reply, (qid + random.randint(1, 0xFFFF)) & 0xFFFF)
        return [forged, reply] if faults.also_right_id else [forged]

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if self._closed:
            writer.close()
            return
        self._connections.add(task)
        self._writers.add(writer)
        self._tcp_connections += 1
        peer = writer.get_extra_info("peername")
        client = (str(peer[0]), int(peer[1]))
        try:
            await self._tcp_loop(reader, writer, client)
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass  # the client left, or was idle too long: either way the connection ends
        finally:
            writer.close()
            self._writers.discard(writer)
            self._connections.discard(task)

    async def _tcp_loop(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client: tuple[str, int]
    ) -> None:
        while not self._closed:
            async with asyncio.timeout(self.tcp_idle_timeout):
                prefix = await reader.readexactly(_TCP_LENGTH)
                data = await reader.readexactly(int.from_bytes(prefix, "big"))
            if len(data) < 2:
                return
            received = self._record("tcp", data, client)
            faults = self.faults
            if faults.close_tcp:
                self._log_query(received, [])
                return
            if faults.delay > 0:
                # Interrupted by aclose: the connection then ends without a reply.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(faults.delay):
                        await self._closing.wait()
                if self._closed:
                    return
            replies = self._build_replies(data, None)
            for reply in replies:
                writer.write(len(reply).to_bytes(_TCP_LENGTH, "big") + reply)
                self._replies += 1
            self._log_query(received, replies)
            await writer.drain()


async def serve_authority(
    zone_paths: Sequence[str | os.PathLike[str]], listens: Sequence[tuple[str, int]]
) -> None:
    """Serve the zone files on every (host, port) in ``listens`` until cancelled.

    Raises ConfigError for a bad zone file or an empty ``listens``, OSError if an address
    cannot be bound. Every listener is closed on the way out, cancellation included.
    """
    if not listens:
        raise ConfigError("listen", "at least one address to listen on is needed")
    zones = [load_zone(path) for path in zone_paths]
    servers: list[Authority] = []
    try:
        for host, port in listens:
            server = Authority(zones)
            servers.append(server)
            await server.start(host, port)
        await asyncio.Event().wait()
    finally:
        for server in servers:
            await server.aclose()
