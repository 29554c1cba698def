"""The ceiling for a Python UDP server: one precomputed answer, only the ID patched, on uvloop.

``python -m benchmarks.cache_bench.trivial --port N`` answers every datagram on 127.0.0.1:N
with ``www.example.com. 300 IN A 127.1.0.1`` (the question and all) under the query's ID, and
nothing else: no parsing, no checks, no tasks. Stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import cast

import uvloop
from dnslib import QTYPE, RR, A, DNSHeader, DNSQuestion, DNSRecord

HOST = "127.0.0.1"
ANSWER = DNSRecord(
    DNSHeader(id=0, qr=1, rd=1, ra=1),
    q=DNSQuestion("www.example.com", QTYPE.A),
    a=RR("www.example.com", QTYPE.A, rdata=A("127.1.0.1"), ttl=300),
).pack()


class Trivial(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data[:2] + ANSWER[2:], addr)


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    transport, _ = await loop.create_datagram_endpoint(Trivial, local_addr=(HOST, port))
    try:
        await stop.wait()
    finally:
        transport.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cache_bench.trivial")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(args.port))


if __name__ == "__main__":
    main()
