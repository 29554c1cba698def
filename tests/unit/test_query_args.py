"""resolver query's command line read as dig reads it, and the server choice (resolv.conf,
$RESOLVER_SERVER, @SERVER as an address or a host name): no sockets, no system resolver."""

from __future__ import annotations

from pathlib import Path

import pytest

from resolver.dig import Display
from resolver.errors import ConfigError, WireError
from resolver.query import (
    Invocation,
    QueryOptions,
    Question,
    nameserver_from_resolv_conf,
    parse_command_line,
    reverse_name,
    server_address,
    to_ascii_name,
)

MX, TXT, PTR, ANY, CH = 15, 16, 12, 255, 3


def questions(*args: str) -> list[Question]:
    return list(parse_command_line(args).questions)


# --- questions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(["example.com"], [Question("example.com.")], id="name-only"),
        pytest.param(["example.com", "MX"], [Question("example.com.", MX)], id="type-after"),
        pytest.param(["mx", "example.com"], [Question("example.com.", MX)], id="type-before"),
        pytest.param(["example.com", "IN", "MX"], [Question("example.com.", MX)], id="class-type"),
        pytest.param(["example.com", "MX", "CH"], [Question("example.com.", MX, CH)], id="mx-ch"),
        pytest.param(["-t", "MX", "example.com"], [Question("example.com.", MX)], id="dash-t"),
        pytest.param(["-tmx", "example.com"], [Question("example.com.", MX)], id="dash-t-joined"),
        pytest.param(["example.com", "-c", "CH"], [Question("example.com.", 1, CH)], id="dash-c"),
        pytest.param(["-c", "ANY", "a.com"], [Question("a.com.", 1, ANY)], id="dash-c-any"),
        pytest.param(["example.com", "TYPE65534"], [Question("example.com.", 65534)], id="generic"),
        pytest.param(["."], [Question(".")], id="root"),
        pytest.param(["-q", "mx"], [Question("mx.")], id="dash-q-name-like-a-type"),
        pytest.param(
            ["example.com", "example.org"],
            [Question("example.com."), Question("example.org.")],
            id="two-names",
        ),
        pytest.param(
            ["mx", "a.com", "b.com", "txt"],
            [Question("a.com.", MX), Question("b.com.", TXT)],
            id="default-type-then-own-type",
        ),
        pytest.param(
            ["a.com", "mx", "b.com"],
            [Question("a.com.", MX), Question("b.com.")],
            id="type-after-a-name-is-its-own",
        ),
        pytest.param(
            ["-x", "127.0.0.1"], [Question("1.0.0.127.in-addr.arpa.", PTR)], id="reverse-v4"
        ),
        pytest.param(
            ["-x", "2001:db8::1"],
            [Question("1.0.0.0." + "0." * 20 + "8.b.d.0.1.0.0.2.ip6.arpa.", PTR)],
            id="reverse-v6",
        ),
    ],
)
def test_questions_are_read_as_dig_reads_them(args: list[str], expected: list[Question]) -> None:
    assert questions(*args) == expected


def test_a_second_type_for_one_question_wins_with_digs_warning() -> None:
    invocation = parse_command_line(["example.com", "ANY", "ANY"])
    assert invocation.questions == (Question("example.com.", ANY),)
    assert invocation.warnings == (";; Warning, extra type option",)


@pytest.mark.parametrize(
    ("args", "warned"),
    [
        pytest.param(["mx", "a.com", "b.com", "AAAA"], False, id="inherited-type-is-not-given"),
        pytest.param(["-x", "127.0.0.1", "A"], True, id="after-dash-x"),
        pytest.param(["a.com", "CH", "IN"], True, id="second-class"),
        pytest.param(["mx", "a", "b.com"], True, id="second-default-type"),
    ],
)
def test_extra_type_or_class_warnings_as_dig_gives_them(args: list[str], warned: bool) -> None:
    assert bool(parse_command_line(args).warnings) is warned


def test_server_port_family_and_resolv_conf_are_read_anywhere() -> None:
    invocation = parse_command_line(
        ["example.com", "@127.0.0.1", "-p", "5353", "-4", "--resolv-conf=/tmp/r.conf", "mx"]
    )
    assert invocation == Invocation(
        questions=(Question("example.com.", MX),),
        server="127.0.0.1",
        port=5353,
        family=4,
        resolv_conf=Path("/tmp/r.conf"),
    )


# --- options --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "options"),
    [
        pytest.param([], QueryOptions(), id="defaults"),
        pytest.param(["+tcp"], QueryOptions(tcp=True), id="tcp"),
        pytest.param(["--tcp"], QueryOptions(tcp=True), id="long-tcp"),
        pytest.param(["+norecurse"], QueryOptions(recurse=False), id="norecurse"),
        pytest.param(["--norecurse"], QueryOptions(recurse=False), id="long-norecurse"),
        pytest.param(["+dnssec"], QueryOptions(dnssec=True), id="dnssec"),
        pytest.param(["+cd"], QueryOptions(cd=True), id="cd"),
        pytest.param(["+noadflag"], QueryOptions(ad=False), id="noadflag"),
        pytest.param(["+bufsize=4096"], QueryOptions(edns=4096), id="bufsize"),
        pytest.param(["+noedns"], QueryOptions(edns=None), id="noedns"),
        pytest.param(["+noedns", "+dnssec"], QueryOptions(dnssec=True), id="dnssec-needs-edns"),
        pytest.param(["+nsid"], QueryOptions(nsid=True), id="nsid"),
        pytest.param(["+time=2", "+tries=1"], QueryOptions(timeout=2, tries=1), id="time-tries"),
        pytest.param(["+retry=0"], QueryOptions(tries=1), id="retry"),
        pytest.param(
            ["--timeout", "0.5", "--tries=2"], QueryOptions(timeout=0.5, tries=2), id="long"
        ),
        pytest.param(["+ignore"], QueryOptions(ignore_tc=True), id="ignore"),
    ],
)
def test_options_set_the_query(args: list[str], options: QueryOptions) -> None:
    assert parse_command_line(["a.com", *args]).options == options


@pytest.mark.parametrize(
    ("args", "display"),
    [
        pytest.param([], Display(), id="defaults"),
        pytest.param(["+short"], Display(style="short"), id="short"),
        pytest.param(["--short"], Display(style="short"), id="long-short"),
        pytest.param(["--json"], Display(style="json"), id="json"),
        pytest.param(
            ["+noall", "+answer"],
            Display(comments=False, question=False, authority=False, additional=False, stats=False),
            id="noall-answer",
        ),
        pytest.param(["+nostats", "+nocomments"], Display(stats=False, comments=False), id="no"),
        pytest.param(["+multiline"], Display(multiline=True), id="multiline"),
        pytest.param(["+idnout"], Display(idnout=True), id="idnout"),
        pytest.param(["+nocmd"], Display(), id="cmd-is-accepted"),
    ],
)
def test_options_set_the_display(args: list[str], display: Display) -> None:
    assert parse_command_line(["a.com", *args]).display == display


def test_idnout_defaults_to_whether_stdout_is_a_terminal() -> None:
    assert parse_command_line(["a.com"], is_tty=True).display.idnout
    assert not parse_command_line(["a.com", "+noidnout"], is_tty=True).display.idnout


def test_help_needs_no_name() -> None:
    assert parse_command_line(["--help"]).help
    assert parse_command_line(["-h"]).help


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["+trace", "a.com"], id="plus"),
        pytest.param(["a.com", "--trace"], id="long"),
        pytest.param(["a.com", "+notrace", "+trace"], id="last-wins"),
    ],
)
def test_trace_is_asked_for_in_both_spellings(args: list[str]) -> None:
    invocation = parse_command_line(args)
    assert invocation.trace
    assert invocation.root_hints is None  # the package's copy of IANA's


def test_trace_reads_the_root_hints_port_and_family() -> None:
    invocation = parse_command_line(["+trace", "-p", "5300", "--root-hints", "h", "a.com", "-4"])
    assert (invocation.trace, invocation.root_hints) == (True, Path("h"))
    assert (invocation.port, invocation.family) == (5300, 4)
    assert not parse_command_line(["a.com", "+trace", "+notrace"]).trace


def test_batch_file_gives_one_question_per_line(tmp_path: Path) -> None:
    batch = tmp_path / "questions"
    batch.write_text("# comment\nwww.example.com\n\nexample.com mx\n-x 127.0.0.1\ntxt a.com\n")
    assert questions("-f", str(batch), "b.com") == [
        Question("www.example.com."),
        Question("example.com.", MX),
        Question("1.0.0.127.in-addr.arpa.", PTR),
        Question("a.com.", TXT),
        Question("b.com."),
    ]


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        pytest.param([], ConfigError, "NAME: missing", id="no-name"),
        pytest.param(["@127.0.0.1", "+short"], ConfigError, "NAME: missing", id="server-only"),
        pytest.param(["a.com", "@1.1.1.1", "@2.2.2.2"], ConfigError, "given twice", id="two-at"),
        pytest.param(["a.com", "@"], ConfigError, "needs an address", id="bare-at"),
        pytest.param(["a.com", "+bogus"], ConfigError, r"\+bogus: unknown dig option", id="plus"),
        pytest.param(["a.com", "+time"], ConfigError, r"needs a value: \+time=", id="no-value"),
        pytest.param(["a.com", "+tcp=1"], ConfigError, "takes no value", id="flag-value"),
        pytest.param(["a.com", "+time=soon"], ConfigError, "'soon' is not a number", id="word"),
        pytest.param(["a.com", "--frob"], ConfigError, "--frob: no such option", id="long"),
        pytest.param(["a.com", "-z"], ConfigError, "-z: no such option", id="short-option"),
        pytest.param(["a.com", "-t"], ConfigError, "-t: needs a value", id="dash-t-alone"),
        pytest.param(["a.com", "-t", "BOGUS"], ConfigError, "unknown type 'BOGUS'", id="type"),
        pytest.param(["a.com", "-c", "XX"], ConfigError, "unknown class 'XX'", id="class"),
        pytest.param(["-x", "1.2.3"], ConfigError, "-x: '1.2.3' is not an IPv4 or IPv6", id="x"),
        pytest.param(["a.com", "-4", "-6"], ConfigError, "exclude each other", id="4-and-6"),
        pytest.param(["a.com", "+short", "--json"], ConfigError, "exclude", id="short-json"),
        pytest.param(["a.com", "-p", "0"], ConfigError, "port 0", id="port-0"),
        pytest.param(["a.com", "-p", "http"], ConfigError, "'http' is not a number", id="port-w"),
        pytest.param(["a.com", "--timeout", "inf"], ConfigError, "at most 300", id="timeout-inf"),
        pytest.param(["a.com", "+time=1e9"], ConfigError, "at most 300", id="timeout-huge"),
        pytest.param(["a.com", "--timeout", "nan"], ConfigError, "--timeout", id="timeout-nan"),
        pytest.param(["a.com", "--timeout", "0"], ConfigError, "--timeout", id="timeout-0"),
        pytest.param(["a.com", "--tries", "0"], ConfigError, "--tries", id="tries-0"),
        pytest.param(["a.com", "+bufsize=70000"], ConfigError, "0 to 65535", id="bufsize"),
        pytest.param(["a.com", "-f", "/nonexistent/q"], ConfigError, "-f: cannot read", id="f"),
        pytest.param(
            ["a.com", "--root-hints", "h"], ConfigError, "only with \\+trace", id="hints-alone"
        ),
        pytest.param(["a.com", "+trace", "@1.1.1.1"], ConfigError, "@SERVER: ", id="trace-at"),
        pytest.param(["a.com", "+trace", "--json"], ConfigError, "--json: ", id="trace-json"),
        pytest.param(["a.com", "--root-hints"], ConfigError, "needs a value", id="hints-no-file"),
        pytest.param(["a" * 64 + ".com"], WireError, "64 bytes, the limit is 63", id="label"),
        pytest.param(["abcdefghi." * 26], WireError, "limit is 255", id="long-name"),
        pytest.param(["a..com"], WireError, "empty label", id="empty-label"),
        pytest.param(["a\\256.com"], WireError, "over 255", id="escape-over-255"),
    ],
)
def test_parse_command_line_rejects(args: list[str], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        parse_command_line(args)


def test_a_bad_line_in_a_batch_file_is_named(tmp_path: Path) -> None:
    batch = tmp_path / "questions"
    batch.write_text("a.com\nb.com +bogus\n")
    with pytest.raises(ConfigError, match=r"questions:2: \+bogus: unknown dig option"):
        parse_command_line(["-f", str(batch)])


# --- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "wire"),
    [
        pytest.param("\\119ww.example", b"\x03www\x07example\x00", id="decimal-escape"),
        pytest.param("a\\.b.example", b"\x03a.b\x07example\x00", id="escaped-dot"),
        pytest.param("a\\\\.example", b"\x02a\\\x07example\x00", id="escaped-backslash"),
        pytest.param("sp\\032ace.", b"\x06sp ace\x00", id="space"),
    ],
)
def test_escapes_in_names_are_read_as_dig_reads_them(text: str, wire: bytes) -> None:
    [question] = questions(text)
    assert question.wire_name == wire


def test_a_name_ending_in_an_escaped_dot_is_relative() -> None:
    assert questions("a\\.")[0].name == "a\\.."


@pytest.mark.parametrize(
    ("text", "ascii_name"),
    [
        pytest.param("bücher.example", "xn--bcher-kva.example", id="lower"),
        pytest.param("Bücher.example", "xn--bcher-kva.example", id="uts46-maps-case"),
        pytest.param("faß.de", "xn--fa-hia.de", id="idna2008-not-transitional"),
        pytest.param("plain.example", "plain.example", id="ascii-unchanged"),
    ],
)
def test_idn_names_are_sent_as_a_labels(text: str, ascii_name: str) -> None:
    assert to_ascii_name(text) == ascii_name
    assert questions(text)[0].name == ascii_name + "."


def test_a_name_idna_refuses_is_a_wire_error() -> None:
    with pytest.raises(WireError, match="not a valid internationalized name"):
        to_ascii_name("a\u200db.example")


def test_reverse_name_of_both_families() -> None:
    assert reverse_name("192.0.2.1") == "1.2.0.192.in-addr.arpa."
    assert reverse_name("::1").endswith(".ip6.arpa.")
    assert reverse_name("::1").count(".") == 34


# --- the server -----------------------------------------------------------------------------


def resolv_conf(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "resolv.conf"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "nameserver 192.0.2.53\nnameserver 192.0.2.54\n", "192.0.2.53", id="first-wins"
        ),
        pytest.param(
            "# generated\nsearch example.com\noptions ndots:2\n  nameserver\t198.51.100.1 # main\n",
            "198.51.100.1",
            id="comments-and-options",
        ),
        pytest.param(
            "; nameserver 192.0.2.1\n#nameserver 192.0.2.2\nnameserver 2001:db8::53\n",
            "2001:db8::53",
            id="commented-out-and-ipv6",
        ),
        pytest.param(
            "nameserver dns.example\nnameserver 192.0.2.9\n", "192.0.2.9", id="skips-non-addresses"
        ),
        pytest.param("nameserver fe80::1%eth0\n", "fe80::1%eth0", id="ipv6-scope"),
    ],
)
def test_nameserver_from_resolv_conf(tmp_path: Path, text: str, expected: str) -> None:
    assert nameserver_from_resolv_conf(resolv_conf(tmp_path, text)) == expected


def test_nameserver_from_resolv_conf_of_one_family(tmp_path: Path) -> None:
    path = resolv_conf(tmp_path, "nameserver 2001:db8::53\nnameserver 192.0.2.53\n")
    assert nameserver_from_resolv_conf(path, 4) == "192.0.2.53"
    assert nameserver_from_resolv_conf(path, 6) == "2001:db8::53"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        pytest.param(None, "resolv.conf: cannot read it: No such file", id="missing"),
        pytest.param("", "resolv.conf: has no nameserver line", id="empty"),
        pytest.param("search example.com\n", "has no nameserver line", id="no-nameserver"),
        pytest.param(
            "nameserver dns.example\n",
            r"no usable nameserver \(line 1: 'dns.example' is not an IP address\)",
            id="not-an-address",
        ),
        pytest.param("nameserver\n", "line 1: '' is not an IP address", id="no-value"),
    ],
)
def test_an_unusable_resolv_conf_is_an_error_naming_it(
    tmp_path: Path, text: str | None, match: str
) -> None:
    path = tmp_path / "resolv.conf"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        server_address(None, None, resolv_conf=path)


def test_default_server_is_the_first_resolv_conf_nameserver(tmp_path: Path) -> None:
    path = resolv_conf(tmp_path, "nameserver 192.0.2.53\nnameserver 192.0.2.54\n")
    assert server_address(None, None, resolv_conf=path) == ("192.0.2.53", 53)
    assert server_address(None, 5300, resolv_conf=path) == ("192.0.2.53", 5300)


def test_default_ipv6_server_from_resolv_conf(tmp_path: Path) -> None:
    path = resolv_conf(tmp_path, "nameserver 2001:db8::53\n")
    assert server_address(None, None, resolv_conf=path) == ("2001:db8::53", 53)


def test_env_server_overrides_resolv_conf_and_at_server_overrides_both(tmp_path: Path) -> None:
    path = resolv_conf(tmp_path, "nameserver 192.0.2.53\n")
    env = "127.0.0.1:5353"
    assert server_address(None, None, env_server=env, resolv_conf=path) == ("127.0.0.1", 5353)
    assert server_address("::1", None, env_server=env, resolv_conf=path) == ("::1", 53)
    assert server_address("[::1]:54", None, env_server=env, resolv_conf=path) == ("::1", 54)
    assert server_address("[::1]:54", 55, env_server=env, resolv_conf=path) == ("::1", 55)


def fake_lookup(answers: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    asked: list[tuple[str, int]] = []

    def lookup(host: str, port: int, family: int) -> list[str]:
        asked.append((host, family))
        if host not in answers:
            raise OSError(-2, "Name or service not known")
        return answers[host]

    return lookup, asked


def test_a_host_name_server_is_resolved_through_the_lookup(tmp_path: Path) -> None:
    lookup, asked = fake_lookup({"ns.example": ["192.0.2.7", "2001:db8::7"]})
    assert server_address("ns.example", None, lookup=lookup) == ("192.0.2.7", 53)
    assert server_address("ns.example:5300", None, lookup=lookup) == ("192.0.2.7", 5300)
    assert asked[0][0] == "ns.example"


def test_a_host_name_that_does_not_resolve_is_named() -> None:
    lookup, _ = fake_lookup({})
    with pytest.raises(ConfigError, match=r"couldn't get address for 'ns\.example': Name or"):
        server_address("ns.example", None, lookup=lookup)


@pytest.mark.parametrize(
    ("server", "port", "match"),
    [
        pytest.param("not_a_host", None, "@SERVER: 'not_a_host' is not an IP address", id="name"),
        pytest.param("1.2.3.4.5", None, "not an IP address", id="five-octets"),
        pytest.param("127.0.0.1:0", None, "@SERVER: port '0'", id="at-port-0"),
        pytest.param("127.0.0.1:70000", None, "@SERVER: port '70000'", id="at-port-70000"),
        pytest.param("[::1", None, "unclosed", id="unclosed-bracket"),
        pytest.param("255.255.255.255", None, "broadcast", id="broadcast"),
        pytest.param("ff02::fb", None, "multicast", id="multicast"),
    ],
)
def test_server_address_rejects(server: str, port: int | None, match: str, tmp_path: Path) -> None:
    lookup, asked = fake_lookup({})
    with pytest.raises(ConfigError, match=match):
        server_address(server, port, resolv_conf=tmp_path / "absent", lookup=lookup)
    assert asked == []  # rejected without asking any resolver


def test_server_address_of_the_wrong_family_is_refused() -> None:
    with pytest.raises(ConfigError, match="::1 is not an IPv4 address"):
        server_address("::1", None, family=4)


def test_query_module_exports_the_command_line_and_server_choice() -> None:
    import resolver.demo
    import resolver.query

    assert sorted(resolver.query.__all__) == [
        "DEFAULT_RESOLV_CONF",
        "Invocation",
        "QueryOptions",
        "Question",
        "nameserver_from_resolv_conf",
        "parse_command_line",
        "reverse_name",
        "server_address",
        "to_ascii_name",
    ]
    assert sorted(resolver.demo.__all__) == ["DEMO_QUESTIONS", "demo_zones", "run_demo"]


def test_query_options_keep_their_fields_through_copy_and_pickle() -> None:
    import copy
    import pickle

    options = QueryOptions(tcp=True, tries=2, edns=None)
    for clone in (copy.copy(options), copy.deepcopy(options), pickle.loads(pickle.dumps(options))):
        assert clone == options
        assert type(clone) is QueryOptions


def test_query_options_take_keywords_only() -> None:
    with pytest.raises(TypeError):
        QueryOptions(5.0)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["+tls", "x."], {"tls": True}),
        (["+tls", "+tls-ca=/ca.pem", "+tls-hostname=Dns.Test", "x."], {"tls_ca": "/ca.pem"}),
        (["+https", "x."], {"https": "/dns-query"}),
        (["+https=/q", "x."], {"https": "/q"}),
        (["+https=https://doh.test/dns", "x."], {"https": "/dns"}),
        (["+https", "+nohttps", "x."], {"https": None}),
    ],
    ids=["tls", "tls-checked", "https", "https-path", "https-url", "nohttps"],
)
def test_kdig_encryption_options(args: list[str], expected: dict[str, object]) -> None:
    options = parse_command_line(args).options
    for key, value in expected.items():
        assert getattr(options, key) == value
    if "+tls-hostname=Dns.Test" in args:
        assert options.tls_hostname == "Dns.Test"


@pytest.mark.parametrize("arg", ["+tls-ca", "+tls-ca=", "+https=dns", "+tls=1"], ids=str)
def test_bad_kdig_encryption_option_is_a_usage_error(arg: str) -> None:
    with pytest.raises(ConfigError):
        parse_command_line([arg, "x."])
