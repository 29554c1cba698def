"""resolver query's argument parsing and server choice (resolv.conf, env, @SERVER): no sockets."""

from __future__ import annotations

from pathlib import Path

import pytest

from resolver.errors import ConfigError, WireError
from resolver.query import (
    QueryOptions,
    Question,
    nameserver_from_resolv_conf,
    parse_arguments,
    server_address,
)


@pytest.mark.parametrize(
    ("args", "question", "server"),
    [
        pytest.param(["example.com"], Question("example.com."), None, id="name-only"),
        pytest.param(
            ["@127.0.0.1", "example.com."], Question("example.com."), "127.0.0.1", id="at-first"
        ),
        pytest.param(
            ["example.com", "MX", "@::1"], Question("example.com.", 15), "::1", id="at-last"
        ),
        pytest.param(
            ["example.com", "@10.0.0.1:5353", "txt"],
            Question("example.com.", 16),
            "10.0.0.1:5353",
            id="at-middle",
        ),
        pytest.param(
            ["example.com", "IN", "MX"], Question("example.com.", 15, 1), None, id="class-then-type"
        ),
        pytest.param(
            ["example.com", "MX", "CH"], Question("example.com.", 15, 3), None, id="type-then-class"
        ),
        pytest.param(
            ["example.com", "ANY", "ANY"], Question("example.com.", 255, 255), None, id="any-any"
        ),
        pytest.param(
            ["example.com", "TYPE65534"], Question("example.com.", 65534), None, id="generic-type"
        ),
        pytest.param(["."], Question(".", 1), None, id="root"),
    ],
)
def test_parse_arguments_reads_dig_style_arguments(
    args: list[str], question: Question, server: str | None
) -> None:
    assert parse_arguments(args) == (question, server)


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        pytest.param([], ConfigError, "NAME: missing", id="no-name"),
        pytest.param(["@127.0.0.1"], ConfigError, "NAME: missing", id="server-only"),
        pytest.param(
            ["a.com", "@1.1.1.1", "@2.2.2.2"], ConfigError, "given twice", id="two-servers"
        ),
        pytest.param(["a.com", "@"], ConfigError, "needs an address", id="bare-at"),
        pytest.param(["a.com", "BOGUS"], ConfigError, "unknown type 'BOGUS'", id="unknown-type"),
        pytest.param(
            ["a.com", "A", "BOGUS"], ConfigError, "unknown class 'BOGUS'", id="unknown-class"
        ),
        pytest.param(["a.com", "A", "IN", "MX"], ConfigError, "already given", id="extra-argument"),
        pytest.param(["a" * 64 + ".com"], WireError, "64 bytes, the limit is 63", id="long-label"),
        pytest.param(["abcdefghi." * 26], WireError, "limit is 255", id="long-name"),
        pytest.param(["a..com"], WireError, "empty label", id="empty-label"),
    ],
)
def test_parse_arguments_rejects(args: list[str], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        parse_arguments(args)


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
            "nameserver dns.example\nnameserver\nnameserver 192.0.2.9\n",
            "192.0.2.9",
            id="skips-non-addresses",
        ),
        pytest.param("nameserver fe80::1%eth0\n", "fe80::1%eth0", id="ipv6-scope"),
        pytest.param("search example.com\n", None, id="no-nameserver"),
        pytest.param("", None, id="empty"),
    ],
)
def test_nameserver_from_resolv_conf(tmp_path: Path, text: str, expected: str | None) -> None:
    assert nameserver_from_resolv_conf(resolv_conf(tmp_path, text)) == expected


def test_missing_resolv_conf_has_no_nameserver(tmp_path: Path) -> None:
    assert nameserver_from_resolv_conf(tmp_path / "absent") is None


def test_default_server_is_the_first_resolv_conf_nameserver(tmp_path: Path) -> None:
    path = resolv_conf(tmp_path, "nameserver 192.0.2.53\nnameserver 192.0.2.54\n")
    assert server_address(None, None, resolv_conf=path) == ("192.0.2.53", 53)
    assert server_address(None, 5300, resolv_conf=path) == ("192.0.2.53", 5300)


def test_default_ipv6_server_from_resolv_conf(tmp_path: Path) -> None:
    path = resolv_conf(tmp_path, "nameserver 2001:db8::53\n")
    assert server_address(None, None, resolv_conf=path) == ("2001:db8::53", 53)


def test_without_a_nameserver_the_local_host_is_asked(tmp_path: Path) -> None:
    assert server_address(None, None, resolv_conf=tmp_path / "absent") == ("127.0.0.1", 53)


def test_env_server_overrides_resolv_conf_and_at_server_overrides_both(tmp_path: Path) -> None:
    path = resolv_conf(tmp_path, "nameserver 192.0.2.53\n")
    env = "127.0.0.1:5353"
    assert server_address(None, None, env_server=env, resolv_conf=path) == ("127.0.0.1", 5353)
    assert server_address("::1", None, env_server=env, resolv_conf=path) == ("::1", 53)
    assert server_address("[::1]:54", None, env_server=env, resolv_conf=path) == ("::1", 54)
    assert server_address("[::1]:54", 55, env_server=env, resolv_conf=path) == ("::1", 55)


@pytest.mark.parametrize(
    ("server", "port", "match"),
    [
        pytest.param("not-an-ip", None, "@SERVER: 'not-an-ip' is not an IP address", id="name"),
        pytest.param("1.2.3.4.5", None, "not an IP address", id="five-octets"),
        pytest.param("127.0.0.1", 0, "--port: port 0", id="port-0"),
        pytest.param("127.0.0.1", 70000, "--port: port 70000", id="port-70000"),
        pytest.param("127.0.0.1:0", None, "@SERVER: port 0", id="at-port-0"),
        pytest.param("127.0.0.1:70000", None, "@SERVER: port '70000'", id="at-port-70000"),
        pytest.param("[::1", None, "unclosed", id="unclosed-bracket"),
        pytest.param("255.255.255.255", None, "broadcast", id="broadcast"),
        pytest.param("ff02::fb", None, "multicast", id="multicast"),
    ],
)
def test_server_address_rejects(server: str, port: int | None, match: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=match):
        server_address(server, port, resolv_conf=tmp_path / "absent")


def test_bad_env_server_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="RESOLVER_SERVER"):
        server_address(None, None, env_server="resolver.example", resolv_conf=tmp_path / "x")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({"timeout": 0.0}, "--timeout", id="zero-timeout"),
        pytest.param({"timeout": -1.0}, "--timeout", id="negative-timeout"),
        pytest.param({"tries": 0}, "--tries", id="zero-tries"),
    ],
)
def test_query_options_reject(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        QueryOptions(**kwargs)  # type: ignore[arg-type]


def test_query_and_demo_modules_pin_their_public_names() -> None:
    import resolver.demo
    import resolver.query

    assert sorted(resolver.query.__all__) == [
        "DEFAULT_RESOLV_CONF",
        "QueryOptions",
        "Question",
        "ask",
        "nameserver_from_resolv_conf",
        "parse_arguments",
        "run_query",
        "server_address",
    ]
    assert sorted(resolver.demo.__all__) == ["DEMO_QUESTIONS", "demo_zones", "run_demo"]
