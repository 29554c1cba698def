"""`resolver serve` forwarding to dnsdist's DoT and DoH frontends (dnsdist in front of Unbound's
plain port, all on loopback): the same answers as Unbound's plain path, and every query over
the one connection the pool keeps, as dnsdist's own counters show. Without dnsdist or unbound
these tests fail; they never skip."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
from dnsdist_peer import DnsdistPeer, running_dnsdist
from support import STOP, dns_query, free_port, start_resolver
from tls_support import PrivateCa
from unbound_peer import UnboundPeer

from resolver.wire import DNSRecord

pytestmark = pytest.mark.interop

NAMES = [f"n{i}.example." for i in range(32)]


@pytest.fixture
def dnsdist_peer(tmp_path: Path, ca: PrivateCa, unbound_peer: UnboundPeer) -> Iterator[DnsdistPeer]:
    with running_dnsdist(tmp_path, ca.issue("dnsdist"), unbound_peer.plain) as peer:
        yield peer


@contextmanager
def forwarding_to(upstream: str, ca: PrivateCa) -> Iterator[int]:
    port = free_port()
    process = start_resolver(
        ["serve", "--listen", f"127.0.0.1:{port}", "--upstream", upstream, "--tls-ca", str(ca.pem)],
        port,
        "n1.example.",
    )
    try:
        yield port
    finally:
        if process.poll() is None:
            process.terminate()
        try:
            process.communicate(timeout=STOP)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate(timeout=STOP)


def answer(reply: DNSRecord) -> list[str]:
    return sorted(f"{rr.rname} {rr.rtype} {rr.rdata}" for rr in reply.rr)


def upstream_of(peer: DnsdistPeer, scheme: str) -> str:
    if scheme == "tls":
        return f"tls://127.0.0.1:{peer.tls}#dns.test"
    return f"https://127.0.0.1:{peer.https}/dns-query#dns.test"


def connections_and_queries(peer: DnsdistPeer, scheme: str) -> tuple[int, int]:
    """The connections dnsdist accepted on the scheme's frontend, and the queries it got there."""
    if scheme == "tls":
        frontend = peer.tls_frontend()
        return frontend["tlsNewSessions"] + frontend["tlsResumptions"], frontend["queries"]
    doh = peer.https_frontend()
    return doh["http-connects"], doh["http2-queries"]


@pytest.mark.parametrize("scheme", ["tls", "https"], ids=["dot", "doh"])
def test_forwarding_to_dnsdist_answers_as_the_plain_path_over_one_connection(
    dnsdist_peer: DnsdistPeer, unbound_peer: UnboundPeer, ca: PrivateCa, scheme: str
) -> None:
    with forwarding_to(upstream_of(dnsdist_peer, scheme), ca) as port:
        # The start-up probe (n1, perhaps asked more than once) opened the connection.
        opened, probes = connections_and_queries(dnsdist_peer, scheme)
        for name in NAMES:
            ours = dns_query(port, name, timeout=5)
            plain = dns_query(unbound_peer.plain, name, timeout=5)
            assert ours.header.rcode == plain.header.rcode == 0
            assert answer(ours) == answer(plain)
        connections, queries = connections_and_queries(dnsdist_peer, scheme)
    assert opened == connections == 1
    assert queries - probes == len(NAMES) - 1  # n1 came from our cache
    if scheme == "https":
        assert dnsdist_peer.https_frontend()["post-queries"] == queries


@pytest.mark.parametrize("scheme", ["tls", "https"], ids=["dot", "doh"])
def test_forwarding_to_dnsdist_many_at_once_shares_the_pool_connections(
    dnsdist_peer: DnsdistPeer, ca: PrivateCa, scheme: str
) -> None:
    with forwarding_to(upstream_of(dnsdist_peer, scheme), ca) as port:
        _, probes = connections_and_queries(dnsdist_peer, scheme)
        with ThreadPoolExecutor(16) as pool:
            replies = list(pool.map(lambda name: dns_query(port, name, timeout=5), NAMES[2:]))
        assert [(reply.header.rcode, len(reply.rr)) for reply in replies] == [(0, 1)] * len(replies)
        connections, queries = connections_and_queries(dnsdist_peer, scheme)
    assert queries - probes == len(NAMES) - 2  # n2..n31, asked 16 at a time
    # All in flight together on the start-up probe's connection: a new one opens only when
    # every open one carries transport.pipeline_depth (64) queries.
    assert connections == 1
