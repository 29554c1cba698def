"""Upstreams over TLS (``tls://``, RFC 7858) and HTTPS (``https://``, RFC 8484): every query
over a pool of persistent, pipelined connections (:mod:`.stream`, :mod:`.https`), never in
plaintext. To the engine such an upstream is an upstream like any other: the same ``send``,
the same errors, so failover, health, ``fastest`` and serve-stale decide as for UDP ones.

The certificate is verified against the system's CA store (or ``transport.tls_ca``) and must
carry the configured name (or the address); with pins, its key must be one of them. A
certificate not accepted fails the query with UpstreamUnreachable, so the engine moves on, and
is logged once per reason (again only after a handshake succeeded in between).

An ``https://`` upstream given by name is looked up at start, in the hosts file and then by
asking ``bootstrap`` servers over plain DNS (never the daemon itself), and again after a
connection to the address found could not be made.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from collections.abc import Sequence
from pathlib import Path

from resolver.config import Address, EncryptedUpstream, TransportConfig
from resolver.errors import ConfigError, UpstreamError, UpstreamUnreachable, WireError
from resolver.hosts import HostsEntry, read_hosts
from resolver.pool import Pool
from resolver.transport.connection import (
    CertificateRejected,
    StreamConnection,
    TlsClient,
    open_stream,
)
from resolver.transport.exchange import Exchange, Report
from resolver.transport.https import open_https
from resolver.transport.stream import StreamPool, send_over, stream_pool
from resolver.transport.tls import client_context
from resolver.transport.udp import UdpSocket
from resolver.transport.upstream import ForwardingUpstream, Upstream, UpstreamStatistics
from resolver.wire.message import name_to_wire
from resolver.wire.records import read_message
from resolver.wire.view import ReplyView

__all__ = ["HOSTS_FILE", "EncryptedTransport", "upstream_for"]

log = logging.getLogger(__name__)

HOSTS_FILE = Path("/etc/hosts")
_LOOKUP_TIMEOUT = 2.0
_TYPE_A, _TYPE_AAAA, _CLASS_IN = 1, 28, 1


class EncryptedTransport(ForwardingUpstream):
    """One ``tls://`` or ``https://`` upstream (see the module)."""

    def __init__(
        self,
        spec: EncryptedUpstream,
        config: TransportConfig | None = None,
        *,
        bootstrap: Sequence[Address] = (),
        hosts_file: Path = HOSTS_FILE,
    ) -> None:
        super().__init__(config)
        self.address = spec
        self.spec = spec
        self.name = str(spec)
        self._bootstrap = tuple(bootstrap)
        self._hosts_file = hosts_file
        self._server: Address | None = spec.address if _is_ip(spec.host) else None
        alpn = ("h2",) if spec.protocol == "https" else ()
        self._tls = TlsClient(
            client_context(self.config.tls_ca, alpn=alpn), spec.certificate_name, spec.pins
        )
        self._case_exact = self.config.randomize_case
        self._rejected: str | None = None  # the last certificate rejection logged
        self.streams: StreamPool = stream_pool(
            self.name, self.config, self._open, on_failure=self._open_failed
        )

    async def start(self) -> None:
        """Look up an ``https://`` host name (hosts file, then the bootstrap servers). Raises
        UpstreamUnreachable when it cannot be found. No connection is opened before a query
        needs one."""
        self.loop = asyncio.get_running_loop()
        if self._server is None:
            self._server = await self._lookup()

    def pools_to_close(self) -> list[Pool[UdpSocket]]:
        return []

    def streams_to_close(self) -> list[StreamPool]:
        return [self.streams]

    def send(
        self,
        query: bytes,
        question: bytes,
        *,
        deadline: float,
        report: Report,
        tcp: bool = False,
    ) -> Exchange:
        """Send ``query`` over one of the pooled connections (``tcp`` changes nothing: it is
        a stream already) and report the validated reply or the error by calling ``report``
        exactly once, by ``deadline``. Never raises."""
        server = self._server or self.spec.address
        exchange = Exchange(self, server, query, question, deadline, report, self._case_exact)
        counts = self.counts
        counts.queries += 1
        counts.tcp_queries += 1
        send_over(self.streams, exchange)
        return exchange

    async def _open(self, session: ssl.SSLSession | None) -> StreamConnection:
        server = self._server
        if server is None:
            server = self._server = await self._lookup()
        try:
            if self.spec.protocol == "https":
                return await open_https(
                    server, self._tls, session, self.name, self.spec.host, self.spec.path
                )
            return await open_stream(server, self._tls, session, self.name)
        except CertificateRejected:
            raise
        except UpstreamUnreachable:
            if not _is_ip(self.spec.host):
                self._server = None  # looked up again for the next connection
            raise

    def _open_failed(self, exc: BaseException) -> None:
        if isinstance(exc, CertificateRejected) and exc.reason != self._rejected:
            self._rejected = exc.reason
            log.warning("upstream %s unusable: %s", self.name, exc.reason)

    def count_reply(self, sent_at: float) -> None:
        self._rejected = None  # a later rejection is news again
        super().count_reply(sent_at)

    async def _lookup(self) -> Address:
        """The address of the ``https://`` host: the hosts file's first, else the bootstrap
        servers' first A (then AAAA) answer. Raises UpstreamUnreachable."""
        host = self.spec.host.lower().rstrip(".")
        try:
            entries: tuple[HostsEntry, ...] = read_hosts(self._hosts_file).entries
        except (ConfigError, OSError):  # no readable hosts file: the bootstrap servers then
            entries = ()
        for entry in entries:
            if host in (name.lower().rstrip(".") for name in entry.names):
                return str(entry.address), self.spec.port
        reasons = []
        loop = asyncio.get_running_loop()
        for address in self._bootstrap:
            upstream = Upstream(address, self.config)
            try:
                await upstream.start()
                for qtype in (_TYPE_A, _TYPE_AAAA):
                    deadline = loop.time() + _LOOKUP_TIMEOUT
                    reply = await _ask(upstream, name_to_wire(host), qtype, deadline, tcp=False)
                    if reply.truncated:
                        reply = await _ask(upstream, name_to_wire(host), qtype, deadline, tcp=True)
                    found = _first_address(reply.message, qtype)
                    if found is not None:
                        log.info("upstream %s is at %s (asked %s)", self.name, found, address[0])
                        return found, self.spec.port
            except UpstreamError as exc:
                reasons.append(str(exc))
            finally:
                await upstream.aclose()
        why = "; ".join(reasons) or "not in the hosts file and no bootstrap server"
        raise UpstreamUnreachable(self.name, f"cannot look up {host}: {why}")

    def statistics(self) -> UpstreamStatistics:
        counts = self.counts
        streams = self.streams.statistics()
        return UpstreamStatistics(
            address=self.name,
            queries=counts.queries,
            replies=counts.replies,
            strays=counts.strays + streams.strays,
            attacks=0,
            retired_sockets=0,
            timeouts=counts.timeouts,
            unreachable=counts.unreachable,
            bad_responses=counts.bad_responses,
            local_failures=counts.local_failures,
            tcp_queries=counts.tcp_queries,
            pool=None,
            streams=streams,
            rtt=counts.rtt.copy(),
        )

    def __repr__(self) -> str:
        s = self.streams.statistics()
        return (
            f"<EncryptedTransport {self.name} queries={self.counts.queries} "
            f"connections={s.open} in_flight={s.in_flight}>"
        )


def upstream_for(
    spec: Address | EncryptedUpstream,
    config: TransportConfig | None = None,
    *,
    bootstrap: Sequence[Address] = (),
) -> ForwardingUpstream:
    """The upstream a configured entry names: plain (UDP, TCP after truncation), TLS or HTTPS."""
    if isinstance(spec, EncryptedUpstream):
        return EncryptedTransport(spec, config, bootstrap=bootstrap)
    return Upstream(spec, config)


async def _ask(
    upstream: Upstream, name: bytes, qtype: int, deadline: float, *, tcp: bool
) -> ReplyView:
    """One question to a bootstrap server, awaited. Raises UpstreamError, LocalError."""
    future: asyncio.Future[ReplyView] = asyncio.get_running_loop().create_future()

    def report(reply: ReplyView | None, exc: BaseException | None) -> None:
        if future.done():
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            assert reply is not None
            future.set_result(reply)

    query, question = upstream.build_query(name, qtype, _CLASS_IN)
    exchange = upstream.send(query, question, deadline=deadline, report=report, tcp=tcp)
    try:
        return await future
    except asyncio.CancelledError:
        exchange.cancel()
        raise


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _first_address(reply: bytes, qtype: int) -> str | None:
    """The first A or AAAA record's address in ``reply``'s answer section, or None."""
    try:
        message = read_message(reply)
    except WireError:
        return None
    for record in message.answer:
        if record.rtype == qtype and len(record.rdata) in (4, 16):
            return str(ipaddress.ip_address(record.rdata))
    return None
