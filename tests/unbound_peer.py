"""Unbound as an encrypted peer on loopback: plain DNS, DNS over TLS and DNS over HTTPS on
ports of its own, answering a static zone ``example.`` (local-data) with names n0..n63, and
its statistics through unbound-control (a Unix socket, no certificates).

Without unbound or unbound-control the tests that use it fail; they never skip.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import free_port
from tls_support import Issued

from resolver.wire import DNSRecord

STARTUP = 15.0
NAMES = 64


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: apt-get install unbound (.ci/run does)")
    return path


@dataclass
class UnboundPeer:
    """A running Unbound: its ports and configuration file."""

    plain: int
    tls: int
    https: int
    conf: Path
    process: subprocess.Popen[str]

    def stats(self) -> dict[str, float]:
        """unbound-control stats_noreset as a dict."""
        out = subprocess.run(
            [tool("unbound-control"), "-c", str(self.conf), "stats_noreset"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
        found: dict[str, float] = {}
        for line in out.splitlines():
            key, _, value = line.partition("=")
            try:
                found[key] = float(value)
            except ValueError:
                continue
        return found

    def established(self) -> int:
        """TCP connections established to its TLS and HTTPS ports, as the kernel counts them
        (the server's side)."""
        out = subprocess.run(
            ["ss", "-Htn", "state", "established"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
        count = 0
        for line in out.splitlines():
            fields = line.split()
            if len(fields) >= 4 and fields[2] in (
                f"127.0.0.1:{self.tls}",
                f"127.0.0.1:{self.https}",
            ):
                count += 1
        return count


def unbound_conf(home: Path, issued: Issued, plain: int, tls: int, https: int) -> str:
    records = "".join(
        f'    local-data: "n{i}.example. 300 IN A 192.0.2.{i % 250 + 1}"\n' for i in range(NAMES)
    )
    return f"""server:
    interface: 127.0.0.1@{plain}
    interface: 127.0.0.1@{tls}
    interface: 127.0.0.1@{https}
    port: {plain}
    tls-port: {tls}
    https-port: {https}
    tls-service-key: "{issued.key}"
    tls-service-pem: "{issued.cert}"
    do-ip6: no
    num-threads: 1
    username: ""
    chroot: ""
    directory: "{home}"
    pidfile: ""
    use-syslog: no
    logfile: ""
    verbosity: 1
    access-control: 127.0.0.0/8 allow
    edns-tcp-keepalive: yes
    extended-statistics: yes
    incoming-num-tcp: 64
    local-zone: "example." static
{records}    local-data: "big.example. 300 IN TXT \\"{"x" * 200}\\""
remote-control:
    control-enable: yes
    control-interface: "{home}/unbound.ctl"
    control-use-cert: no
"""


def _answers(port: int) -> bool:
    message = DNSRecord.question("n1.example.", "A")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        sock.connect(("127.0.0.1", port))
        try:
            sock.send(message.pack())
            reply = DNSRecord.parse(sock.recv(65535))
        except OSError:
            time.sleep(0.02)
            return False
    return reply.header.id == message.header.id


@contextlib.contextmanager
def running_unbound(tmp_path: Path, issued_peer: Issued) -> Iterator[UnboundPeer]:
    """Unbound with the certificate ``issued_peer`` on three free ports."""
    binary = tool("unbound")
    tool("unbound-control")
    home = tmp_path / "unbound"
    home.mkdir()
    plain, tls, https = free_port(), free_port(), free_port()
    conf = home / "unbound.conf"
    conf.write_text(unbound_conf(home, issued_peer, plain, tls, https))
    process = subprocess.Popen(
        [binary, "-d", "-c", str(conf)], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + STARTUP
        while not _answers(plain):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                _, err = process.communicate(timeout=10)
                pytest.fail(f"unbound did not start:\n{err}")
        yield UnboundPeer(plain, tls, https, conf, process)
    finally:
        process.terminate()
        try:
            process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate(timeout=10)
