"""The response policy through the running daemon, in front of the fixture authority: each
list format, exceptions, subdomains, deep CNAME inspection, client groups, RPZ actions, EDE,
the query log and the metrics, and a reload under load that loses no query."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import socket
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support import metric_samples, tcp_exchange, until

from resolver.authority import Authority
from resolver.config import (
    Config,
    ForwarderConfig,
    ListConfig,
    LogConfig,
    PolicyConfig,
    RpzConfig,
    ServerConfig,
    SocketPoolConfig,
    TransportConfig,
)
from resolver.daemon import Daemon
from resolver.metrics import exposition
from resolver.wire import DNSRecord, build_query

A, AAAA, TXT = 1, 28, 16
_ids = itertools.count(1)

RPZ = """$ORIGIN rpz.test.
$TTL 300
@ SOA localhost. root.localhost. 1 3600 600 86400 60
  NS localhost.
mail.example.com CNAME .
txtonly.example.com CNAME *.
drop.example.com CNAME rpz-drop.
www.example.test CNAME rpz-tcp-only.
sip.example.com A 192.0.2.1
sip.example.com A 192.0.2.2
rewrite.example.com CNAME www.example.com.
chain3.example.com CNAME .
32.2.0.1.127.rpz-ip CNAME *.
"""


@contextlib.asynccontextmanager
async def serving(
    authority: Authority, policy: PolicyConfig, tmp_path: Path
) -> AsyncIterator[Daemon]:
    config = Config(
        server=ServerConfig(listen=(("127.0.0.1", 0),)),
        forwarder=ForwarderConfig(
            upstreams=(authority.address,), upstream_timeout=1.0, query_timeout=3.0
        ),
        transport=TransportConfig(pool=SocketPoolConfig(min_size=1, max_size=8, min_idle=1)),
        log=LogConfig(query_log=tmp_path / "queries.log"),
        policy=policy,
    )
    daemon = Daemon(config)
    await daemon.start()
    # Served as the CLI serves it, its chores (the policy files' watch) included.
    served = asyncio.get_running_loop().create_task(daemon.serve_until_stopped())
    try:
        yield daemon
    finally:
        daemon.request_stop()
        await served


def exchange(
    port: int, query: bytes, *, source: str = "127.0.0.1", timeout: float = 4.0
) -> bytes | None:
    """One UDP exchange from ``source``; None when no reply came within ``timeout``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(timeout)
        sock.sendto(query, ("127.0.0.1", port))
        try:
            return sock.recv(65535)
        except TimeoutError:
            return None


async def ask(
    daemon: Daemon,
    name: str,
    qtype: int = A,
    *,
    source: str = "127.0.0.1",
    tcp: bool = False,
    edns: bool = True,
) -> DNSRecord:
    query = build_query(name, qtype, qid=next(_ids) & 0xFFFF, edns_size=1232 if edns else None)
    port = daemon.addresses[0][1]
    if tcp:
        reply: bytes | None = await asyncio.to_thread(tcp_exchange, port, query)
    else:
        reply = await asyncio.to_thread(exchange, port, query, source=source)
    assert reply is not None
    return DNSRecord.parse(reply)


def rcode(record: DNSRecord) -> int:
    return int(record.header.rcode)


def answers(record: DNSRecord) -> list[str]:
    return [str(rr.rdata) for rr in record.rr]


def ede(record: DNSRecord) -> list[int]:
    codes = []
    for rr in record.ar:
        if rr.rtype == 41:
            for option in rr.rdata:
                if option.code == 15:
                    codes.append(int.from_bytes(option.data[:2], "big"))
    return codes


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def query_log(daemon: Daemon) -> list[dict[str, object]]:
    assert daemon.server.query_log is not None
    daemon.server.query_log.flush()
    lines = daemon.server.query_log.path.read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.mark.parametrize(
    ("fmt", "text", "name", "blocked"),
    [
        ("hosts", "0.0.0.0 www.example.com\n", "www.example.com", True),
        ("hosts", "0.0.0.0 example.com\n", "www.example.com", False),
        ("hosts", "127.0.0.1 localhost\n0.0.0.0 0.0.0.0\n", "www.example.com", False),
        ("domains", "example.com\n", "www.example.com", True),
        ("domains", "*.example.com\n", "example.com", False),
        ("adblock", "||example.com^\n", "www.example.com", True),
        ("adblock", "||example.com^\n@@||www.example.com^\n", "www.example.com", False),
        ("adblock", "example.com##.ad\n||example.com^$third-party\n", "www.example.com", False),
    ],
    ids=[
        "hosts-name",
        "hosts-no-subdomains",
        "hosts-preamble",
        "domains-subdomains",
        "domains-star-not-apex",
        "adblock-subdomains",
        "adblock-exception",
        "adblock-not-dns",
    ],
)
async def test_each_list_format_blocks_as_its_users_expect(
    authority: Authority, tmp_path: Path, fmt: str, text: str, name: str, blocked: bool
) -> None:
    path = write(tmp_path, "list.txt", text)
    policy = PolicyConfig(lists=(ListConfig(file=path, format=fmt),))  # type: ignore[arg-type]
    async with serving(authority, policy, tmp_path) as daemon:
        reply = await ask(daemon, name)
        if blocked:
            assert rcode(reply) == 3
            assert ede(reply) == [15]
        else:
            assert rcode(reply) == 0
            assert ede(reply) == []


async def test_a_blocked_answer_goes_to_no_upstream_and_is_logged(
    authority: Authority, tmp_path: Path
) -> None:
    path = write(tmp_path, "ads", "||www.example.com^\n")
    policy = PolicyConfig(lists=(ListConfig(file=path, format="adblock", action="null"),))
    async with serving(authority, policy, tmp_path) as daemon:
        reply = await ask(daemon, "www.example.com")
        assert answers(reply) == ["0.0.0.0"]
        assert answers(await ask(daemon, "www.example.com", AAAA)) == ["::"]
        assert authority.queries == []
        no_edns = await ask(daemon, "www.example.com", edns=False)
        assert ede(no_edns) == []
        assert not no_edns.ar
        lines = query_log(daemon)
        assert lines[0]["source"] == "policy"
        assert lines[0]["policy"] == "ads"
        assert lines[0]["rule"] == "||www.example.com^"
        samples = metric_samples(exposition(daemon.readings)().decode())
        assert samples['resolver_policy_hits_total{action="null",source="ads"}'] == 3


async def test_a_cname_chain_through_a_listed_name_is_blocked(
    authority: Authority, tmp_path: Path
) -> None:
    path = write(tmp_path, "list", "chain3.example.com\n")
    policy = PolicyConfig(lists=(ListConfig(file=path, format="domains"),))
    async with serving(authority, policy, tmp_path) as daemon:
        assert rcode(await ask(daemon, "chain1.example.com")) == 3
        # From the cache too: the answer stored is the upstream's, checked on the way out.
        assert rcode(await ask(daemon, "chain1.example.com")) == 3
        assert len(authority.queries) == 1
        assert rcode(await ask(daemon, "alias.example.com")) == 0


async def test_a_list_for_a_group_of_clients_blocks_for_them_only(
    authority: Authority, tmp_path: Path
) -> None:
    path = write(tmp_path, "kids", "www.example.com\n")
    policy = PolicyConfig(
        lists=(ListConfig(file=path, format="domains", clients=("127.0.0.2/32",)),)
    )
    async with serving(authority, policy, tmp_path) as daemon:
        for _ in range(3):  # repeats too: no client's answer may be reused for another
            assert rcode(await ask(daemon, "www.example.com", source="127.0.0.2")) == 3
            assert rcode(await ask(daemon, "www.example.com", source="127.0.0.1")) == 0


@pytest.mark.parametrize(
    ("name", "qtype", "expected_rcode", "expected"),
    [
        ("mail.example.com", A, 3, []),
        ("txtonly.example.com", TXT, 0, []),
        ("sip.example.com", A, 0, ["192.0.2.1", "192.0.2.2"]),
        ("rewrite.example.com", A, 0, ["www.example.com.", "127.1.0.1"]),
        ("chain1.example.com", A, 3, ["chain2.example.com.", "chain3.example.com."]),
        ("short.example.com", A, 0, []),
    ],
    ids=["nxdomain", "nodata", "local-data", "cname-rewrite", "cname-chain", "response-ip"],
)
async def test_rpz_actions_through_the_daemon(
    authority: Authority,
    tmp_path: Path,
    name: str,
    qtype: int,
    expected_rcode: int,
    expected: list[str],
) -> None:
    policy = PolicyConfig(rpz=(RpzConfig(file=write(tmp_path, "rpz.zone", RPZ)),))
    async with serving(authority, policy, tmp_path) as daemon:
        reply = await ask(daemon, name, qtype)
        assert rcode(reply) == expected_rcode
        assert answers(reply) == expected
        assert ede(reply) == [17]


async def test_rpz_drop_sends_nothing_and_tcp_only_truncates_udp(
    authority: Authority, tmp_path: Path
) -> None:
    policy = PolicyConfig(rpz=(RpzConfig(file=write(tmp_path, "rpz.zone", RPZ)),))
    async with serving(authority, policy, tmp_path) as daemon:
        port = daemon.addresses[0][1]
        dropped = await asyncio.to_thread(
            exchange, port, build_query("drop.example.com", A, qid=7), timeout=1.0
        )
        assert dropped is None
        truncated = await ask(daemon, "www.example.test")
        assert truncated.header.tc
        assert not truncated.rr
        over_tcp = await ask(daemon, "www.example.test", tcp=True)
        assert rcode(over_tcp) == 0
        assert answers(over_tcp)


async def test_an_rpz_zone_given_by_flag_and_a_list_together(
    authority: Authority, tmp_path: Path
) -> None:
    lists = (ListConfig(file=write(tmp_path, "l", "example.com\n"), format="domains"),)
    zone = write(tmp_path, "pass.zone", RPZ + "www.example.com CNAME rpz-passthru.\n")
    policy = PolicyConfig(rpz=(RpzConfig(file=zone),), lists=lists)
    async with serving(authority, policy, tmp_path) as daemon:
        assert rcode(await ask(daemon, "www.example.com")) == 0  # passed by the zone
        assert rcode(await ask(daemon, "ns1.example.com")) == 3  # blocked by the list


async def test_a_changed_list_is_swapped_in_under_load_without_losing_a_query(
    authority: Authority, tmp_path: Path
) -> None:
    path = write(tmp_path, "list", "".join(f"n{i}.example.org\n" for i in range(20000)))
    policy = PolicyConfig(lists=(ListConfig(file=path, format="domains"),), reload_interval=0.2)
    async with serving(authority, policy, tmp_path) as daemon:
        port = daemon.addresses[0][1]
        stop = threading.Event()
        results: list[int | None] = []

        def load() -> None:
            for number in range(5000):  # bounded: at most 5000 queries
                if stop.is_set():
                    return
                name = "www.example.com" if number % 2 else "mail.example.com"
                reply = exchange(port, build_query(name, A, qid=number & 0xFFFF), timeout=3.0)
                results.append(None if reply is None else reply[3] & 0x0F)

        worker = threading.Thread(target=load)
        worker.start()
        try:
            await until(lambda: len(results) > 50, timeout=10.0)
            before = daemon.engine.response_policy
            path.write_text(path.read_text() + "www.example.com\n")
            stat = path.stat()
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
            await until(lambda: daemon.engine.response_policy is not before, timeout=10.0)
            seen = len(results)
            await until(lambda: len(results) > seen + 50, timeout=10.0)
        finally:
            stop.set()
            await asyncio.to_thread(worker.join)
        assert None not in results  # every query answered, during the swap too
        assert set(results) <= {0, 3}
        assert results[-2:].count(3) == 1  # www blocked now, mail not
        assert rcode(await ask(daemon, "www.example.com")) == 3


async def test_sighup_reload_reads_a_new_list(authority: Authority, tmp_path: Path) -> None:
    first = write(tmp_path, "one", "www.example.com\n")
    second = write(tmp_path, "two", "mail.example.com\n")

    def config(path: Path) -> Config:
        return Config(
            server=ServerConfig(listen=(("127.0.0.1", 0),)),
            forwarder=ForwarderConfig(upstreams=(authority.address,)),
            policy=PolicyConfig(lists=(ListConfig(file=path, format="domains"),)),
        )

    current = [config(first)]
    daemon = Daemon(current[0], load=lambda: current[0])
    await daemon.start()
    try:
        assert rcode(await ask(daemon, "www.example.com")) == 3
        current[0] = config(second)
        assert await daemon.reload()
        assert rcode(await ask(daemon, "www.example.com")) == 0
        assert rcode(await ask(daemon, "mail.example.com")) == 3
        # A list that cannot be read refuses the reload and keeps the running policy.
        current[0] = config(tmp_path / "missing")
        assert not await daemon.reload()
        assert rcode(await ask(daemon, "mail.example.com")) == 3
    finally:
        await daemon.aclose()


async def test_a_loop_of_rewrites_ends_in_servfail(authority: Authority, tmp_path: Path) -> None:
    zone = RPZ + "a.loop.example CNAME b.loop.example.\nb.loop.example CNAME a.loop.example.\n"
    policy = PolicyConfig(rpz=(RpzConfig(file=write(tmp_path, "loop.zone", zone)),))
    async with serving(authority, policy, tmp_path) as daemon:
        assert rcode(await ask(daemon, "a.loop.example")) == 2
        assert authority.queries == []


async def test_a_zone_with_log_off_is_not_named_in_the_query_log(
    authority: Authority, tmp_path: Path
) -> None:
    zone = RpzConfig(file=write(tmp_path, "quiet.zone", RPZ), log=False, name="quiet")
    async with serving(authority, PolicyConfig(rpz=(zone,)), tmp_path) as daemon:
        assert rcode(await ask(daemon, "mail.example.com")) == 3
        line = query_log(daemon)[0]
        assert line["source"] == "policy"
        assert "policy" not in line
        assert "rule" not in line
        samples = metric_samples(exposition(daemon.readings)().decode())
        assert samples['resolver_policy_hits_total{action="nxdomain",source="quiet"}'] == 1
