"""Queries to any server by address (recursive mode): a fresh random source port per query."""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass

from resolver.config import Address, TransportConfig
from resolver.errors import LocalError, UpstreamUnreachable
from resolver.pool import Pool, PoolStatistics
from resolver.transport.addresses import WILDCARD, family
from resolver.transport.exchange import Exchange, Report
from resolver.transport.exchanges import Exchanges
from resolver.transport.ids import random_ids
from resolver.transport.udp import UdpSocket
from resolver.wire.query import make_query

__all__ = ["Servers", "ServersStatistics"]

log = logging.getLogger(__name__)

_FAMILIES = ((socket.AF_INET, "IPv4"), (socket.AF_INET6, "IPv6"))


@dataclass(frozen=True, slots=True)
class ServersStatistics:
    """Counts for the queries sent to any server (recursive mode): queries sent, replies
    accepted, strays dropped (over UDP and TCP, idle sockets included), failures by kind, TCP
    queries, ``case_mismatches`` (replies that matched a 0x20 query in everything but the
    name's case: ended with CaseMismatch), ``socket_waits`` (queries that found no idle socket
    and waited for one to be bound), and each address family's pool (None when that family
    could not be opened or ``start`` has not run)."""

    queries: int
    replies: int
    strays: int
    timeouts: int
    unreachable: int
    bad_responses: int
    local_failures: int
    tcp_queries: int
    case_mismatches: int
    socket_waits: int
    ipv4: PoolStatistics | None
    ipv6: PoolStatistics | None


class Servers(Exchanges):
    """Queries to any server by address (recursive mode): per address family one shared Pool of
    pre-bound UDP sockets, each handed out exactly once (max_uses=1), replacements bound ahead.

    A socket is bound to the family's wildcard address and a port the kernel picks at random,
    connected to the exchange's server when its query is sent (the kernel then drops
    datagrams from any other source), and closed when the exchange ends: every query leaves
    from a fresh random port (RFC 5452 section 4.5), and the pool's spares (``min_idle``) and
    the replacement started at each checkout do the binding in the background, off the query
    path. The pools' sizes, ``max_age`` and ``idle_timeout`` are ``config.pool``'s; its
    ``max_uses`` is ignored (always 1), and so is ``unwanted_reply_threshold``: strays are
    counted, but every socket retires after its one exchange anyway. With 0x20
    (``randomize_case``, on by default here), a reply that matches in everything but the
    name's case ends the exchange with CaseMismatch: the caller may ask again without 0x20
    and compare (Unbound's caps fallback).
    """

    case_fallback = True

    def __init__(self, config: TransportConfig | None = None) -> None:
        super().__init__(config)
        self._pools: dict[int, Pool[UdpSocket]] = {}
        self._started = False

    async def start(self) -> None:
        """Bind the IPv4 pool's first sockets, and the IPv6 pool's when the machine can. A
        family whose sockets cannot be opened is left out with a warning; queries to its
        servers then fail with UpstreamUnreachable. Raises UpstreamUnreachable when neither
        family can be opened."""
        self.loop = asyncio.get_running_loop()
        self._started = True
        reasons = []
        for kind, label in _FAMILIES:
            if kind in self._pools or self.closed:
                continue
            pool = self.make_pool(kind, None, 1)
            # In the table before the first await, so that aclose closes it whatever happens.
            self._pools[kind] = pool
            try:
                # Opened here too: with min_size 0 the pool would not try before a query.
                _probe(kind)
                await pool.start()
            except OSError as exc:
                del self._pools[kind]
                await pool.aclose(timeout=0.0)
                reason = exc.strerror or str(exc)
                reasons.append(f"{label}: {reason}")
                log.warning("no %s queries: cannot open a UDP socket: %s", label, reason)
        if not self._pools and not self.closed:
            raise UpstreamUnreachable("any server", f"cannot open a socket ({'; '.join(reasons)})")

    def pools_to_close(self) -> list[Pool[UdpSocket]]:
        return list(self._pools.values())

    def can_send_to(self, server: Address) -> bool:
        """Whether sockets of ``server``'s address family are open (after ``start``)."""
        return family(server) in self._pools

    def build_query(
        self,
        name: bytes,
        qtype: int,
        qclass: int,
        *,
        rd: bool = False,
        cd: bool = False,
        do: bool = False,
        edns: bool = True,
        randomize_case: bool = True,
    ) -> tuple[bytes, bytes]:
        """Our query for a question: a random ID, no RD unless ``rd``, EDNS with our size
        unless ``edns`` is False, the name's case randomised (0x20) unless ``randomize_case``
        is False. Returns the query bytes and the question bytes as sent (for ``send``)."""
        return make_query(
            name,
            qtype,
            qclass,
            qid=random_ids.next(),
            rd=rd,
            cd=cd,
            edns_size=self.config.edns_size if edns else None,
            do=do,
            randomize_case=randomize_case,
        )

    def send(
        self,
        server: Address,
        query: bytes,
        question: bytes,
        *,
        deadline: float,
        report: Report,
        tcp: bool = False,
        case_exact: bool = True,
    ) -> Exchange:
        """Send ``query`` (made by ``build_query``; ``question`` as it returned) to ``server``
        (a numeric address) and report the validated reply or the error by calling ``report``
        exactly once, at the latest at ``deadline`` (loop time). Over UDP from a fresh socket
        (waiting for one to be bound in a task only when none is idle), or over TCP with
        ``tcp``. ``case_exact`` must be False for a query built without ``randomize_case``:
        the reply's name is then compared without case, and a case mismatch ends nothing.
        With it, a reply that differs in the name's case only ends the exchange with
        CaseMismatch. Never raises."""
        exchange = Exchange(self, server, query, question, deadline, report, case_exact)
        pool = self._pools.get(family(server))
        if pool is None:
            self.counts.queries += 1
            if self.closed or not self._started:
                exchange.fail(LocalError(f"{exchange.name}: the transport is not running"))
            else:
                label = "IPv6" if family(server) == socket.AF_INET6 else "IPv4"
                exchange.fail(UpstreamUnreachable(exchange.name, f"no {label} socket here"))
            return exchange
        self.dispatch(exchange, pool, tcp)
        return exchange

    def statistics(self) -> ServersStatistics:
        ipv4 = self._pools.get(socket.AF_INET)
        ipv6 = self._pools.get(socket.AF_INET6)
        counts = self.counts
        return ServersStatistics(
            queries=counts.queries,
            replies=counts.replies,
            strays=counts.strays,
            timeouts=counts.timeouts,
            unreachable=counts.unreachable,
            bad_responses=counts.bad_responses,
            local_failures=counts.local_failures,
            tcp_queries=counts.tcp_queries,
            case_mismatches=counts.case_mismatches,
            socket_waits=counts.socket_waits,
            ipv4=None if ipv4 is None else ipv4.statistics(),
            ipv6=None if ipv6 is None else ipv6.statistics(),
        )

    def __repr__(self) -> str:
        s = self.statistics()
        sockets = sum(p.size for p in (s.ipv4, s.ipv6) if p is not None)
        return (
            f"<Servers queries={s.queries} replies={s.replies} strays={s.strays} "
            f"timeouts={s.timeouts} case_mismatches={s.case_mismatches} sockets={sockets}>"
        )


def _probe(kind: int) -> None:
    """Open and bind one socket of family ``kind`` and close it. Raises OSError when the
    machine cannot (no IPv6, say)."""
    with socket.socket(kind, socket.SOCK_DGRAM) as sock:
        sock.bind(WILDCARD[kind])
