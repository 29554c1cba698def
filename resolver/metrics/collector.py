"""The daemon's counters as Prometheus metrics, read when scraped: nothing is counted here.

``ResolverCollector`` turns one ``Readings`` (the statistics the server, the engine, its cache,
its upstreams and their socket pools keep anyway) into metric families in the ``resolver_``
namespace, named in the style of CoreDNS's. The only importer of prometheus_client.

Metric families (counters end in ``_total``; ``proto`` is udp or tcp, ``to`` an upstream's
ADDR:PORT, ``type`` a question type, or ``other`` for those not counted by name):

* ``resolver_dns_requests_total{proto,type}``, ``resolver_dns_responses_total{proto,rcode}``:
  queries answered, counted when the reply is sent; ``resolver_dns_request_duration_seconds
  {proto}``: from asking the engine to sending the reply (0 for a reply made at once);
  ``resolver_dns_dropped_total``, ``resolver_dns_denied_total``, ``resolver_dns_truncated_total``,
  ``resolver_dns_local_answers_total``, ``resolver_dns_coalesced_total``; gauges
  ``resolver_dns_inflight`` and ``resolver_dns_tcp_connections``;
  ``resolver_dns_tcp_closed_total{reason}``; ``resolver_dns_connections_accepted_total
  {transport}`` (tcp, tls, https) and ``resolver_dns_encrypted_requests_total{transport}``;
* ``resolver_cache_hits_total`` (UDP repeats answered from the rendered replies the cache keeps
  included), ``resolver_cache_misses_total``, ``resolver_cache_evictions_total``,
  ``resolver_cache_stale_answers_total``, ``resolver_cache_prefetches_total``,
  ``resolver_cache_entries``: only while the cache is enabled;
* ``resolver_upstream_requests_total{to,proto}``, ``resolver_upstream_responses_total{to}``,
  ``resolver_upstream_timeouts_total{to}``, ``resolver_upstream_failures_total{to,reason}``,
  ``resolver_upstream_rtt_seconds{to}``, ``resolver_upstream_unwanted_replies_total{to}``,
  ``resolver_upstream_unwanted_alarms_total{to}``, ``resolver_upstream_failovers_total``;
* ``resolver_upstream_connections_total{to,event}`` (opened, resumed, failed, closed,
  idle_closed, peer_closed, stuck), ``resolver_upstream_connection_queries_total{to,kind}`` (all,
  reused, retried), ``resolver_upstream_connections_open{to}``: the persistent TCP, TLS and
  HTTPS connections to each upstream;
* ``resolver_pool_sockets{to,state}`` (idle, in_use), ``resolver_pool_waiting{to}``,
  ``resolver_pool_sockets_created_total{to}``, ``resolver_pool_sockets_retired_total{to}``;
* ``resolver_dnssec_answers_total{result}`` (secure, insecure, bogus, indeterminate): the
  verdicts of the validator on the answers resolved or forwarded;
  ``resolver_dnssec_synthesised_answers_total``: answers made from validated NSEC records
  without asking (RFC 8198);
* ``resolver_policy_hits_total{source,action}``: the response policy's hits, by list or RPZ
  zone and action;
* ``resolver_reloads_total{result}``, ``resolver_build_info{version}``.

A reload that builds a new engine starts the upstream and pool counters afresh (Prometheus
takes that as a counter reset); the server's and the cache's counters go on.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from resolver import __version__
from resolver.engine import EngineStatistics
from resolver.histogram import Histogram
from resolver.pool import PoolStatistics
from resolver.server import ReplyCounts, ServerStatistics
from resolver.wire import qtype_name, rcode_name

__all__ = ["CONTENT_TYPE", "Readings", "ResolverCollector", "exposition"]

# What generate_latest writes: the Prometheus text format, version 0.0.4.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Readings:
    """What one scrape reports: snapshots of the daemon's statistics, taken together."""

    server: ServerStatistics
    replies: ReplyCounts
    engine: EngineStatistics
    reloads: int
    failed_reloads: int


def _pools(readings: Readings) -> Iterator[tuple[str, PoolStatistics]]:
    """Every socket pool, by the address its sockets talk to: one line per kind of pool."""
    for upstream in readings.engine.upstreams:
        if upstream.pool is not None:  # a TLS or HTTPS upstream has no UDP sockets
            yield upstream.address, upstream.pool
    servers = readings.engine.servers
    if servers is not None:  # recursive mode: one pool per address family, to any server
        for family, pool in (("ipv4", servers.ipv4), ("ipv6", servers.ipv6)):
            if pool is not None:
                yield f"authorities-{family}", pool


def _recursion(readings: Readings) -> Iterator[Metric]:
    """Recursive mode's queries to authoritative servers and its delegation cache."""
    servers = readings.engine.servers
    if servers is None:
        return
    counts = (
        ("requests", "Queries sent to authoritative servers.", servers.queries),
        ("responses", "Replies accepted from authoritative servers.", servers.replies),
        (
            "timeouts",
            "Queries to authoritative servers that got no reply in time.",
            servers.timeouts,
        ),
        (
            "unreachable",
            "Queries to authoritative servers that could not be delivered (refused, no route).",
            servers.unreachable,
        ),
        (
            "case_mismatches",
            "Replies that differed from a 0x20 query only in the case of the name (asked again "
            "without 0x20).",
            servers.case_mismatches,
        ),
        (
            "unwanted_replies",
            "Datagrams to the sockets of recursive mode that matched no query of ours.",
            servers.strays,
        ),
    )
    for name, text, value in counts:
        yield _counter(f"resolver_recursion_{name}_total", text, value)
    yield GaugeMetricFamily(
        "resolver_recursion_zones",
        "Zone cuts held in the delegation cache.",
        value=readings.engine.zones,
    )
    engine = readings.engine
    answers = CounterMetricFamily(
        "resolver_dnssec_answers",
        "Answers resolved and judged by the DNSSEC validator, by verdict.",
        labels=["result"],
    )
    for result, value in (
        ("secure", engine.secure),
        ("insecure", engine.insecure),
        ("bogus", engine.bogus),
        ("indeterminate", engine.indeterminate),
    ):
        answers.add_metric([result], value)
    yield answers
    yield CounterMetricFamily(
        "resolver_dnssec_synthesised_answers",
        "Answers made from validated NSEC records without asking the authority (RFC 8198).",
        value=engine.synthesised,
    )


class ResolverCollector:
    """A prometheus_client collector of the ``Readings`` that ``read`` returns at each scrape
    (called on the daemon's loop, so the snapshots are consistent)."""

    def __init__(self, read: Callable[[], Readings]) -> None:
        self._read = read

    def describe(self) -> list[Metric]:
        # Nothing to check for clashes: the registry holds this collector and the process's.
        return []

    def collect(self) -> Iterator[Metric]:
        readings = self._read()
        yield from _dns(readings)
        yield from _cache(readings)
        yield from _upstreams(readings)
        yield from _recursion(readings)
        yield from _socket_pools(readings)
        yield from _connections(readings)
        reloads = CounterMetricFamily(
            "resolver_reloads_total",
            "Configuration reloads (SIGHUP), applied or failed (the running one kept).",
            labels=["result"],
        )
        reloads.add_metric(["applied"], readings.reloads)
        reloads.add_metric(["failed"], readings.failed_reloads)
        yield reloads
        info = GaugeMetricFamily(
            "resolver_build_info", "The version of the running daemon.", labels=["version"]
        )
        info.add_metric([__version__], 1)
        yield info


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _type_label(qtype: int) -> str:
    return qtype_name(qtype) if qtype else "other"


def _buckets(histogram: Histogram) -> list[tuple[str, float]]:
    """Cumulative buckets by their ``le`` label: the bound as Python writes it (the shortest
    text that reads back as the same float), the last ``+Inf``."""
    return [
        ("+Inf" if bound == math.inf else repr(bound), count)
        for bound, count in histogram.cumulative()
    ]


def _dns(readings: Readings) -> Iterator[Metric]:
    requests = CounterMetricFamily(
        "resolver_dns_requests_total",
        "Client queries answered, by transport and question type (counted with the reply).",
        labels=["proto", "type"],
    )
    responses = CounterMetricFamily(
        "resolver_dns_responses_total",
        "Replies sent to clients, by transport and rcode.",
        labels=["proto", "rcode"],
    )
    by_type: dict[tuple[str, str], int] = {}
    by_rcode: dict[tuple[str, str], int] = {}
    for (proto, qtype, rcode), count in readings.replies.replies.items():
        kind = (proto, _type_label(qtype))
        by_type[kind] = by_type.get(kind, 0) + count
        kind = (proto, rcode_name(rcode))
        by_rcode[kind] = by_rcode.get(kind, 0) + count
    for labels, count in sorted(by_type.items()):
        requests.add_metric(labels, count)
    for labels, count in sorted(by_rcode.items()):
        responses.add_metric(labels, count)
    yield requests
    yield responses
    durations = HistogramMetricFamily(
        "resolver_dns_request_duration_seconds",
        "Time from handing a client query to the query engine to sending its reply; a "
        "reply made in the callback that read its query (local, cached, or the server's own) "
        "counts as 0.",
        labels=["proto"],
    )
    for proto, histogram in sorted(readings.replies.durations.items()):
        durations.add_metric([proto], _buckets(histogram), histogram.total)
    yield durations
    server, engine = readings.server, readings.engine
    yield _counter(
        "resolver_dns_dropped_total",
        "Queries dropped unanswered (malformed, over max_inflight, shutting down) and TCP "
        "connections refused.",
        server.dropped,
    )
    yield _counter(
        "resolver_dns_denied_total",
        "Queries and TCP connections from clients outside server.allow.",
        server.denied,
    )
    yield _counter(
        "resolver_dns_truncated_total",
        "UDP replies cut to the client's size, with TC set.",
        server.truncated,
    )
    yield _counter(
        "resolver_dns_local_answers_total",
        "Questions answered from local data (localhost, special zones, the hosts file).",
        engine.local_answers,
    )
    yield _counter(
        "resolver_dns_coalesced_total",
        "Questions that waited for the same question already in flight upstream.",
        engine.coalesced,
    )
    hits = CounterMetricFamily(
        "resolver_policy_hits",
        "Questions and answers the response policy matched, by list or RPZ zone and action "
        "(passthru included).",
        labels=["source", "action"],
    )
    for source, action, count in engine.policy_hits:
        hits.add_metric([source, action], count)
    yield hits
    yield GaugeMetricFamily(
        "resolver_dns_inflight", "Queries being resolved now.", value=server.inflight
    )
    yield GaugeMetricFamily(
        "resolver_dns_tcp_connections",
        "Client TCP connections open now.",
        value=server.tcp_connections,
    )
    closed = CounterMetricFamily(
        "resolver_dns_tcp_closed_total",
        "Client TCP connections closed by the server: the idlest at the connection cap "
        "(evicted), or whose replies stayed unread (stalled).",
        labels=["reason"],
    )
    closed.add_metric(["evicted"], server.tcp_evicted)
    closed.add_metric(["stalled"], server.tcp_stalled)
    yield closed
    accepted = CounterMetricFamily(
        "resolver_dns_connections_accepted_total",
        "Client connections accepted, by transport: tcp, tls (DNS over TLS), https (DNS over "
        "HTTPS; after the TLS handshake for both).",
        labels=["transport"],
    )
    for transport, count in sorted((server.accepted or {}).items()):
        accepted.add_metric([transport], count)
    yield accepted
    encrypted = CounterMetricFamily(
        "resolver_dns_encrypted_requests_total",
        "Queries over DNS over TLS and DNS over HTTPS (counted with proto tcp elsewhere).",
        labels=["transport"],
    )
    encrypted.add_metric(["tls"], server.tls_queries)
    encrypted.add_metric(["https"], server.https_queries)
    yield encrypted


def _cache(readings: Readings) -> Iterator[Metric]:
    cache = readings.engine.cache
    if cache is None:
        return
    yield _counter(
        "resolver_cache_hits_total",
        "Questions answered from a fresh cache entry, UDP repeats answered from the rendered "
        "replies the cache keeps included.",
        cache.hits + readings.replies.cache_repeats,
    )
    yield _counter("resolver_cache_misses_total", "Cache lookups that found nothing.", cache.misses)
    yield _counter(
        "resolver_cache_evictions_total",
        "Entries pushed out to stay within cache.max_entries.",
        cache.evictions,
    )
    yield _counter(
        "resolver_cache_stale_answers_total",
        "Expired answers served because the upstreams failed or were slow (RFC 8767).",
        readings.engine.stale_answers,
    )
    yield _counter(
        "resolver_cache_prefetches_total",
        "Entries refreshed ahead of expiry because they were asked for late in their TTL.",
        readings.engine.prefetches,
    )
    yield GaugeMetricFamily("resolver_cache_entries", "Entries in the cache.", value=cache.entries)


def _upstreams(readings: Readings) -> Iterator[Metric]:
    requests = CounterMetricFamily(
        "resolver_upstream_requests_total",
        "Queries sent to each upstream, by transport.",
        labels=["to", "proto"],
    )
    responses = CounterMetricFamily(
        "resolver_upstream_responses_total",
        "Replies accepted from each upstream (matched to a query we sent).",
        labels=["to"],
    )
    timeouts = CounterMetricFamily(
        "resolver_upstream_timeouts_total",
        "Queries to each upstream that got no matching reply in time.",
        labels=["to"],
    )
    failures = CounterMetricFamily(
        "resolver_upstream_failures_total",
        "Queries to each upstream that failed otherwise: unreachable (refused, no route), "
        "bad_response (unusable reply), local (no socket or buffer on our side).",
        labels=["to", "reason"],
    )
    rtt = HistogramMetricFamily(
        "resolver_upstream_rtt_seconds",
        "Time from sending a query to each upstream to its reply (over TCP, with the "
        "connection's setup).",
        labels=["to"],
    )
    unwanted = CounterMetricFamily(
        "resolver_upstream_unwanted_replies_total",
        "Datagrams and TCP messages from each upstream that matched no query of ours.",
        labels=["to"],
    )
    alarms = CounterMetricFamily(
        "resolver_upstream_unwanted_alarms_total",
        "Minutes in which the unwanted replies from each upstream reached "
        "transport.unwanted_reply_threshold (a warning was logged).",
        labels=["to"],
    )
    for upstream in readings.engine.upstreams:
        to = upstream.address
        requests.add_metric([to, "udp"], upstream.queries - upstream.tcp_queries)
        requests.add_metric([to, "tcp"], upstream.tcp_queries)
        responses.add_metric([to], upstream.replies)
        timeouts.add_metric([to], upstream.timeouts)
        failures.add_metric([to, "unreachable"], upstream.unreachable)
        failures.add_metric([to, "bad_response"], upstream.bad_responses)
        failures.add_metric([to, "local"], upstream.local_failures)
        rtt.add_metric([to], _buckets(upstream.rtt), upstream.rtt.total)
        unwanted.add_metric([to], upstream.strays)
        alarms.add_metric([to], upstream.attacks)
    yield from (requests, responses, timeouts, failures, rtt, unwanted, alarms)
    yield _counter(
        "resolver_upstream_failovers_total",
        "Queries asked again of another upstream after one failed.",
        readings.engine.failovers,
    )


def _socket_pools(readings: Readings) -> Iterator[Metric]:
    sockets = GaugeMetricFamily(
        "resolver_pool_sockets",
        "Pooled UDP sockets to each address, idle or in use.",
        labels=["to", "state"],
    )
    waiting = GaugeMetricFamily(
        "resolver_pool_waiting",
        "Queries waiting for a socket to each address.",
        labels=["to"],
    )
    created = CounterMetricFamily(
        "resolver_pool_sockets_created_total",
        "Sockets opened for each address's pool.",
        labels=["to"],
    )
    retired = CounterMetricFamily(
        "resolver_pool_sockets_retired_total",
        "Sockets closed by each address's pool: used up (max_uses, max_age), discarded "
        "after a failed query, idle above min_size, or closed with the pool.",
        labels=["to"],
    )
    for to, pool in _pools(readings):
        sockets.add_metric([to, "idle"], pool.idle)
        sockets.add_metric([to, "in_use"], pool.in_use)
        waiting.add_metric([to], pool.waiting)
        created.add_metric([to], pool.created)
        retired.add_metric([to], pool.retired)
    yield from (sockets, waiting, created, retired)


def _connections(readings: Readings) -> Iterator[Metric]:
    """The persistent TCP, TLS and HTTPS connections to each upstream."""
    events = CounterMetricFamily(
        "resolver_upstream_connections_total",
        "Connections to each upstream: opened (handshakes), resumed (TLS sessions resumed), "
        "failed (could not be opened, certificates rejected included), closed (idle by us, "
        "by the server, stuck: queries in a row ended there without a reply, or otherwise).",
        labels=["to", "event"],
    )
    queries = CounterMetricFamily(
        "resolver_upstream_connection_queries_total",
        "Queries sent over each upstream's connections: all, those over a connection that "
        "had carried one already (reused), and those sent again after the server closed an "
        "idle connection under them (retried).",
        labels=["to", "kind"],
    )
    open_now = GaugeMetricFamily(
        "resolver_upstream_connections_open",
        "Connections open to each upstream now.",
        labels=["to"],
    )
    for upstream in readings.engine.upstreams:
        to, streams = upstream.address, upstream.streams
        for event, value in (
            ("opened", streams.opened),
            ("resumed", streams.resumed),
            ("failed", streams.failed_opens),
            ("closed", streams.closed),
            ("idle_closed", streams.idle_closed),
            ("peer_closed", streams.peer_closed),
            ("stuck", streams.stuck),
        ):
            events.add_metric([to, event], value)
        for kind, value in (
            ("all", streams.queries),
            ("reused", streams.reused),
            ("retried", streams.retried),
        ):
            queries.add_metric([to, kind], value)
        open_now.add_metric([to], streams.open)
    yield from (events, queries, open_now)


def exposition(read: Callable[[], Readings]) -> Callable[[], bytes]:
    """A function that renders the metrics in Prometheus's text format (``CONTENT_TYPE``):
    ``ResolverCollector(read)`` and the process's own (CPU, memory, descriptors), in a
    registry of their own."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ResolverCollector(read))
    ProcessCollector(registry=registry)
    return lambda: generate_latest(registry)
