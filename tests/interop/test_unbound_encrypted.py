"""Our stream connections against Unbound serving DNS over TLS and over HTTPS: the same
answers as its plain port, many queries over one connection (counted on Unbound's side too),
and session resumption on reconnect."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from support import until
from tls_support import PrivateCa, Query
from unbound_peer import NAMES, UnboundPeer

from resolver.transport.connection import TlsClient, open_stream
from resolver.transport.https import open_https
from resolver.transport.stream import StreamPool
from resolver.transport.tls import client_context
from resolver.wire import DNSRecord

pytestmark = pytest.mark.interop


def plain_answer(port: int, name: str) -> list[str]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.connect(("127.0.0.1", port))
        sock.send(DNSRecord.question(name, "A").pack())
        return answer_of(sock.recv(65535))


def answer_of(reply: bytes) -> list[str]:
    record = DNSRecord.parse(reply)
    return [f"{record.header.rcode} {rr.rname} {rr.rtype} {rr.rdata}" for rr in record.rr]


def pool_for(peer: UnboundPeer, ca: PrivateCa, protocol: str, **settings: float) -> StreamPool:
    if protocol == "tls":
        tls = TlsClient(client_context(ca.pem), "dns.test")
        address = ("127.0.0.1", peer.tls)
        return StreamPool(
            "unbound-tls",
            lambda session: open_stream(address, tls, session, "unbound-tls"),
            **settings,  # type: ignore[arg-type]
        )
    tls = TlsClient(client_context(ca.pem, alpn=("h2",)), "dns.test")
    address = ("127.0.0.1", peer.https)
    return StreamPool(
        "unbound-https",
        lambda session: open_https(
            address, tls, session, "unbound-https", "dns.test", "/dns-query"
        ),
        **settings,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("protocol", ["tls", "https"], ids=["dot", "doh"])
async def test_many_pipelined_queries_over_one_connection_answer_as_the_plain_port(
    unbound_peer: UnboundPeer,
    ca: PrivateCa,
    protocol: str,
) -> None:
    pool = pool_for(unbound_peer, ca, protocol, max_connections=4, idle_timeout=30.0)
    queries = [Query(f"n{i}.example.") for i in range(NAMES)]
    for query in queries:
        pool.submit(query)
    replies = await asyncio.wait_for(asyncio.gather(*(q.outcome for q in queries)), 20)
    for i, reply in enumerate(replies):
        assert answer_of(reply) == plain_answer(unbound_peer.plain, f"n{i}.example.")
    stats = pool.statistics()
    assert stats.opened == 1
    assert stats.queries == NAMES
    assert unbound_peer.established() == 1  # the server's side of the one connection
    counted = unbound_peer.stats()
    assert counted[f"num.query.{protocol}"] == NAMES
    await pool.aclose()


@pytest.mark.parametrize("protocol", ["tls", "https"], ids=["dot", "doh"])
async def test_reconnect_after_idle_close_resumes_the_tls_session(
    unbound_peer: UnboundPeer,
    ca: PrivateCa,
    protocol: str,
) -> None:
    pool = pool_for(unbound_peer, ca, protocol, idle_timeout=0.1)
    for name in ("n1.example.", "n2.example."):
        query = Query(name)
        pool.submit(query)
        await asyncio.wait_for(query.outcome, 10)
        await until(lambda: pool.statistics().open == 0, timeout=10)
    stats = pool.statistics()
    assert stats.opened == 2
    assert stats.resumed == 1
    await pool.aclose()


async def test_an_https_upstream_by_name_is_found_in_the_hosts_file_or_by_bootstrap(
    unbound_peer: UnboundPeer, ca: PrivateCa, tmp_path: Path
) -> None:
    from resolver.config import TransportConfig, parse_upstream
    from resolver.errors import UpstreamUnreachable
    from resolver.transport.encrypted import EncryptedTransport

    spec = parse_upstream(f"https://dns.test:{unbound_peer.https}/dns-query")
    assert not isinstance(spec, tuple)
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 dns.test\n")
    upstream = EncryptedTransport(spec, TransportConfig(tls_ca=ca.pem), hosts_file=hosts)
    await upstream.start()
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[bytes] = loop.create_future()
    query, question = upstream.build_query(b"\x02n4\x07example\x00", 1, 1)
    upstream.send(
        query,
        question,
        deadline=loop.time() + 10,
        report=lambda view, exc: outcome.set_result(view.message if view else b""),
    )
    reply = await outcome
    assert answer_of(reply) == plain_answer(unbound_peer.plain, "n4.example.")
    await upstream.aclose()
    # Neither in the hosts file nor known to the bootstrap server (Unbound's plain port).
    missing = tmp_path / "absent"
    lost = EncryptedTransport(
        spec,
        TransportConfig(tls_ca=ca.pem),
        hosts_file=missing,
        bootstrap=[("127.0.0.1", unbound_peer.plain)],
    )
    with pytest.raises(UpstreamUnreachable, match=r"cannot look up dns\.test"):
        await lost.start()
    await lost.aclose()
