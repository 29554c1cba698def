"""The metrics listener alone, on the test's loop: what it answers to GET, HEAD, other paths
and methods, garbage, silence and a crowd, and that it closes cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable

import pytest
from support import until

from resolver.metrics import MetricsEndpoint

BOUND = 5.0
BODY = b"resolver_build_info 1.0\n"
TYPE = "text/plain; version=0.0.4; charset=utf-8"


@contextlib.asynccontextmanager
async def endpoint(
    render: Callable[[], bytes] = lambda: BODY, *, timeout: float = 5.0, max_connections: int = 16
) -> AsyncIterator[MetricsEndpoint]:
    server = MetricsEndpoint(
        ("127.0.0.1", 0),
        render,
        content_type=TYPE,
        timeout=timeout,
        max_connections=max_connections,
    )
    await server.start()
    try:
        yield server
    finally:
        await server.aclose()


async def exchange(server: MetricsEndpoint, request: bytes) -> bytes:
    """Send ``request`` and read until the listener closes the connection."""
    reader, writer = await asyncio.open_connection(*server.address)
    try:
        writer.write(request)
        async with asyncio.timeout(BOUND):
            return await reader.read()
    finally:
        writer.close()


def status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def headers_and_body(response: bytes) -> tuple[dict[str, str], bytes]:
    head, body = response.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")[1:]
    return {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}, body


async def test_get_metrics_answers_the_rendered_text_and_closes() -> None:
    async with asyncio.timeout(BOUND), endpoint() as server:
        response = await exchange(server, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert response.startswith(b"HTTP/1.0 200 OK\r\n")
        headers, body = headers_and_body(response)
        assert body == BODY
        assert headers["content-type"] == TYPE
        assert headers["content-length"] == str(len(BODY))
        assert headers["connection"] == "close"
        query = await exchange(server, b"GET /metrics?name[]=x HTTP/1.0\r\n\r\n")
        assert headers_and_body(query)[1] == BODY
        assert server.statistics()["scrapes"] == 2


async def test_head_gets_the_headers_only() -> None:
    async with asyncio.timeout(BOUND), endpoint() as server:
        response = await exchange(server, b"HEAD /metrics HTTP/1.1\r\n\r\n")
    headers, body = headers_and_body(response)
    assert status(response) == 200
    assert headers["content-length"] == str(len(BODY))
    assert body == b""


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        pytest.param(b"GET / HTTP/1.1\r\n\r\n", 404, id="root"),
        pytest.param(b"GET /metrics/x HTTP/1.1\r\n\r\n", 404, id="below"),
        pytest.param(b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405, id="post"),
        pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, id="tls"),
        pytest.param(b"GET /metrics\r\n\r\n", 400, id="http-0.9"),
        pytest.param(b"GET /metrics SPDY/3\r\n\r\n", 400, id="not-http"),
        pytest.param(b"GET /m\xe9trics HTTP/1.1\r\n\r\n", 400, id="not-ascii"),
        pytest.param(b"GET /metrics HTTP/1.1\r\n", 400, id="cut-short"),
        pytest.param(b"GET /metrics HTTP/1.1\r\nX: " + b"y" * 9000 + b"\r\n\r\n", 400, id="huge"),
    ],
)
async def test_other_requests_get_an_error_status(request_: bytes, expected: int) -> None:
    async with asyncio.timeout(BOUND), endpoint() as server:
        if request_.endswith(b"\r\n\r\n"):
            response = await exchange(server, request_)
        else:  # half a request, then the client's end of the connection shut
            reader, writer = await asyncio.open_connection(*server.address)
            writer.write(request_)
            writer.write_eof()
            response = await reader.read()
            writer.close()
        assert status(response) == expected
        if expected == 405:
            assert headers_and_body(response)[0]["allow"] == "GET, HEAD"
        # Whatever came before, the next scraper is served.
        assert status(await exchange(server, b"GET /metrics HTTP/1.1\r\n\r\n")) == 200


async def test_a_silent_client_gets_400_after_the_timeout() -> None:
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(BOUND), endpoint(timeout=0.2) as server:
        reader, writer = await asyncio.open_connection(*server.address)
        started = loop.time()
        response = await reader.read()
        writer.close()
        assert status(response) == 400
        assert 0.15 < loop.time() - started < 2.0


async def test_beyond_the_connection_cap_new_connections_are_closed_unread() -> None:
    async with asyncio.timeout(BOUND), endpoint(timeout=0.5, max_connections=2) as server:
        silent = [await asyncio.open_connection(*server.address) for _ in range(2)]
        await until(lambda: server.statistics()["connections"] == 2)
        reader, writer = await asyncio.open_connection(*server.address)
        writer.write(b"GET /metrics HTTP/1.1\r\n\r\n")
        with contextlib.suppress(ConnectionResetError):
            assert await reader.read() == b""
        writer.close()
        assert server.statistics()["refused"] == 1
        for reader, writer in silent:  # each is timed out and told 400
            assert status(await reader.read()) == 400
            writer.close()
        assert status(await exchange(server, b"GET /metrics HTTP/1.1\r\n\r\n")) == 200


async def test_a_failing_render_is_a_500_and_the_listener_goes_on() -> None:
    calls = []

    def render() -> bytes:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("broken collector")
        return BODY

    async with asyncio.timeout(BOUND), endpoint(render) as server:
        assert status(await exchange(server, b"GET /metrics HTTP/1.1\r\n\r\n")) == 500
        assert status(await exchange(server, b"GET /metrics HTTP/1.1\r\n\r\n")) == 200


async def test_closing_ends_open_connections_and_frees_the_port() -> None:
    async with asyncio.timeout(BOUND):
        server = MetricsEndpoint(("127.0.0.1", 0), lambda: BODY, content_type=TYPE)
        await server.start()
        reader, writer = await asyncio.open_connection(*server.address)
        await until(lambda: server.statistics()["connections"] == 1)
        await server.aclose()
        await server.aclose()  # idempotent
        with contextlib.suppress(ConnectionResetError):
            assert await reader.read() == b""
        writer.close()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(*server.address)


async def test_a_taken_port_is_an_error_naming_the_metrics_listener() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = taken.getsockname()
        server = MetricsEndpoint(address, lambda: BODY, content_type=TYPE)
        with pytest.raises(OSError, match=r"metrics listener 127\.0\.0\.1:\d+: .*in use"):
            await server.start()
        await server.aclose()
