"""Send fuzz packets to a running daemon and check every reply.

What must hold, for each packet sent:
- at most one reply, and none to a packet shorter than a header or with QR set;
- a reply has QR set, the packet's ID and opcode, a header rcode among those the daemon makes
  (NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED), and every count it states walks
  to exactly its last byte (names, pointers and rdata lengths in bounds);
- after every batch, a good query is answered (NOERROR with an answer) within ``PROBE``
  seconds: the daemon neither crashed nor hung;
and the process is alive at the end with no traceback on its stderr.

Each packet's ID is overwritten with its index in the batch (the two bytes are as random as
before), so that a reply names the packet it answers.
"""

from __future__ import annotations

import contextlib
import select
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from benchmarks import daemon
from benchmarks.ports import free_port
from benchmarks.processes import ROOT
from resolver.errors import WireError
from resolver.wire import DNSRecord, build_query
from resolver.wire.raw import section_offsets

STARTUP = 15.0  # a subprocess answering, interpreter start included
PROBE = 3.0  # a good query answered after a batch
QUIET = 0.05  # no more replies for this long: the batch is done
PROBE_ID = 0xFFFF
_QR = 0x8000
_RCODES = {0, 1, 2, 3, 4, 5}


class FuzzFailure(AssertionError):
    """A property above did not hold; the message names the packet."""


@dataclass
class Tally:
    """What happened to the packets sent so far."""

    sent: int = 0
    replies: Counter[int] = field(default_factory=Counter)  # by rcode
    dropped: int = 0  # shorter than a header or QR set: no reply is the rule
    unanswered: int = 0  # no reply seen by the time the batch was done with
    tcp_closed_early: int = 0

    def count_unreplied(self, packets: Sequence[bytes], seen: set[int]) -> None:
        for index, packet in enumerate(packets):
            if index not in seen:
                if len(packet) < 12 or packet[2] & 0x80:
                    self.dropped += 1
                else:
                    self.unanswered += 1

    def __str__(self) -> str:
        rcodes = ", ".join(f"{_NAMES.get(k, k)} {v}" for k, v in sorted(self.replies.items()))
        return (
            f"{self.sent} sent, {sum(self.replies.values())} replies ({rcodes}), "
            f"{self.dropped} dropped as they must be (short or QR set), {self.unanswered} others "
            f"without a reply seen, TCP connections closed early {self.tcp_closed_early}"
        )


_NAMES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def probe_query() -> bytes:
    return build_query("www.example.com.", 1, qid=PROBE_ID)


def _answered(reply: bytes) -> bool:
    record = DNSRecord.parse(reply)
    return record.header.id == PROBE_ID and record.header.rcode == 0 and bool(record.rr)


def udp_probe(port: int, timeout: float = PROBE) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", port))
        sock.send(probe_query())
        try:
            return _answered(sock.recv(65535))
        except OSError:
            return False


def tcp_probe(port: int, timeout: float = PROBE) -> bool:
    query = probe_query()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(len(query).to_bytes(2, "big") + query)
            data = b""
            while len(data) < 2 or len(data) < 2 + int.from_bytes(data[:2], "big"):
                chunk = sock.recv(65535)
                if not chunk:
                    return False
                data += chunk
            return _answered(data[2 : 2 + int.from_bytes(data[:2], "big")])
    except OSError:
        return False


def _check(packet: bytes, reply: bytes, seen: set[int], index: int, tally: Tally) -> None:
    def fail(why: str) -> FuzzFailure:
        return FuzzFailure(f"{why}: packet {packet.hex()} reply {reply.hex()}")

    if index in seen:
        raise fail("a second reply")
    seen.add(index)
    if len(packet) < 12 or packet[2] & 0x80:
        raise fail("a reply to a packet that should be dropped")
    if len(reply) < 12 or not reply[2] & 0x80:
        raise fail("a reply without QR")
    if (reply[2] ^ packet[2]) & 0x78:
        raise fail("a reply with another opcode")
    rcode = reply[3] & 0x0F
    if rcode not in _RCODES:
        raise fail(f"rcode {rcode}")
    try:
        end = section_offsets(reply).end
    except WireError as exc:
        raise fail(f"a malformed reply ({exc})") from exc
    if end != len(reply):
        raise fail("bytes after the last record of a reply")
    tally.replies[rcode] += 1


def _numbered(packets: Sequence[bytes]) -> list[bytes]:
    assert len(packets) < PROBE_ID
    return [i.to_bytes(2, "big") + p[2:] if len(p) >= 2 else p for i, p in enumerate(packets)]


def udp_batch(port: int, packets: Sequence[bytes], tally: Tally) -> None:
    """Send ``packets`` from one fresh socket, then a probe from another; read replies until
    the probe is answered and the batch's socket has been quiet for QUIET seconds."""
    numbered = _numbered(packets)
    seen: set[int] = set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        sock.connect(("127.0.0.1", port))
        sock.setblocking(False)

        def drain(wait: float) -> None:
            while select.select([sock], [], [], wait)[0]:
                try:
                    reply = sock.recv(65535)
                except BlockingIOError:
                    continue
                index = int.from_bytes(reply[:2], "big") if len(reply) >= 2 else -1
                if not 0 <= index < len(numbered):
                    raise FuzzFailure(f"a reply with an ID no packet had: {reply.hex()}")
                _check(numbered[index], reply, seen, index, tally)

        for packet in numbered:
            while True:
                try:
                    sock.send(packet)
                    break
                except BlockingIOError:
                    drain(0.001)
            if len(seen) < len(numbered):
                drain(0)
        if not udp_probe(port):
            raise FuzzFailure(f"no answer to a good query after UDP batch {numbered!r}")
        drain(QUIET)
    tally.sent += len(numbered)
    tally.count_unreplied(numbered, seen)


def tcp_batch(port: int, packets: Sequence[bytes], tally: Tally) -> None:
    """Send ``packets`` framed on one connection, then a probe on it; read replies until the
    probe's reply or the end of the connection. The daemon may close a connection early; a
    probe on a fresh connection must then be answered."""
    numbered = _numbered(packets)
    probe = probe_query()
    stream = b"".join(len(p).to_bytes(2, "big") + p for p in [*numbered, probe])
    seen: set[int] = set()
    probed = False
    with (
        socket.create_connection(("127.0.0.1", port), timeout=PROBE) as sock,
        contextlib.suppress(OSError),  # a reset is one way to close early
    ):
        sock.sendall(stream)
        data = b""
        deadline = time.monotonic() + PROBE * 2
        while not probed and time.monotonic() < deadline:
            chunk = sock.recv(65535)
            if not chunk:
                break
            data += chunk
            while len(data) >= 2 and len(data) >= 2 + int.from_bytes(data[:2], "big"):
                size = int.from_bytes(data[:2], "big")
                reply, data = data[2 : 2 + size], data[2 + size :]
                index = int.from_bytes(reply[:2], "big") if len(reply) >= 2 else -1
                if index == PROBE_ID:
                    probed = _answered(reply)
                    continue
                if not 0 <= index < len(numbered):
                    raise FuzzFailure(f"a TCP reply with an ID no packet had: {reply.hex()}")
                _check(numbered[index], reply, seen, index, tally)
    if not probed:
        tally.tcp_closed_early += 1
        if not tcp_probe(port):
            raise FuzzFailure(f"no answer to a good query after TCP batch {numbered!r}")
    tally.sent += len(numbered)
    tally.count_unreplied(numbered, seen)


@dataclass
class Target:
    """A `resolver serve` subprocess in front of a `resolver authority` subprocess."""

    port: int
    daemon: subprocess.Popen[str]

    def check_alive(self) -> None:
        if self.daemon.poll() is not None:
            assert self.daemon.stderr is not None
            err = self.daemon.stderr.read()
            raise FuzzFailure(f"the daemon exited with {self.daemon.returncode}:\n{err}")


def _wait_ready(process: subprocess.Popen[str], port: int) -> None:
    deadline = time.monotonic() + STARTUP
    while time.monotonic() < deadline:
        if process.poll() is not None:
            assert process.stderr is not None
            err = process.stderr.read()
            raise RuntimeError(f"exited with {process.returncode} before answering:\n{err}")
        if udp_probe(port, timeout=0.2):
            return
        time.sleep(0.02)  # pacing the polling while the interpreter starts
    raise RuntimeError(f"no answer on port {port} within {STARTUP}s")


@contextlib.contextmanager
def _running(args: list[str]) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=5)
        assert process.stderr is not None
        process.stderr.close()


@contextlib.contextmanager
def target(*serve_args: str) -> Iterator[Target]:
    """The daemon under fuzz, ready; on the way out, fail if it logged a traceback."""
    upstream, port = free_port(), free_port()
    authority = daemon.fixture_authority(f"127.0.0.1:{upstream}")
    serve = daemon.serve(
        listen=f"127.0.0.1:{port}", upstream=f"127.0.0.1:{upstream}", extra=serve_args
    )
    with _running(authority) as auth, _running(serve) as daemon_process:
        _wait_ready(daemon_process, port)
        yield Target(port, daemon_process)
        target_alive = daemon_process.poll() is None
        daemon_process.terminate()
        daemon_process.wait(timeout=5)
        assert daemon_process.stderr is not None
        err = daemon_process.stderr.read()
        assert auth.poll() is None, "the upstream died"
    if not target_alive:
        raise FuzzFailure(f"the daemon died:\n{err}")
    if "Traceback" in err:
        raise FuzzFailure(f"the daemon logged a traceback:\n{err}")
