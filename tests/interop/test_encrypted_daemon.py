"""`resolver serve` over encrypted transports, with real peers on loopback: forwarding to
Unbound over TLS and HTTPS (the same answers as its plain port, many queries over one
connection as Unbound and the kernel count them), certificates not accepted (one log line,
never plaintext), our DoT and DoH listeners driven by kdig (padded replies), a client that
never reads its replies, SIGHUP reloading the certificate, and resolv.conf as the default
upstreams. Without unbound or kdig these tests fail; they never skip."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support import STOP, dns_query, free_port, start_resolver
from tls_support import PrivateCa
from unbound_peer import UnboundPeer

from resolver.wire import DNSRecord

pytestmark = pytest.mark.interop

NAMES = [f"n{i}.example." for i in range(32)]


def kdig() -> str:
    path = shutil.which("kdig")
    if path is None:
        pytest.fail("kdig is not installed: apt-get install knot-dnsutils (.ci/run does)")
    return path


@contextmanager
def serving(
    args: list[str], port: int, probe: str = "n1.example."
) -> Iterator[subprocess.Popen[str]]:
    process = start_resolver(["serve", "--listen", f"127.0.0.1:{port}", *args], port, probe)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
        try:
            process.communicate(timeout=STOP)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate(timeout=STOP)


def answer(reply: DNSRecord) -> list[str]:
    return sorted(f"{rr.rname} {rr.rtype} {rr.rdata}" for rr in reply.rr)


@pytest.mark.parametrize("scheme", ["tls", "https"], ids=["dot", "doh"])
def test_forwarding_over_tls_and_https_answers_as_the_plain_path_over_one_connection(
    unbound_peer: UnboundPeer, ca: PrivateCa, scheme: str
) -> None:
    port = free_port()
    if scheme == "tls":
        upstream = f"tls://127.0.0.1:{unbound_peer.tls}#dns.test"
    else:
        upstream = f"https://127.0.0.1:{unbound_peer.https}/dns-query#dns.test"
    with serving(["--upstream", upstream, "--tls-ca", str(ca.pem)], port):
        for name in NAMES:
            ours = dns_query(port, name, timeout=5)
            plain = dns_query(unbound_peer.plain, name, timeout=5)
            assert ours.header.rcode == plain.header.rcode == 0
            assert answer(ours) == answer(plain)
        # Every query went over the one connection the pool keeps open.
        assert unbound_peer.established() == 1
        stats = unbound_peer.stats()
        assert stats[f"num.query.{scheme}"] == len(NAMES)  # the probe was n1 again: cached


@pytest.mark.parametrize(
    ("fragment", "trust", "reason"),
    [
        ("#wrong.test", True, "Hostname mismatch"),
        ("#dns.test", False, "certificate not accepted"),
    ],
    ids=["wrong-name", "unknown-ca"],
)
def test_a_certificate_not_accepted_makes_the_upstream_unusable_with_one_log_line(
    unbound_peer: UnboundPeer, ca: PrivateCa, fragment: str, trust: bool, reason: str
) -> None:
    args = ["--upstream", f"tls://127.0.0.1:{unbound_peer.tls}{fragment}"]
    if trust:
        args += ["--tls-ca", str(ca.pem)]
    before = unbound_peer.stats()["total.num.queries"]  # the fixture's own probe
    # Started without waiting for an answer (it answers SERVFAIL): a port taken meanwhile
    # by another process's outgoing connection is tried again with another.
    for _ in range(5):
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "resolver", "serve", "--listen", f"127.0.0.1:{port}", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started = time.monotonic()
        while process.poll() is None and time.monotonic() - started < 3:
            try:
                dns_query(port, "n9.example.", timeout=0.5)
                break
            except OSError:
                time.sleep(0.05)
        if process.poll() is None:
            break
        _, err = process.communicate(timeout=STOP)
        assert "Address already in use" in err, err
    replies: list[DNSRecord] = []
    try:
        deadline = time.monotonic() + 20
        while len(replies) < 3 and time.monotonic() < deadline:
            try:
                replies.append(dns_query(port, f"n{len(replies)}.example.", timeout=3))
            except OSError:
                continue
    finally:
        process.terminate()
        _, err = process.communicate(timeout=STOP)
    assert len(replies) == 3, err
    assert all(reply.header.rcode == 2 for reply in replies), err  # SERVFAIL
    unusable = [line for line in err.splitlines() if "unusable" in line]
    assert len(unusable) == 1, err
    assert reason in unusable[0]
    stats = unbound_peer.stats()
    assert stats.get("num.query.tls", 0) == 0
    assert stats["total.num.queries"] == before  # nothing in plaintext either


@pytest.fixture
def our_listeners(
    unbound_peer: UnboundPeer, ca: PrivateCa, tmp_path: Path
) -> Iterator[tuple[int, int, int, subprocess.Popen[str]]]:
    issued = ca.issue("ours", names=("resolver.test",))
    port, tls, https = free_port(), free_port(), free_port()
    config = tmp_path / "resolver.toml"
    config.write_text("[server]\ntcp_write_timeout = 1.0\n")
    args = [
        "--config",
        str(config),
        "--upstream",
        f"127.0.0.1:{unbound_peer.plain}",
        "--listen-tls",
        f"127.0.0.1:{tls}",
        "--listen-https",
        f"127.0.0.1:{https}",
        "--tls-cert",
        str(issued.cert),
        "--tls-key",
        str(issued.key),
    ]
    with serving(args, port) as process:
        yield port, tls, https, process


def run_kdig(port: int, ca: PrivateCa, *options: str, name: str = "n2.example.") -> str:
    result = subprocess.run(
        [
            kdig(),
            "@127.0.0.1",
            "-p",
            str(port),
            f"+tls-ca={ca.pem}",
            "+tls-hostname=resolver.test",
            *options,
            name,
            "A",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return result.stdout + result.stderr


@pytest.mark.parametrize(
    ("which", "options"),
    [("tls", ("+tls",)), ("https", ("+https",)), ("https", ("+https-get",))],
    ids=["dot", "doh-post", "doh-get"],
)
def test_kdig_gets_answers_from_our_listeners(
    our_listeners: tuple[int, int, int, subprocess.Popen[str]],
    ca: PrivateCa,
    which: str,
    options: tuple[str, ...],
) -> None:
    _, tls, https, _ = our_listeners
    out = run_kdig(tls if which == "tls" else https, ca, *options)
    assert "status: NOERROR" in out, out
    assert "192.0.2.3" in out, out


def tls_client(port: int, ca: PrivateCa) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(ca.pem))
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    return context.wrap_socket(sock, server_hostname="resolver.test")


def test_replies_over_tls_are_padded_to_468_byte_blocks(
    our_listeners: tuple[int, int, int, subprocess.Popen[str]], ca: PrivateCa
) -> None:
    _, tls, _, _ = our_listeners
    query = DNSRecord.question("n3.example.", "A")
    query.add_ar(_opt())
    data = query.pack()
    with tls_client(tls, ca) as sock:
        sock.sendall(len(data).to_bytes(2, "big") + data)
        size = int.from_bytes(_read(sock, 2), "big")
        reply = _read(sock, size)
    assert size % 468 == 0
    assert DNSRecord.parse(reply).rr[0].rdata.toZone() == "192.0.2.4"


def _opt() -> object:
    from dnslib import EDNS0

    return EDNS0(udp_len=1232)


def _read(sock: ssl.SSLSocket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk
        data += chunk
    return data


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_a_tls_client_that_never_reads_is_closed_without_growing_the_daemon(
    our_listeners: tuple[int, int, int, subprocess.Popen[str]], ca: PrivateCa
) -> None:
    _, tls, _, process = our_listeners
    before = rss(process.pid)
    query = DNSRecord.question("big.example.", "TXT").pack()
    frames = (len(query).to_bytes(2, "big") + query) * 100
    sock = tls_client(tls, ca)
    sock.settimeout(0.2)
    sent = 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and sent < 100_000:
        try:
            sock.sendall(frames)
            sent += 100
        except (TimeoutError, ssl.SSLWantWriteError):
            continue  # the buffers are full: the daemon stopped reading us
        except OSError:
            break  # the daemon gave up on us
    # Its replies stayed unread for tcp_write_timeout (1 s): the daemon closes the connection.
    local_port = sock.getsockname()[1]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and established(tls, local_port):
        time.sleep(0.1)
    assert not established(tls, local_port)
    sock.close()
    grown = rss(process.pid) - before
    assert grown < 32 * 1024 * 1024, grown
    assert dns_query(our_listeners[0], "n5.example.", timeout=5).header.rcode == 0


def established(server_port: int, client_port: int) -> bool:
    """Whether the daemon's side of our connection is still established (the kernel says)."""
    out = subprocess.run(
        ["ss", "-Htn", "state", "established", f"( sport = :{server_port} )"],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    ).stdout
    return f":{client_port}" in out


def test_sighup_reloads_the_certificate(
    our_listeners: tuple[int, int, int, subprocess.Popen[str]],
    ca: PrivateCa,
    tmp_path: Path,
) -> None:
    _, tls, _, process = our_listeners
    assert "status: NOERROR" in run_kdig(tls, ca, "+tls")
    other_dir = tmp_path / "other-ca"
    other_dir.mkdir()
    other = PrivateCa(other_dir)
    fresh = other.issue("fresh", names=("resolver.test",))
    ours = ca.directory / "ours.pem", ca.directory / "ours.key"
    ours[0].write_bytes(fresh.cert.read_bytes())
    ours[1].write_bytes(fresh.key.read_bytes())
    process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if "status: NOERROR" in run_kdig(tls, other, "+tls"):
            break
        time.sleep(0.2)
    else:
        pytest.fail("the new certificate was not served after SIGHUP")
    assert "status: NOERROR" not in run_kdig(tls, ca, "+tls")


def test_serve_without_upstream_forwards_to_the_nameservers_of_resolv_conf(
    tmp_path: Path, fixtures_dir: Path
) -> None:
    authority_address = "127.0.0.77"
    zones = [f"--zone={path}" for path in sorted((fixtures_dir / "zones").glob("*.zone"))]
    authority = start_resolver(
        ["authority", *zones, "--listen", f"{authority_address}:53"],
        53,
        probe="www.example.com.",
        host=authority_address,
    )
    try:
        resolv = tmp_path / "resolv.conf"
        resolv.write_text(f"nameserver 127.0.0.78\nnameserver {authority_address}\n")
        # Our own address (port 53, as resolv.conf means) is left out; the other is taken.
        ours = start_resolver(
            ["serve", "--listen", "127.0.0.78:53", "--resolv-conf", str(resolv)],
            53,
            probe="www.example.com.",
            host="127.0.0.78",
        )
        try:
            reply = dns_query(53, "www.example.com.", timeout=5, host="127.0.0.78")
            assert answer(reply) == ["www.example.com. 1 127.1.0.1"]
        finally:
            ours.terminate()
            _, err = ours.communicate(timeout=STOP)
        assert f"{authority_address}:53" in err
        assert "left out" in err
        assert "127.0.0.78:53" in err
    finally:
        authority.terminate()
        authority.communicate(timeout=STOP)


# ----------------------------------------------------------------- HTTP requests we cannot take


async def h2_request(port: int, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> int:
    """One HTTP/2 request with ``headers`` (and ``body``) to our DoH listener; the status."""
    import asyncio

    import h2.config
    import h2.connection
    import h2.events

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(header_encoding=None))
    conn.initiate_connection()
    base = [(b":scheme", b"https"), (b":authority", b"resolver.test")]
    conn.send_headers(1, base + headers, end_stream=not body)
    if body:
        conn.send_data(1, body, end_stream=True)
    writer.write(conn.data_to_send())
    try:
        async with asyncio.timeout(10):
            while True:
                data = await reader.read(65536)
                assert data, "closed without a response"
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.ResponseReceived):
                        return int(dict(event.headers)[b":status"])
                writer.write(conn.data_to_send())
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


QUERY = bytes.fromhex("0000010000010000000000000231300765786d706c650000010001")
POST = [(b":method", b"POST"), (b":path", b"/dns-query")]
MEDIA = (b"content-type", b"application/dns-message")


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ([(b":method", b"GET"), (b":path", b"/dns-query?dns=!!!")], b"", 400),
        ([(b":method", b"GET"), (b":path", b"/dns-query")], b"", 400),
        ([(b":method", b"GET"), (b":path", b"/other?dns=AAAA")], b"", 404),
        ([(b":method", b"PUT"), (b":path", b"/dns-query")], QUERY, 405),
        ([*POST, (b"content-type", b"text/plain")], QUERY, 415),
        ([*POST, MEDIA], b"\x00\x01", 400),
        ([*POST, MEDIA], b"\x00" * 12, 200),  # a DNS error (FORMERR) is a DNS answer
        ([*POST, MEDIA], QUERY, 200),
    ],
    ids=[
        "bad-base64",
        "no-dns",
        "path",
        "method",
        "media-type",
        "short-body",
        "no-question",
        "good-post",
    ],
)
async def test_http_requests_it_cannot_take_get_http_errors_not_tracebacks(
    our_listeners: tuple[int, int, int, subprocess.Popen[str]],
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    status: int,
) -> None:
    _, _, https, process = our_listeners
    assert await h2_request(https, headers, body) == status
    assert process.poll() is None


def http1(port: int, request: bytes) -> bytes:
    """Send ``request`` over TLS (ALPN http/1.1) and read until the daemon closes or 5 s."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    data = b""
    with context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5)) as sock:
        sock.sendall(request)
        with contextlib.suppress(TimeoutError, ssl.SSLError, ConnectionError):
            while chunk := sock.recv(65536):
                data += chunk
    return data


def test_http1_clients_get_answers_on_a_kept_alive_connection(
    our_listeners: tuple[int, int, int, subprocess.Popen[str]],
) -> None:
    import base64

    _, _, https, process = our_listeners
    query = DNSRecord.question("n6.example.", "A")
    query.header.id = 0
    encoded = base64.urlsafe_b64encode(query.pack()).rstrip(b"=")
    get = b"GET /dns-query?dns=" + encoded + b" HTTP/1.1\r\nHost: resolver.test\r\n\r\n"
    post = (
        b"POST /dns-query HTTP/1.1\r\nHost: resolver.test\r\n"
        b"Content-Type: application/dns-message\r\nConnection: close\r\n"
        + f"Content-Length: {len(query.pack())}\r\n\r\n".encode()
        + query.pack()
    )
    reply = http1(https, get + post)
    assert reply.count(b"HTTP/1.1 200") == 2, reply
    body = reply.split(b"\r\n\r\n", 1)[1]
    assert b"application/dns-message" in reply
    assert bytes([192, 0, 2, 7]) in body
    assert process.poll() is None


def test_a_malformed_http1_request_gets_400_and_no_traceback(
    our_listeners: tuple[int, int, int, subprocess.Popen[str]],
) -> None:
    _, _, https, process = our_listeners
    reply = http1(https, b"GARBAGE\x00\x01 nonsense\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400"), reply
    process.terminate()
    _, err = process.communicate(timeout=STOP)
    assert "Traceback" not in err


# ----------------------------------------------------------------- resolver query, as kdig


@pytest.mark.parametrize(
    ("options", "transport"),
    [
        (("+tls",), "TLS"),
        (("+tls", "+tls-hostname=dns.test"), "TLS"),
        (("+https",), "HTTPS"),
        (("+https=/dns-query", "+tls-hostname=dns.test"), "HTTPS"),
    ],
    ids=["tls", "tls-verified", "https", "https-verified"],
)
def test_query_asks_over_tls_and_https_as_kdig(
    unbound_peer: UnboundPeer, ca: PrivateCa, options: tuple[str, ...], transport: str
) -> None:
    port = unbound_peer.tls if transport == "TLS" else unbound_peer.https
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "resolver",
            "query",
            "@127.0.0.1",
            "-p",
            str(port),
            f"+tls-ca={ca.pem}",
            *options,
            "n7.example.",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "192.0.2.8" in result.stdout
    assert f"({transport})" in result.stdout


def test_query_refuses_a_certificate_for_another_name(
    unbound_peer: UnboundPeer, ca: PrivateCa
) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "resolver",
            "query",
            "@127.0.0.1",
            "-p",
            str(unbound_peer.tls),
            "+tls",
            f"+tls-ca={ca.pem}",
            "+tls-hostname=other.test",
            "n7.example.",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 9
    assert "certificate not accepted" in result.stderr
    assert "Traceback" not in result.stderr


# ----------------------------------------------------------------- dnsperf


@pytest.mark.parametrize("mode", ["dot", "doh"], ids=["dot", "doh"])
def test_dnsperf_gets_every_answer_from_our_listeners(
    our_listeners: tuple[int, int, int, subprocess.Popen[str]], tmp_path: Path, mode: str
) -> None:
    dnsperf = shutil.which("dnsperf")
    if dnsperf is None:
        pytest.fail("dnsperf is not installed: apt-get install dnsperf (.ci/run does)")
    _, tls, https, process = our_listeners
    names = tmp_path / "names.txt"
    names.write_text("".join(f"n{i % 32}.example. A\n" for i in range(500)))
    port = tls if mode == "dot" else https
    argv = [dnsperf, "-m", mode, "-s", "127.0.0.1", "-p", str(port), "-d", str(names)]
    result = subprocess.run(
        [*argv, "-n", "1", "-c", "2", "-q", "20", "-t", "5"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Queries completed:    500 " in result.stdout, result.stdout + result.stderr
    assert "Queries lost:         0 " in result.stdout
    assert process.poll() is None
