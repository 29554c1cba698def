"""The DoH listener's HTTP side (resolver.server.https) with a scripted query handler: kdig
over HTTP/2 with GET and POST, our own DoH client, and the HTTP errors for requests it cannot
take (never a traceback)."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tls_support import PrivateCa, echo_reply

from resolver.server.https import HttpsSession, Reply


def kdig() -> str:
    path = shutil.which("kdig")
    if path is None:
        pytest.fail("kdig is not installed: apt-get install knot-dnsutils (.ci/run does)")
    return path


class Listener:
    def __init__(self, ca: PrivateCa) -> None:
        self.ca = ca
        self.queries: list[bytes] = []
        self.port = 0

    def handle(self, message: bytes, peer: tuple[str, int], reply: Reply) -> None:
        self.queries.append(message)
        if message[2] & 0x78:  # an opcode other than QUERY: the server drops it
            reply(None)
            return
        reply(echo_reply(message))


@pytest.fixture
async def listener(tmp_path: Path) -> AsyncIterator[Listener]:
    ca = PrivateCa(tmp_path)
    issued = ca.issue("doh")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(issued.cert, issued.key)
    context.set_alpn_protocols(["h2", "http/1.1"])
    state = Listener(ca)
    server = await asyncio.get_running_loop().create_server(
        lambda: HttpsSession(state.handle, max_streams=8, idle_timeout=5, write_timeout=5),
        "127.0.0.1",
        0,
        ssl=context,
    )
    state.port = server.sockets[0].getsockname()[1]
    async with server:
        yield state


async def run_kdig(listener: Listener, *options: str) -> str:
    process = await asyncio.create_subprocess_exec(
        kdig(),
        "@127.0.0.1",
        "-p",
        str(listener.port),
        f"+tls-ca={listener.ca.pem}",
        "+tls-hostname=dns.test",
        *options,
        "n1.example.",
        "A",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    return out.decode() + err.decode()


@pytest.mark.parametrize("method", ["+https", "+https-get"], ids=["post", "get"])
async def test_kdig_over_http2_gets_the_answer(listener: Listener, method: str) -> None:
    out = await run_kdig(listener, method)
    assert "status: NOERROR" in out, out
    assert "127.0.0.1" in out
    assert len(listener.queries) == 1


async def http1(port: int, request: bytes) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    writer.write(request)
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return data


async def test_http1_client_gets_505_not_a_traceback(listener: Listener) -> None:
    reply = await http1(listener.port, b"GET /dns-query?dns=AAAA HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 505")


async def h2_request(port: int, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> int:
    """One HTTP/2 request with ``headers`` (and ``body``); the response's status."""
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
    base = [(b":scheme", b"https"), (b":authority", b"dns.test")]
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


QUERY = bytes.fromhex("0000010000010000000000000131076578616d706c650000010001")


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ([(b":method", b"GET"), (b":path", b"/dns-query?dns=!!!")], b"", 400),
        ([(b":method", b"GET"), (b":path", b"/dns-query")], b"", 400),
        ([(b":method", b"GET"), (b":path", b"/other?dns=AAAA")], b"", 404),
        ([(b":method", b"PUT"), (b":path", b"/dns-query")], QUERY, 405),
        (
            [(b":method", b"POST"), (b":path", b"/dns-query"), (b"content-type", b"text/plain")],
            QUERY,
            415,
        ),
        (
            [
                (b":method", b"POST"),
                (b":path", b"/dns-query"),
                (b"content-type", b"application/dns-message"),
            ],
            b"\x00\x01",
            400,
        ),
        (
            [
                (b":method", b"POST"),
                (b":path", b"/dns-query"),
                (b"content-type", b"application/dns-message"),
            ],
            QUERY,
            200,
        ),
    ],
    ids=["bad-base64", "no-dns", "path", "method", "media-type", "short-body", "good-post"],
)
async def test_requests_it_cannot_take_get_http_errors(
    listener: Listener, headers: list[tuple[bytes, bytes]], body: bytes, status: int
) -> None:
    assert await h2_request(listener.port, headers, body) == status
