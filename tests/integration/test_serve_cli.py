"""`resolver authority` and `resolver serve` as real subprocesses: readiness, answering through
the daemon, SIGTERM, and configuration errors (exit 3, one line naming the field)."""

from __future__ import annotations

import contextlib
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import free_port

from resolver.wire import NOERROR, DNSRecord

STARTUP = 15.0  # bound on a subprocess becoming ready (interpreter start included)
STOP = 5.0  # bound on a clean exit after SIGTERM


def udp_query(port: int, name: str = "www.example.com.", timeout: float = 0.2) -> DNSRecord:
    """One UDP query to 127.0.0.1:port; raises OSError (timeout, refused) without a reply."""
    message = DNSRecord.question(name, "A")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", port))
        sock.send(message.pack())
        while True:
            reply = DNSRecord.parse(sock.recv(65535))
            # QR: while nothing listens on ``port`` the kernel may give this socket that very
            # port, and it then receives its own query.
            if reply.header.id == message.header.id and reply.header.qr:
                return reply


def wait_ready(process: subprocess.Popen[str], port: int) -> None:
    """Poll with DNS queries until ``port`` answers; fail with the stderr if the process
    exits or STARTUP passes."""
    deadline = time.monotonic() + STARTUP
    while time.monotonic() < deadline:
        if process.poll() is not None:
            _, err = process.communicate()
            pytest.fail(f"exited with {process.returncode} before answering:\n{err}")
        try:
            udp_query(port)
        except ConnectionRefusedError:
            time.sleep(0.02)  # nothing listens yet: pace the polling, not an ordering sleep
        except OSError:
            pass  # no reply within udp_query's timeout: ask again
        else:
            return
    pytest.fail(f"no answer on port {port} within {STARTUP}s")


def resolver(*args: str) -> list[str]:
    return [sys.executable, "-m", "resolver", *args]


@contextlib.contextmanager
def running(args: list[str]) -> Iterator[subprocess.Popen[str]]:
    """Start a subprocess; kill it on the way out, whatever happened."""
    process = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=Path.cwd()
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=STOP)


def test_serve_answers_through_the_daemon_and_stops_on_sigterm(authority_port: int) -> None:
    port = free_port()
    args = resolver(
        "serve", "--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{authority_port}"
    )
    with running(args) as daemon:
        wait_ready(daemon, port)
        reply = udp_query(port, timeout=2.0)
        assert reply.header.rcode == NOERROR
        assert (reply.header.ra, reply.header.aa) == (1, 0)
        assert [str(rr.rdata) for rr in reply.rr] == ["127.1.0.1"]
        nxdomain = udp_query(port, "nothere.example.com.", timeout=2.0)
        assert nxdomain.header.rcode == 3

        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=STOP)
        assert daemon.returncode == 0, err
    assert "serving on 127.0.0.1:" in err
    assert err.rstrip().endswith("stopped")
    assert "Traceback" not in err


def test_serve_prints_ipv6_addresses_in_brackets(authority_port: int) -> None:
    port = free_port()
    args = resolver(
        "serve",
        "--listen",
        f"127.0.0.1:{port}",
        "--listen",
        f"[::1]:{port}",
        "--upstream",
        f"127.0.0.1:{authority_port}",
    )
    with running(args) as daemon:
        wait_ready(daemon, port)
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=STOP)
        assert daemon.returncode == 0, err
    assert f"serving on 127.0.0.1:{port}, [::1]:{port} " in err


def _kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def test_a_tcp_client_that_never_reads_costs_the_daemon_little_memory(
    authority_port: int, tmp_path: Path
) -> None:
    # 20,000 queries for a 2.2 KB answer, none of it read: 44 MB of replies, which the daemon
    # once kept (RSS +42 MiB). It must stop reading, keep at most 32 MiB more, close the
    # connection and answer UDP meanwhile.
    config = tmp_path / "resolver.toml"
    config.write_text("[server]\ntcp_write_timeout = 1\ntcp_idle_timeout = 60\n")
    port = free_port()
    args = resolver(
        "serve",
        "--config",
        str(config),
        "--listen",
        f"127.0.0.1:{port}",
        "--upstream",
        f"127.0.0.1:{authority_port}",
    )
    question = DNSRecord.question("big.example.com.", "TXT")
    framed = len(question.pack()).to_bytes(2, "big") + question.pack()
    with running(args) as daemon:
        wait_ready(daemon, port)
        with socket.create_connection(("127.0.0.1", port), timeout=STOP) as prime:
            prime.sendall(framed)  # cached from now on
            prime.recv(65535)
        before = _kib(daemon.pid, "VmRSS")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as client:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            client.connect(("127.0.0.1", port))
            client.setblocking(False)
            data, sent = framed * 20_000, 0
            deadline = time.monotonic() + STOP
            while sent < len(data) and time.monotonic() < deadline:
                try:
                    sent += client.send(data[sent:])
                except BlockingIOError:
                    time.sleep(0.01)
            assert udp_query(port, timeout=2.0).header.rcode == NOERROR
            # Still reading nothing: the server's reset shows as an error on the socket.
            poller = select.poll()
            poller.register(client, 0)  # no events asked: only POLLERR and POLLHUP come
            closed = bool(poller.poll(STOP * 1000))
        growth_mib = (_kib(daemon.pid, "VmHWM") - before) / 1024
    assert closed
    assert growth_mib <= 32, f"RSS grew by {growth_mib:.1f} MiB"


def test_authority_stops_on_sigterm(authority_port: int) -> None:
    # The fixture's process answered; a second one on another port is stopped here.
    port = free_port()
    zone = Path(__file__).resolve().parents[2] / "fixtures" / "zones" / "example.com.zone"
    with running(resolver("authority", "--zone", str(zone), "--listen", f"127.0.0.1:{port}")) as p:
        wait_ready(p, port)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=STOP)
        assert p.returncode == 0, err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "toml", "field"),
    [
        pytest.param(
            ["--upstream", "not-an-ip"], None, "forwarder.upstreams", id="upstream-not-ip"
        ),
        pytest.param(
            ["--listen", "1.2.3.4:99999", "--upstream", "127.0.0.1:53"],
            None,
            "server.listen",
            id="listen-port-out-of-range",
        ),
        pytest.param(["--resolv-conf", "{empty}"], None, "forwarder.upstreams", id="no-upstream"),
        pytest.param(
            ["--upstream-timeout", "-1", "--upstream", "127.0.0.1"],
            None,
            "forwarder.upstream_timeout",
            id="negative-timeout",
        ),
        pytest.param(
            ["--upstream", "127.0.0.1"],
            "[server]\nbogus = 1\n",
            "server.bogus",
            id="toml-unknown-key",
        ),
        pytest.param(
            ["--upstream", "127.0.0.1"],
            "[nosuchsection]\nx = 1\n",
            "nosuchsection",
            id="toml-unknown-section",
        ),
        pytest.param(
            ["--upstream", "127.0.0.1"],
            "[transport.pool]\nmax_uses = 0\n",
            "transport.pool.max_uses",
            id="toml-bad-pool-value",
        ),
        pytest.param(["--upstream", "127.0.0.1"], "[server\n", "invalid TOML", id="toml-syntax"),
        # Values of the wrong type, once misread or a traceback; each named now.
        pytest.param(
            ["--upstream", "127.0.0.1"],
            '[transport]\nrandomize_case = "false"\n',
            "transport.randomize_case",
            id="bool-as-string",
        ),
        pytest.param(
            ["--upstream", "127.0.0.1"],
            '[cache]\nenabled = "no"\n',
            "cache.enabled",
            id="enabled-as-string",
        ),
        pytest.param(
            ["--upstream", "127.0.0.1"], "[server]\nallow = [8]\n", "server.allow", id="allow-int"
        ),
        pytest.param(
            ["--upstream", "127.0.0.1"],
            "[server]\nmax_tcp_connections = 1.5\n",
            "server.max_tcp_connections",
            id="int-as-float",
        ),
        pytest.param(
            ["--upstream", "127.0.0.1"], "[transport]\npool = 5\n", "transport.pool", id="pool-int"
        ),
        pytest.param(
            ["--upstream", "127.0.0.1"],
            '[forwarder]\nupstream_timeout = "2"\n',
            "forwarder.upstream_timeout",
            id="timeout-as-string",
        ),
        pytest.param(
            ["--upstream", "127.0.0.1"],
            "[forwarder]\nupstream_timeout = 6\nquery_timeout = 5\n",
            "forwarder.upstream_timeout",
            id="upstream-timeout-above-query-timeout",
        ),
        pytest.param(
            ["--upstream", "127.0.0.1:5399", "--listen", "127.0.0.1:5399"],
            None,
            "forwarder.upstreams",
            id="upstream-is-the-listener",
        ),
        pytest.param(
            ["--upstream", "127.0.0.1:5399", "--listen", "[::]:5399"],
            None,
            "forwarder.upstreams",
            id="upstream-is-under-the-wildcard-listener",
        ),
        pytest.param(
            ["--upstream", "127.0.0.1", "--metrics", "localhost:9153"],
            None,
            "metrics.listen",
            id="metrics-not-an-ip",
        ),
        pytest.param(
            ["--upstream", "127.0.0.1", "--listen", "127.0.0.1:5399", "--metrics", "0.0.0.0:5399"],
            None,
            "metrics.listen",
            id="metrics-on-the-dns-tcp-port",
        ),
        pytest.param(
            ["--upstream", "127.0.0.1"],
            '[metrics]\nlisten = ["127.0.0.1:9153"]\n',
            "metrics.listen",
            id="toml-metrics-list",
        ),
        pytest.param(
            ["--upstream", "127.0.0.1", "--workers", "0"],
            None,
            "server.workers",
            id="no-workers",
        ),
        pytest.param(
            ["--upstream", "127.0.0.1"],
            b'[server]\nallow = ["\xff"]\n',
            "not UTF-8",
            id="not-utf8",
        ),
    ],
)
def test_bad_configuration_exits_3_with_one_line_naming_the_field(
    tmp_path: Path, args: list[str], toml: str | bytes | None, field: str
) -> None:
    if toml is not None:
        path = tmp_path / "resolver.toml"
        path.write_bytes(toml if isinstance(toml, bytes) else toml.encode())
        args = [*args, "--config", str(path)]
    if not any(a == "--listen" for a in args):
        args = [*args, "--listen", f"127.0.0.1:{free_port()}"]
    if "{empty}" in args:  # a resolv.conf of the test's own that names no nameserver
        empty = tmp_path / "resolv.conf"
        empty.write_text("search example\n")
        args = [str(empty) if a == "{empty}" else a for a in args]
    result = subprocess.run(
        resolver("serve", *args), capture_output=True, text=True, timeout=STARTUP
    )
    assert result.returncode == 3, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert field in lines[0]
    assert lines[0].startswith("resolver: error:")
    assert "Traceback" not in result.stderr


def test_serve_on_a_taken_port_fails_with_one_line(authority_port: int) -> None:
    args = resolver(
        "serve",
        "--listen",
        f"127.0.0.1:{authority_port}",
        "--upstream",
        f"127.0.0.1:{free_port()}",
    )
    result = subprocess.run(args, capture_output=True, text=True, timeout=STARTUP)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1
    assert "cannot start" in errors[0]


def test_serve_leaves_out_an_upstream_no_socket_can_reach(authority_port: int) -> None:
    # Link-local without a scope: no socket can be connected to it.
    port = free_port()
    args = resolver(
        "serve",
        "--listen",
        f"127.0.0.1:{port}",
        "--upstream",
        "[fe80::1]:53",
        "--upstream",
        f"127.0.0.1:{authority_port}",
    )
    with running(args) as daemon:
        wait_ready(daemon, port)
        reply = udp_query(port, timeout=2.0)
        assert [str(rr.rdata) for rr in reply.rr] == ["127.1.0.1"]
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=STOP)
        assert daemon.returncode == 0, err
    assert "Traceback" not in err
    warnings = [line for line in err.splitlines() if "WARNING" in line]
    assert len(warnings) == 1, err
    assert "[fe80::1]:53" in warnings[0]


def test_serve_without_a_usable_upstream_fails_with_one_line() -> None:
    args = resolver(
        "serve",
        "--listen",
        f"127.0.0.1:{free_port()}",
        "--upstream",
        "[fe80::1]:53",
        "--upstream",
        "[fe80::2]:53",
    )
    result = subprocess.run(args, capture_output=True, text=True, timeout=STARTUP)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("resolver: error:")
    assert "[fe80::1]:53" in lines[0]
    assert "[fe80::2]:53" in lines[0]


def test_authority_with_a_bad_zone_exits_3(tmp_path: Path) -> None:
    bad = tmp_path / "bad.zone"
    bad.write_text("$ORIGIN bad.\n@ 60 IN SOA ns host 1 2 3 4 5\n@ 60 IN NS ns\nx 60 IN A y\n")
    args = resolver("authority", "--zone", str(bad), "--listen", f"127.0.0.1:{free_port()}")
    result = subprocess.run(args, capture_output=True, text=True, timeout=STARTUP)
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    assert f"{bad}:4" in result.stderr
