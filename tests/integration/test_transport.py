"""resolver.transport.Upstream against the fake authority over loopback, through its public
interface (``build_query`` and ``send``): reply matching, socket rotation, every fault knob,
TCP, 0x20 and cancellation. The transport decides nothing: a truncated reply is reported as
it came (the engine's decisions ask again over TCP: tests/integration/test_engine.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import pytest
from support import ScriptedUpstream, dead_udp_port, idle_pool, until

from resolver.authority import Authority
from resolver.config import SocketPoolConfig, TransportConfig
from resolver.errors import BadResponse, UpstreamTimeout, UpstreamUnreachable
from resolver.transport import Upstream
from resolver.wire import (
    CLASS_IN,
    QR,
    SERVFAIL,
    TYPE_A,
    DNSRecord,
    name_to_wire,
    qtype_value,
    read_header,
    read_question,
)
from resolver.wire.view import ReplyView, scan

BOUND = 5.0  # every test finishes well within this; reached only when a test is failing
SHORT = 0.3  # the deadline of exchanges that are expected to time out
TXT = qtype_value("TXT")


def pool(**kwargs: Any) -> TransportConfig:
    return TransportConfig(pool=SocketPoolConfig(**kwargs))


@contextlib.asynccontextmanager
async def open_upstream(
    address: tuple[str, int], config: TransportConfig | None = None
) -> AsyncIterator[Upstream]:
    upstream = Upstream(address, config or pool(min_size=1, max_size=4))
    await upstream.start()
    try:
        yield upstream
    finally:
        # Closing a pool while a socket is half-made leaks it on uvloop (the leak test in
        # test_forwarder.py); let creations finish so that bug fails one test, not all.
        with contextlib.suppress(TimeoutError):
            await until(lambda: idle_pool(upstream))
        await upstream.aclose()


async def ask(
    upstream: Upstream,
    name: str = "www.example.com.",
    qtype: int = TYPE_A,
    *,
    timeout: float = 2.0,
    tcp: bool = False,
) -> bytes:
    """One exchange by ``upstream.send``, awaited: the reply, or the exception it reported;
    a cancelled wait cancels the exchange, as the engine's driver does."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[bytes] = loop.create_future()

    def report(reply: ReplyView | None, exc: BaseException | None) -> None:
        if future.done():
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            assert reply is not None
            assert reply == scan(reply.message)  # the view describes the reply
            future.set_result(reply.message)

    query, question = upstream.build_query(name_to_wire(name), qtype, CLASS_IN)
    exchange = upstream.send(
        query, question, deadline=loop.time() + timeout, report=report, tcp=tcp
    )
    try:
        return await future
    except asyncio.CancelledError:
        exchange.cancel()
        raise


def answers(reply: bytes) -> list[str]:
    return [str(rr.rdata) for rr in DNSRecord.parse(reply).rr]


def assert_pool_balanced(upstream: Upstream) -> None:
    stats = upstream.pool.statistics()
    assert stats.size == stats.idle + stats.in_use
    assert stats.in_use == 0


async def timed_out(upstream: Upstream, name: str = "www.example.com.") -> float:
    """Ask once with a SHORT deadline, expect UpstreamTimeout; return the elapsed time."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(UpstreamTimeout):
        await ask(upstream, name, timeout=SHORT)
    return loop.time() - start


# --- plain exchanges ----------------------------------------------------------------------


async def test_exchange_returns_the_reply_with_our_random_id_and_question(
    authority: Authority,
) -> None:
    async with asyncio.timeout(BOUND), open_upstream(authority.address) as upstream:
        reply = await ask(upstream, "www.example.com.")
        (received,) = authority.queries
        assert read_header(reply).id == received.id
        assert read_header(reply).qr
        question = read_question(reply)
        assert (question.text, question.qtype) == ("www.example.com.", TYPE_A)
        assert answers(reply) == ["127.1.0.1"]
        stats = upstream.statistics()
        assert (stats.queries, stats.replies, stats.strays, stats.tcp_queries) == (1, 1, 0, 0)
        assert_pool_balanced(upstream)


async def test_round_trips_of_accepted_replies_are_timed_and_timeouts_are_not(
    authority: Authority,
) -> None:
    authority.faults.delay = 0.05
    async with asyncio.timeout(BOUND), open_upstream(authority.address) as upstream:
        await ask(upstream)
        await ask(upstream, tcp=True)
        authority.faults.drop = True
        with pytest.raises(UpstreamTimeout):
            await ask(upstream, timeout=SHORT)
        rtt = upstream.statistics().rtt
    assert rtt.count == 2
    assert 0.1 <= rtt.total < 1.0
    # Both waited 50 ms or a little more: above the 32 ms bound, within the 64 ms one or so.
    below = dict(rtt.cumulative())
    assert below[0.032] == 0
    assert below[0.256] == 2


async def test_each_query_gets_a_fresh_random_id(authority: Authority) -> None:
    async with asyncio.timeout(BOUND), open_upstream(authority.address) as upstream:
        for _ in range(20):
            await ask(upstream)
        ids = [q.id for q in authority.queries]
        # 20 draws from 65536: a repeat is possible (p ~ 0.3%), three equal IDs are not.
        assert len(set(ids)) >= 18
        assert ids != sorted(ids)


async def test_default_pool_picks_idle_sockets_at_random_and_retires_them_quickly(
    authority: Authority,
) -> None:
    async with asyncio.timeout(BOUND), open_upstream(authority.address, TransportConfig()) as up:
        for _ in range(400):
            await ask(up)
        # max_uses 8: 400 queries need at least 50 sockets. (Ports alone cannot show it: the
        # kernel may hand a retired socket's port to a new one.)
        assert up.pool.statistics().created >= 50
    ports = [q.client[1] for q in authority.queries]
    assert len(set(ports)) >= 40
    # No fixed cycle: drawn at random among about 8 idle sockets, the port 8 queries later is
    # seldom the same (in turn, oldest first, it nearly always was).
    same = sum(ports[i] == ports[i + 8] for i in range(len(ports) - 8))
    assert same < len(ports) // 4


async def test_fifo_order_uses_idle_sockets_in_turn_from_different_source_ports(
    authority: Authority,
) -> None:
    async with (
        asyncio.timeout(BOUND),
        open_upstream(authority.address, pool(min_size=4, max_size=4, order="fifo")) as upstream,
    ):
        for _ in range(8):
            await ask(upstream)
        ports = [q.client[1] for q in authority.queries]
        assert len(set(ports)) == 4
        # FIFO order: each socket is used once before any is used twice.
        assert ports[:4] == ports[4:]


async def test_concurrent_queries_leave_from_different_source_ports(
    authority: Authority,
) -> None:
    authority.faults.delay = 0.05  # keep every socket busy while the others are checked out
    async with (
        asyncio.timeout(BOUND),
        open_upstream(authority.address, pool(min_size=1, max_size=3)) as upstream,
    ):
        replies = await asyncio.gather(*(ask(upstream) for _ in range(3)))
        assert all(answers(r) == ["127.1.0.1"] for r in replies)
        assert len({q.client[1] for q in authority.queries}) == 3
        assert_pool_balanced(upstream)


async def test_sockets_rotate_after_max_uses(authority: Authority) -> None:
    config = pool(max_uses=2, min_size=1, max_size=2)
    async with asyncio.timeout(BOUND), open_upstream(authority.address, config) as upstream:
        for _ in range(6):
            await ask(upstream)
        per_port = Counter(q.client[1] for q in authority.queries)
        assert max(per_port.values()) <= 2
        assert len(per_port) >= 3
        assert upstream.pool.statistics().retired >= 2
        assert_pool_balanced(upstream)


# --- faults -------------------------------------------------------------------------------


async def test_dropped_query_times_out_at_the_deadline_and_its_socket_is_discarded(
    authority: Authority,
) -> None:
    authority.faults.drop = True
    async with asyncio.timeout(BOUND), open_upstream(authority.address) as upstream:
        elapsed = await timed_out(upstream)
        # Not before the deadline (timers never fire early); after it, only as late as the
        # loop is busy: BOUND catches an exchange that never ends.
        assert SHORT - 0.05 <= elapsed < SHORT + 2.0
        dropped_port = authority.queries[0].client[1]
        stats = upstream.statistics()
        assert (stats.timeouts, stats.replies) == (1, 0)
        assert stats.pool.discarded == 1
        assert stats.pool.retired >= 1
        assert_pool_balanced(upstream)

        authority.faults.drop = False
        for _ in range(4):
            assert answers(await ask(upstream)) == ["127.1.0.1"]
        assert dropped_port not in {q.client[1] for q in authority.queries[1:]}


async def test_wrong_id_alone_is_a_stray_and_the_query_times_out(authority: Authority) -> None:
    authority.faults.wrong_id = True
    async with asyncio.timeout(BOUND), open_upstream(authority.address) as upstream:
        await timed_out(upstream)
        stats = upstream.statistics()
        assert stats.strays == 1
        assert stats.pool.discarded == 1
        assert_pool_balanced(upstream)


async def test_one_forged_reply_does_not_end_the_query(authority: Authority) -> None:
    authority.faults.wrong_id = True
    authority.faults.also_right_id = True
    async with asyncio.timeout(BOUND), open_upstream(authority.address) as upstream:
        reply = await ask(upstream)
        assert answers(reply) == ["127.1.0.1"]
        assert read_header(reply).id == authority.queries[0].id
        stats = upstream.statistics()
        assert (stats.strays, stats.replies, stats.pool.discarded) == (1, 1, 0)


def questionless(rcode: int) -> Callable[[bytes], bytes]:
    """A script that answers every query with ``rcode`` and no question section."""

    def script(query: bytes) -> bytes:
        return query[:2] + bytes((0x80, rcode)) + bytes(8)

    return script


@pytest.mark.parametrize(
    "rcode",
    [
        pytest.param(1, id="formerr"),
        pytest.param(2, id="servfail"),
        pytest.param(4, id="notimp"),
        pytest.param(5, id="refused"),
    ],
)
async def test_an_error_reply_without_a_question_is_accepted(rcode: int) -> None:
    async with (
        asyncio.timeout(BOUND),
        ScriptedUpstream(questionless(rcode)) as server,
        open_upstream(server.address) as upstream,
    ):
        reply = await ask(upstream)
        assert (read_header(reply).rcode, read_header(reply).qdcount) == (rcode, 0)
        assert upstream.statistics().strays == 0


@pytest.mark.parametrize("rcode", [pytest.param(0, id="noerror"), pytest.param(3, id="nxdomain")])
async def test_an_answer_without_a_question_is_a_stray(rcode: int) -> None:
    async with (
        asyncio.timeout(BOUND),
        ScriptedUpstream(questionless(rcode)) as server,
        open_upstream(server.address) as upstream,
    ):
        await timed_out(upstream)
        assert upstream.statistics().strays == 1


async def test_our_reply_with_records_that_cannot_be_read_is_a_bad_response() -> None:
    def cut_record(query: bytes) -> bytes:
        # Our ID and question, one answer announced, and a record cut off after its name.
        end = read_question(query).end
        return query[:2] + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + query[12:end] + b"\xc0\x0c"

    async with (
        asyncio.timeout(BOUND),
        ScriptedUpstream(cut_record) as server,
        open_upstream(server.address) as upstream,
    ):
        with pytest.raises(BadResponse, match="malformed reply"):
            await ask(upstream)
        assert upstream.statistics().bad_responses == 1
        assert_pool_balanced(upstream)


async def test_reply_from_another_source_port_is_not_accepted(authority: Authority) -> None:
    authority.faults.other_port = True
    async with asyncio.timeout(BOUND), open_upstream(authority.address) as upstream:
        await timed_out(upstream)
        # The kernel drops datagrams from other ports on a connected socket, so the stray
        # count may stay 0; what matters is that the reply was not taken.
        stats = upstream.statistics()
        assert (stats.replies, stats.timeouts) == (0, 1)
        assert authority.statistics()["replies"] == 1


async def test_garbage_is_a_stray_and_the_query_times_out(authority: Authority) -> None:
    authority.faults.garbage = True
    async with asyncio.timeout(BOUND), open_upstream(authority.address) as upstream:
        await timed_out(upstream)
        assert upstream.statistics().strays == 1


@pytest.mark.parametrize(
    ("name", "qtype", "expected"),
    [
        pytest.param("www.example.com.", TYPE_A, 1, id="always-tc"),
        pytest.param("big.example.com.", TXT, 8, id="big-txt"),
    ],
)
async def test_a_truncated_udp_reply_is_reported_as_it_came_and_tcp_gets_it_whole(
    authority: Authority, name: str, qtype: int, expected: int
) -> None:
    authority.faults.always_tc = name == "www.example.com."
    async with asyncio.timeout(BOUND), open_upstream(authority.address) as upstream:
        truncated = await ask(upstream, name, qtype)
        assert read_header(truncated).tc
        whole = await ask(upstream, name, qtype, tcp=True)
        assert not read_header(whole).tc
        assert len(DNSRecord.parse(whole).rr) == expected
        assert upstream.statistics().tcp_queries == 1
        assert [q.transport for q in authority.queries] == ["udp", "tcp"]
        assert_pool_balanced(upstream)


async def test_tcp_closed_without_a_reply_is_a_bad_response(authority: Authority) -> None:
    authority.faults.close_tcp = True
    async with asyncio.timeout(BOUND), open_upstream(authority.address) as upstream:
        with pytest.raises(BadResponse):
            await ask(upstream, tcp=True)
        assert upstream.statistics().bad_responses == 1
        assert_pool_balanced(upstream)


async def test_servfail_is_returned_as_an_answer(authority: Authority) -> None:
    authority.faults.servfail = True
    async with asyncio.timeout(BOUND), open_upstream(authority.address) as upstream:
        reply = await ask(upstream)
        assert read_header(reply).rcode == SERVFAIL
        assert upstream.statistics().replies == 1


async def test_tcp_only_exchange_skips_udp(authority: Authority) -> None:
    async with asyncio.timeout(BOUND), open_upstream(authority.address) as upstream:
        reply = await ask(upstream, tcp=True)
        assert answers(reply) == ["127.1.0.1"]
        assert [q.transport for q in authority.queries] == ["tcp"]


# --- 0x20 ---------------------------------------------------------------------------------


async def test_0x20_sends_mixed_case_and_accepts_the_echoed_reply(authority: Authority) -> None:
    config = TransportConfig(randomize_case=True, pool=SocketPoolConfig(min_size=1, max_size=2))
    async with asyncio.timeout(BOUND), open_upstream(authority.address, config) as upstream:
        replies = [await ask(upstream, "www.example.com.") for _ in range(5)]
        sent = [q.qname for q in authority.queries]
        assert all(name.lower() == "www.example.com." for name in sent)
        # 13 letters each: five all-lowercase names in a row happen once in 2**65.
        assert any(name != "www.example.com." for name in sent)
        for reply, name in zip(replies, sent, strict=True):
            assert read_question(reply).text == name
            assert answers(reply) == ["127.1.0.1"]


class _CaseBendingResponder(asyncio.DatagramProtocol):
    """Answers every query with an empty NOERROR reply whose question case is ``bend``-ed."""

    def __init__(self, bend: Callable[[bytes], bytes]) -> None:
        self.bend = bend
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        end = read_question(data).end
        question = data[12 : end - 4]
        header = data[:2] + (QR | 0x0100 | 0x0080).to_bytes(2, "big") + b"\x00\x01" + bytes(6)
        assert self.transport is not None
        self.transport.sendto(header + self.bend(question) + data[end - 4 : end], addr)


@pytest.mark.parametrize(
    ("randomize_case", "bend", "accepted"),
    [
        pytest.param(True, bytes.swapcase, False, id="0x20-on-case-changed-rejected"),
        pytest.param(True, lambda q: q, True, id="0x20-on-case-kept-accepted"),
        pytest.param(False, bytes.swapcase, True, id="0x20-off-case-changed-accepted"),
    ],
)
async def test_reply_question_case_is_checked_only_with_0x20(
    randomize_case: bool, bend: Callable[[bytes], bytes], accepted: bool
) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _CaseBendingResponder(bend), local_addr=("127.0.0.1", 0)
    )
    try:
        address = transport.get_extra_info("sockname")[:2]
        config = TransportConfig(
            randomize_case=randomize_case, pool=SocketPoolConfig(min_size=1, max_size=2)
        )
        async with asyncio.timeout(BOUND), open_upstream(address, config) as upstream:
            if accepted:
                reply = await ask(upstream, "www.example.com.")
                assert read_question(reply).text.lower() == "www.example.com."
                assert upstream.statistics().strays == 0
            else:
                await timed_out(upstream)
                assert upstream.statistics().strays == 1
    finally:
        transport.close()


# --- unreachable and cancelled ------------------------------------------------------------


async def test_unreachable_upstream_fails_at_once_not_at_the_deadline() -> None:
    async with (
        asyncio.timeout(BOUND),
        open_upstream(("127.0.0.1", dead_udp_port())) as upstream,
    ):
        # On loopback the ICMP port unreachable arrives at once and ends the exchange; the
        # deadline lies beyond BOUND, so an exchange that waited for it fails the test.
        with pytest.raises(UpstreamUnreachable):
            await ask(upstream, timeout=60.0)
        stats = upstream.statistics()
        assert (stats.unreachable, stats.pool.discarded) == (1, 1)
        assert_pool_balanced(upstream)


@pytest.mark.parametrize("tcp", [pytest.param(False, id="udp"), pytest.param(True, id="tcp")])
async def test_cancelled_exchange_discards_its_socket_and_the_pool_balances(
    authority: Authority, tcp: bool
) -> None:
    authority.faults.delay = 30.0
    async with asyncio.timeout(BOUND), open_upstream(authority.address) as upstream:
        task = asyncio.ensure_future(ask(upstream, timeout=30.0, tcp=tcp))
        await authority.wait_queries(1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        stats = upstream.pool.statistics()
        assert stats.discarded == (0 if tcp else 1)
        assert_pool_balanced(upstream)

        authority.faults.delay = 0.0
        assert answers(await ask(upstream)) == ["127.1.0.1"]
        assert_pool_balanced(upstream)


async def test_cancelled_while_waiting_for_a_socket_leaves_no_waiter(
    authority: Authority,
) -> None:
    authority.faults.drop = True
    config = pool(min_size=1, max_size=1)
    async with asyncio.timeout(BOUND), open_upstream(authority.address, config) as upstream:
        holder = asyncio.ensure_future(ask(upstream, timeout=30.0))
        await authority.wait_queries(1)
        waiter = asyncio.ensure_future(ask(upstream, timeout=30.0))
        await until(lambda: upstream.pool.statistics().waiting == 1)
        waiter.cancel()
        holder.cancel()
        for task in (waiter, holder):
            with pytest.raises(asyncio.CancelledError):
                await task
        stats = upstream.pool.statistics()
        assert stats.waiting == 0
        assert stats.cancelled == 1
        assert_pool_balanced(upstream)


# --- how sockets are watched and read ----------------------------------------------------


class _FloodingServer(asyncio.DatagramProtocol):
    """Answers each query with ``forged`` replies under wrong IDs, then the true reply (the
    query echoed with QR set), all sent at once from its own address and port, so that they
    are queued on our socket before it is read."""

    def __init__(self, forged: int) -> None:
        self.forged = forged
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        reply = data[:2] + bytes([data[2] | 0x80]) + data[3:]
        true_id = int.from_bytes(data[:2], "big")
        for n in range(self.forged):
            wrong = ((true_id + 1 + n) % 0x10000).to_bytes(2, "big")
            self.transport.sendto(wrong + reply[2:], addr)
        self.transport.sendto(reply, addr)


@pytest.mark.parametrize("forged", [pytest.param(1, id="one"), pytest.param(100, id="100")])
async def test_forgeries_queued_ahead_of_the_reply_are_strays_and_the_reply_is_taken(
    forged: int,
) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _FloodingServer(forged), local_addr=("127.0.0.1", 0)
    )
    address = transport.get_extra_info("sockname")[:2]
    try:
        async with asyncio.timeout(BOUND), open_upstream(address) as upstream:
            for _ in range(3):
                reply = await ask(upstream)
                assert read_header(reply).flags & QR
            stats = upstream.statistics()
            assert (stats.replies, stats.strays, stats.timeouts) == (3, 3 * forged, 0)
            assert stats.pool.discarded == 0
            assert_pool_balanced(upstream)
    finally:
        transport.close()


def _count_calls(loop: asyncio.AbstractEventLoop, names: tuple[str, ...]) -> Counter[str]:
    """Count the calls of the loop's methods ``names`` from now on (wrapping them on this
    loop object only)."""
    calls: Counter[str] = Counter()
    for name in names:
        method = getattr(loop, name)

        def counted(*args: Any, _method: Any = method, _name: str = name) -> Any:
            calls[_name] += 1
            return _method(*args)

        setattr(loop, name, counted)
    return calls


async def test_fresh_sockets_cost_no_loop_registration_of_their_own(
    authority: Authority,
) -> None:
    # max_uses 1: a new socket per query, each opened and closed while the loop runs; the
    # loop watches the transport's one readiness set, registered once, not each socket.
    loop = asyncio.get_running_loop()
    calls = _count_calls(loop, ("add_reader", "remove_reader"))
    config = pool(max_uses=1, min_size=2, max_size=8)
    async with asyncio.timeout(BOUND):
        async with open_upstream(authority.address, config) as upstream:
            replies = await asyncio.gather(*(ask(upstream) for _ in range(16)))
            assert all(answers(reply) == ["127.1.0.1"] for reply in replies)
            for _ in range(8):  # one at a time too: closed and opened between replies
                assert answers(await ask(upstream)) == ["127.1.0.1"]
            stats = upstream.statistics()
            # Each query had a socket of its own, retired after its one use. (Not checked by
            # the authority's view of source ports: a closed socket's random port may be drawn
            # again by a later one.)
            assert stats.pool.acquired == 24
            assert stats.pool.retired >= 24
            assert stats.pool.created >= 24
            assert len(authority.queries) == 24
        assert calls == Counter({"add_reader": 1, "remove_reader": 1})
