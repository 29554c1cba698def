"""resolver.transport.Servers, the recursive mode's transport, against scripted servers on
loopback: a fresh source port per query, no bind on the query path, reply matching (the
kernel's source filter, strays), deadlines, ICMP, TCP, the 0x20 caps fallback, IPv6,
statistics, cancellation and closing."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from support import ScriptedUpstream, dead_udp_port, until

from resolver.authority import Authority
from resolver.config import Address, SocketPoolConfig, TransportConfig
from resolver.errors import (
    CaseMismatch,
    LocalError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from resolver.transport import Exchange, Servers, addresses, format_address
from resolver.wire import CLASS_IN, TYPE_A, DNSRecord, name_to_wire, read_header, read_question
from resolver.wire.view import ReplyView, scan

BOUND = 5.0  # every test finishes well within this; reached only when a test is failing
SHORT = 0.3  # the deadline of exchanges that are expected to time out
NAME = name_to_wire("www.example.com.")
QR_AA = 0x8400
NXDOMAIN = 3


def config(**pool: Any) -> TransportConfig:
    defaults: dict[str, Any] = {"min_size": 2, "max_size": 16, "min_idle": 2}
    return TransportConfig(pool=SocketPoolConfig(**(defaults | pool)))


def settled(servers: Servers) -> bool:
    """No exchange holds a socket and none is being bound, in every family."""
    stats = servers.statistics()
    pools = [p for p in (stats.ipv4, stats.ipv6) if p is not None]
    return all(p.in_use == 0 and p.creating == 0 for p in pools)


@contextlib.asynccontextmanager
async def open_servers(settings: TransportConfig | None = None) -> AsyncIterator[Servers]:
    servers = Servers(settings or config())
    await servers.start()
    try:
        await until(lambda: settled(servers))
        yield servers
    finally:
        # Closing a pool while a socket is half-made leaks it on uvloop; let creations finish.
        with contextlib.suppress(TimeoutError):
            await until(lambda: settled(servers))
        await servers.aclose()


def reply_to(query: bytes, *, rcode: int = 0, bend: Callable[[bytes], bytes] = bytes) -> bytes:
    """A reply to ``query`` with its ID and question, the name passed through ``bend``."""
    end = read_question(query).end
    header = query[:2] + (QR_AA | rcode).to_bytes(2, "big") + b"\x00\x01" + bytes(6)
    return header + bend(query[12 : end - 4]) + query[end - 4 : end]


def waiting(servers: Servers) -> int:
    stats = servers.statistics().ipv4
    assert stats is not None
    return stats.waiting


def echo(query: bytes) -> bytes:
    return reply_to(query)


def silent(query: bytes) -> None:
    return None


class Outcome:
    """What an exchange reports: the first report in ``future`` (the reply's bytes, from the
    view the transport read it into), and how many came."""

    def __init__(self) -> None:
        self.future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.reports = 0

    def __call__(self, reply: ReplyView | None, exc: BaseException | None) -> None:
        self.reports += 1
        if self.future.done():
            return
        if exc is not None:
            self.future.set_exception(exc)
        else:
            assert reply is not None
            assert reply == scan(reply.message)  # the view describes the reply
            self.future.set_result(reply.message)


def send(
    servers: Servers,
    server: Address,
    *,
    timeout: float = 2.0,
    tcp: bool = False,
    randomize_case: bool = True,
    query: tuple[bytes, bytes] | None = None,
) -> tuple[Exchange, Outcome]:
    data, question = query or servers.build_query(
        NAME, TYPE_A, CLASS_IN, randomize_case=randomize_case
    )
    outcome = Outcome()
    deadline = asyncio.get_running_loop().time() + timeout
    exchange = servers.send(
        server,
        data,
        question,
        deadline=deadline,
        report=outcome,
        tcp=tcp,
        case_exact=randomize_case,
    )
    return exchange, outcome


async def ask(servers: Servers, server: Address, **kwargs: Any) -> bytes:
    """Send one query and wait for its report, which must be the only one."""
    _, outcome = send(servers, server, **kwargs)
    try:
        return await outcome.future
    finally:
        await asyncio.sleep(0)
        assert outcome.reports == 1


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# --- source ports -------------------------------------------------------------------------


async def test_concurrent_queries_leave_from_a_hundred_distinct_ports() -> None:
    async with (
        asyncio.timeout(BOUND),
        ScriptedUpstream(silent) as server,
        open_servers(config(max_size=128, min_idle=8)) as servers,
    ):
        outcomes = [send(servers, server.address)[1] for _ in range(100)]
        await until(lambda: len(server.queries) == 100)
        assert server.transport is not None
        for query, source in zip(server.queries, server.sources, strict=True):
            server.transport.sendto(echo(query), source)
        await asyncio.gather(*(o.future for o in outcomes))
        # All in flight at once: a port cannot be two open sockets' at the same time.
        assert len({port for _, port in server.sources}) == 100
        stats = servers.statistics()
        assert (stats.queries, stats.replies, stats.strays) == (100, 100, 0)


async def test_each_socket_serves_one_query_and_is_then_closed() -> None:
    async with (
        asyncio.timeout(BOUND),
        ScriptedUpstream(echo) as server,
        open_servers() as servers,
    ):
        before = servers.statistics().ipv4
        assert before is not None
        for _ in range(50):
            await ask(servers, server.address)
        await until(lambda: settled(servers))
        after = servers.statistics().ipv4
        assert after is not None
        assert after.acquired - before.acquired == 50
        # Every socket checked out was retired when its exchange ended.
        assert after.retired - before.retired == 50
        assert after.created - before.created == 50
        assert after.in_use == 0


async def test_no_bind_on_the_query_path_while_spares_are_idle() -> None:
    async with (
        asyncio.timeout(BOUND),
        ScriptedUpstream(echo) as server,
        open_servers(config(min_size=4, min_idle=4)) as servers,
    ):
        for _ in range(20):
            exchange, outcome = send(servers, server.address)
            # Sent from an idle socket before send() returned; its heir is being bound.
            assert exchange.guard is not None
            assert exchange.task is None
            pool = servers.statistics().ipv4
            assert pool is not None
            assert (pool.in_use, pool.creating) == (1, 1)
            await outcome.future
        stats = servers.statistics()
        assert stats.socket_waits == 0
        assert stats.replies == 20


async def test_a_query_waits_for_a_socket_to_be_bound_when_none_is_idle() -> None:
    async with (
        asyncio.timeout(BOUND),
        ScriptedUpstream(echo) as server,
        open_servers(config(min_size=0, min_idle=0)) as servers,
    ):
        reply = await ask(servers, server.address)
        assert read_header(reply).qr
        stats = servers.statistics()
        assert (stats.socket_waits, stats.replies) == (1, 1)


# --- reply matching -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "forger",
    [
        pytest.param(("127.0.0.1", 0), id="other-port"),
        pytest.param(("127.0.0.2", None), id="other-address-same-port"),
    ],
)
async def test_a_reply_from_another_source_is_not_accepted(forger: tuple[str, int | None]) -> None:
    async with (
        asyncio.timeout(BOUND),
        ScriptedUpstream(silent) as server,
        open_servers() as servers,
    ):
        _, outcome = send(servers, server.address)
        await until(lambda: len(server.queries) == 1)
        query, source = server.queries[0], server.sources[0]
        host, port = forger
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as forged:
            forged.bind((host, server.address[1] if port is None else port))
            forged.sendto(reply_to(query, rcode=NXDOMAIN), source)
        # The kernel dropped it (the socket is connected). A stray sent after it from the
        # real source is read and counted: had the forged reply got through, it would have
        # been read before, and the exchange would be over.
        assert server.transport is not None
        server.transport.sendto(bytes([query[0] ^ 0xFF]) + echo(query)[1:], source)
        await until(lambda: servers.statistics().strays == 1)
        assert not outcome.future.done()
        server.transport.sendto(echo(query), source)
        reply = await outcome.future
        assert read_header(reply).rcode == 0
        stats = servers.statistics()
        assert (stats.replies, stats.strays) == (1, 1)


def _queued_socket_port() -> int:
    """The port of this process's one unconnected UDP socket bound to 0.0.0.0 (from
    /proc/net/udp and /proc/self/fd)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = []
    with open("/proc/net/udp") as table:
        for line in list(table)[1:]:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if inode in inodes and local.startswith("00000000:") and remote == "00000000:0000":
                ports.append(int(local.split(":")[1], 16))
    assert len(ports) == 1, ports
    return ports[0]


async def test_a_reply_queued_on_an_idle_socket_before_its_query_is_dropped() -> None:
    async with (
        asyncio.timeout(BOUND),
        ScriptedUpstream(silent) as server,
        open_servers(config(min_size=1, max_size=1, min_idle=1)) as servers,
    ):
        port = _queued_socket_port()
        query = servers.build_query(NAME, TYPE_A, CLASS_IN)
        # A forged reply with the right ID and question from another port, queued on the
        # idle socket before the query: connect() does not flush it, so it must not be
        # taken once the socket is connected and its exchange pending (its source is not
        # the server's).
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as forged:
            forged.bind(("127.0.0.1", 0))
            forged.sendto(reply_to(query[0], rcode=NXDOMAIN), ("127.0.0.1", port))
        _, outcome = send(servers, server.address, query=query)
        await until(lambda: servers.statistics().strays == 1)  # read, and dropped
        await until(lambda: len(server.queries) == 1)
        assert server.sources[0][1] == port
        assert server.transport is not None
        server.transport.sendto(echo(server.queries[0]), server.sources[0])
        reply = await outcome.future
        assert read_header(reply).rcode == 0


def _wrong_id(query: bytes) -> bytes:
    reply = reply_to(query)
    return bytes([reply[0] ^ 0x01]) + reply[1:]


def _not_a_response(query: bytes) -> bytes:
    reply = reply_to(query)
    return reply[:2] + b"\x00\x00" + reply[4:]


def _other_type(query: bytes) -> bytes:
    reply = reply_to(query)
    return reply[:-4] + b"\x00\x1c" + reply[-2:]


def _other_name(query: bytes) -> bytes:
    return reply_to(query, bend=lambda name: b"\x03wwx" + name[4:])


@pytest.mark.parametrize(
    "stray",
    [
        pytest.param(_wrong_id, id="wrong-id"),
        pytest.param(_not_a_response, id="qr-clear"),
        pytest.param(_other_type, id="other-type"),
        pytest.param(_other_name, id="other-name"),
        pytest.param(lambda q: b"\x00garbage", id="garbage"),
    ],
)
async def test_a_mismatched_reply_is_a_stray_and_the_exchange_keeps_waiting(
    stray: Callable[[bytes], bytes],
) -> None:
    async with (
        asyncio.timeout(BOUND),
        ScriptedUpstream(silent) as server,
        open_servers() as servers,
    ):
        _, outcome = send(servers, server.address)
        await until(lambda: len(server.queries) == 1)
        query, source = server.queries[0], server.sources[0]
        assert server.transport is not None
        server.transport.sendto(stray(query), source)
        await until(lambda: servers.statistics().strays == 1)
        assert not outcome.future.done()
        server.transport.sendto(echo(query), source)
        await outcome.future
        stats = servers.statistics()
        assert (stats.replies, stats.strays, stats.case_mismatches) == (1, 1, 0)


# --- failures -----------------------------------------------------------------------------


async def test_no_reply_times_out_at_the_deadline_and_the_socket_is_discarded() -> None:
    loop = asyncio.get_running_loop()
    async with (
        asyncio.timeout(BOUND),
        ScriptedUpstream(silent) as server,
        open_servers() as servers,
    ):
        start = loop.time()
        with pytest.raises(UpstreamTimeout) as caught:
            await ask(servers, server.address, timeout=SHORT)
        # Not before the deadline (timers never fire early); after it, only as late as the
        # loop is busy: BOUND catches an exchange that never ends.
        assert SHORT - 0.05 <= loop.time() - start < SHORT + 2.0
        assert caught.value.server == format_address(server.address)
        stats = servers.statistics()
        assert stats.ipv4 is not None
        assert (stats.timeouts, stats.replies, stats.ipv4.discarded) == (1, 0, 1)


async def test_deadlines_in_any_order_expire_each_at_its_own_time() -> None:
    loop = asyncio.get_running_loop()
    async with (
        asyncio.timeout(BOUND),
        ScriptedUpstream(silent) as server,
        open_servers() as servers,
    ):
        timeouts = [0.4, 0.1, 0.3, 0.2]
        ended: dict[float, float] = {}  # in the order they ended
        start = loop.time()

        async def one(timeout: float) -> None:
            with pytest.raises(UpstreamTimeout):
                await ask(servers, server.address, timeout=timeout)
            ended[timeout] = loop.time() - start

        await asyncio.gather(*(one(t) for t in timeouts))
        # Each ends in its deadline's turn, and none before its deadline; how late after it
        # depends on how busy the loop is, so the order, not a stopwatch, shows the rest.
        assert list(ended) == sorted(timeouts)
        for timeout, elapsed in ended.items():
            assert timeout - 0.02 <= elapsed
        assert servers.statistics().timeouts == 4


async def test_an_unreachable_server_fails_at_once_not_at_the_deadline() -> None:
    async with asyncio.timeout(BOUND), open_servers() as servers:
        dead = ("127.0.0.1", dead_udp_port())
        # On loopback the ICMP port unreachable arrives at once and ends the exchange; the
        # deadline lies beyond BOUND, so an exchange that waited for it fails the test.
        with pytest.raises(UpstreamUnreachable) as caught:
            await ask(servers, dead, timeout=60.0)
        assert caught.value.server == format_address(dead)
        stats = servers.statistics()
        assert stats.ipv4 is not None
        assert (stats.unreachable, stats.ipv4.discarded) == (1, 1)


async def test_a_host_name_instead_of_an_address_is_refused_without_a_lookup() -> None:
    async with asyncio.timeout(BOUND), open_servers() as servers:
        with pytest.raises(UpstreamUnreachable):
            await ask(servers, ("localhost", 53))


# --- TCP ----------------------------------------------------------------------------------


async def test_tcp_exchange_connects_to_the_server(authority: Authority) -> None:
    async with asyncio.timeout(BOUND), open_servers() as servers:
        reply = await ask(servers, authority.address, tcp=True)
        assert [str(rr.rdata) for rr in DNSRecord.parse(reply).rr] == ["127.1.0.1"]
        assert [q.transport for q in authority.queries] == ["tcp"]
        stats = servers.statistics()
        assert (stats.tcp_queries, stats.replies, stats.queries) == (1, 1, 1)


async def test_tcp_to_a_closed_port_is_unreachable() -> None:
    async with asyncio.timeout(BOUND), open_servers() as servers:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        with pytest.raises(UpstreamUnreachable):
            await ask(servers, ("127.0.0.1", port), tcp=True)
        assert servers.statistics().unreachable == 1


# --- 0x20 and the caps fallback ------------------------------------------------------------


class _CaseBendingTcp:
    """A TCP server on 127.0.0.1 answering every query with ``reply_to(query, bend=bend)``."""

    def __init__(self, bend: Callable[[bytes], bytes]) -> None:
        self.bend = bend
        self.address: Address = ("127.0.0.1", 0)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            size = int.from_bytes(await reader.readexactly(2), "big")
            reply = reply_to(await reader.readexactly(size), bend=self.bend)
            writer.write(len(reply).to_bytes(2, "big") + reply)
            await writer.drain()
        writer.close()


@pytest.mark.parametrize("tcp", [pytest.param(False, id="udp"), pytest.param(True, id="tcp")])
@pytest.mark.parametrize(
    ("randomize_case", "bend", "accepted"),
    [
        pytest.param(True, bytes.swapcase, False, id="0x20-on-case-changed-mismatch"),
        pytest.param(True, bytes, True, id="0x20-on-case-kept-accepted"),
        pytest.param(False, bytes.swapcase, True, id="0x20-off-case-changed-accepted"),
    ],
)
async def test_a_reply_differing_only_in_case_ends_a_0x20_exchange_with_case_mismatch(
    tcp: bool, randomize_case: bool, bend: Callable[[bytes], bytes], accepted: bool
) -> None:
    def udp_script(query: bytes) -> bytes:
        return reply_to(query, bend=bend)

    tcp_server = _CaseBendingTcp(bend)
    listener = await asyncio.start_server(tcp_server.serve, "127.0.0.1", 0)
    try:
        async with asyncio.timeout(BOUND), ScriptedUpstream(udp_script) as udp_server:
            address = listener.sockets[0].getsockname()[:2] if tcp else udp_server.address
            async with open_servers() as servers:
                if accepted:
                    reply = await ask(servers, address, tcp=tcp, randomize_case=randomize_case)
                    assert read_question(reply).text.lower() == "www.example.com."
                    assert servers.statistics().case_mismatches == 0
                else:
                    with pytest.raises(CaseMismatch) as caught:
                        await ask(servers, address, tcp=tcp, randomize_case=randomize_case)
                    assert caught.value.server == format_address(address)
                    stats = servers.statistics()
                    assert (stats.case_mismatches, stats.strays, stats.replies) == (1, 0, 0)
                    # The caller's fallback: the same question again without 0x20.
                    reply = await ask(servers, address, tcp=tcp, randomize_case=False)
                    assert read_question(reply).text.lower() == "www.example.com."
    finally:
        listener.close()
        await listener.wait_closed()


async def test_queries_are_built_with_0x20_and_without_rd_by_default() -> None:
    async with (
        asyncio.timeout(BOUND),
        ScriptedUpstream(echo) as server,
        open_servers() as servers,
    ):
        for _ in range(5):
            await ask(servers, server.address)
        names = [read_question(q).text for q in server.queries]
        assert all(name.lower() == "www.example.com." for name in names)
        # 13 letters each: five all-lowercase names in a row happen once in 2**65.
        assert any(name != "www.example.com." for name in names)
        assert not any(read_header(q).rd for q in server.queries)
        query, _ = servers.build_query(NAME, TYPE_A, CLASS_IN, rd=True, randomize_case=False)
        assert read_header(query).rd
        assert read_question(query).text == "www.example.com."


# --- IPv6 ---------------------------------------------------------------------------------


async def test_ipv6_servers_get_queries_from_their_own_pool() -> None:
    async with (
        asyncio.timeout(BOUND),
        ScriptedUpstream(echo, host="::1") as server6,
        ScriptedUpstream(echo) as server4,
        open_servers() as servers,
    ):
        assert servers.can_send_to(server6.address)
        replies = [await ask(servers, server6.address) for _ in range(3)]
        replies.append(await ask(servers, server4.address))
        assert all(read_header(r).qr for r in replies)
        assert len({port for _, port in server6.sources}) == 3
        stats = servers.statistics()
        assert stats.ipv4 is not None
        assert stats.ipv6 is not None
        assert (stats.ipv6.acquired, stats.ipv4.acquired) == (3, 1)
        with pytest.raises(UpstreamUnreachable) as caught:
            await ask(servers, ("::1", dead_udp_port("::1")))
        assert caught.value.server.startswith("[::1]:")


# --- statistics, cancellation, closing ----------------------------------------------------


async def test_statistics_count_every_outcome() -> None:
    async with (
        asyncio.timeout(BOUND),
        ScriptedUpstream(echo) as server,
        open_servers() as servers,
    ):
        await ask(servers, server.address)
        with contextlib.suppress(UpstreamUnreachable):
            await ask(servers, ("127.0.0.1", dead_udp_port()))
        server.script = silent
        with contextlib.suppress(UpstreamTimeout):
            await ask(servers, server.address, timeout=0.05)
        stats = servers.statistics()
        assert (stats.queries, stats.replies, stats.timeouts, stats.unreachable) == (3, 1, 1, 1)
        assert (stats.strays, stats.bad_responses, stats.local_failures) == (0, 0, 0)
        assert stats.ipv4 is not None
        assert stats.ipv4.acquired == 3
        assert "queries=3" in repr(servers)


async def test_cancelled_exchange_reports_nothing_and_its_socket_is_discarded() -> None:
    async with (
        asyncio.timeout(BOUND),
        ScriptedUpstream(silent) as server,
        open_servers() as servers,
    ):
        exchange, outcome = send(servers, server.address, timeout=30.0)
        await until(lambda: len(server.queries) == 1)
        exchange.cancel()
        assert server.transport is not None
        server.transport.sendto(echo(server.queries[0]), server.sources[0])
        # A later exchange answered after that reply shows the moment has passed: the reply
        # to the cancelled one was sent first, so it would have been read first.
        _, later = send(servers, server.address)
        await until(lambda: len(server.queries) == 2)
        server.transport.sendto(echo(server.queries[1]), server.sources[1])
        await later.future
        assert outcome.reports == 0
        stats = servers.statistics()
        assert stats.ipv4 is not None
        assert (stats.ipv4.discarded, stats.ipv4.in_use) == (1, 0)


async def test_cancelled_tcp_exchange_reports_nothing_and_closes_its_connection() -> None:
    accepted, closed = asyncio.Event(), asyncio.Event()
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        accepted.set()
        await reader.read()  # returns once our side closes the connection
        closed.set()

    listener = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        async with asyncio.timeout(BOUND), open_servers() as servers:
            address = listener.sockets[0].getsockname()[:2]
            exchange, outcome = send(servers, address, timeout=30.0, tcp=True)
            await accepted.wait()
            exchange.cancel()
            assert exchange.task is not None
            with contextlib.suppress(asyncio.CancelledError):
                await exchange.task
            await closed.wait()
            assert outcome.reports == 0
            stats = servers.statistics()
            assert (stats.tcp_queries, stats.replies, stats.timeouts) == (1, 0, 0)
    finally:
        for writer in held:
            writer.close()
        listener.close()
        await listener.wait_closed()


async def test_cancelled_while_waiting_for_a_socket_leaves_no_waiter() -> None:
    async with (
        asyncio.timeout(BOUND),
        ScriptedUpstream(silent) as server,
        open_servers(config(min_size=1, max_size=1, min_idle=1)) as servers,
    ):
        holder, _ = send(servers, server.address, timeout=30.0)
        waiter, outcome = send(servers, server.address, timeout=30.0)
        assert waiter.task is not None
        await until(lambda: waiting(servers) == 1)
        waiter.cancel()
        holder.cancel()
        await until(lambda: settled(servers))
        stats = servers.statistics().ipv4
        assert stats is not None
        assert (stats.waiting, stats.cancelled, stats.in_use) == (0, 1, 0)
        assert outcome.reports == 0


async def test_aclose_is_idempotent_and_closes_every_socket() -> None:
    baseline = open_fds()
    async with asyncio.timeout(BOUND), ScriptedUpstream(silent) as server:
        baseline = open_fds()
        servers = Servers(config(min_size=4, min_idle=4))
        await servers.start()
        exchange, outcome = send(servers, server.address, timeout=30.0)
        await until(lambda: len(server.queries) == 1)
        assert open_fds() > baseline
        await servers.aclose()
        await servers.aclose()
        assert open_fds() == baseline
        assert exchange.done
        assert outcome.reports == 0
        stats = servers.statistics()
        assert stats.ipv4 is not None
        assert (stats.ipv4.size, stats.ipv4.closing) == (0, 0)
        # Closed: a send reports LocalError and raises nothing.
        with pytest.raises(LocalError):
            await ask(servers, server.address)
        with pytest.raises(LocalError):
            await ask(servers, server.address, tcp=True)


async def test_aclose_cancelled_at_once_still_closes_every_socket() -> None:
    async with asyncio.timeout(BOUND), ScriptedUpstream(silent) as server:
        # uvloop opens a descriptor of its own, once per loop, at its first TCP connection:
        # open it before counting.
        with contextlib.suppress(OSError):
            await asyncio.open_connection(*server.address)
        baseline = open_fds()
        servers = Servers(config(min_size=4, min_idle=4))
        await servers.start()
        exchange, outcome = send(servers, server.address, timeout=30.0)
        waiting = send(servers, server.address, timeout=30.0, tcp=True)[0]
        closing = asyncio.ensure_future(servers.aclose())
        await asyncio.sleep(0)
        closing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closing
        await servers.aclose()  # waits for the same closing work
        assert open_fds() == baseline
        assert exchange.done
        assert waiting.task is not None
        assert waiting.task.done()
        assert outcome.reports == 0


async def test_send_before_start_reports_local_error() -> None:
    servers = Servers()
    with pytest.raises(LocalError):
        await ask(servers, ("127.0.0.1", 53))
    await servers.aclose()


async def test_a_family_that_cannot_be_opened_is_left_out_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Binding to an address that is not this machine's fails as a machine without IPv6 does.
    monkeypatch.setitem(addresses.WILDCARD, socket.AF_INET6, ("2001:db8::1", 0))
    async with (
        asyncio.timeout(BOUND),
        ScriptedUpstream(echo) as server,
        open_servers() as servers,
    ):
        assert "no IPv6 queries" in caplog.text
        stats = servers.statistics()
        assert stats.ipv4 is not None
        assert stats.ipv6 is None
        assert not servers.can_send_to(("::1", 53))
        with pytest.raises(UpstreamUnreachable, match="no IPv6 socket"):
            await ask(servers, ("::1", 53))
        assert read_header(await ask(servers, server.address)).qr


async def test_start_fails_when_no_family_can_be_opened(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(addresses.WILDCARD, socket.AF_INET6, ("2001:db8::1", 0))
    monkeypatch.setitem(addresses.WILDCARD, socket.AF_INET, ("192.0.2.1", 0))
    baseline = open_fds()
    servers = Servers(config())
    with pytest.raises(UpstreamUnreachable, match=r"IPv4: .*; IPv6: "):
        await servers.start()
    await servers.aclose()
    assert open_fds() == baseline
