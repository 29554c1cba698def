"""``resolver query`` against the fake authority on loopback: in process (CliRunner) and as a
real subprocess. Every query goes to 127.0.0.1: an explicit @SERVER, or RESOLVER_SERVER set to
a loopback address, never the machine's resolv.conf."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import pytest
from click.testing import CliRunner, Result

from resolver.authority import Authority
from resolver.cli import main
from resolver.wire import read_header, read_query_edns, read_question

T = TypeVar("T")
TIMEOUT = 10.0  # generous: only reached when a test is about to fail
REPO = Path(__file__).resolve().parent.parent.parent


class ThreadedAuthority:
    """An Authority for every fixture zone, on its own event loop in a thread, so that blocking
    runs of the CLI (CliRunner, subprocesses) can talk to it. ``raw`` keeps each query's bytes
    (UDP and TCP) as the authority received them."""

    def __init__(self, zone_files: list[Path]) -> None:
        self.authority = Authority.from_files(zone_files)
        self.raw: list[bytes] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        answer = self.authority.responder.answer

        def recording(query: bytes, *, max_udp: int | None) -> bytes | None:
            self.raw.append(query)
            return answer(query, max_udp=max_udp)

        self.authority.responder.answer = recording  # type: ignore[method-assign]

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(TIMEOUT)

    def __enter__(self) -> ThreadedAuthority:
        self._thread.start()
        self._call(self.authority.start())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._call(self.authority.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(TIMEOUT)
        self._loop.close()

    @property
    def host(self) -> str:
        return self.authority.address[0]

    @property
    def port(self) -> str:
        return str(self.authority.address[1])

    @property
    def at(self) -> str:
        return f"@{self.host}"

    def transports(self) -> list[str]:
        return [q.transport for q in self.authority.queries]


@pytest.fixture
def auth(fixtures_dir: Path) -> Iterator[ThreadedAuthority]:
    with ThreadedAuthority(sorted((fixtures_dir / "zones").glob("*.zone"))) as server:
        yield server


def closed_port() -> int:
    """A loopback UDP port nobody listens on (queries to it get ICMP port unreachable)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def loopback_default_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test that forgets @SERVER asks a closed loopback port, not the machine's resolver."""
    monkeypatch.setenv("RESOLVER_SERVER", f"127.0.0.1:{closed_port()}")


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, ["query", *args], env=env)


def assert_one_line_error(stderr: str) -> None:
    assert stderr.startswith("resolver: error: "), stderr
    assert stderr.count("\n") == 1, stderr
    assert stderr.endswith("\n")
    assert "Traceback" not in stderr


# --- answers ------------------------------------------------------------------------------


def test_query_prints_digs_sections(auth: ThreadedAuthority) -> None:
    result = invoke("www.example.com", auth.at, "-p", auth.port)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(";; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: ")
    assert lines[1] == ";; flags: qr aa rd; QUERY: 1, ANSWER: 1, AUTHORITY: 0, ADDITIONAL: 1"
    assert ";; OPT PSEUDOSECTION:" in lines
    assert "; EDNS: version: 0, flags:; udp: 1232" in lines
    assert ";; QUESTION SECTION:" in lines
    assert ";www.example.com.\t\tIN\tA" in lines
    assert ";; ANSWER SECTION:" in lines
    assert "www.example.com.\t300\tIN\tA\t127.1.0.1" in lines
    assert any(line.startswith(";; Query time: ") and line.endswith(" msec") for line in lines)
    assert f";; SERVER: 127.0.0.1#{auth.port}(127.0.0.1) (UDP)" in lines
    assert any(line.startswith(";; WHEN: ") for line in lines)
    assert ";; MSG SIZE  rcvd: 60" in lines
    assert result.stderr == ""


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["@127.0.0.1", "example.com", "MX"], id="at-first"),
        pytest.param(["example.com", "@127.0.0.1", "MX"], id="at-middle"),
        pytest.param(["example.com", "MX", "@127.0.0.1"], id="at-last"),
        pytest.param(["example.com", "IN", "MX", "@127.0.0.1"], id="class-before-type"),
    ],
)
def test_query_takes_the_server_anywhere_among_the_arguments(
    auth: ThreadedAuthority, args: list[str]
) -> None:
    result = invoke(*args, "--port", auth.port, "--short")
    assert result.exit_code == 0, result.output
    assert result.stdout == "10 mail.example.com.\n20 mail2.example.test.\n"


def test_query_accepts_a_port_in_the_server_address(auth: ThreadedAuthority) -> None:
    result = invoke("www.example.com", f"@127.0.0.1:{auth.port}", "AAAA", "--short")
    assert (result.exit_code, result.stdout) == (0, "2001:db8::1\n")


def test_query_short_prints_each_answer_rdata(auth: ThreadedAuthority) -> None:
    result = invoke("chain1.example.com", auth.at, "-p", auth.port, "--short")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "chain2.example.com.",
        "chain3.example.com.",
        "www.example.com.",
        "127.1.0.1",
    ]


def test_query_nxdomain_is_a_reply_and_exits_zero(auth: ThreadedAuthority) -> None:
    result = invoke("nothere.example.com", auth.at, "-p", auth.port)
    assert result.exit_code == 0, result.output
    assert "status: NXDOMAIN" in result.stdout
    assert ";; AUTHORITY SECTION:" in result.stdout
    assert "ANSWER SECTION" not in result.stdout
    short = invoke("nothere.example.com", auth.at, "-p", auth.port, "--short")
    assert (short.exit_code, short.stdout) == (0, "")


def test_query_json_is_one_object_with_the_replys_content(auth: ThreadedAuthority) -> None:
    result = invoke("example.com", "MX", auth.at, "-p", auth.port, "--json")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 1
    document = json.loads(result.stdout)
    assert document["status"] == "NOERROR"
    assert document["opcode"] == "QUERY"
    assert document["flags"] == ["qr", "aa", "rd"]
    assert document["opt"] == {"version": 0, "flags": [], "udp": 1232}
    assert document["question"] == [{"name": "example.com.", "class": "IN", "type": "MX"}]
    assert [(r["type"], r["data"]) for r in document["answer"]] == [
        ("MX", "10 mail.example.com."),
        ("MX", "20 mail2.example.test."),
    ]
    assert isinstance(document["answer"][0]["ttl"], int)
    assert document["counts"] == {"query": 1, "answer": 2, "authority": 0, "additional": 1}
    assert (document["authority"], document["additional"]) == ([], [])  # the OPT is in "opt"
    assert document["server"] == f"127.0.0.1#{auth.port}"
    assert document["transport"] == "UDP"
    assert document["size"] > 0
    assert document["query_time_ms"] >= 0
    assert isinstance(document["id"], int)


def test_query_tcp_asks_over_tcp_only(auth: ThreadedAuthority) -> None:
    result = invoke("www.example.com", auth.at, "-p", auth.port, "--tcp")
    assert result.exit_code == 0, result.output
    assert f"#{auth.port}(127.0.0.1) (TCP)" in result.stdout
    assert auth.transports() == ["tcp"]


def test_query_retries_a_truncated_reply_over_tcp(auth: ThreadedAuthority) -> None:
    result = invoke("big.example.com", "TXT", auth.at, "-p", auth.port, "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["transport"] == "TCP"
    assert len(document["answer"]) == 8
    assert document["size"] > 2000
    assert auth.transports() == ["udp", "tcp"]


@pytest.mark.parametrize(
    ("flags", "rd"),
    [
        pytest.param([], True, id="default-sets-rd"),
        pytest.param(["--norecurse"], False, id="norecurse"),
    ],
)
def test_query_rd_flag_in_the_query_sent(
    auth: ThreadedAuthority, flags: list[str], rd: bool
) -> None:
    result = invoke("www.example.com", auth.at, "-p", auth.port, *flags)
    assert result.exit_code == 0, result.output
    [query] = auth.raw
    assert read_header(query).rd is rd
    # The authority copies RD into its reply, so dig's flags line shows it too.
    assert (" rd;" in result.stdout or " rd " in result.stdout) is rd


@pytest.mark.parametrize(
    ("flags", "do"),
    [pytest.param([], False, id="default-no-do"), pytest.param(["--dnssec"], True, id="dnssec")],
)
def test_query_do_bit_in_the_query_sent(
    auth: ThreadedAuthority, flags: list[str], do: bool
) -> None:
    result = invoke("www.example.com", auth.at, "-p", auth.port, *flags)
    assert result.exit_code == 0, result.output
    [query] = auth.raw
    edns = read_query_edns(query, read_question(query).end)
    assert edns is not None
    assert edns.do is do


def test_query_asks_the_server_in_resolver_server(auth: ThreadedAuthority) -> None:
    result = invoke("www.example.com", "--short", env={"RESOLVER_SERVER": f"127.0.0.1:{auth.port}"})
    assert (result.exit_code, result.stdout) == (0, "127.1.0.1\n")
    assert len(auth.raw) == 1


def test_query_at_server_beats_resolver_server(auth: ThreadedAuthority) -> None:
    env = {"RESOLVER_SERVER": f"127.0.0.1:{closed_port()}"}
    result = invoke("www.example.com", f"@127.0.0.1:{auth.port}", "--short", env=env)
    assert (result.exit_code, result.stdout) == (0, "127.1.0.1\n")


def test_query_defaults_to_the_first_resolv_conf_nameserver(
    auth: ThreadedAuthority, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RESOLVER_SERVER")
    conf = tmp_path / "resolv.conf"
    conf.write_text("# test\nsearch example.com\nnameserver 127.0.0.1\nnameserver 192.0.2.1\n")
    result = invoke("www.example.com", "--resolv-conf", str(conf), "-p", auth.port, "--short")
    assert (result.exit_code, result.stdout) == (0, "127.1.0.1\n")
    assert len(auth.raw) == 1


# --- no reply -----------------------------------------------------------------------------


def test_query_retries_on_timeout_then_exits_9(auth: ThreadedAuthority) -> None:
    auth.authority.faults.drop = True
    result = invoke("www.example.com", auth.at, "-p", auth.port, "--timeout", "0.2", "--tries", "3")
    assert result.exit_code == 9
    assert_one_line_error(result.stderr)
    assert "no reply" in result.stderr
    assert result.stdout == ""
    assert auth.transports() == ["udp", "udp", "udp"]
    assert len({q.id for q in auth.authority.queries}) == 3  # a fresh ID per try


def test_query_to_a_closed_port_exits_9() -> None:
    result = invoke("www.example.com", "@127.0.0.1", "-p", str(closed_port()), "--timeout", "2")
    assert result.exit_code == 9
    assert_one_line_error(result.stderr)
    assert "no reply" in result.stderr


def test_query_tcp_to_a_closed_port_exits_9() -> None:
    result = invoke("www.example.com", "@127.0.0.1", "-p", str(closed_port()), "--tcp")
    assert result.exit_code == 9
    assert_one_line_error(result.stderr)


# --- usage and server errors --------------------------------------------------------------

USAGE_ERRORS = [
    pytest.param(["a" * 64 + ".example.com"], "is 64 bytes, the limit is 63", id="label-over-63"),
    pytest.param(["abcdefghi." * 26], "the limit is 255", id="name-over-255"),
    pytest.param(["a..example.com"], "empty label", id="empty-label"),
    pytest.param(["www.example.com", "BOGUS"], "unknown type 'BOGUS'", id="unknown-type"),
    pytest.param(["www.example.com", "A", "XX"], "unknown class 'XX'", id="unknown-class"),
    pytest.param([], "NAME: missing", id="no-name"),
    pytest.param(["a.com", "@127.0.0.1", "@127.0.0.2"], "given twice", id="two-servers"),
    pytest.param(["a.com", "--timeout", "0"], "--timeout", id="zero-timeout"),
    pytest.param(["a.com", "--timeout", "soon"], "--timeout", id="word-timeout"),
    pytest.param(["a.com", "--tries", "0"], "--tries", id="zero-tries"),
    pytest.param(["a.com", "--short", "--json"], "exclude each other", id="short-and-json"),
    pytest.param(["a.com", "--trace"], "No such option", id="unknown-option"),
    pytest.param(["a.com", "-p", "fifty"], "--port", id="word-port"),
]

SERVER_ERRORS = [
    pytest.param(["a.com", "@not-an-ip"], "'not-an-ip' is not an IP address", id="not-an-ip"),
    pytest.param(["a.com", "@1.2.3.4.5"], "'1.2.3.4.5' is not an IP address", id="five-octets"),
    pytest.param(["a.com", "@127.0.0.1", "-p", "0"], "port 0", id="port-0"),
    pytest.param(["a.com", "@127.0.0.1", "-p", "70000"], "port 70000", id="port-70000"),
    pytest.param(["a.com", "@127.0.0.1:70000"], "'70000'", id="at-port-70000"),
    pytest.param(["a.com", "@255.255.255.255"], "broadcast", id="broadcast"),
    pytest.param(["a.com", "@224.0.0.251"], "multicast", id="multicast"),
]


@pytest.mark.parametrize(("args", "message"), USAGE_ERRORS)
def test_query_usage_errors_exit_2_with_one_line(args: list[str], message: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert_one_line_error(result.stderr)
    assert message in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(("args", "message"), SERVER_ERRORS)
def test_query_unusable_server_exits_10_with_one_line(args: list[str], message: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 10, result.output
    assert_one_line_error(result.stderr)
    assert "unusable server address" in result.stderr
    assert message in result.stderr


def test_query_with_a_bad_resolver_server_exits_10() -> None:
    result = invoke("a.com", env={"RESOLVER_SERVER": "dns.example"})
    assert result.exit_code == 10
    assert_one_line_error(result.stderr)
    assert "RESOLVER_SERVER" in result.stderr


def test_query_help_documents_the_exit_codes() -> None:
    result = CliRunner().invoke(main, ["query", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for line in (
        "0 a reply came",
        "2 usage error",
        "9 no server replied",
        "10 unusable server address",
    ):
        assert line in text
    assert "RESOLVER_SERVER" in text
    assert "--trace" not in text


# --- real subprocesses --------------------------------------------------------------------


def run(*args: str, server: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["RESOLVER_SERVER"] = server or f"127.0.0.1:{closed_port()}"
    return subprocess.run(
        [sys.executable, "-m", "resolver", "query", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=env,
        check=False,
    )


def test_subprocess_query_prints_the_answer(auth: ThreadedAuthority) -> None:
    done = run("www.example.com", "A", auth.at, "-p", auth.port)
    assert done.returncode == 0, done.stderr
    assert "www.example.com.\t300\tIN\tA\t127.1.0.1" in done.stdout
    assert f";; SERVER: 127.0.0.1#{auth.port}(127.0.0.1) (UDP)" in done.stdout
    assert done.stderr == ""


def test_subprocess_query_json_and_short(auth: ThreadedAuthority) -> None:
    server = f"127.0.0.1:{auth.port}"
    document = json.loads(run("big.example.com", "TXT", "--json", server=server).stdout)
    assert (document["transport"], len(document["answer"])) == ("TCP", 8)
    done = run("www.example.com", "AAAA", "--short", "--tcp", server=server)
    assert (done.returncode, done.stdout) == (0, "2001:db8::1\n")


def test_subprocess_query_norecurse_clears_rd(auth: ThreadedAuthority) -> None:
    done = run("www.example.com", auth.at, "-p", auth.port, "--norecurse")
    assert done.returncode == 0, done.stderr
    assert not read_header(auth.raw[0]).rd


@pytest.mark.parametrize(
    ("args", "code"),
    [
        pytest.param(["a" * 64 + ".com", "@127.0.0.1"], 2, id="label-over-63"),
        pytest.param(["abcdefghi." * 26, "@127.0.0.1"], 2, id="name-over-255"),
        pytest.param(["a.com", "NOSUCHTYPE", "@127.0.0.1"], 2, id="unknown-type"),
        pytest.param(["a.com", "--bogus"], 2, id="unknown-option"),
        pytest.param(["a.com", "@not-an-ip"], 10, id="not-an-ip"),
        pytest.param(["a.com", "@1.2.3.4.5"], 10, id="five-octets"),
        pytest.param(["a.com", "@127.0.0.1", "-p", "0"], 10, id="port-0"),
        pytest.param(["a.com", "@127.0.0.1", "-p", "70000"], 10, id="port-70000"),
        pytest.param(["a.com", "--timeout", "0.5"], 9, id="closed-port"),
    ],
)
def test_subprocess_errors_are_one_line_with_their_exit_code(args: list[str], code: int) -> None:
    done = run(*args)
    assert done.returncode == code, done.stderr
    assert_one_line_error(done.stderr)
    assert done.stdout == ""
