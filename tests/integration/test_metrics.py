"""`resolver serve --metrics ADDR:PORT` as a real subprocess in front of a scripted upstream:
the counters of what it answered over UDP and TCP, scraped with urllib; errors for other
paths and for garbage, which never stop the DNS answers; a reload that keeps the listener for
a restart; a taken metrics port."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from support import (
    STARTUP,
    ScriptedUpstream,
    addresses,
    dns_query,
    free_port,
    metric_samples,
    start_resolver,
    stop,
    tcp_exchange,
    write,
)

from resolver.wire import QTYPE, RCODE, RR, DNSRecord

# Never a proxy from the environment: every request here goes to loopback.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_SOA = "example.com. 300 IN SOA ns1.example.com. hostmaster.example.com. 1 7200 3600 1209600 300"


def upstream_script(query: bytes) -> bytes:
    """www.example.com has an A record; every other name is NXDOMAIN."""
    request = DNSRecord.parse(query)
    reply = request.reply()
    if str(request.q.qname).lower() == "www.example.com." and request.q.qtype == QTYPE.A:
        reply.add_answer(*RR.fromZone("www.example.com. 300 IN A 127.1.0.1"))
    else:
        reply.header.rcode = RCODE.NXDOMAIN
        reply.add_auth(*RR.fromZone(_SOA))
    return bytes(reply.pack())


def get(port: int, path: str = "/metrics", data: bytes | None = None) -> tuple[int, str, str]:
    """(status, content type, body) of one request to the metrics listener (blocking)."""
    try:
        with _OPENER.open(f"http://127.0.0.1:{port}{path}", data=data, timeout=3.0) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


async def scrape(port: int) -> dict[str, float]:
    status, content_type, body = await asyncio.to_thread(get, port)
    assert status == 200
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    return metric_samples(body)


def raw_http(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=3.0) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(4096):  # until the listener closes; bounded by the timeout
            data += chunk
        return data


def changes(before: dict[str, float], after: dict[str, float], prefix: str) -> dict[str, float]:
    """How the samples named ``prefix...`` moved between two scrapes (zeros left out)."""
    moved = {k: v - before.get(k, 0.0) for k, v in after.items() if k.startswith(prefix)}
    return {k: v for k, v in moved.items() if v}


async def test_metrics_count_what_the_daemon_answered(tmp_path: Path) -> None:
    async with ScriptedUpstream(upstream_script) as upstream:
        port, metrics = free_port(), free_port()
        args = [
            "serve",
            "--listen",
            f"127.0.0.1:{port}",
            "--upstream",
            f"127.0.0.1:{upstream.address[1]}",
            "--metrics",
            f"127.0.0.1:{metrics}",
        ]
        # Started with a local question: the upstream answers on this loop, which waits.
        process = await asyncio.to_thread(start_resolver, args, port, "localhost.")
        try:
            before = await scrape(metrics)

            def ask_all() -> None:
                for _ in range(
                    3
                ):  # a miss, a hit, and a hit (a repeat of its rendered reply, likely)
                    assert addresses(dns_query(port, "www.example.com.", timeout=3.0)) == [
                        "127.1.0.1"
                    ]
                reply = dns_query(port, "nothere.example.com.", timeout=3.0)
                assert reply.header.rcode == RCODE.NXDOMAIN
                query = DNSRecord.question("www.example.com.").pack()
                reply = DNSRecord.parse(tcp_exchange(port, query))
                assert addresses(reply) == ["127.1.0.1"]

            await asyncio.to_thread(ask_all)
            after = await scrape(metrics)
        finally:
            err = await asyncio.to_thread(stop, process)
    assert f"metrics at http://127.0.0.1:{metrics}/metrics" in err
    # The start-up probes asked for localhost: the scrapes' differences are ours alone.
    assert changes(before, after, "resolver_dns_requests_total") == {
        'resolver_dns_requests_total{proto="udp",type="A"}': 4,
        'resolver_dns_requests_total{proto="tcp",type="A"}': 1,
    }
    assert changes(before, after, "resolver_dns_responses_total") == {
        'resolver_dns_responses_total{proto="udp",rcode="NOERROR"}': 3,
        'resolver_dns_responses_total{proto="udp",rcode="NXDOMAIN"}': 1,
        'resolver_dns_responses_total{proto="tcp",rcode="NOERROR"}': 1,
    }
    durations = changes(before, after, "resolver_dns_request_duration_seconds_count")
    assert durations == {
        'resolver_dns_request_duration_seconds_count{proto="udp"}': 4,
        'resolver_dns_request_duration_seconds_count{proto="tcp"}': 1,
    }
    # The cache hits (and the repeat of the rendered reply) are made at once: no time at all.
    instant = 'resolver_dns_request_duration_seconds_bucket{le="0.00025",proto="%s"}'
    assert after[instant % "udp"] - before[instant % "udp"] >= 2
    assert after[instant % "tcp"] - before[instant % "tcp"] == 1
    assert after["resolver_cache_hits_total"] == 3
    assert after["resolver_cache_misses_total"] == 2
    assert after["resolver_cache_entries"] == 2
    assert after["resolver_cache_evictions_total"] == 0
    assert after["resolver_cache_stale_answers_total"] == 0
    to = f'to="127.0.0.1:{upstream.address[1]}"'
    assert after[f'resolver_upstream_requests_total{{proto="udp",{to}}}'] == 2
    assert after[f'resolver_upstream_requests_total{{proto="tcp",{to}}}'] == 0
    assert after[f"resolver_upstream_responses_total{{{to}}}"] == 2
    assert after[f"resolver_upstream_timeouts_total{{{to}}}"] == 0
    assert after[f"resolver_upstream_rtt_seconds_count{{{to}}}"] == 2
    assert after[f"resolver_upstream_unwanted_replies_total{{{to}}}"] == 0
    assert after[f'resolver_pool_sockets{{state="in_use",{to}}}'] == 0
    assert after[f'resolver_pool_sockets{{state="idle",{to}}}'] >= 8  # transport.pool.min_size
    assert after[f"resolver_pool_waiting{{{to}}}"] == 0
    created = after[f"resolver_pool_sockets_created_total{{{to}}}"]
    retired = after[f"resolver_pool_sockets_retired_total{{{to}}}"]
    assert created - retired == after[f'resolver_pool_sockets{{state="idle",{to}}}']
    assert len(upstream.queries) == 2
    assert after['resolver_reloads_total{result="applied"}'] == 0
    assert after["process_open_fds"] > 0


async def test_other_paths_and_garbage_get_errors_and_dns_answers_on() -> None:
    async with ScriptedUpstream(upstream_script) as upstream:
        port, metrics = free_port(), free_port()
        args = [
            "serve",
            f"--listen=127.0.0.1:{port}",
            f"--upstream=127.0.0.1:{upstream.address[1]}",
            f"--metrics=127.0.0.1:{metrics}",
        ]
        process = await asyncio.to_thread(start_resolver, args, port, "localhost.")
        try:
            assert (await asyncio.to_thread(get, metrics, "/"))[0] == 404
            assert (await asyncio.to_thread(get, metrics, "/metrics", b"x=1"))[0] == 405
            garbage = b"\x00\xff\x13garbage\r\n\r\n"
            response = await asyncio.to_thread(raw_http, metrics, garbage)
            assert response.startswith(b"HTTP/1.0 400 ")
            # A scraper that connects and says nothing holds no query up.
            with socket.create_connection(("127.0.0.1", metrics), timeout=3.0):
                reply = await asyncio.to_thread(dns_query, port, "www.example.com.", "A", 3.0)
                assert addresses(reply) == ["127.1.0.1"]
            samples = await scrape(metrics)
            assert samples['resolver_dns_requests_total{proto="udp",type="A"}'] >= 2
        finally:
            await asyncio.to_thread(stop, process)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", metrics)) != 0  # closed with the daemon


async def test_a_reload_keeps_the_metrics_listener_until_a_restart(tmp_path: Path) -> None:
    async with ScriptedUpstream(upstream_script) as upstream:
        port, metrics, other = free_port(), free_port(), free_port()
        config = tmp_path / "resolver.toml"

        def text(listen: int) -> str:
            return (
                f'[server]\nlisten = ["127.0.0.1:{port}"]\n'
                f'[forwarder]\nupstreams = ["127.0.0.1:{upstream.address[1]}"]\n'
                f'[metrics]\nlisten = "127.0.0.1:{listen}"\n'
            )

        write(config, text(metrics))
        args = ["serve", "--config", str(config)]
        process = await asyncio.to_thread(start_resolver, args, port, "localhost.")
        try:
            write(config, text(other))
            process.send_signal(signal.SIGHUP)
            async with asyncio.timeout(5.0):
                while (await scrape(metrics))['resolver_reloads_total{result="applied"}'] < 1:
                    await asyncio.sleep(0.05)
            with socket.socket() as probe:
                assert probe.connect_ex(("127.0.0.1", other)) != 0
        finally:
            err = await asyncio.to_thread(stop, process)
    assert "reload: metrics.listen changed; it takes effect at the next restart" in err


def test_a_taken_metrics_port_fails_the_start_with_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        metrics = taken.getsockname()[1]
        args = [
            "serve",
            f"--listen=127.0.0.1:{free_port()}",
            f"--upstream=127.0.0.1:{free_port()}",
            f"--metrics=127.0.0.1:{metrics}",
        ]
        result = subprocess.run(
            [sys.executable, "-m", "resolver", *args],
            capture_output=True,
            text=True,
            timeout=STARTUP,
        )
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"resolver: error: cannot start: metrics listener 127.0.0.1:{metrics}: "
        "Address already in use"
    )
