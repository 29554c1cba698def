"""Helpers shared by test modules (on the path through ``pythonpath`` in pyproject.toml)."""

from __future__ import annotations

import random
import socket
from pathlib import Path


def _ephemeral_low() -> int:
    """The first port of the range the kernel hands out to sockets bound to port 0."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP right now, chosen at random below the kernel's
    ephemeral range: no socket bound to port 0 (an upstream pool's, a client's) can take it
    before the test binds it; only another explicit choice could, which chance makes rare."""
    low = _ephemeral_low()
    first = 10_000 if low > 12_000 else 1024
    for _ in range(200):
        port = random.randrange(first, low)
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp,
        ):
            try:
                udp.bind((host, port))
                tcp.bind((host, port))
            except OSError:
                continue
        return port
    raise AssertionError("no free port")


# The fake hierarchy of fixtures/zones: each server address and the zone files it serves
# (fixtures/README.md); nothing listens on 127.0.0.254, the address of the lame servers.
HIERARCHY = {
    "127.0.0.2": ("root.zone",),
    "127.0.0.3": ("com.zone", "test.zone", "org.zone"),
    "127.0.0.4": ("example.com.zone", "sib.com.zone"),
    "127.0.0.5": ("example.test.zone", "wild.test.zone", "half.test.zone"),
    "127.0.0.6": ("sub.example.com.zone",),
    "127.0.0.7": ("oob.com.zone",),
}


# --- a scripted upstream and a raw client, for tests that drive the daemon ----------------

import asyncio  # noqa: E402
import contextlib  # noqa: E402
import itertools  # noqa: E402
import threading  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402

from resolver.transport import Upstream  # noqa: E402

Script = Callable[[bytes], bytes | None]


def idle_pool(upstream: Upstream) -> bool:
    """No exchange holds a socket and none is being made: a socket still in use may yet be
    discarded and replaced, and closing the pool mid-creation leaks on uvloop."""
    stats = upstream.pool.statistics()
    return stats.in_use == 0 and stats.creating == 0


async def until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    """Bounded polling, one loop iteration at a time, until ``condition`` holds."""
    async with asyncio.timeout(timeout):
        for _ in itertools.count():
            if condition():
                return
            await asyncio.sleep(0)


# Sockets holding the ports dead_udp_port hands out, for the life of the test process.
_HELD: list[socket.socket] = []


def dead_udp_port(host: str = "127.0.0.1") -> int:
    """A loopback UDP port on ``host`` where nothing answers: a datagram sent there gets ICMP
    port unreachable. A socket of ours keeps the port, connected to the discard port, so no
    other socket (a daemon's pooled one, say) can be given it and receive what is sent to it,
    while the kernel still refuses datagrams from anyone else."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.connect((host, 9))
    _HELD.append(sock)
    return int(sock.getsockname()[1])


class ScriptedUpstream(asyncio.DatagramProtocol):
    """A UDP upstream on ``host`` (127.0.0.1 unless given) whose every reply is what
    ``script(query)`` returns (None: no reply). ``queries`` keeps every query received, in
    order, as raw bytes, and ``sources`` the address and port each came from."""

    def __init__(self, script: Script, host: str = "127.0.0.1") -> None:
        self.script = script
        self.queries: list[bytes] = []
        self.sources: list[tuple[str, int]] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.address: tuple[str, int] = (host, 0)

    async def __aenter__(self) -> ScriptedUpstream:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=(self.address[0], 0)
        )
        self.transport = transport
        self.address = transport.get_extra_info("sockname")[:2]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.transport is not None
        self.transport.close()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queries.append(data)
        self.sources.append(addr[:2])
        reply = self.script(data)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


@contextlib.contextmanager
def upstream_in_thread(script: Script) -> Iterator[ScriptedUpstream]:
    """A ScriptedUpstream bound on an event loop of its own, in a thread: for tests that
    block on subprocesses. Its ``queries`` may be read from the test's thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="upstream", daemon=True)
    thread.start()
    upstream = ScriptedUpstream(script)
    try:
        asyncio.run_coroutine_threadsafe(upstream.__aenter__(), loop).result(STARTUP)
        try:
            yield upstream
        finally:
            asyncio.run_coroutine_threadsafe(upstream.__aexit__(), loop).result(STARTUP)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(STARTUP)
        loop.close()


def udp_exchange(port: int, query: bytes, timeout: float = 4.0) -> bytes:
    """Send ``query`` to 127.0.0.1:port over UDP and return the first reply (blocking)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(query, ("127.0.0.1", port))
        return sock.recv(65535)


def tcp_exchange(port: int, query: bytes, timeout: float = 4.0) -> bytes:
    """Send ``query`` to 127.0.0.1:port over TCP and return the reply (blocking)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(len(query).to_bytes(2, "big") + query)
        data = b""
        while len(data) < 2 or len(data) < 2 + int.from_bytes(data[:2], "big"):
            chunk = sock.recv(65535)
            if not chunk:
                raise ConnectionError("closed before a whole reply")
            data += chunk
        return data[2:]


# --- subprocesses of `python -m resolver` ----------------------------------------------------

import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402

from resolver.wire import DNSRecord  # noqa: E402

STARTUP = 15.0  # bound on a subprocess answering (interpreter start included)
STOP = 10.0  # bound on a subprocess exiting once told to


def dns_query(
    port: int,
    name: str = "www.example.com.",
    qtype: str = "A",
    timeout: float = 0.5,
    host: str = "127.0.0.1",
) -> DNSRecord:
    """One UDP query to host:port; raises OSError (timeout, refused) without a reply."""
    message = DNSRecord.question(name, qtype)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect((host, port))
        sock.send(message.pack())
        for _ in range(16):  # bounded: only our own reply ends it
            reply = DNSRecord.parse(sock.recv(65535))
            # QR: while nothing listens on ``port`` the kernel may give this socket that very
            # port, and it then receives its own query.
            if reply.header.id == message.header.id and reply.header.qr:
                return reply
    raise OSError("no matching reply")


def start_resolver(
    args: list[str], port: int, probe: str = "www.example.com.", host: str = "127.0.0.1"
) -> subprocess.Popen[str]:
    """Start ``python -m resolver ARGS`` and wait until ``host``:``port`` answers ``probe``;
    fail with its stderr if it exits first or STARTUP passes."""
    process = subprocess.Popen(
        [sys.executable, "-m", "resolver", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + STARTUP
    while time.monotonic() < deadline:
        if process.poll() is not None:
            _, err = process.communicate()
            pytest.fail(f"exited with {process.returncode} before answering:\n{err}")
        try:
            dns_query(port, probe, timeout=0.2, host=host)
        except ConnectionRefusedError:
            time.sleep(0.02)  # nothing listens yet: pace the polling
        except OSError:
            pass  # no reply within the timeout: ask again
        else:
            return process
    process.kill()
    process.communicate(timeout=STOP)
    pytest.fail(f"no answer on port {port} within {STARTUP}s")


def assert_one_line_error(stderr: str) -> None:
    """``stderr`` is one line of the CLI's error form, without a traceback."""
    assert stderr.startswith("resolver: error: "), stderr
    assert stderr.count("\n") == 1, stderr
    assert stderr.endswith("\n")
    assert "Traceback" not in stderr


def addresses(reply: DNSRecord) -> list[str]:
    return [str(rr.rdata) for rr in reply.rr]


class Stderr:
    """The stderr of a running subprocess, read on a thread as it is written, so that a test
    waits for the log line that shows something has happened instead of sleeping."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        self._stream = process.stderr
        self._lines: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._stream:
            with self._changed:
                self._lines.append(line)
                self._changed.notify_all()

    def text(self) -> str:
        with self._changed:
            return "".join(self._lines)

    def wait_for(self, text: str, count: int = 1, timeout: float = STARTUP) -> None:
        """Until ``text`` occurs ``count`` times; fail with what was written if ``timeout``
        passes first."""
        with self._changed:
            if not self._changed.wait_for(lambda: self.text().count(text) >= count, timeout):
                pytest.fail(f"no {count} x {text!r} within {timeout}s in:\n{self.text()}")

    def join(self) -> str:
        """Everything written, once the process has closed its stderr."""
        self._thread.join(STOP)
        assert not self._thread.is_alive(), "stderr still open"
        return self.text()


def stop(process: subprocess.Popen[str], stderr: Stderr | None = None) -> str:
    """SIGTERM, then its stderr (read by ``stderr`` if one watches it); it must exit 0."""
    process.terminate()
    if stderr is None:
        _, err = process.communicate(timeout=STOP)
    else:
        process.wait(timeout=STOP)
        err = stderr.join()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    assert process.returncode == 0, err
    return err


def uids(pid: int) -> list[int]:
    """The real, effective, saved and file-system user ids of process ``pid``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return [int(field) for field in line.split()[1:]]
    raise AssertionError("no Uid line")


def write(path: Path, text: str) -> None:
    """Replace ``path`` at once, as an editor saving the file does: never read half-written."""
    temporary = path.with_suffix(".new")
    temporary.write_text(text)
    os.replace(temporary, path)


# --- Prometheus metrics ---------------------------------------------------------------------

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402


def metric_samples(text: str) -> dict[str, float]:
    """The samples of a Prometheus text exposition by name and sorted labels, as written:
    ``resolver_dns_requests_total{proto="udp",type="A"}``."""
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{key}="{value}"' for key, value in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples
