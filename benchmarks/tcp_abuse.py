"""TCP abuse benchmark: the daemon under idle-connection floods and a client that never reads.

Starts ``resolver authority`` (the fixture zones) and ``resolver serve`` in front of it, both
as subprocesses of this interpreter from the checkout given by ``--checkout`` (default: this
one), on free 127.0.0.1 ports, and stops them at the end. Two scenarios:

``flood``: ``--abusers`` clients (500) connect and send nothing (half of them) or half a
message (a length prefix announcing 64 bytes and 2 of them), hold the connection until the
server closes it and connect again after 0.1 s, for ``--seconds`` (20). Meanwhile a normal
client asks a cached question over a new TCP connection every 50 ms, and another over UDP;
the report is the share of each answered within 1 s.

``never-reads``: one client with a 4 KiB receive buffer sends ``--queries`` (20,000) queries
for ``--name`` and ``--qtype`` (big.example.com TXT: a cached answer of about 2.2 KB) as fast
as the server takes them, for 10 s, and reads nothing. Meanwhile
100 UDP queries are asked. The report is the daemon's peak RSS (VmHWM) minus its RSS before,
whether the connection was closed, how many UDP queries were answered.

Run from the repository root (see benchmarks/README.md, section "TCP abuse")::

    python benchmarks/tcp_abuse.py [--scenario flood|never-reads|both]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repository

from benchmarks import daemon
from benchmarks.harness import failures_reported
from benchmarks.memory import status_kib
from benchmarks.ports import free_port
from benchmarks.processes import HOST, ROOT, spawned, wait_answering

PROG = "tcp_abuse"


def query(name: str, qid: int = 1, qtype: int = 1) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split("."))
    return (
        struct.pack("!6H", qid, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack("!HH", qtype, 1)
    )


def frame(message: bytes) -> bytes:
    return len(message).to_bytes(2, "big") + message


def udp_answered(port: int, name: str, qid: int, timeout: float) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(query(name, qid), ("127.0.0.1", port))
        try:
            while True:
                reply = sock.recv(65535)
                if reply[:2] == qid.to_bytes(2, "big"):
                    return True
        except OSError:
            return False


async def flood(port: int, abusers: int, seconds: float) -> str:
    loop = asyncio.get_running_loop()
    stop = loop.time() + seconds
    connects = 0

    async def abuse(number: int) -> None:
        nonlocal connects
        while loop.time() < stop:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            connects += 1
            try:
                if number % 2:
                    writer.write(b"\x00\x40\x12\x34")
                with contextlib.suppress(OSError, TimeoutError):
                    async with asyncio.timeout(max(0.0, stop - loop.time())):
                        await reader.read()
            finally:
                writer.close()
            await asyncio.sleep(0.1)

    async def normal_tcp(qid: int) -> bool:
        try:
            async with asyncio.timeout(1.0):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                try:
                    writer.write(frame(query("www.example.com", qid)))
                    size = int.from_bytes(await reader.readexactly(2), "big")
                    return (await reader.readexactly(size))[:2] == qid.to_bytes(2, "big")
                finally:
                    writer.close()
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            return False

    tasks = [asyncio.ensure_future(abuse(i)) for i in range(abusers)]
    await asyncio.sleep(1.0)  # let the flood fill the connection table first
    tcp_results: list[bool] = []
    udp_results: list[bool] = []
    qid = 0
    while loop.time() < stop:
        qid = (qid + 1) & 0xFFFF
        tcp_results.append(await normal_tcp(qid))
        udp_results.append(await asyncio.to_thread(udp_answered, port, "www.example.com", qid, 1.0))
        await asyncio.sleep(0.05)
    await asyncio.gather(*tasks, return_exceptions=True)
    tcp_share = 100 * sum(tcp_results) / len(tcp_results)
    udp_share = 100 * sum(udp_results) / len(udp_results)
    return (
        f"flood: {abusers} abusive clients for {seconds:g} s ({connects} connections made): "
        f"normal TCP answered within 1 s {sum(tcp_results)}/{len(tcp_results)} "
        f"({tcp_share:.1f}%), UDP {sum(udp_results)}/{len(udp_results)} ({udp_share:.1f}%)"
    )


def never_reads(port: int, pid: int, name: str, qtype: int, count: int) -> str:
    with socket.create_connection(("127.0.0.1", port)) as prime:  # cached from now on
        prime.settimeout(5.0)
        prime.sendall(frame(query(name, 9, qtype)))
        prime.recv(65535)
    time.sleep(0.5)
    before = status_kib(pid, "VmRSS")
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect(("127.0.0.1", port))
    client.setblocking(False)
    data = frame(query(name, 10, qtype)) * count
    sent = 0
    deadline = time.monotonic() + 10.0
    while sent < len(data) and time.monotonic() < deadline:
        try:
            sent += client.send(data[sent:])
        except BlockingIOError:
            time.sleep(0.01)
        except OSError:
            break
    udp = sum(udp_answered(port, "www.example.com", 100 + i, 1.0) for i in range(100))
    time.sleep(max(0.0, deadline - time.monotonic()))
    peak = status_kib(pid, "VmHWM")
    closed = False
    client.setblocking(True)
    client.settimeout(5.0)
    try:
        while client.recv(1 << 20):
            pass
        closed = True
    except ConnectionResetError:
        closed = True
    except OSError:
        pass
    client.close()
    # An upper bound: the peak may be one from before (start-up), never one missed.
    growth = (peak - before) / 1024
    return (
        f"never-reads: {count} queries for {name} type {qtype}, "
        f"{sent / len(data):.0%} of the bytes taken in 10 s; "
        f"RSS before {before / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB "
        f"(growth {max(0.0, growth):.1f} MiB); connection closed by the server: {closed}; "
        f"UDP answered meanwhile {udp}/100"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", choices=["flood", "never-reads", "both"], default="both")
    parser.add_argument("--checkout", type=Path, default=ROOT, help="code to run (a checkout)")
    parser.add_argument("--abusers", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--queries", type=int, default=20_000)
    parser.add_argument("--name", default="big.example.com")
    parser.add_argument("--qtype", type=int, default=16, help="numeric (16: TXT)")
    args = parser.parse_args()
    with failures_reported(PROG):
        run(args)


def run(args: argparse.Namespace) -> None:
    checkout = args.checkout.resolve()
    # ``python -m`` puts the working directory first on the path: run in the checkout measured.
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    up, port = free_port(), free_port()
    authority = daemon.fixture_authority(f"{HOST}:{up}", log_level=None)
    with spawned(authority, cwd=checkout, env=env) as auth:
        wait_answering(lambda: auth.poll() is None, up, name="resolver authority")
        serve = daemon.serve(listen=f"{HOST}:{port}", upstream=f"{HOST}:{up}")
        with spawned(serve, cwd=checkout, env=env) as ours:
            wait_answering(lambda: ours.poll() is None, port, name="resolver serve")
            print(f"checkout {checkout}", flush=True)
            if args.scenario in ("never-reads", "both"):
                print(never_reads(port, ours.pid, args.name, args.qtype, args.queries), flush=True)
            if args.scenario in ("flood", "both"):
                print(asyncio.run(flood(port, args.abusers, args.seconds)), flush=True)


if __name__ == "__main__":
    main()
