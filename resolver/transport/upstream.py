"""One forwarding upstream: a pool of UDP sockets connected to it, and TCP on request over
persistent, pipelined connections (:mod:`.stream`). :class:`ForwardingUpstream` is what every
kind of upstream offers the engine (plain here; TLS and HTTPS in :mod:`.encrypted`)."""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass

from resolver.config import Address, TransportConfig
from resolver.config import Upstream as Upstream_
from resolver.errors import UpstreamUnreachable
from resolver.histogram import Histogram
from resolver.pool import Pool, PoolStatistics
from resolver.transport.addresses import format_address
from resolver.transport.exchange import Exchange, Report
from resolver.transport.exchanges import Exchanges
from resolver.transport.ids import random_ids
from resolver.transport.stream import (
    StreamPool,
    StreamStatistics,
    plain_opener,
    send_over,
    stream_pool,
)
from resolver.transport.udp import UdpSocket
from resolver.wire.query import make_query

__all__ = ["ForwardingUpstream", "Upstream", "UpstreamStatistics"]

log = logging.getLogger(__name__)

# Unwanted replies are counted per upstream in windows of this many seconds; the attack warning
# is logged at most once per window.
_UNWANTED_WINDOW = 60.0


@dataclass(frozen=True, slots=True)
class UpstreamStatistics:
    """Counts for one upstream: queries sent, replies accepted, strays dropped (over UDP and
    TCP), failures; ``attacks``: windows in which the pooled sockets' strays reached the
    unwanted-reply threshold; ``retired_sockets``: sockets retired for receiving strays then;
    ``rtt``: the time from sending each accepted query to its reply (over a new connection, its
    setup included); ``pool``: the UDP sockets (None for a TLS or HTTPS upstream, which has
    none); ``streams``: its TCP, TLS or HTTPS connections."""

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
    pool: PoolStatistics | None
    streams: StreamStatistics
    rtt: Histogram


class ForwardingUpstream(Exchanges):
    """What the engine's driver needs of an upstream, whatever carries its queries: ``name``,
    ``address`` (what the configuration gave), ``start``, ``build_query``, ``send`` (one
    exchange reported by callback), ``statistics`` and ``aclose``."""

    name: str
    address: Upstream_

    async def start(self) -> None:
        raise NotImplementedError

    def send(
        self,
        query: bytes,
        question: bytes,
        *,
        deadline: float,
        report: Report,
        tcp: bool = False,
    ) -> Exchange:
        raise NotImplementedError

    def statistics(self) -> UpstreamStatistics:
        raise NotImplementedError

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
        config = self.config
        return make_query(
            name,
            qtype,
            qclass,
            qid=random_ids.next(),
            rd=rd,
            cd=cd,
            ad=ad,
            edns_size=config.edns_size if edns else None,
            do=do,
            randomize_case=config.randomize_case,
        )


class Upstream(ForwardingUpstream):
    """One upstream server: a Pool of pre-bound connected UDP sockets, and TCP on request over
    a pool of persistent, pipelined connections (``transport.max_connections`` at most, each
    carrying up to ``transport.pipeline_depth`` queries at once).

    ``send`` starts one exchange and reports its outcome by callback (a truncated reply as it
    came: whether to ask again over TCP is the engine's decision). A reply that differs from a
    0x20 query in the name's case is a stray here (the forwarder has no fallback without 0x20
    to offer, and one forged datagram must not end a query).
    """

    def __init__(self, address: Address, config: TransportConfig | None = None) -> None:
        super().__init__(config)
        self.address = address
        self.server = address
        self.name = format_address(address)
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.pool = self.make_pool(family, address, self.config.pool.max_uses)
        self.streams = stream_pool(self.name, self.config, plain_opener(address, self.name))
        self._case_exact = self.config.randomize_case
        self._unwanted = 0  # strays to the pooled sockets in the current window
        self._unwanted_since = 0.0
        self._attacks = 0
        self._retired = 0

    async def start(self) -> None:
        """Bind the pool's first sockets. Raises UpstreamUnreachable if binding fails."""
        self.loop = asyncio.get_running_loop()
        try:
            await self.pool.start()
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise UpstreamUnreachable(self.name, f"cannot open a socket: {reason}") from exc

    def pools_to_close(self) -> list[Pool[UdpSocket]]:
        return [self.pool]

    def streams_to_close(self) -> list[StreamPool]:
        return [self.streams]

    def send_tcp(self, exchange: Exchange) -> None:
        send_over(self.streams, exchange)

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
        exchange = Exchange(self, self.server, query, question, deadline, report, self._case_exact)
        self.dispatch(exchange, self.pool, tcp)
        return exchange

    def count_unwanted(self, sock: UdpSocket) -> None:
        """Count a datagram that ``sock`` received and no query of its wanted. Past the
        threshold within one window, warn (once per window) and retire ``sock``."""
        self.counts.strays += 1
        threshold = self.config.unwanted_reply_threshold
        if not threshold:
            return
        now = (self.loop or asyncio.get_running_loop()).time()
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
        counts = self.counts
        return UpstreamStatistics(
            address=self.name,
            queries=counts.queries,
            replies=counts.replies,
            strays=counts.strays,
            attacks=self._attacks,
            retired_sockets=self._retired,
            timeouts=counts.timeouts,
            unreachable=counts.unreachable,
            bad_responses=counts.bad_responses,
            local_failures=counts.local_failures,
            tcp_queries=counts.tcp_queries,
            pool=self.pool.statistics(),
            streams=self.streams.statistics(),
            rtt=counts.rtt.copy(),
        )

    def __repr__(self) -> str:
        s = self.statistics()
        return (
            f"<Upstream {self.name} queries={s.queries} replies={s.replies} strays={s.strays} "
            f"timeouts={s.timeouts} sockets={self.pool.statistics().size}>"
        )
