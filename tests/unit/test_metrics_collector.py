"""The collector turns the daemon's statistics into Prometheus metrics at scrape time: from
hand-made statistics, without a daemon."""

from __future__ import annotations

import dataclasses
import re

from support import metric_samples

from resolver.cache import CacheStatistics
from resolver.engine import EngineStatistics
from resolver.histogram import Histogram
from resolver.metrics import Readings, exposition
from resolver.pool import PoolStatistics
from resolver.server import ReplyCounts, ServerStatistics
from resolver.transport import ServersStatistics, UpstreamStatistics
from resolver.transport.stream import StreamStatistics
from resolver.wire import NOERROR, NXDOMAIN, SERVFAIL, qtype_value

SERVER = ServerStatistics(**{f.name: 0 for f in dataclasses.fields(ServerStatistics)})
ENGINE = EngineStatistics(
    **{f.name: 0 for f in dataclasses.fields(EngineStatistics)}
    | {"upstreams": (), "cache": None, "servers": None, "policy_hits": ()}
)
POOL = PoolStatistics(**{f.name: 0 for f in dataclasses.fields(PoolStatistics)})
NO_REPLIES = ReplyCounts({}, {"udp": Histogram(), "tcp": Histogram()}, 0)


def scrape(readings: Readings) -> dict[str, float]:
    return metric_samples(exposition(lambda: readings)().decode())


def readings(**changes: object) -> Readings:
    return dataclasses.replace(Readings(SERVER, NO_REPLIES, ENGINE, 0, 0), **changes)


def test_an_engine_without_upstreams_or_cache_still_scrapes() -> None:
    samples = scrape(readings())
    assert samples['resolver_build_info{version="0.1.0"}'] == 1
    assert samples["resolver_dns_inflight"] == 0
    assert samples["resolver_upstream_failovers_total"] == 0
    assert samples['resolver_dns_request_duration_seconds_count{proto="udp"}'] == 0
    assert not [name for name in samples if name.startswith("resolver_cache_")]
    assert not [name for name in samples if name.startswith("resolver_pool_")]
    assert not [name for name in samples if re.search(r'[{,]to="', name)]
    assert "process_cpu_seconds_total" in samples  # the registry holds the process's too


def test_replies_become_requests_by_type_and_responses_by_rcode() -> None:
    durations = Histogram()
    for value in (0.0, 0.0003, 0.002):
        durations.observe(value)
    replies = ReplyCounts(
        {
            ("udp", qtype_value("A"), NOERROR): 5,
            ("udp", qtype_value("A"), NXDOMAIN): 2,
            ("udp", qtype_value("AAAA"), NOERROR): 1,
            ("udp", 0, SERVFAIL): 1,
            ("tcp", qtype_value("MX"), NOERROR): 3,
        },
        {"udp": durations, "tcp": Histogram()},
        4,
    )
    samples = scrape(readings(replies=replies))
    requests = {k: v for k, v in samples.items() if k.startswith("resolver_dns_requests_total")}
    assert requests == {
        'resolver_dns_requests_total{proto="tcp",type="MX"}': 3,
        'resolver_dns_requests_total{proto="udp",type="A"}': 7,
        'resolver_dns_requests_total{proto="udp",type="AAAA"}': 1,
        'resolver_dns_requests_total{proto="udp",type="other"}': 1,
    }
    responses = {k: v for k, v in samples.items() if k.startswith("resolver_dns_responses")}
    assert responses == {
        'resolver_dns_responses_total{proto="tcp",rcode="NOERROR"}': 3,
        'resolver_dns_responses_total{proto="udp",rcode="NOERROR"}': 6,
        'resolver_dns_responses_total{proto="udp",rcode="NXDOMAIN"}': 2,
        'resolver_dns_responses_total{proto="udp",rcode="SERVFAIL"}': 1,
    }
    bucket = "resolver_dns_request_duration_seconds_bucket"
    assert samples[f'{bucket}{{le="0.00025",proto="udp"}}'] == 1
    assert samples[f'{bucket}{{le="0.0005",proto="udp"}}'] == 2
    assert samples[f'{bucket}{{le="0.002",proto="udp"}}'] == 3
    assert samples[f'{bucket}{{le="+Inf",proto="udp"}}'] == 3
    assert samples['resolver_dns_request_duration_seconds_sum{proto="udp"}'] == 0.0023


def test_upstreams_caches_and_pools_are_reported_per_address() -> None:
    rtt = Histogram()
    rtt.observe(0.01)
    upstream = UpstreamStatistics(
        address="[::1]:53",
        queries=10,
        replies=7,
        strays=4,
        attacks=1,
        retired_sockets=2,
        timeouts=1,
        unreachable=1,
        bad_responses=0,
        local_failures=1,
        tcp_queries=3,
        pool=dataclasses.replace(POOL, idle=5, in_use=2, waiting=1, created=9, retired=2),
        streams=StreamStatistics(
            opened=3,
            resumed=2,
            failed_opens=1,
            closed=2,
            idle_closed=1,
            peer_closed=1,
            queries=40,
            reused=37,
            retried=1,
            strays=0,
            open=1,
            in_flight=0,
            stuck=0,
        ),
        rtt=rtt,
    )
    cache = CacheStatistics(
        entries=6, hits=8, misses=3, stale_hits=1, evictions=2, expired=0, inserts=9
    )
    engine = dataclasses.replace(
        ENGINE, upstreams=(upstream,), cache=cache, stale_answers=1, failovers=2
    )
    replies = dataclasses.replace(NO_REPLIES, cache_repeats=4)
    samples = scrape(readings(engine=engine, replies=replies, reloads=2, failed_reloads=1))
    to = 'to="[::1]:53"'
    assert samples[f'resolver_upstream_requests_total{{proto="udp",{to}}}'] == 7
    assert samples[f'resolver_upstream_requests_total{{proto="tcp",{to}}}'] == 3
    assert samples[f"resolver_upstream_responses_total{{{to}}}"] == 7
    assert samples[f"resolver_upstream_timeouts_total{{{to}}}"] == 1
    assert samples[f'resolver_upstream_failures_total{{reason="unreachable",{to}}}'] == 1
    assert samples[f'resolver_upstream_failures_total{{reason="local",{to}}}'] == 1
    assert samples[f"resolver_upstream_unwanted_replies_total{{{to}}}"] == 4
    assert samples[f"resolver_upstream_unwanted_alarms_total{{{to}}}"] == 1
    assert samples[f"resolver_upstream_rtt_seconds_count{{{to}}}"] == 1
    assert samples[f'resolver_upstream_rtt_seconds_bucket{{le="0.008",{to}}}'] == 0
    assert samples[f'resolver_upstream_rtt_seconds_bucket{{le="0.016",{to}}}'] == 1
    assert samples["resolver_upstream_failovers_total"] == 2
    assert samples[f'resolver_pool_sockets{{state="idle",{to}}}'] == 5
    assert samples[f'resolver_pool_sockets{{state="in_use",{to}}}'] == 2
    assert samples[f"resolver_pool_waiting{{{to}}}"] == 1
    assert samples[f"resolver_pool_sockets_created_total{{{to}}}"] == 9
    assert samples[f"resolver_pool_sockets_retired_total{{{to}}}"] == 2
    assert samples[f'resolver_upstream_connections_total{{event="opened",{to}}}'] == 3
    assert samples[f'resolver_upstream_connections_total{{event="resumed",{to}}}'] == 2
    assert samples[f'resolver_upstream_connections_total{{event="failed",{to}}}'] == 1
    assert samples[f'resolver_upstream_connection_queries_total{{kind="reused",{to}}}'] == 37
    assert samples[f"resolver_upstream_connections_open{{{to}}}"] == 1
    # Repeats of rendered cache answers are hits the cache's lookup never saw.
    assert samples["resolver_cache_hits_total"] == 8 + 4
    assert samples["resolver_cache_misses_total"] == 3
    assert samples["resolver_cache_evictions_total"] == 2
    assert samples["resolver_cache_stale_answers_total"] == 1
    assert samples["resolver_cache_entries"] == 6
    assert samples['resolver_reloads_total{result="applied"}'] == 2
    assert samples['resolver_reloads_total{result="failed"}'] == 1


def test_every_metric_is_in_the_resolver_namespace_or_the_process_s() -> None:
    samples = scrape(readings())
    assert all(name.startswith(("resolver_", "process_", "python_")) for name in samples)


def test_recursive_mode_reports_its_queries_zones_and_pools() -> None:
    servers = ServersStatistics(
        queries=12,
        replies=10,
        strays=3,
        timeouts=1,
        unreachable=1,
        bad_responses=0,
        local_failures=0,
        tcp_queries=1,
        case_mismatches=2,
        socket_waits=0,
        ipv4=dataclasses.replace(POOL, idle=32, created=44, retired=12),
        ipv6=None,
    )
    engine = dataclasses.replace(ENGINE, servers=servers, zones=5)
    samples = scrape(readings(engine=engine))
    assert samples["resolver_recursion_requests_total"] == 12
    assert samples["resolver_recursion_responses_total"] == 10
    assert samples["resolver_recursion_timeouts_total"] == 1
    assert samples["resolver_recursion_unreachable_total"] == 1
    assert samples["resolver_recursion_case_mismatches_total"] == 2
    assert samples["resolver_recursion_unwanted_replies_total"] == 3
    assert samples["resolver_recursion_zones"] == 5
    to = 'to="authorities-ipv4"'
    assert samples[f'resolver_pool_sockets{{state="idle",{to}}}'] == 32
    assert samples[f"resolver_pool_sockets_created_total{{{to}}}"] == 44
    assert not [name for name in samples if "authorities-ipv6" in name]


def test_recursive_mode_reports_its_dnssec_verdicts() -> None:
    servers = ServersStatistics(
        queries=0,
        replies=0,
        strays=0,
        timeouts=0,
        unreachable=0,
        bad_responses=0,
        local_failures=0,
        tcp_queries=0,
        case_mismatches=0,
        socket_waits=0,
        ipv4=None,
        ipv6=None,
    )
    engine = dataclasses.replace(
        ENGINE, servers=servers, secure=7, insecure=3, bogus=2, indeterminate=1, synthesised=4
    )
    samples = scrape(readings(engine=engine))
    assert samples['resolver_dnssec_answers_total{result="secure"}'] == 7
    assert samples['resolver_dnssec_answers_total{result="insecure"}'] == 3
    assert samples['resolver_dnssec_answers_total{result="bogus"}'] == 2
    assert samples['resolver_dnssec_answers_total{result="indeterminate"}'] == 1
    assert samples["resolver_dnssec_synthesised_answers_total"] == 4


def test_listener_connections_and_encrypted_queries_are_counted_by_transport() -> None:
    server = dataclasses.replace(
        SERVER, accepted={"tcp": 3, "tls": 2, "https": 1}, tls_queries=7, https_queries=5
    )
    samples = scrape(readings(server=server))
    accepted = "resolver_dns_connections_accepted_total"
    assert samples[f'{accepted}{{transport="tcp"}}'] == 3
    assert samples[f'{accepted}{{transport="tls"}}'] == 2
    assert samples[f'{accepted}{{transport="https"}}'] == 1
    assert samples['resolver_dns_encrypted_requests_total{transport="tls"}'] == 7
    assert samples['resolver_dns_encrypted_requests_total{transport="https"}'] == 5
