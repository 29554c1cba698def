"""The fake authoritative server over real loopback sockets, and each of its fault knobs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
from support import free_port

from resolver.authority import Authority, Faults, ReceivedQuery, load_zone, serve_authority
from resolver.errors import ConfigError
from resolver.wire import EDNS0, NOERROR, REFUSED, SERVFAIL, DNSRecord, read_header

TIMEOUT = 5.0  # generous: only reached when a test is about to fail
STARTUP = 15.0  # bound on a subprocess listening (interpreter start included)


def query(name: str, qtype: str = "A", *, qid: int = 1000, edns: int | None = None) -> bytes:
    message = DNSRecord.question(name, qtype)
    message.header.id = qid
    if edns is not None:
        message.add_ar(EDNS0(udp_len=edns))
    return bytes(message.pack())


class UdpClient(asyncio.DatagramProtocol):
    """Collects every datagram with its source address."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.received.put_nowait((data, (addr[0], addr[1])))

    def send(self, data: bytes, address: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, address)

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return (host, port)

    async def next(self) -> tuple[bytes, tuple[str, int]]:
        async with asyncio.timeout(TIMEOUT):
            return await self.received.get()


@contextlib.asynccontextmanager
async def udp_client(host: str = "127.0.0.1") -> AsyncIterator[UdpClient]:
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(UdpClient, local_addr=(host, 0))
    try:
        yield client
    finally:
        transport.close()


async def udp_ask(authority: Authority, message: bytes) -> Any:
    async with udp_client() as client:
        client.send(message, authority.address)
        data, _ = await client.next()
    return DNSRecord.parse(data)


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(TIMEOUT):
        length = int.from_bytes(await reader.readexactly(2), "big")
        return await reader.readexactly(length)


def frame(message: bytes) -> bytes:
    return len(message).to_bytes(2, "big") + message


async def tcp_ask(authority: Authority, *messages: bytes) -> list[Any]:
    reader, writer = await asyncio.open_connection(*authority.address)
    try:
        writer.write(b"".join(frame(m) for m in messages))
        return [DNSRecord.parse(await read_frame(reader)) for _ in messages]
    finally:
        writer.close()


async def received(authority: Authority, count: int) -> list[ReceivedQuery]:
    async with asyncio.timeout(TIMEOUT):
        return await authority.wait_queries(count)


def answers(reply: Any) -> list[str]:
    return [str(rr.rdata) for rr in reply.rr]


# --- serving -----------------------------------------------------------------------------


async def test_start_binds_udp_and_tcp_on_the_same_port(authority: Authority) -> None:
    host, port = authority.address
    assert (host, port != 0) == ("127.0.0.1", True)
    (via_tcp,) = await tcp_ask(authority, query("www.example.com."))
    via_udp = await udp_ask(authority, query("www.example.com."))
    assert answers(via_tcp) == answers(via_udp) == ["127.1.0.1"]


async def test_udp_reply_comes_from_the_server_port(authority: Authority) -> None:
    async with udp_client() as client:
        client.send(query("www.example.com.", qid=7), authority.address)
        data, source = await client.next()
    assert source == authority.address
    assert read_header(data).id == 7


async def test_queries_are_recorded_with_transport_case_type_client_and_id(
    authority: Authority,
) -> None:
    async with udp_client() as client:
        client.send(query("WwW.Example.com.", "AAAA", qid=11), authority.address)
        await client.next()
        client_address = client.address
    await tcp_ask(authority, query("mAiL.example.com.", "A", qid=12))
    first, second = await received(authority, 2)
    assert (first.transport, first.qname, first.qtype_name, first.id) == (
        "udp",
        "WwW.Example.com.",
        "AAAA",
        11,
    )
    assert first.client == client_address
    assert (second.transport, second.qname, second.qtype, second.id) == (
        "tcp",
        "mAiL.example.com.",
        1,
        12,
    )
    stats = authority.statistics()
    assert (stats["udp_queries"], stats["tcp_queries"], stats["replies"]) == (1, 1, 2)


@pytest.mark.parametrize(
    "junk", [b"\x12\x34\x01", b"\x12\x34" + b"\xff" * 20], ids=["short", "no-question"]
)
async def test_junk_datagrams_are_recorded_and_the_server_keeps_answering(
    authority: Authority, junk: bytes
) -> None:
    async with udp_client() as client:
        client.send(junk, authority.address)
        client.send(query("www.example.com.", qid=77), authority.address)
        data, _ = await client.next()
        if read_header(data).id == 0x1234:  # the FORMERR to the junk with a header
            data, _ = await client.next()
    assert read_header(data).id == 77
    junk_query, _ = await received(authority, 2)
    assert (junk_query.qname, junk_query.qtype, junk_query.id) == ("", 0, 0x1234)


async def test_wait_queries_wakes_when_the_count_is_reached(authority: Authority) -> None:
    waiter = asyncio.ensure_future(authority.wait_queries(2))
    async with udp_client() as client:
        client.send(query("www.example.com.", qid=1), authority.address)
        await client.next()
        assert not waiter.done()
        client.send(query("www.example.com.", qid=2), authority.address)
        async with asyncio.timeout(TIMEOUT):
            received = await waiter
    assert [q.id for q in received] == [1, 2]


async def test_tcp_carries_several_queries_per_connection(authority: Authority) -> None:
    replies = await tcp_ask(
        authority,
        query("www.example.com.", qid=1),
        query("www.example.test.", qid=2),
        query("nonexistent.example.com.", qid=3),
    )
    assert [r.header.id for r in replies] == [1, 2, 3]
    assert answers(replies[1]) == ["127.1.1.1"]
    assert replies[2].header.rcode == 3
    assert authority.statistics()["tcp_connections"] == 1


async def test_large_answer_is_truncated_over_udp_and_whole_over_tcp(
    authority: Authority,
) -> None:
    truncated = await udp_ask(authority, query("many.example.com."))
    assert (truncated.header.tc, truncated.rr) == (1, [])
    fits = await udp_ask(authority, query("many.example.com.", edns=1232))
    assert (fits.header.tc, len(fits.rr)) == (0, 48)
    (whole,) = await tcp_ask(authority, query("big.example.com.", "TXT"))
    assert (whole.header.tc, len(whole.rr)) == (0, 8)


async def test_idle_tcp_connection_is_closed(fixtures_dir: Path) -> None:
    zone = load_zone(fixtures_dir / "zones" / "example.com.zone")
    async with Authority([zone], tcp_idle_timeout=0.05) as authority:
        reader, writer = await asyncio.open_connection(*authority.address)
        writer.write(frame(query("www.example.com.")))
        await read_frame(reader)
        async with asyncio.timeout(TIMEOUT):
            assert await reader.read() == b""
        writer.close()


async def test_aclose_closes_open_tcp_connections_and_is_idempotent(
    fixtures_dir: Path,
) -> None:
    authority = Authority.from_files([fixtures_dir / "zones" / "example.com.zone"])
    address = await authority.start()
    reader, writer = await asyncio.open_connection(*address)
    writer.write(frame(query("www.example.com.")))
    await read_frame(reader)
    await authority.aclose()
    await authority.aclose()
    async with asyncio.timeout(TIMEOUT):
        assert await reader.read() == b""
    writer.close()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(*address)
    assert "closed" in repr(authority)


async def test_aclose_fails_pending_waiters(fixtures_dir: Path) -> None:
    authority = Authority.from_files([fixtures_dir / "zones" / "example.com.zone"])
    await authority.start()
    waiter = asyncio.ensure_future(authority.wait_queries(1))
    await asyncio.sleep(0)  # let the waiter register
    await authority.aclose()
    with pytest.raises(RuntimeError):
        await waiter


async def test_address_before_start_and_second_start_raise(fixtures_dir: Path) -> None:
    authority = Authority.from_files([fixtures_dir / "zones" / "example.com.zone"])
    with pytest.raises(RuntimeError):
        _ = authority.address
    async with authority:
        with pytest.raises(RuntimeError):
            await authority.start()


async def test_binds_another_loopback_address(fixtures_dir: Path) -> None:
    zone = load_zone(fixtures_dir / "zones" / "example.com.zone")
    authority = Authority([zone])
    await authority.start("127.0.0.4", 0)
    try:
        assert authority.address[0] == "127.0.0.4"
        assert answers(await udp_ask(authority, query("www.example.com."))) == ["127.1.0.1"]
    finally:
        await authority.aclose()


async def test_serves_ipv6_loopback(fixtures_dir: Path) -> None:
    zone = load_zone(fixtures_dir / "zones" / "example.com.zone")
    try:
        probe = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    authority = Authority([zone])
    await authority.start("::1", 0)
    try:
        async with udp_client("::1") as client:
            client.send(query("www.example.com."), authority.address)
            data, _ = await client.next()
        assert answers(DNSRecord.parse(data)) == ["127.1.0.1"]
    finally:
        await authority.aclose()


# --- faults ------------------------------------------------------------------------------


async def test_faults_can_be_given_at_construction(fixtures_dir: Path) -> None:
    faults = Faults(refuse=True)
    paths = [fixtures_dir / "zones" / "example.com.zone"]
    async with Authority.from_files(paths, faults=faults) as authority:
        assert authority.faults is faults
        reply = await udp_ask(authority, query("www.example.com."))
    assert reply.header.rcode == REFUSED


async def test_drop_ignores_udp_until_cleared(authority: Authority) -> None:
    authority.faults.drop = True
    async with udp_client() as client:
        client.send(query("www.example.com.", qid=1), authority.address)
        await received(authority, 1)
        authority.faults.drop = False
        client.send(query("www.example.com.", qid=2), authority.address)
        data, _ = await client.next()
    # The first reply to arrive answers the second query: the first was never answered.
    assert read_header(data).id == 2
    assert authority.statistics()["dropped"] == 1


async def test_drop_leaves_tcp_answering(authority: Authority) -> None:
    authority.faults.drop = True
    (reply,) = await tcp_ask(authority, query("www.example.com."))
    assert answers(reply) == ["127.1.0.1"]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_delay_holds_the_reply(authority: Authority, transport: str) -> None:
    authority.faults.delay = 0.2
    loop = asyncio.get_running_loop()
    started = loop.time()
    if transport == "udp":
        reply = await udp_ask(authority, query("www.example.com."))
    else:
        (reply,) = await tcp_ask(authority, query("www.example.com."))
    assert loop.time() - started >= 0.19
    assert answers(reply) == ["127.1.0.1"]


async def test_delayed_reply_is_cancelled_by_aclose(fixtures_dir: Path) -> None:
    authority = Authority.from_files([fixtures_dir / "zones" / "example.com.zone"])
    await authority.start()
    authority.faults.delay = 30
    async with udp_client() as client:
        client.send(query("www.example.com."), authority.address)
        await received(authority, 1)
        async with asyncio.timeout(TIMEOUT):
            await authority.aclose()
    assert authority.statistics()["replies"] == 0


async def test_wrong_id_sends_only_a_forged_id(authority: Authority) -> None:
    authority.faults.wrong_id = True
    async with udp_client() as client:
        client.send(query("www.example.com.", qid=500), authority.address)
        data, _ = await client.next()
        assert read_header(data).id != 500
        authority.faults.wrong_id = False
        client.send(query("www.example.com.", qid=501), authority.address)
        data, _ = await client.next()
    # Nothing else arrived in between: the forged reply was the only one for 500.
    assert read_header(data).id == 501


async def test_wrong_id_then_the_right_one(authority: Authority) -> None:
    authority.faults.wrong_id = True
    authority.faults.also_right_id = True
    async with udp_client() as client:
        client.send(query("www.example.com.", qid=600), authority.address)
        forged, _ = await client.next()
        genuine, _ = await client.next()
    assert read_header(forged).id != 600
    assert read_header(genuine).id == 600
    assert forged[2:] == genuine[2:]


async def test_wrong_id_over_tcp(authority: Authority) -> None:
    authority.faults.wrong_id = True
    authority.faults.also_right_id = True
    reader, writer = await asyncio.open_connection(*authority.address)
    writer.write(frame(query("www.example.com.", qid=700)))
    ids = [read_header(await read_frame(reader)).id for _ in range(2)]
    writer.close()
    assert ids[0] != 700
    assert ids[1] == 700


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_garbage_sends_random_bytes(authority: Authority, transport: str) -> None:
    authority.faults.garbage = True
    message = query("www.example.com.")
    if transport == "udp":
        async with udp_client() as client:
            client.send(message, authority.address)
            data, _ = await client.next()
    else:
        reader, writer = await asyncio.open_connection(*authority.address)
        writer.write(frame(message))
        data = await read_frame(reader)
        writer.close()
    assert 1 <= len(data) <= 64
    normal = authority.responder.answer(message, max_udp=None)
    assert data != normal


async def test_always_tc_truncates_udp_but_not_tcp(authority: Authority) -> None:
    authority.faults.always_tc = True
    reply = await udp_ask(authority, query("www.example.com.", edns=1232))
    assert (reply.header.tc, reply.rr) == (1, [])
    (whole,) = await tcp_ask(authority, query("www.example.com."))
    assert (whole.header.tc, answers(whole)) == (0, ["127.1.0.1"])


@pytest.mark.parametrize(
    ("knob", "rcode"), [("servfail", SERVFAIL), ("refuse", REFUSED)], ids=["servfail", "refuse"]
)
async def test_rcode_faults_answer_every_query(authority: Authority, knob: str, rcode: int) -> None:
    setattr(authority.faults, knob, True)
    via_udp = await udp_ask(authority, query("www.example.com.", qid=42))
    (via_tcp,) = await tcp_ask(authority, query("www.example.com.", qid=43))
    for reply, qid in ((via_udp, 42), (via_tcp, 43)):
        assert (reply.header.rcode, reply.header.id, reply.rr) == (rcode, qid, [])
        assert str(reply.q.qname) == "www.example.com."
    setattr(authority.faults, knob, False)
    assert (await udp_ask(authority, query("www.example.com."))).header.rcode == NOERROR


async def test_close_tcp_closes_without_answering(authority: Authority) -> None:
    authority.faults.close_tcp = True
    reader, writer = await asyncio.open_connection(*authority.address)
    writer.write(frame(query("www.example.com.")))
    async with asyncio.timeout(TIMEOUT):
        assert await reader.read() == b""
    writer.close()
    (only,) = await received(authority, 1)
    assert only.transport == "tcp"
    assert answers(await udp_ask(authority, query("www.example.com."))) == ["127.1.0.1"]


async def test_other_port_replies_from_a_second_socket(authority: Authority) -> None:
    authority.faults.other_port = True
    async with udp_client() as client:
        client.send(query("www.example.com.", qid=9), authority.address)
        data, source = await client.next()
    assert source[0] == authority.address[0]
    assert source[1] != authority.address[1]
    assert read_header(data).id == 9


# --- serve_authority ---------------------------------------------------------------------


async def test_serve_authority_serves_until_cancelled(fixtures_dir: Path) -> None:
    port = free_port()
    zone_files = sorted((fixtures_dir / "zones").glob("*.zone"))
    task = asyncio.ensure_future(serve_authority(zone_files, [("127.0.0.1", port)]))
    reply = None
    async with asyncio.timeout(TIMEOUT):
        while reply is None:
            # Polls the socket, not the clock: each attempt waits for a reply or a refusal.
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.01)
                continue
            writer.write(frame(query("www.example.test.")))
            reply = DNSRecord.parse(await read_frame(reader))
            writer.close()
    assert answers(reply) == ["127.1.1.1"]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_serve_authority_rejects_no_listen_addresses(fixtures_dir: Path) -> None:
    with pytest.raises(ConfigError, match="listen"):
        await serve_authority([fixtures_dir / "zones" / "example.com.zone"], [])


async def test_serve_authority_rejects_a_bad_zone_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.zone"
    bad.write_text("$ORIGIN bad.\n@ 60 IN SOA ns host 1 2 3 4 5\n@ 60 IN NS ns\nx 60 IN A y\n")
    with pytest.raises(ConfigError) as info:
        await serve_authority([bad], [("127.0.0.1", 0)])
    assert info.value.field == f"{bad}:4"


# --- logging and stopping ------------------------------------------------------------------


async def test_start_logs_zones_serials_and_address_and_each_query_at_debug(
    fixtures_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="resolver.authority")
    zones = [fixtures_dir / "zones" / name for name in ("example.com.zone", "example.test.zone")]
    async with Authority.from_files(zones) as authority, udp_client() as client:
        host, port = authority.address
        client.send(query("nothere.example.com.", "MX", qid=77), authority.address)
        await client.next()
        await tcp_ask(authority, query("www.example.test.", qid=78))
    messages = [record.getMessage() for record in caplog.records]
    assert messages[0] == (
        "authority for example.com. (serial 2024010101), example.test. (serial 2024010101)"
        f" on {host}:{port} (udp and tcp)"
    )
    assert any(
        m.startswith("udp 127.0.0.1:") and m.endswith("nothere.example.com. MX id 77: NXDOMAIN")
        for m in messages
    )
    assert any(m.endswith("www.example.test. A id 78: NOERROR") for m in messages)
    assert messages[-1] == f"authority on {host}:{port} stopped after 2 queries"


async def test_aclose_with_a_tcp_client_connected_ends_its_handler_without_an_error(
    fixtures_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    authority = Authority.from_files([fixtures_dir / "zones" / "example.com.zone"])
    await authority.start()
    reader, writer = await asyncio.open_connection(*authority.address)
    writer.write(frame(query("www.example.com.")))
    await read_frame(reader)
    # A second client, connected but silent, and a third waiting out a delay fault.
    idle_reader, idle_writer = await asyncio.open_connection(*authority.address)
    authority.faults.delay = 60.0
    slow_reader, slow_writer = await asyncio.open_connection(*authority.address)
    slow_writer.write(frame(query("www.example.com.")))
    async with asyncio.timeout(TIMEOUT):
        await authority.wait_queries(2)
        await authority.aclose()
        for stream in (reader, idle_reader, slow_reader):
            assert await stream.read() == b""
    for stream_writer in (writer, idle_writer, slow_writer):
        stream_writer.close()
    await asyncio.sleep(0)  # let asyncio run the handlers' done callbacks
    assert authority.statistics()["open_tcp_connections"] == 0
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []


def test_authority_command_stops_cleanly_on_sigterm_with_a_client_connected(
    fixtures_dir: Path,
) -> None:
    port = free_port()
    zone = fixtures_dir / "zones" / "example.com.zone"
    args = [sys.executable, "-m", "resolver", "authority", "--zone", str(zone)]
    args += ["--listen", f"127.0.0.1:{port}", "--log-level", "debug"]
    process = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    try:
        connection = _connect_when_listening(port, process)
        with connection:
            message = query("www.example.com.")
            connection.sendall(frame(message))
            assert len(connection.recv(4096)) > 2
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert "CancelledError" not in err
    assert "www.example.com. A id 1000: NOERROR" in err
    assert f"authority on 127.0.0.1:{port} stopped after 1 queries" in err


def _connect_when_listening(port: int, process: subprocess.Popen[str]) -> socket.socket:
    deadline = time.monotonic() + STARTUP
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"resolver authority exited with {process.returncode}")
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        except ConnectionRefusedError:
            time.sleep(0.05)  # not listening yet: pace the polling
    raise AssertionError(f"resolver authority did not listen within {STARTUP}s")
