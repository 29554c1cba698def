"""Pooled, pipelined stream connections (resolver.transport.stream) against scripted TCP and TLS
servers on loopback: many queries over one connection, replies in any order, the connection
cap, idle close (ours and the server's keepalive), a query retried once after the server
closed an idle connection, TLS verification, pins and session resumption."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
from support import until
from tls_support import PrivateCa, Query, StreamServer, echo_reply, server_context

from resolver.transport.connection import CertificateRejected, TlsClient, open_stream
from resolver.transport.stream import StreamPool
from resolver.transport.tls import client_context, spki_pin
from resolver.wire.options import OPTION_KEEPALIVE


def make_pool(server: StreamServer, tls: TlsClient | None = None, **settings: float) -> StreamPool:
    address = ("127.0.0.1", server.port)
    return StreamPool(
        "test",
        lambda session: open_stream(address, tls, session, "test"),
        **settings,  # type: ignore[arg-type]
    )


def reverse_after(count: int) -> Callable[[list[bytes]], list[bytes]]:
    """Answer nothing until ``count`` more queries came, then those, last first."""

    def answer(seen: list[bytes]) -> list[bytes]:
        if len(seen) % count:
            return []
        return [echo_reply(query) for query in reversed(seen[-count:])]

    return answer


def at_once(seen: list[bytes]) -> list[bytes]:
    return [echo_reply(seen[-1])]


async def test_pipelined_queries_share_one_connection_and_match_replies_in_reverse_order() -> None:
    async with StreamServer(reverse_after(10)) as server:
        pool = make_pool(server, max_connections=4)
        queries = [Query(f"n{i}.example.") for i in range(10)]
        for query in queries:
            pool.submit(query)
        replies = await asyncio.gather(*(q.outcome for q in queries))
        for query, reply in zip(queries, replies, strict=True):
            assert reply[:2] == query.query[:2]
            assert query.question in reply
        stats = pool.statistics()
        assert server.accepted == 1
        assert stats.opened == 1
        assert stats.queries == 10
        assert stats.reused == 9
        await pool.aclose()


async def test_queries_get_keepalive_option_and_server_keepalive_zero_closes_idle() -> None:
    def with_keepalive(seen: list[bytes]) -> list[bytes]:
        reply = echo_reply(seen[-1])
        # an OPT with edns-tcp-keepalive timeout 0: close once idle
        opt = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x06\x00\x0b\x00\x02\x00\x00"
        return [reply[:10] + b"\x00\x01" + reply[12:] + opt]

    async with StreamServer(with_keepalive) as server:
        pool = make_pool(server, idle_timeout=60.0)
        query = Query("k.example.")
        pool.submit(query)
        await query.outcome
        sent = server.queries[0]
        assert sent.endswith(OPTION_KEEPALIVE.to_bytes(2, "big") + b"\x00\x00")
        await until(lambda: pool.statistics().open == 0)
        assert pool.statistics().closed == 1
        await pool.aclose()


def keepalive_reply(query: bytes, tenths: int) -> bytes:
    """An echo reply to ``query`` whose OPT says edns-tcp-keepalive ``tenths`` x 100 ms."""
    reply = echo_reply(query)
    opt = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x06\x00\x0b\x00\x02"
    return reply[:10] + b"\x00\x01" + reply[12:] + opt + tenths.to_bytes(2, "big")


async def test_a_servers_short_keepalive_closes_idle_before_an_idle_close_already_planned() -> None:
    def answer(seen: list[bytes]) -> list[bytes]:
        query = seen[-1]
        if b"\x04hold" in query:
            return []  # keeps a second connection busy
        if b"\x05short" in query:
            return [keepalive_reply(query, 2)]  # 0.2 s
        return [echo_reply(query)]

    async with StreamServer(answer) as server:
        pool = make_pool(server, idle_timeout=60.0, max_inflight=1)
        long, hold = Query("long.example."), Query("hold.example.")
        pool.submit(long)
        pool.submit(hold)
        await long.outcome  # its connection idle: closed in 60 s, the plan so far
        await until(lambda: server.accepted == 2)
        short = Query("short.example.")
        pool.submit(short)  # over the idle connection, whose server now says 0.2 s
        await short.outcome
        await until(lambda: pool.statistics().idle_closed == 1, timeout=10.0)
        assert pool.statistics().open == 1  # the one still waiting for "hold"
        await pool.aclose()


async def test_connection_cap_holds_and_waiting_queries_get_room() -> None:
    async with StreamServer(reverse_after(2)) as server:
        pool = make_pool(server, max_connections=2, max_inflight=2)
        queries = [Query(f"c{i}.example.") for i in range(8)]
        for query in queries:
            pool.submit(query)
        await asyncio.gather(*(q.outcome for q in queries))
        stats = pool.statistics()
        assert 1 <= stats.opened <= 2  # the second may still be opening when all is answered
        assert server.accepted <= 2
        assert stats.strays == 0  # never more than two in flight on one connection
        await pool.aclose()


async def test_idle_connection_closes_after_idle_timeout() -> None:
    async with StreamServer(at_once) as server:
        pool = make_pool(server, idle_timeout=0.05)
        query = Query("idle.example.")
        pool.submit(query)
        await query.outcome
        await until(lambda: pool.statistics().open == 0)
        assert pool.statistics().idle_closed == 1
        await pool.aclose()


async def test_query_on_connection_the_server_closed_is_retried_once_on_a_fresh_one() -> None:
    def close_on_second(seen: list[bytes]) -> list[bytes]:
        if len(seen) == 2:
            raise ConnectionError("closing as the second query arrives")
        return [echo_reply(seen[-1])]

    async with StreamServer(close_on_second) as server:
        pool = make_pool(server)
        first = Query("one.example.")
        pool.submit(first)
        await first.outcome
        second = Query("two.example.")
        pool.submit(second)
        reply = await second.outcome
        assert reply[:2] == second.query[:2]
        stats = pool.statistics()
        assert stats.retried == 1
        assert stats.peer_closed == 1
        assert server.accepted == 2
        await pool.aclose()


async def test_server_closing_a_fresh_connection_fails_the_query_without_retry() -> None:
    def close_at_once(seen: list[bytes]) -> list[bytes]:
        raise ConnectionError("never answers")

    async with StreamServer(close_at_once) as server:
        pool = make_pool(server)
        query = Query("gone.example.")
        pool.submit(query)
        with pytest.raises(Exception, match="closed the connection before replying"):
            await query.outcome
        assert pool.statistics().retried == 0
        await pool.aclose()


async def test_nothing_listening_fails_queued_queries_as_unreachable() -> None:
    async with StreamServer(at_once) as server:
        port = server.port
    pool = StreamPool("test", lambda session: open_stream(("127.0.0.1", port), None, None, "t"))
    query = Query("refused.example.")
    pool.submit(query)
    with pytest.raises(Exception, match="cannot connect"):
        await query.outcome
    assert pool.statistics().failed_opens == 1
    await pool.aclose()


# ----------------------------------------------------------------- TLS


async def test_tls_answers_and_resumes_the_session_on_reconnect(ca: PrivateCa) -> None:
    issued = ca.issue("good")
    async with StreamServer(at_once, server_context(issued)) as server:
        tls = TlsClient(client_context(ca.pem), "dns.test")
        pool = make_pool(server, tls, idle_timeout=0.05)
        for round_ in range(2):
            query = Query(f"r{round_}.example.")
            pool.submit(query)
            await query.outcome
            await until(lambda: pool.statistics().open == 0)
        stats = pool.statistics()
        assert stats.opened == 2
        assert stats.resumed == 1
        await pool.aclose()


async def test_tls_pin_of_the_servers_key_is_accepted(ca: PrivateCa) -> None:
    issued = ca.issue("pinned")
    async with StreamServer(at_once, server_context(issued)) as server:
        tls = TlsClient(client_context(ca.pem), "dns.test", (spki_pin(issued.der),))
        pool = make_pool(server, tls)
        query = Query("pin.example.")
        pool.submit(query)
        await query.outcome
        await pool.aclose()


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("wrong_name", "Hostname mismatch"),
        ("unknown_ca", "self-signed certificate in certificate chain"),
        ("expired", "certificate has expired"),
        ("pin_mismatch", "no pinned key matches"),
    ],
    ids=["wrong-name", "unknown-ca", "expired", "pin-mismatch"],
)
async def test_tls_certificate_not_accepted_fails_the_query_with_the_reason(
    ca: PrivateCa, tmp_path: Path, case: str, reason: str
) -> None:
    issued = ca.issue(case, names=("other.test",) if case == "wrong_name" else ("dns.test",))
    if case == "expired":
        issued = ca.issue(case, expired=True)
    trust = ca.pem
    if case == "unknown_ca":
        other = tmp_path / "other"
        other.mkdir()
        trust = PrivateCa(other).pem
    pins = ("AAAA" + "A" * 40,) if case == "pin_mismatch" else ()
    failures: list[BaseException] = []
    async with StreamServer(at_once, server_context(issued)) as server:
        tls = TlsClient(client_context(trust), "dns.test", pins)
        pool = StreamPool(
            "test",
            lambda session: open_stream(("127.0.0.1", server.port), tls, session, "t"),
            on_failure=failures.append,
        )
        query = Query("bad.example.")
        pool.submit(query)
        with pytest.raises(CertificateRejected, match=reason.replace(" ", ".")) as caught:
            await query.outcome
        assert "certificate not accepted" in str(caught.value)
        assert server.queries == []  # nothing was sent in the clear, nor at all
        assert len(failures) == 1
        await pool.aclose()


def test_tls_client_context_checks_names_by_default() -> None:
    context = client_context()
    assert context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED


# ----------------------------------------------------------------- through an upstream


async def test_a_cancelled_query_frees_its_slot_and_its_late_reply_is_a_stray() -> None:
    from resolver.transport import Upstream

    release = asyncio.Event()
    held: list[bytes] = []

    def answer(seen: list[bytes]) -> list[bytes]:
        held.append(seen[-1])
        return [echo_reply(query) for query in held] if len(held) == 2 else []

    async with StreamServer(answer) as server:
        upstream = Upstream(("127.0.0.1", server.port))
        await upstream.start()
        loop = asyncio.get_running_loop()
        reports: list[object] = []
        first = upstream.send(
            *upstream.build_query(b"\x01a\x07example\x00", 1, 1),
            deadline=loop.time() + 5,
            report=lambda reply, exc: reports.append(("first", reply, exc)),
            tcp=True,
        )
        await until(lambda: len(server.queries) == 1)
        first.cancel()
        assert upstream.statistics().streams.in_flight == 0
        second = upstream.send(
            *upstream.build_query(b"\x01b\x07example\x00", 1, 1),
            deadline=loop.time() + 5,
            report=lambda reply, exc: reports.append(("second", reply, exc)),
            tcp=True,
        )
        await until(lambda: len(reports) == 1)
        assert reports[0][0] == "second"
        assert reports[0][2] is None
        streams = upstream.statistics().streams
        assert streams.strays == 1  # the cancelled query's late reply
        assert streams.opened == 1
        assert second.done
        release.set()
        await upstream.aclose()
        assert upstream.statistics().streams.open == 0


async def test_a_query_cancelled_while_its_connection_opens_is_never_sent() -> None:
    from resolver.transport import Upstream

    async with StreamServer(at_once) as server:
        upstream = Upstream(("127.0.0.1", server.port))
        await upstream.start()
        loop = asyncio.get_running_loop()
        reports: list[object] = []
        exchange = upstream.send(
            *upstream.build_query(b"\x01c\x07example\x00", 1, 1),
            deadline=loop.time() + 5,
            report=lambda reply, exc: reports.append(exc),
            tcp=True,
        )
        exchange.cancel()  # before the connection is open
        await until(lambda: upstream.statistics().streams.opened == 1)
        await asyncio.sleep(0)
        assert server.queries == []
        assert reports == []
        assert upstream.statistics().streams.queries == 0
        await upstream.aclose()


async def test_closing_the_upstream_ends_queries_in_flight_without_reports() -> None:
    from resolver.transport import Upstream

    async with StreamServer(lambda seen: []) as server:  # never answers
        upstream = Upstream(("127.0.0.1", server.port))
        await upstream.start()
        loop = asyncio.get_running_loop()
        reports: list[object] = []
        upstream.send(
            *upstream.build_query(b"\x01d\x07example\x00", 1, 1),
            deadline=loop.time() + 5,
            report=lambda reply, exc: reports.append(exc),
            tcp=True,
        )
        await until(lambda: len(server.queries) == 1)
        await upstream.aclose()
        streams = upstream.statistics().streams
        assert streams.open == 0
        assert streams.in_flight == 0
        assert reports == []


async def test_a_connection_whose_queries_go_unanswered_is_closed_and_replaced() -> None:
    from resolver.transport import Upstream

    async with StreamServer(lambda seen: []) as server:  # reads, never answers
        upstream = Upstream(("127.0.0.1", server.port))
        await upstream.start()
        loop = asyncio.get_running_loop()
        failures: list[BaseException | None] = []
        for label in (b"\x01e", b"\x01f", b"\x01g"):
            upstream.send(
                *upstream.build_query(label + b"\x07example\x00", 1, 1),
                deadline=loop.time() + 0.1,
                report=lambda reply, exc: failures.append(exc),
                tcp=True,
            )
        await until(lambda: len(failures) == 3)
        streams = upstream.statistics().streams
        assert streams.stuck == 1
        assert streams.open == 0
        assert server.accepted == 1
        upstream.send(
            *upstream.build_query(b"\x01h\x07example\x00", 1, 1),
            deadline=loop.time() + 0.1,
            report=lambda reply, exc: failures.append(exc),
            tcp=True,
        )
        await until(lambda: server.accepted == 2)
        await upstream.aclose()
