"""Forged upstream replies over raw sockets on loopback, for the spoofing tests and
benchmarks/spoof: a delayed upstream that tells the attacker each query's source port, and an
attacker that floods that port with replies forged from the upstream's address and port.
Raw sockets need root (CI has it); without it the caller fails with PermissionError."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import socket
import struct
from collections.abc import AsyncIterator, Callable, Iterable
from typing import NamedTuple

from resolver.config import ForwarderConfig, ServerConfig, SocketPoolConfig, TransportConfig
from resolver.engine import Engine
from resolver.server import Server
from resolver.transport import Upstream
from resolver.wire import build_query
from resolver.wire.raw import read_question

POISON = bytes([6, 6, 6, 6])
TRUTH = bytes([192, 0, 2, 1])
_ANSWER = struct.Struct("!HHHIH")  # pointer to the question, type, class, TTL, rdlength


def reply_to(
    query: bytes, address: bytes, *, qid: bytes | None = None, lower: bool = False
) -> bytes:
    """An A answer to ``query`` (ID ``qid`` if given; its question name lowercased with
    ``lower``: an attacker does not know the 0x20 case)."""
    end = read_question(query).end
    question = query[12:end]
    if lower:
        question = question[:-4].lower() + question[-4:]
    header = (qid or query[:2]) + struct.pack("!HHHHH", 0x8180, 1, 1, 0, 0)
    return header + question + _ANSWER.pack(0xC00C, 1, 1, 3600, 4) + address


class DelayedUpstream(asyncio.DatagramProtocol):
    """A UDP upstream on 127.0.0.1 that answers nothing by itself: ``arrived`` holds each
    query with the address it came from, and ``answer(i)`` sends the true answer to query i."""

    def __init__(self) -> None:
        self.arrived: list[tuple[bytes, tuple[str, int]]] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.address: tuple[str, int] = ("127.0.0.1", 0)

    async def __aenter__(self) -> DelayedUpstream:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=("127.0.0.1", 0)
        )
        self.transport = transport
        self.address = transport.get_extra_info("sockname")[:2]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.transport is not None
        self.transport.close()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.arrived.append((data, addr))

    def answer(self, index: int) -> None:
        query, addr = self.arrived[index]
        assert self.transport is not None
        self.transport.sendto(reply_to(query, TRUTH), addr)


class Attacker:
    """Sends UDP datagrams from any port of 127.0.0.1 through a raw socket (the UDP header
    built here, checksum 0: none, which IPv4 allows). Loopback only."""

    def __init__(self) -> None:
        self._raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
        self._raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # it reads nothing

    def close(self) -> None:
        self._raw.close()

    def send(self, source_port: int, port: int, payload: bytes) -> None:
        header = struct.pack("!HHHH", source_port, port, 8 + len(payload), 0)
        self._raw.sendto(header + payload, ("127.0.0.1", 0))

    async def flood(
        self,
        query: bytes,
        upstream_port: int,
        port: int,
        ids: Iterable[int],
        *,
        lower: bool,
        settled: Callable[[int], bool],
        chunk: int = 32,
    ) -> int:
        """Forge replies to ``query`` (as sent to upstream_port from ``port``) with each of
        ``ids``, ``chunk`` at a time, letting the loop read them in between (``settled(n)``:
        the target has taken in n so far; bounded wait, as the kernel may drop some) and
        stopping early once ``settled`` says the query is over (n = -1). Returns how many
        were sent."""
        template = reply_to(query, POISON, lower=lower)
        sent = 0
        for qid in ids:
            self.send(upstream_port, port, qid.to_bytes(2, "big") + template[2:])
            sent += 1
            if sent % chunk == 0:
                for _ in range(1000):
                    if settled(sent):
                        break
                    await asyncio.sleep(0)
                if settled(-1):
                    break
        return sent


def random_ids(count: int, rng: random.Random) -> list[int]:
    """``count`` distinct IDs, as a blind attacker would guess them."""
    return rng.sample(range(65536), count)


async def until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    """Bounded polling, one loop iteration at a time, until ``condition`` holds."""
    async with asyncio.timeout(timeout):
        for _ in itertools.count():
            if condition():
                return
            await asyncio.sleep(0)


def _idle(upstream: Upstream) -> bool:
    stats = upstream.pool.statistics()
    return stats.in_use == 0 and stats.creating == 0


# 27 letters: a forged reply with the right ID still matches the case with odds 2^-27.
NAME = "r{}.abcdefghijklmnopqrstu.exampl."


class Target(NamedTuple):
    upstream: Upstream  # the daemon's view of the delayed upstream
    delayed: DelayedUpstream
    port: int


@contextlib.asynccontextmanager
async def target(*, randomize_case: bool, threshold: int) -> AsyncIterator[Target]:
    """The production Server and Engine in front of a DelayedUpstream."""
    async with DelayedUpstream() as delayed:
        transport = TransportConfig(
            randomize_case=randomize_case,
            unwanted_reply_threshold=threshold,
            pool=SocketPoolConfig(min_size=2, max_size=8, min_idle=2),
        )
        forwarder = ForwarderConfig(
            upstreams=(delayed.address,), upstream_timeout=8.0, query_timeout=8.0
        )
        engine = Engine(forwarder, transport)
        await engine.start()
        server = Server(ServerConfig(listen=(("127.0.0.1", 0),)), engine)
        try:
            await server.start()
            yield Target(engine.upstreams[0], delayed, server.addresses[0][1])
        finally:
            await server.aclose()
            with contextlib.suppress(TimeoutError):
                await until(lambda: all(_idle(u) for u in engine.upstreams))
            await engine.aclose()


async def attacked_round(
    target: Target, attacker: Attacker, index: int, ids: list[int], *, lower: bool
) -> tuple[bytes, int]:
    """One client query whose upstream query is flooded with forged replies carrying ``ids``;
    the upstream answers truly after the flood unless a forgery was accepted first. Returns
    the client's reply and the port the upstream query left from."""
    loop = asyncio.get_running_loop()
    upstream = target.upstream
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.setblocking(False)
        client.connect(("127.0.0.1", target.port))
        client.send(build_query(NAME.format(index), 1, qid=index, edns_size=None))
        await until(lambda: len(target.delayed.arrived) > index)
        query, (_, port) = target.delayed.arrived[index]
        before = upstream.statistics()

        def settled(sent: int) -> bool:
            now = upstream.statistics()
            if sent < 0:
                return now.replies > before.replies
            return now.strays + now.replies >= before.strays + before.replies + sent

        await attacker.flood(
            query, target.delayed.address[1], port, ids, lower=lower, settled=settled
        )
        if not settled(-1):
            target.delayed.answer(index)
        async with asyncio.timeout(5.0):
            reply = await loop.sock_recv(client, 65535)
    return reply, port
