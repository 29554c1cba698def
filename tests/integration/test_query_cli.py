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
from support import assert_one_line_error

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
    pytest.param(["www.example.com", "-t", "BOGUS"], "unknown type 'BOGUS'", id="unknown-type"),
    pytest.param(["www.example.com", "-c", "XX"], "unknown class 'XX'", id="unknown-class"),
    pytest.param([], "NAME: missing", id="no-name"),
    pytest.param(["a.com", "@127.0.0.1", "@127.0.0.2"], "given twice", id="two-servers"),
    pytest.param(["a.com", "--timeout", "0"], "--timeout", id="zero-timeout"),
    pytest.param(["a.com", "--timeout", "soon"], "--timeout", id="word-timeout"),
    pytest.param(["a.com", "--timeout", "inf"], "at most 300", id="infinite-timeout"),
    pytest.param(["a.com", "+time=100000"], "at most 300", id="huge-timeout"),
    pytest.param(["a.com", "--tries", "0"], "--tries", id="zero-tries"),
    pytest.param(["a.com", "--short", "--json"], "exclude each other", id="short-and-json"),
    pytest.param(["a.com", "+short", "--json"], "exclude each other", id="plus-short-and-json"),
    pytest.param(["a.com", "--frob"], "--frob: no such option", id="unknown-option"),
    pytest.param(["a.com", "+bogus"], "+bogus: unknown dig option", id="unknown-plus-option"),
    pytest.param(["a.com", "-p", "fifty"], "-p: 'fifty' is not a number", id="word-port"),
    pytest.param(["a.com", "-p", "0"], "port 0", id="port-0"),
    pytest.param(["a.com", "-p", "70000"], "port 70000", id="port-70000"),
    pytest.param(["-x", "300.1.1.1"], "-x: '300.1.1.1' is not an IPv4 or IPv6", id="bad-x"),
    pytest.param(["-f", "/nonexistent/batch"], "-f: cannot read", id="missing-batch-file"),
]

SERVER_ERRORS = [
    # Names a resolver could be asked about are never used here: these fail before any lookup.
    pytest.param(["a.com", "@not_a_host"], "'not_a_host' is not an IP address", id="not-a-host"),
    pytest.param(["a.com", "@1.2.3.4.5"], "'1.2.3.4.5' is not an IP address", id="five-octets"),
    pytest.param(["a.com", "@127.0.0.1:70000"], "'70000'", id="at-port-70000"),
    pytest.param(["a.com", "@255.255.255.255"], "broadcast", id="broadcast"),
    pytest.param(["a.com", "@224.0.0.251"], "multicast", id="multicast"),
    pytest.param(["a.com", "@::1", "-4"], "::1 is not an IPv4 address", id="wrong-family"),
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
    assert "+trace (--trace)" in text
    assert "--root-hints FILE" in text


# --- dig's syntax ---------------------------------------------------------------------------


def sent_questions(auth: ThreadedAuthority) -> list[tuple[str, int]]:
    return [(q.qname, q.qtype) for q in auth.authority.queries]


def test_type_before_the_name_and_plus_short(auth: ThreadedAuthority) -> None:
    result = invoke(auth.at, "-p", auth.port, "mx", "example.com", "+short")
    assert (result.exit_code, result.stdout) == (
        0,
        "10 mail.example.com.\n20 mail2.example.test.\n",
    )


def test_each_question_is_asked_and_printed_in_turn(auth: ThreadedAuthority) -> None:
    result = invoke(auth.at, "-p", auth.port, "www.example.com", "example.com", "mx", "+short")
    assert result.exit_code == 0, result.output
    assert result.stdout == "127.1.0.1\n10 mail.example.com.\n20 mail2.example.test.\n"
    full = invoke(auth.at, "-p", auth.port, "www.example.com", "mail.example.com", "AAAA")
    assert full.stdout.count(";; ->>HEADER<<-") == 2
    assert "www.example.com.\t300\tIN\tA\t127.1.0.1" in full.stdout
    assert "mail.example.com.\t3600\tIN\tAAAA\t2001:db8::25" in full.stdout


def test_dash_t_dash_c_and_dash_q(auth: ThreadedAuthority) -> None:
    result = invoke(auth.at, "-p", auth.port, "-t", "AAAA", "-c", "IN", "-q", "www.example.com")
    assert result.exit_code == 0, result.output
    assert sent_questions(auth) == [("www.example.com.", 28)]


@pytest.mark.parametrize(
    ("address", "name"),
    [
        pytest.param("127.1.0.1", "1.0.1.127.in-addr.arpa.", id="ipv4"),
        pytest.param(
            "2001:db8::1", "1.0.0.0." + "0." * 20 + "8.b.d.0.1.0.0.2.ip6.arpa.", id="ipv6"
        ),
    ],
)
def test_dash_x_asks_the_reverse_name(auth: ThreadedAuthority, address: str, name: str) -> None:
    result = invoke(auth.at, "-p", auth.port, "-x", address)
    assert result.exit_code == 0, result.output
    assert sent_questions(auth) == [(name, 12)]
    assert f";{name}" in result.stdout


def test_batch_file_asks_one_question_per_line(auth: ThreadedAuthority, tmp_path: Path) -> None:
    batch = tmp_path / "batch"
    batch.write_text("www.example.com\nexample.com MX\n")
    result = invoke(auth.at, "-p", auth.port, "-f", str(batch), "+short")
    assert result.exit_code == 0, result.output
    assert sent_questions(auth) == [("www.example.com.", 1), ("example.com.", 15)]


def test_a_host_name_after_the_at_is_resolved(auth: ThreadedAuthority) -> None:
    result = invoke("@localhost", "-4", "-p", auth.port, "www.example.com", "+short")
    assert (result.exit_code, result.stdout) == (0, "127.1.0.1\n")


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        pytest.param([], {"rd": True, "ad": True, "cd": False}, id="digs-defaults"),
        pytest.param(
            ["+norecurse", "+noadflag", "+cd"], {"rd": False, "ad": False, "cd": True}, id="flipped"
        ),
    ],
)
def test_header_bits_in_the_query_sent(
    auth: ThreadedAuthority, flags: list[str], expected: dict[str, bool]
) -> None:
    result = invoke("www.example.com", auth.at, "-p", auth.port, *flags)
    assert result.exit_code == 0, result.output
    header = read_header(auth.raw[0])
    assert {"rd": header.rd, "ad": header.ad, "cd": header.cd} == expected


@pytest.mark.parametrize(
    ("flags", "udp_size", "do"),
    [
        pytest.param(["+bufsize=4096"], 4096, False, id="bufsize"),
        pytest.param(["+dnssec"], 1232, True, id="dnssec"),
        pytest.param(["+noedns"], None, False, id="noedns"),
    ],
)
def test_edns_in_the_query_sent(
    auth: ThreadedAuthority, flags: list[str], udp_size: int | None, do: bool
) -> None:
    result = invoke("www.example.com", auth.at, "-p", auth.port, *flags)
    assert result.exit_code == 0, result.output
    query = auth.raw[0]
    edns = read_query_edns(query, read_question(query).end)
    assert (edns.udp_size if edns else None, edns.do if edns else False) == (udp_size, do)


def test_nsid_is_asked_for_in_the_opt_record(auth: ThreadedAuthority) -> None:
    result = invoke("www.example.com", auth.at, "-p", auth.port, "+nsid")
    assert result.exit_code == 0, result.output
    assert auth.raw[0].endswith(b"\x00\x04\x00\x03\x00\x00")  # rdlength 4: NSID, empty


def test_noall_answer_prints_only_the_records(auth: ThreadedAuthority) -> None:
    result = invoke("example.com", "MX", auth.at, "-p", auth.port, "+noall", "+answer")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "example.com.\t\t3600\tIN\tMX\t10 mail.example.com.\n"
        "example.com.\t\t3600\tIN\tMX\t20 mail2.example.test.\n"
    )


def test_time_and_tries_bound_the_wait(auth: ThreadedAuthority) -> None:
    auth.authority.faults.drop = True
    result = invoke("www.example.com", auth.at, "-p", auth.port, "+time=0.2", "+tries=2")
    assert result.exit_code == 9
    assert auth.transports() == ["udp", "udp"]


def test_tcp_plus_option(auth: ThreadedAuthority) -> None:
    result = invoke("www.example.com", auth.at, "-p", auth.port, "+tcp", "+noall", "+stats")
    assert result.exit_code == 0, result.output
    assert f"#{auth.port}(127.0.0.1) (TCP)" in result.stdout
    assert auth.transports() == ["tcp"]


def test_an_unknown_plus_option_is_one_line_before_any_query(auth: ThreadedAuthority) -> None:
    result = invoke("www.example.com", auth.at, "-p", auth.port, "+frobnicate")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr)
    assert "+frobnicate: unknown dig option" in result.stderr
    assert auth.raw == []


def test_a_second_type_warns_as_dig_does(auth: ThreadedAuthority) -> None:
    result = invoke(auth.at, "-p", auth.port, "example.com", "A", "MX", "+short")
    assert result.exit_code == 0, result.output
    assert result.stderr == ";; Warning, extra type option\n"
    assert sent_questions(auth) == [("example.com.", 15)]


# --- names --------------------------------------------------------------------------------


def test_decimal_escapes_are_read_as_bytes(auth: ThreadedAuthority) -> None:
    result = invoke(auth.at, "-p", auth.port, "\\119ww.example.com", "+short")
    assert (result.exit_code, result.stdout) == (0, "127.1.0.1\n")


def test_special_characters_are_escaped_on_output(auth: ThreadedAuthority) -> None:
    result = invoke(auth.at, "-p", auth.port, "a\\.b\\032c.example.com", "+noall", "+question")
    assert result.exit_code == 0, result.output
    assert result.stdout == ";a\\.b\\032c.example.com.\t\tIN\tA\n"
    [query] = auth.raw
    assert read_question(query).name.startswith(b"\x05a.b c\x07example")


def test_idn_names_go_out_as_a_labels(auth: ThreadedAuthority) -> None:
    result = invoke(auth.at, "-p", auth.port, "bücher.example.com", "+noall", "+question")
    assert result.exit_code == 0, result.output
    assert sent_questions(auth) == [("xn--bcher-kva.example.com.", 1)]
    assert result.stdout == ";xn--bcher-kva.example.com.\tIN\tA\n"
    shown = invoke(auth.at, "-p", auth.port, "bücher.example.com", "+noall", "+question", "+idnout")
    assert shown.stdout == ";bücher.example.com.\t\tIN\tA\n"


# --- what dig says ------------------------------------------------------------------------


def test_truncated_reply_is_announced_and_retried_over_tcp(auth: ThreadedAuthority) -> None:
    result = invoke("big.example.com", "TXT", auth.at, "-p", auth.port)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(";; Truncated, retrying in TCP mode.\n;; ->>HEADER<<-")
    assert "(127.0.0.1) (TCP)" in result.stdout
    kept = invoke("big.example.com", "TXT", auth.at, "-p", auth.port, "+ignore", "+short")
    assert (kept.exit_code, kept.stdout) == (0, "")


def test_a_reply_with_another_id_is_reported_and_the_right_one_awaited(
    auth: ThreadedAuthority,
) -> None:
    auth.authority.faults.wrong_id = True
    auth.authority.faults.also_right_id = True
    result = invoke("www.example.com", auth.at, "-p", auth.port, "+short")
    assert result.exit_code == 0, result.output
    # On stdout, as dig prints it, +short or not.
    warning, answer = result.stdout.splitlines()
    expected = read_header(auth.raw[0]).id
    assert warning.startswith(f";; Warning: ID mismatch: expected ID {expected}, got ")
    assert answer == "127.1.0.1"
    as_json = invoke("www.example.com", auth.at, "-p", auth.port, "--json")
    assert json.loads(as_json.stdout)["answer"][0]["data"] == "127.1.0.1"
    assert as_json.stderr.startswith(";; Warning: ID mismatch: expected ID ")


def test_a_reply_from_another_port_is_reported_and_ignored(auth: ThreadedAuthority) -> None:
    auth.authority.faults.other_port = True
    result = invoke("www.example.com", auth.at, "-p", auth.port, "+time=0.3", "+tries=1")
    assert result.exit_code == 9
    [warning] = result.stdout.splitlines()
    assert warning.startswith(";; reply from unexpected source: 127.0.0.1#")
    assert warning.endswith(f", expected 127.0.0.1#{auth.port}")
    assert result.stderr.startswith("resolver: error: no reply: ")


def test_garbage_from_the_server_is_reported_and_the_wait_goes_on(
    auth: ThreadedAuthority,
) -> None:
    auth.authority.faults.garbage = True
    result = invoke("www.example.com", auth.at, "-p", auth.port, "+time=0.3", "+tries=1")
    assert result.exit_code == 9
    assert result.stdout.startswith((";; Got bad packet: ", ";; Warning: "))
    assert result.stderr.startswith("resolver: error: no reply: ")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(None, "resolv.conf: cannot read it", id="missing"),
        pytest.param("", "resolv.conf: has no nameserver line", id="empty"),
        pytest.param("nameserver dns.example\n", "'dns.example' is not an IP address", id="name"),
    ],
)
def test_an_unusable_resolv_conf_is_named_in_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str | None, message: str
) -> None:
    monkeypatch.delenv("RESOLVER_SERVER")
    conf = tmp_path / "resolv.conf"
    if text is not None:
        conf.write_text(text)
    result = invoke("www.example.com", "--resolv-conf", str(conf))
    assert result.exit_code == 10
    assert_one_line_error(result.stderr)
    assert f"unusable server address: {conf}" in result.stderr
    assert message in result.stderr


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
        pytest.param(["a.com", "-t", "NOSUCHTYPE", "@127.0.0.1"], 2, id="unknown-type"),
        pytest.param(["a.com", "--bogus"], 2, id="unknown-option"),
        pytest.param(["a.com", "+bogus"], 2, id="unknown-plus-option"),
        pytest.param(["a.com", "@not_a_host"], 10, id="not-a-host"),
        pytest.param(["a.com", "@1.2.3.4.5"], 10, id="five-octets"),
        pytest.param(["a.com", "@127.0.0.1", "-p", "0"], 2, id="port-0"),
        pytest.param(["a.com", "@127.0.0.1", "-p", "70000"], 2, id="port-70000"),
        pytest.param(["a.com", "--timeout", "0.5"], 9, id="closed-port"),
    ],
)
def test_subprocess_errors_are_one_line_with_their_exit_code(args: list[str], code: int) -> None:
    done = run(*args)
    assert done.returncode == code, done.stderr
    assert_one_line_error(done.stderr)
    assert done.stdout == ""


def test_a_query_imports_no_event_loop_pool_or_transport(auth: ThreadedAuthority) -> None:
    script = (
        "import sys\n"
        "from resolver.cli import main\n"
        "try:\n"
        f"    main(['query', '{auth.at}', '-p', '{auth.port}', 'www.example.com', '+short'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "heavy = ('asyncio', 'uvloop', 'resolver.pool', 'resolver.transport', 'resolver.config')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "127.1.0.1\n[]\n"


def test_the_console_script_runs_a_query_without_click_or_the_daemon(
    auth: ThreadedAuthority,
) -> None:
    """``resolver query`` is dispatched before click is imported; nothing of the daemon, the
    event loop, OpenSSL's hmac (for random IDs), dnslib (an A record is presented from the raw
    bytes) or dataclasses is loaded for a one-shot query."""
    script = (
        "import sys\n"
        f"sys.argv = ['resolver', 'query', '{auth.at}', '-p', '{auth.port}', 'www.example.com',"
        " '+short']\n"
        "from resolver.console import run\n"
        "try:\n"
        "    run()\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "heavy = ('asyncio', 'uvloop', 'click', 'hmac', 'secrets', 'resolver.cli', 'dnslib',\n"
        "    'dataclasses', 'inspect',\n"
        "    'resolver.pool', 'resolver.transport', 'resolver.config', 'resolver.server',\n"
        "    'resolver.daemon', 'resolver.engine', 'resolver.cache')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "127.1.0.1\n[]\n"


def test_query_help_through_the_console_script_is_clicks_help() -> None:
    done = run("--help")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    # click's help (its line wrapping follows the terminal's width, so compare the words).
    assert done.stdout.startswith("Usage: python -m resolver query [@SERVER] [OPTIONS] NAME...")
    assert done.stdout.split()[6:] == invoke("--help").output.split()[4:]
