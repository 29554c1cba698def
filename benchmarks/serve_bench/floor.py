"""The Python floor for a UDP forwarder: the least a uvloop forwarder can do per query.

``python -m benchmarks.serve_bench.floor --listen 127.0.0.1:P --upstream 127.0.0.1:U`` binds
``--sockets`` upstream sockets at start (each connected to the upstream, so the kernel only
delivers the upstream's datagrams to it) and keeps the idle ones in a free list. A query takes
one from the list, swaps the client's ID for a random one and goes out; the reply, if its ID
matches, gets the client's ID back, goes to the client, and the socket returns to the list.
One ``datagram_received`` callback per direction, no tasks, no parsing.

This is a floor to measure against, not a forwarder to run: there is no timeout, so a query
whose reply never comes keeps its socket out of the free list for good; a query that finds the
list empty is dropped (the client sees a loss); no retries, no TCP, no check beyond the ID, no
source-port rotation. Stops on SIGTERM or SIGINT and reports the drops on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from random import randbytes
from typing import cast

import uvloop

Address = tuple[str, int]


class Listener(asyncio.DatagramProtocol):
    """The client side: hands each query to an idle upstream socket."""

    def __init__(self) -> None:
        self.free: list[Upstream] = []
        self.dropped = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        if len(data) < 12 or not self.free:
            self.dropped += 1
            return
        up = self.free.pop()
        up.client, up.client_id, up.sent_id = addr, data[:2], randbytes(2)
        up.transport.sendto(up.sent_id + data[2:])


class Upstream(asyncio.DatagramProtocol):
    """One connected upstream socket carrying at most one query at a time."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.client: Address | None = None
        self.client_id = self.sent_id = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        if self.client is None or data[:2] != self.sent_id:
            return  # late or stray: the socket stays busy or idle as it was
        self.listener.transport.sendto(self.client_id + data[2:], self.client)
        self.client = None
        self.listener.free.append(self)

    def error_received(self, exc: Exception) -> None:
        # ICMP unreachable for the query in flight: it is lost, the socket is idle again.
        if self.client is not None:
            self.client = None
            self.listener.free.append(self)


async def serve(listen: Address, upstream: Address, sockets: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    listener = Listener()
    transports: list[asyncio.BaseTransport] = []
    try:
        for _ in range(sockets):  # every upstream socket bound before the first query
            transport, up = await loop.create_datagram_endpoint(
                lambda: Upstream(listener), remote_addr=upstream
            )
            transports.append(transport)
            listener.free.append(up)
        transport, _ = await loop.create_datagram_endpoint(lambda: listener, local_addr=listen)
        transports.append(transport)
        await stop.wait()
    finally:
        for transport in transports:
            transport.close()
    print(f"floor: {listener.dropped} queries dropped", file=sys.stderr)


def command(listen: str, upstream: str) -> list[str]:
    """The command line that runs the floor on ``listen`` in front of ``upstream`` (each
    ADDR:PORT), with this interpreter."""
    module = "benchmarks.serve_bench.floor"
    return [sys.executable, "-m", module, "--listen", listen, "--upstream", upstream]


def address(text: str) -> Address:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serve_bench.floor")
    parser.add_argument("--listen", type=address, required=True, help="ADDR:PORT")
    parser.add_argument("--upstream", type=address, required=True, help="ADDR:PORT")
    parser.add_argument("--sockets", type=int, default=256, help="upstream sockets (1-4096)")
    args = parser.parse_args()
    if not 1 <= args.sockets <= 4096:
        parser.error("--sockets must be from 1 to 4096")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(args.listen, args.upstream, args.sockets))


if __name__ == "__main__":
    main()
