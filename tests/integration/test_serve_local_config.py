"""`resolver serve --config FILE` as a real subprocess with ``[local]`` and
``[[forwarder.domains]]``: the keys as an operator writes them reach the running daemon."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import free_port

from resolver.wire import DNSRecord

STARTUP = 15.0  # bound on a subprocess becoming ready (interpreter start included)
STOP = 5.0


def query(port: int, name: str, qtype: str = "A", timeout: float = 0.5) -> DNSRecord:
    """One UDP query to 127.0.0.1:port; raises OSError without a reply."""
    message = DNSRecord.question(name, qtype)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", port))
        sock.send(message.pack())
        for _ in range(16):  # bounded: only our own reply ends it
            reply = DNSRecord.parse(sock.recv(65535))
            if reply.header.id == message.header.id and reply.header.qr:
                return reply
    raise OSError("no matching reply")


def start(args: list[str], port: int) -> subprocess.Popen[str]:
    """Start ``python -m resolver ARGS`` and wait until ``port`` answers localhost."""
    process = subprocess.Popen(
        [sys.executable, "-m", "resolver", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + STARTUP
    while time.monotonic() < deadline:
        if process.poll() is not None:
            _, err = process.communicate()
            pytest.fail(f"exited with {process.returncode} before answering:\n{err}")
        try:
            query(port, "localhost.", timeout=0.2)
        except ConnectionRefusedError:
            time.sleep(0.02)  # nothing listens yet: pace the polling
        except OSError:
            pass
        else:
            return process
    process.kill()
    process.communicate(timeout=STOP)
    pytest.fail(f"no answer on port {port} within {STARTUP}s")


@pytest.fixture
def authority_port(fixtures_dir: Path) -> Iterator[int]:
    """A `resolver authority` subprocess serving every fixture zone; its port."""
    port = free_port()
    zones = [f"--zone={path}" for path in sorted((fixtures_dir / "zones").glob("*.zone"))]
    process = subprocess.Popen(
        [sys.executable, "-m", "resolver", "authority", *zones, "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + STARTUP
        while True:
            try:
                query(port, "www.example.com.", timeout=0.2)
                break
            except ConnectionRefusedError:
                time.sleep(0.02)  # nothing listens yet: pace the polling
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the authority did not start")
        yield port
    finally:
        process.kill()
        process.communicate(timeout=STOP)


def test_serve_takes_local_answers_hosts_and_domains_from_its_config_file(
    authority_port: int, tmp_path: Path
) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.10 printer.lan\n")
    port, silent = free_port(), free_port()  # nothing listens on the default upstream
    config = tmp_path / "resolver.toml"
    config.write_text(
        f"""
[server]
listen = ["127.0.0.1:{port}"]

[forwarder]
upstreams = ["127.0.0.1:{silent}"]
upstream_timeout = 0.3

[[forwarder.domains]]
name = "example.com"
upstreams = ["127.0.0.1:{authority_port}"]

[local]
hosts = "{hosts}"
special_names = false
"""
    )
    process = start(["serve", "--config", str(config), "--log-level", "warning"], port)
    try:
        assert [str(rr.rdata) for rr in query(port, "localhost.").rr] == ["127.0.0.1"]
        assert [str(rr.rdata) for rr in query(port, "printer.lan.").rr] == ["192.0.2.10"]
        assert [str(rr.rdata) for rr in query(port, "www.example.com.").rr] == ["127.1.0.1"]
        assert query(port, "x.1.168.192.in-addr.arpa.", "PTR").header.rcode == 3
        # special_names is off: x.invalid goes to the silent default upstream and fails.
        assert query(port, "x.invalid.", timeout=4.0).header.rcode == 2
    finally:
        process.terminate()
        process.communicate(timeout=STOP)
    assert process.returncode == 0
