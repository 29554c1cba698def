"""Loopback ports for the servers the benchmarks start: a free one, and waiting until something
listens on one."""

from __future__ import annotations

import socket
import time

from benchmarks.errors import SetupError
from benchmarks.processes import HOST


def free_port() -> int:
    """A port free for both UDP and TCP on HOST right now (the daemon, dnsmasq and Unbound
    bind both). Raises SetupError when none is found."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((HOST, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((HOST, port))
                except OSError:
                    continue
        return port
    raise SetupError("no free port on loopback")


def wait_listening(port: int, timeout: float = 15.0) -> None:
    """Return once a TCP connection to HOST:port succeeds (a DoT, DoH or API listener is up).
    Raises SetupError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.connect((HOST, port))
                return
            except OSError:
                time.sleep(0.1)
    raise SetupError(f"nothing listens on port {port}")
