"""Run inside a network namespace of its own (``unshare --net``, where only loopback exists,
so wildcard addresses reach nothing else): start the daemon on each listen layout in turn and
ask www.example.com over UDP and TCP from 127.0.0.1 and ::1. Prints one JSON object: for each
layout, each client's rcode per transport, or the start error. Driven by test_server.py."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from pathlib import Path

from resolver.authority import Authority
from resolver.config import Config, ForwarderConfig, ServerConfig
from resolver.daemon import Daemon
from resolver.wire import DNSRecord

ZONES = Path(__file__).resolve().parent.parent / "fixtures" / "zones"
PORT = 5353
LAYOUTS = {
    "dual-stack": (("::", PORT),),
    "both-wildcards": (("0.0.0.0", PORT), ("::", PORT)),
}


def ask(client: str, transport: str) -> int | str:
    try:
        return _ask(client, transport)
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


def _ask(client: str, transport: str) -> int:
    family = socket.AF_INET6 if ":" in client else socket.AF_INET
    message = DNSRecord.question("www.example.com.").pack()
    if transport == "udp":
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2.0)
            sock.sendto(message, (client, PORT))
            return int(DNSRecord.parse(sock.recv(65535)).header.rcode)
    with socket.create_connection((client, PORT), timeout=2.0) as sock:
        sock.sendall(len(message).to_bytes(2, "big") + message)
        data = b""
        while len(data) < 2 or len(data) < 2 + int.from_bytes(data[:2], "big"):
            chunk = sock.recv(65535)
            if not chunk:
                return -1  # closed without a reply
            data += chunk
        return int(DNSRecord.parse(data[2:]).header.rcode)


async def main() -> dict[str, object]:
    results: dict[str, object] = {}
    async with Authority.from_files(sorted(ZONES.glob("*.zone"))) as authority:
        for name, listen in LAYOUTS.items():
            config = Config(
                server=ServerConfig(listen=listen),
                forwarder=ForwarderConfig(upstreams=(authority.address,)),
            )
            daemon = Daemon(config)
            try:
                await daemon.start()
            except OSError as exc:
                results[name] = f"start failed: {exc}"
                continue
            try:
                results[name] = {
                    f"{client} {transport}": await asyncio.to_thread(ask, client, transport)
                    for client in ("127.0.0.1", "::1")
                    for transport in ("udp", "tcp")
                }
            finally:
                await daemon.aclose()
    return results


if __name__ == "__main__":
    # A fresh namespace has its loopback interface down.
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    print(json.dumps(asyncio.run(main())))
    sys.exit(0)
