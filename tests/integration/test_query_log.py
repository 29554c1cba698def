"""`resolver serve --query-log FILE`: one JSON line per answered query, over UDP and TCP, with
where its answer came from; opened again on SIGHUP, as logrotate needs."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from support import Stderr, addresses, free_port, start_resolver, stop, upstream_in_thread
from support import dns_query as query

from resolver.wire import DNSRecord


def tcp_query(port: int, name: str) -> DNSRecord:
    message = DNSRecord.question(name).pack()
    with socket.create_connection(("127.0.0.1", port), timeout=3.0) as sock:
        sock.sendall(len(message).to_bytes(2, "big") + message)
        size = int.from_bytes(sock.recv(2), "big")
        data = b""
        while len(data) < size:  # bounded by size: each recv returns at least a byte
            chunk = sock.recv(size - len(data))
            assert chunk
            data += chunk
    return DNSRecord.parse(data)


def lines(path: Path, count: int) -> list[dict[str, Any]]:
    """The first ``count`` records of ``path``, waiting (bounded) for them to be written."""
    deadline = time.monotonic() + 5.0
    while True:
        text = path.read_text() if path.exists() else ""
        records = [json.loads(line) for line in text.splitlines()]
        if len(records) >= count or time.monotonic() > deadline:
            return records
        time.sleep(0.1)


def test_each_answered_query_is_a_json_line_naming_its_source(
    authority_port: int, tmp_path: Path
) -> None:
    port = free = free_port()
    log = tmp_path / "queries.jsonl"
    config = tmp_path / "resolver.toml"
    config.write_text(
        f'[server]\nlisten = ["127.0.0.1:{port}"]\n'
        f'[forwarder]\nupstreams = ["127.0.0.1:{authority_port}"]\n'
    )
    args = ["serve", "--config", str(config), "--query-log", str(log)]
    process = start_resolver(args, free, "localhost.")  # the probe is the first line
    try:
        assert addresses(query(port, "www.example.com.")) == ["127.1.0.1"]
        assert addresses(query(port, "www.example.com.")) == ["127.1.0.1"]
        assert addresses(query(port, "www.example.com.")) == ["127.1.0.1"]
        assert addresses(tcp_query(port, "localhost.")) == ["127.0.0.1"]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(3.0)
            sock.sendto(
                b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03", ("127.0.0.1", port)
            )
            assert sock.recv(512)[3] & 0x0F == 1  # FORMERR
        records = lines(log, 6)
        rotated = tmp_path / "queries.jsonl.1"
        log.rename(rotated)  # what logrotate does before it sends SIGHUP
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5.0
        while not log.exists():
            assert time.monotonic() < deadline, "the query log was not opened again"
            time.sleep(0.05)
        assert addresses(query(port, "localhost.")) == ["127.0.0.1"]
        after = lines(log, 1)
    finally:
        stop(process)
    assert [(r["name"], r["type"], r["rcode"], r["source"], r["transport"]) for r in records] == [
        ("localhost.", "A", "NOERROR", "local", "udp"),
        ("www.example.com.", "A", "NOERROR", "upstream", "udp"),
        ("www.example.com.", "A", "NOERROR", "cache", "udp"),
        ("www.example.com.", "A", "NOERROR", "cache", "udp"),
        ("localhost.", "A", "NOERROR", "local", "tcp"),
        (".", "TYPE0", "FORMERR", "server", "udp"),  # no question could be read
    ]
    for record in records:
        assert record["client"].startswith("127.0.0.1#")
        assert 0 <= record["duration"] < 3.0
        assert abs(record["time"] - time.time()) < 60
    assert [(r["name"], r["source"]) for r in after] == [("localhost.", "local")]
    assert len(rotated.read_text().splitlines()) == 6


def test_reloads_while_queries_are_in_flight_lose_no_line(tmp_path: Path) -> None:
    """Each round holds 40 questions at the upstream, reloads (which opens the query log
    again), then lets the answers go: every query has its line, and nothing is logged about
    writing to a closed file."""
    loops: list[asyncio.AbstractEventLoop] = []

    def answer(data: bytes) -> bytes:
        return data[:2] + bytes([data[2] | 0x80, 0x80]) + data[4:]  # NOERROR, no data

    def hold(data: bytes) -> bytes | None:
        loops[:] = [asyncio.get_running_loop()]
        return None if b"\x04held" in data.lower() else answer(data)

    rounds, per_round = 5, 40
    port = free_port()
    log = tmp_path / "queries.jsonl"
    config = tmp_path / "resolver.toml"
    replies: list[int] = []
    with upstream_in_thread(hold) as upstream, ThreadPoolExecutor(per_round) as clients:
        config.write_text(
            f'[server]\nlisten = ["127.0.0.1:{port}"]\n'
            f'[forwarder]\nupstreams = ["127.0.0.1:{upstream.address[1]}"]\n'
            "upstream_timeout = 10.0\nquery_timeout = 10.0\n"
            f'[log]\nquery_log = "{log}"\n'
        )
        process = start_resolver(["serve", "--config", str(config)], port, "localhost.")
        stderr = Stderr(process)
        try:
            for round_ in range(rounds):
                asked = len(upstream.queries)
                names = [f"held.r{round_}-{n}.example." for n in range(per_round)]
                answers = [clients.submit(query, port, name, "A", 20.0) for name in names]
                deadline = time.monotonic() + 10.0
                while len(upstream.queries) < asked + per_round:
                    assert time.monotonic() < deadline, "the questions did not reach upstream"
                    time.sleep(0.01)
                process.send_signal(signal.SIGHUP)
                stderr.wait_for("reloaded the configuration", round_ + 1)
                assert upstream.transport is not None
                held = list(zip(upstream.queries, upstream.sources, strict=True))[asked:]
                for data, source in held:
                    loops[0].call_soon_threadsafe(upstream.transport.sendto, answer(data), source)
                replies += [a.result().header.rcode for a in answers]
        finally:
            err = stop(process, stderr)
    assert replies == [0] * rounds * per_round
    logged = [r["name"] for r in lines(log, 0) if r["name"].startswith("held.")]
    assert sorted(logged) == sorted(
        f"held.r{r}-{n}.example." for r in range(rounds) for n in range(per_round)
    )
    assert "Traceback" not in err
    assert "closed file" not in err
