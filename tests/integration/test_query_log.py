"""`resolver serve --query-log FILE`: one JSON line per answered query, over UDP and TCP, with
where its answer came from; opened again on SIGHUP, as logrotate needs."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path
from typing import Any

from support import addresses, free_port, start_resolver, stop
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
