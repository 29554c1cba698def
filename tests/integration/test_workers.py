"""`resolver serve --workers 2` as a real subprocess: both workers answer over UDP and TCP, each
from a cache of its own, and over TLS and HTTPS (kdig), each reloading its certificate at SIGHUP;
a worker killed comes back on the same sockets; SIGHUP, SIGUSR1 and SIGTERM reach every worker;
the service manager hears the parent alone; a worker that keeps dying, or a parent that is
gone, ends everything."""

from __future__ import annotations

import contextlib
import os
import pwd
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dnslib import QTYPE, RR, A, DNSRecord
from support import (
    STARTUP,
    STOP,
    ScriptedUpstream,
    addresses,
    dns_query,
    free_port,
    tcp_exchange,
    uids,
    upstream_in_thread,
    write,
)
from tls_support import PrivateCa

from resolver.workers import DELAYS

ANSWER = "192.0.2.1"
CLIENTS = 64  # queries, each from a port of its own: all reach one worker once in 2**63


def answer(query: bytes) -> bytes:
    """The scripted upstream: an A record for any name, cached for an hour."""
    request = DNSRecord.parse(query)
    reply = request.reply()
    reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(ANSWER), ttl=3600))
    return reply.pack()


def asked(queries: list[bytes], name: str) -> int:
    return sum(str(DNSRecord.parse(q).q.qname).lower() == name for q in queries)


def upstream_of(upstream: ScriptedUpstream) -> str:
    host, port = upstream.address
    return f"{host}:{port}"


def tcp_query(port: int, name: str) -> DNSRecord:
    return DNSRecord.parse(tcp_exchange(port, DNSRecord.question(name).pack()))


def ask_from_many_ports(port: int, name: str, answer: str, *, tcp: bool = True) -> None:
    """CLIENTS questions over UDP (and half as many over TCP), each from a port of its own,
    so that every worker gets some: each must be answered ``answer``."""
    for _ in range(CLIENTS):
        assert addresses(dns_query(port, name, timeout=2.0)) == [answer]
    for _ in range(CLIENTS // 2 if tcp else 0):
        assert addresses(tcp_query(port, name)) == [answer]


def alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie left to an init that does not reap is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@dataclass
class Workers:
    """A `resolver serve --workers` parent, its stderr in a file, $NOTIFY_SOCKET ours."""

    process: subprocess.Popen[bytes]
    log: Path
    manager: socket.socket

    def pids(self) -> list[int]:
        pid = self.process.pid
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]

    def text(self) -> str:
        return self.log.read_text()

    def state(self, timeout: float = STARTUP) -> str:
        """The next state the parent tells the service manager."""
        self.manager.settimeout(timeout)
        return self.manager.recv(4096).decode()

    def wait_for(self, text: str, count: int = 1) -> str:
        deadline = time.monotonic() + STARTUP
        while self.text().count(text) < count:
            assert self.process.poll() is None, self.text()
            assert time.monotonic() < deadline, f"no {text!r} in:\n{self.text()}"
            time.sleep(0.05)
        return self.text()

    def statistics(self) -> dict[int, dict[str, int]]:
        """SIGUSR1, then each worker's server counters by its pid."""
        before = self.text().count("statistics: server ")
        self.process.send_signal(signal.SIGUSR1)
        text = self.wait_for("statistics: server ", before + 2)
        found: dict[int, dict[str, int]] = {}
        for pid, fields in re.findall(r"\(pid (\d+)\) INFO \S+: statistics: server (.*)", text):
            found[int(pid)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", fields)}
        return found

    def stop(self, signum: int = signal.SIGTERM) -> str:
        """SIGTERM (or SIGINT): every worker finishes and the parent exits 0; its stderr."""
        pids = self.pids()
        self.process.send_signal(signum)
        assert self.process.wait(STOP) == 0, self.text()
        assert not [pid for pid in pids if alive(pid)]
        return self.text()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[..., Workers]]:
    """Starts `resolver serve ARGS --workers N` and waits until the parent says READY=1; on
    the way out, kills whatever is left of each (its own session: the parent and workers)."""
    started: list[Workers] = []

    def start(args: list[str], count: int = 2) -> Workers:
        manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        # Abstract: a parent that became another user may write to it all the same.
        address = f"@resolver-test-{os.getpid()}-{time.monotonic_ns()}"
        manager.bind("\0" + address[1:])
        log = tmp_path / f"stderr-{len(started)}.log"
        with log.open("wb") as err:
            process = subprocess.Popen(
                [sys.executable, "-m", "resolver", "serve", *args, "--workers", str(count)],
                stdout=subprocess.DEVNULL,
                stderr=err,
                env={**os.environ, "NOTIFY_SOCKET": address},
                start_new_session=True,
            )
        daemon = Workers(process, log, manager)
        started.append(daemon)
        try:
            assert daemon.state() == "READY=1"
        except TimeoutError:
            pytest.fail(f"no READY=1 within {STARTUP} s:\n{daemon.text()}")
        assert len(daemon.pids()) == count
        return daemon

    yield start
    for daemon in started:
        if daemon.process.poll() is None:
            os.killpg(daemon.process.pid, signal.SIGKILL)
            daemon.process.wait(STOP)
        daemon.manager.close()


def test_both_workers_answer_over_udp_and_tcp_each_from_its_own_cache(
    workers: Callable[..., Workers],
) -> None:
    port = free_port()
    with upstream_in_thread(answer) as upstream:
        daemon = workers(["--listen", f"127.0.0.1:{port}", "--upstream", upstream_of(upstream)])
        ask_from_many_ports(port, "cached.example.", ANSWER)
        # Each worker asked the upstream once, then answered from its own cache.
        assert asked(upstream.queries, "cached.example.") == 2
        counters = daemon.statistics()
        assert sorted(counters) == sorted(daemon.pids())
        for served in counters.values():
            assert served["udp_queries"] > 0
            assert served["tcp_queries"] > 0
        assert sum(s["answered"] for s in counters.values()) == CLIENTS + CLIENTS // 2
        err = daemon.stop()
    assert "statistics: supervisor workers=2 running=2 ready=2 restarts=0" in err
    assert err.count("INFO resolver: stopped") == 2
    assert "Traceback" not in err


def test_a_killed_worker_is_started_again_on_the_same_sockets(
    workers: Callable[..., Workers],
) -> None:
    port = free_port()
    with upstream_in_thread(answer) as upstream:
        daemon = workers(["--listen", f"127.0.0.1:{port}", "--upstream", upstream_of(upstream)])
        ask_from_many_ports(port, "cached.example.", ANSWER, tcp=False)
        killed, kept = daemon.pids()
        os.kill(killed, signal.SIGKILL)
        daemon.wait_for("is ready again")
        assert daemon.pids()[0] == kept
        (new,) = set(daemon.pids()) - {kept}
        ask_from_many_ports(port, "cached.example.", ANSWER)
        # The new worker's cache starts empty: one more question upstream, no more.
        assert asked(upstream.queries, "cached.example.") == 3
        counters = daemon.statistics()
        assert counters[new]["udp_queries"] > 0
        assert counters[new]["tcp_queries"] > 0
        err = daemon.stop(signal.SIGINT)
    assert f"worker 1 (pid {killed}) was killed by SIGKILL; starting it again" in err
    assert "restarts=1" in err


def test_sighup_reloads_every_worker_before_the_parent_says_ready(
    workers: Callable[..., Workers], tmp_path: Path
) -> None:
    port = free_port()
    hosts = tmp_path / "hosts"
    write(hosts, "192.0.2.10 printer.lan\n")
    config = tmp_path / "resolver.toml"
    write(
        config,
        f'[server]\nlisten = ["127.0.0.1:{port}"]\n'
        f'[forwarder]\nupstreams = ["127.0.0.1:{free_port()}"]\n'
        f'[local]\nhosts = "{hosts}"\n',
    )
    daemon = workers(["--config", str(config)])
    ask_from_many_ports(port, "printer.lan.", "192.0.2.10", tcp=False)
    write(hosts, "192.0.2.11 printer.lan\n")
    daemon.process.send_signal(signal.SIGHUP)
    reloading = daemon.state().split("\n")
    assert reloading[0] == "RELOADING=1"
    assert reloading[1].startswith("MONOTONIC_USEC=")
    assert daemon.state() == "READY=1"
    # READY=1 came once both had reloaded: no client, whichever worker it reaches, sees the
    # old answer any more.
    ask_from_many_ports(port, "printer.lan.", "192.0.2.11")
    daemon.process.terminate()
    assert daemon.state() == "STOPPING=1"
    err = daemon.stop()
    assert err.count("reloaded the configuration") == 2


def test_a_worker_that_cannot_start_again_makes_the_parent_give_up(
    workers: Callable[..., Workers], tmp_path: Path
) -> None:
    port = free_port()
    config = tmp_path / "resolver.toml"
    write(
        config,
        f'[server]\nlisten = ["127.0.0.1:{port}"]\n'
        f'[forwarder]\nupstreams = ["127.0.0.1:{free_port()}"]\n',
    )
    daemon = workers(["--config", str(config)])
    pids = daemon.pids()
    write(config, "[server]\nallow = 8\n")  # each new start of a worker fails
    os.kill(pids[1], signal.SIGKILL)
    assert daemon.process.wait(STARTUP * 2) == 1
    err = daemon.text()
    giving_up = [line for line in err.splitlines() if "giving up" in line]
    assert len(giving_up) == 1, err
    assert "ERROR resolver.workers: worker 2 (pid " in giving_up[0]
    assert "exited with status 3" in giving_up[0]
    # Killed within STABLE_AFTER of its start, then each of the starts after said why it failed.
    assert err.count("server.allow: must be a list of networks") == len(DELAYS)
    assert f"{len(DELAYS) + 1} exits in a row" in giving_up[0]
    assert not [pid for pid in pids if alive(pid)]
    assert "Traceback" not in err


def privileged_port() -> int:
    """A port below 1024 free for UDP and TCP on 127.0.0.1: only root may bind it."""
    for port in random.sample(range(600, 1024), 100):
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
            socket.socket() as tcp,
            contextlib.suppress(OSError),
        ):
            udp.bind(("127.0.0.1", port))
            tcp.bind(("127.0.0.1", port))
            return port
    raise AssertionError("no free port below 1024")


def test_workers_run_as_the_user_and_start_again_without_binding(
    workers: Callable[..., Workers],
) -> None:
    # Root only, as CI runs: a failure elsewhere says why, rather than a skip hiding it.
    assert os.geteuid() == 0, "dropping privileges needs root"
    nobody = pwd.getpwnam("nobody")
    port = privileged_port()
    with upstream_in_thread(answer) as upstream:
        args = ["--listen", f"127.0.0.1:{port}", "--upstream", upstream_of(upstream)]
        daemon = workers([*args, "--user", "nobody"])
        killed, kept = daemon.pids()
        for pid in (daemon.process.pid, killed, kept):
            assert uids(pid) == [nobody.pw_uid] * 4
        os.kill(killed, signal.SIGKILL)
        daemon.wait_for("is ready again")
        (new,) = set(daemon.pids()) - {kept}
        assert uids(new) == [nobody.pw_uid] * 4
        # Both answer, on the port that nobody could not bind.
        ask_from_many_ports(port, "cached.example.", ANSWER, tcp=False)
        assert asked(upstream.queries, "cached.example.") == 2
        err = daemon.stop()
    assert err.count("running as user nobody") == 1  # the parent's; the workers were born so


def test_workers_stop_when_the_parent_is_killed(workers: Callable[..., Workers]) -> None:
    port = free_port()
    daemon = workers(["--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{free_port()}"])
    pids = daemon.pids()
    daemon.process.kill()
    daemon.process.wait(STOP)
    deadline = time.monotonic() + STOP
    while [pid for pid in pids if alive(pid)]:
        assert time.monotonic() < deadline, daemon.text()
        time.sleep(0.05)
    assert daemon.text().count("the parent process is gone: stopping") == 2


def test_a_worker_that_cannot_start_stops_all_with_its_one_line(tmp_path: Path) -> None:
    # Link-local without a scope: no socket can reach it, so no worker can start.
    argv = [sys.executable, "-m", "resolver", "serve", "--workers", "3"]
    argv += ["--listen", f"127.0.0.1:{free_port()}", "--upstream", "[fe80::1]:53"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=STARTUP)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [
        "resolver: error: [fe80::1]:53: cannot open a socket: Invalid argument"
    ]


def test_a_taken_port_stops_the_parent_before_any_worker(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        argv = [sys.executable, "-m", "resolver", "serve", "--workers", "2"]
        argv += ["--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{free_port()}"]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=STARTUP)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == ["resolver: error: cannot start: Address already in use"]


# ----------------------------------------------------------------- DoT and DoH with workers


def kdig() -> str:
    path = shutil.which("kdig")
    if path is None:
        pytest.fail("kdig is not installed: apt-get install knot-dnsutils (.ci/run does)")
    return path


def kdig_answers(port: int, ca: PrivateCa, option: str, name: str) -> list[str]:
    """The A records kdig (``+tls`` or ``+https``) gets for ``name``; fails on anything but
    NOERROR."""
    argv = [kdig(), "@127.0.0.1", "-p", str(port), option, f"+tls-ca={ca.pem}"]
    result = subprocess.run(
        [*argv, "+tls-hostname=resolver.test", "+short", name, "A"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.split()


def tls_ask(port: int, ca: PrivateCa, name: str) -> list[str]:
    """One query over a fresh TLS connection (a port of its own), verifying the certificate
    against ``ca``; its A records. Raises ssl.SSLError when the certificate is not ``ca``'s."""
    context = ssl.create_default_context(cafile=str(ca.pem))
    query = DNSRecord.question(name).pack()
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="resolver.test") as sock,
    ):
        sock.sendall(len(query).to_bytes(2, "big") + query)
        data = b""
        while len(data) < 2 or len(data) < 2 + int.from_bytes(data[:2], "big"):
            chunk = sock.recv(4096)
            assert chunk, "the server closed the connection"
            data += chunk
    return addresses(DNSRecord.parse(data[2:]))


@pytest.fixture
def encrypted_workers(
    workers: Callable[..., Workers], tmp_path: Path
) -> Iterator[tuple[Workers, int, int, PrivateCa]]:
    """Two workers serving DoT and DoH (a certificate of a private CA for resolver.test),
    forwarding to a scripted upstream."""
    (tmp_path / "ca").mkdir()
    ca = PrivateCa(tmp_path / "ca")
    issued = ca.issue("ours", names=("resolver.test",))
    tls, https = free_port(), free_port()
    with upstream_in_thread(answer) as upstream:
        args = ["--listen", f"127.0.0.1:{free_port()}", "--upstream", upstream_of(upstream)]
        args += ["--listen-tls", f"127.0.0.1:{tls}", "--listen-https", f"127.0.0.1:{https}"]
        args += ["--tls-cert", str(issued.cert), "--tls-key", str(issued.key)]
        yield workers(args), tls, https, ca


def test_both_workers_answer_over_tls_and_https(
    encrypted_workers: tuple[Workers, int, int, PrivateCa],
) -> None:
    daemon, tls, https, ca = encrypted_workers
    for option, port in (("+tls", tls), ("+https", https)):
        assert kdig_answers(port, ca, option, "kdig.example.") == [ANSWER]
    for _ in range(CLIENTS // 2):
        assert tls_ask(tls, ca, "spread.example.") == [ANSWER]
    for _ in range(16):  # kdig is slower: 16 connections, all to one worker once in 2**15
        assert kdig_answers(https, ca, "+https", "spread.example.") == [ANSWER]
    counters = daemon.statistics()
    assert sorted(counters) == sorted(daemon.pids())
    for served in counters.values():
        assert served["tls_queries"] > 0
        assert served["https_queries"] > 0
    err = daemon.stop()
    assert "Traceback" not in err


def test_sighup_reloads_the_certificate_in_every_worker(
    encrypted_workers: tuple[Workers, int, int, PrivateCa], tmp_path: Path
) -> None:
    daemon, tls, _, ca = encrypted_workers
    assert tls_ask(tls, ca, "before.example.") == [ANSWER]
    (tmp_path / "other-ca").mkdir()
    other = PrivateCa(tmp_path / "other-ca")
    fresh = other.issue("fresh", names=("resolver.test",))
    (ca.directory / "ours.pem").write_bytes(fresh.cert.read_bytes())
    (ca.directory / "ours.key").write_bytes(fresh.key.read_bytes())
    daemon.process.send_signal(signal.SIGHUP)
    assert daemon.state().startswith("RELOADING=1")
    assert daemon.state() == "READY=1"
    # Both workers reloaded before READY=1: every connection, whichever worker takes it, is
    # served the new certificate.
    for _ in range(CLIENTS // 2):
        assert tls_ask(tls, other, "after.example.") == [ANSWER]
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_ask(tls, ca, "after.example.")
    assert daemon.stop().count("reloaded the configuration") == 2


def test_a_killed_worker_serves_tls_again_on_the_same_socket(
    encrypted_workers: tuple[Workers, int, int, PrivateCa],
) -> None:
    daemon, tls, _, ca = encrypted_workers
    killed, kept = daemon.pids()
    os.kill(killed, signal.SIGKILL)
    daemon.wait_for("is ready again")
    (new,) = set(daemon.pids()) - {kept}
    for _ in range(CLIENTS // 2):
        assert tls_ask(tls, ca, "again.example.") == [ANSWER]
    counters = daemon.statistics()
    assert counters[new]["tls_queries"] > 0
    assert counters[kept]["tls_queries"] > 0
    daemon.stop()
