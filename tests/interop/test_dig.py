"""The real dig (and kdig) against `resolver serve` in front of `resolver authority`: the same
answers and status as asking the authority directly, over UDP and TCP."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import free_port

from resolver.wire import DNSRecord

pytestmark = pytest.mark.interop

ZONES = Path(__file__).resolve().parents[2] / "fixtures" / "zones"
STARTUP = 15.0  # bound on a subprocess becoming ready (interpreter start included)
STOP = 5.0
TOOL_TIMEOUT = 20.0  # bound on one dig run


def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: apt-get install {package} (.ci/run does)")
    return path


def answers_on(port: int) -> bool:
    message = DNSRecord.question("www.example.com.", "A")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        sock.connect(("127.0.0.1", port))
        try:
            sock.send(message.pack())
            reply = DNSRecord.parse(sock.recv(65535))
        except ConnectionRefusedError:
            time.sleep(0.02)  # nothing listens yet: pace the polling
            return False
        except OSError:
            return False
    # QR: with nothing listening the socket may be given ``port`` and read its own query.
    return reply.header.id == message.header.id and bool(reply.header.qr)


def start(args: list[str], port: int, started: list[subprocess.Popen[str]]) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "resolver", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    started.append(process)
    deadline = time.monotonic() + STARTUP
    while time.monotonic() < deadline:
        if process.poll() is not None:
            _, err = process.communicate()
            pytest.fail(f"{args[0]} exited with {process.returncode}:\n{err}")
        if answers_on(port):
            return
    pytest.fail(f"{args[0]} did not answer on port {port} within {STARTUP}s")


@dataclass(frozen=True)
class Servers:
    authority: int
    daemon: int


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    """`resolver authority` with every fixture zone, and `resolver serve` in front of it."""
    started: list[subprocess.Popen[str]] = []
    try:
        authority = free_port()
        zones = [f"--zone={path}" for path in sorted(ZONES.glob("*.zone"))]
        start(["authority", *zones, "--listen", f"127.0.0.1:{authority}"], authority, started)
        daemon = free_port()
        upstream = f"127.0.0.1:{authority}"
        start(["serve", "--listen", f"127.0.0.1:{daemon}", "--upstream", upstream], daemon, started)
        yield Servers(authority, daemon)
    finally:
        for process in reversed(started):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.communicate(timeout=STOP)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()


@dataclass(frozen=True)
class DigResult:
    status: str
    flags: set[str]
    answers: list[str]
    transcript: str


_STATUS = re.compile(r"status: (\w+)")
_FLAGS = re.compile(r";; flags: ([a-z ]*);")


def dig(port: int, name: str, qtype: str, *options: str) -> DigResult:
    """Run dig; return the status, header flags and the answer lines with TTLs removed."""
    args = [
        tool("dig", "bind9-dnsutils"),
        "@127.0.0.1",
        "-p",
        str(port),
        name,
        qtype,
        "+noall",
        "+comments",
        "+answer",
        "+nottlid",
        "+time=2",
        "+tries=2",
        *options,
    ]
    result = subprocess.run(args, capture_output=True, text=True, timeout=TOOL_TIMEOUT)
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    status = _STATUS.search(result.stdout)
    flags = _FLAGS.search(result.stdout)
    assert status is not None, result.stdout
    assert flags is not None, result.stdout
    answers = sorted(
        " ".join(line.split())
        for line in result.stdout.splitlines()
        if line.strip() and not line.startswith(";")
    )
    return DigResult(status.group(1), set(flags.group(1).split()), answers, result.stdout)


QUESTIONS = [
    pytest.param("www.example.com.", "A", 1, id="www-A"),
    pytest.param("www.example.com.", "AAAA", 1, id="www-AAAA"),
    pytest.param("example.com.", "MX", 2, id="apex-MX"),
    pytest.param("_sip._udp.example.com.", "SRV", 1, id="SRV"),
    pytest.param("txtonly.example.com.", "TXT", 1, id="TXT"),
    pytest.param("alias.example.com.", "A", 2, id="cname"),
    pytest.param("chain1.example.com.", "A", 4, id="cname-chain"),
    pytest.param("nothere.example.com.", "A", 0, id="nxdomain"),
    pytest.param("txtonly.example.com.", "A", 0, id="nodata"),
    pytest.param("many.example.com.", "A", 48, id="many-A"),
    pytest.param("big.example.com.", "TXT", 8, id="big-TXT"),
]
TRANSPORTS = [pytest.param((), id="udp"), pytest.param(("+tcp",), id="tcp")]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(("name", "qtype", "count"), QUESTIONS)
def test_dig_through_the_daemon_gets_the_authoritys_answer(
    servers: Servers, name: str, qtype: str, count: int, transport: tuple[str, ...]
) -> None:
    direct = dig(servers.authority, name, qtype, *transport)
    relayed = dig(servers.daemon, name, qtype, *transport)
    assert relayed.status == direct.status, relayed.transcript
    assert relayed.answers == direct.answers, relayed.transcript
    assert len(relayed.answers) == count
    assert "ra" in relayed.flags
    assert "aa" not in relayed.flags


@pytest.mark.parametrize(
    ("name", "qtype", "options", "count"),
    [
        pytest.param("many.example.com.", "A", ("+noedns",), 48, id="many-A-no-edns"),
        pytest.param("big.example.com.", "TXT", (), 8, id="big-TXT-edns"),
    ],
)
def test_dig_retries_a_truncated_udp_answer_over_tcp(
    servers: Servers, name: str, qtype: str, options: tuple[str, ...], count: int
) -> None:
    truncated = dig(servers.daemon, name, qtype, "+ignore", *options)
    assert "tc" in truncated.flags, truncated.transcript
    assert truncated.answers == []
    full = dig(servers.daemon, name, qtype, *options)
    assert "tc" not in full.flags
    assert len(full.answers) == count
    assert full.answers == dig(servers.authority, name, qtype, "+tcp").answers


def test_dig_any_gets_the_rfc8482_answer(servers: Servers) -> None:
    reply = dig(servers.daemon, "example.com.", "ANY")
    assert reply.status == "NOERROR"
    assert reply.answers == ['example.com. IN HINFO "RFC8482" ""']


def test_kdig_through_the_daemon_gets_the_authoritys_answer(servers: Servers) -> None:
    kdig = tool("kdig", "knot-dnsutils")

    def short(port: int, *options: str) -> list[str]:
        args = [kdig, "@127.0.0.1", "-p", str(port), "example.com.", "MX", "+short", *options]
        result = subprocess.run(args, capture_output=True, text=True, timeout=TOOL_TIMEOUT)
        assert result.returncode == 0, result.stderr
        return sorted(result.stdout.split("\n"))

    for options in ((), ("+tcp",)):
        assert short(servers.daemon, *options) == short(servers.authority, *options)
    assert "10 mail.example.com." in short(servers.daemon)


# --- resolver query prints what dig prints ------------------------------------------------


def run_both(port: int, *args: str) -> tuple[str, str]:
    """dig's and resolver query's stdout for the same arguments against 127.0.0.1:``port``."""
    common = ["@127.0.0.1", "-p", str(port), "+time=2", "+tries=2", *args]
    dig_run = subprocess.run(
        [tool("dig", "bind9-dnsutils"), *common],
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT,
    )
    ours = subprocess.run(
        [sys.executable, "-m", "resolver", "query", *common],
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT,
    )
    assert dig_run.returncode == 0, dig_run.stderr
    assert ours.returncode == 0, ours.stderr
    return dig_run.stdout, ours.stdout


SAME_OUTPUT = [
    pytest.param(("www.example.com", "+noall", "+question", "+answer"), id="A"),
    pytest.param(("mx", "example.com", "+noall", "+answer", "+additional"), id="type-first-MX"),
    pytest.param(("_sip._udp.example.com", "SRV", "+noall", "+answer"), id="SRV"),
    pytest.param(("txtonly.example.com", "TXT", "+noall", "+answer"), id="TXT"),
    pytest.param(("chain1.example.com", "+noall", "+answer"), id="cname-chain"),
    pytest.param(("nothere.example.com", "+noall", "+authority"), id="nxdomain-SOA"),
    pytest.param(("example.com", "SOA", "+multiline", "+noall", "+answer"), id="multiline"),
    pytest.param(("example.com", "NS", "+short"), id="short"),
    pytest.param(("www.example.com", "mail.example.com", "AAAA", "+short"), id="two-names"),
    pytest.param(("-t", "AAAA", "www.example.com", "+noall", "+answer"), id="dash-t"),
    pytest.param(("-x", "127.0.0.1", "+noall", "+question"), id="dash-x-v4"),
    pytest.param(("-x", "2001:db8::1", "+noall", "+question"), id="dash-x-v6"),
    pytest.param(("a\\.b\\040c\\;d.example.com", "+noall", "+question"), id="escapes"),
    pytest.param(("big.example.com", "TXT", "+noall", "+answer"), id="big-TXT-over-TCP"),
    pytest.param(("www.example.com", "+tcp", "+noall", "+answer"), id="tcp"),
]


@pytest.mark.parametrize("args", SAME_OUTPUT)
def test_resolver_query_prints_what_dig_prints(servers: Servers, args: tuple[str, ...]) -> None:
    dig_out, ours = run_both(servers.authority, *args)
    assert ours == dig_out


def test_resolver_query_header_and_sections_match_digs(servers: Servers) -> None:
    dig_out, ours = run_both(servers.authority, "example.com", "MX", "+nocmd", "+nostats")
    id_line = re.compile(r"id: \d+")
    # dig's "Got answer:" and banner lines are not printed; everything after them is the same.
    dig_body = dig_out.split(";; Got answer:\n", 1)[1]
    assert id_line.sub("id: N", ours) == id_line.sub("id: N", dig_body)


def test_resolver_query_prints_the_rfc8482_hinfo_as_dig_does(servers: Servers) -> None:
    dig_out, ours = run_both(servers.daemon, "example.com", "ANY", "+noall", "+answer")
    assert ours == dig_out
    assert 'HINFO\t"RFC8482" ""' in ours
