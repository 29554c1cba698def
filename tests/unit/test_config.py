"""Config: validation names the field and the reason; TOML and flags build one Config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from resolver.config import (
    Config,
    ForwarderConfig,
    ServerConfig,
    SocketPoolConfig,
    config_from_mapping,
    load_config,
    parse_address,
)
from resolver.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1", ("127.0.0.1", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("::1", ("::1", 53)),
        ("[::1]:5353", ("::1", 5353)),
    ],
    ids=["v4", "v4-port", "v6", "v6-port"],
)
def test_parse_address_accepts_ip_with_optional_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text, 53) == expected


@pytest.mark.parametrize(
    "text",
    ["dns.example", "127.0.0.1:99999", "127.0.0.1:x", "[::1", "[::1]x", "1.2.3.4.5"],
    ids=["hostname", "port-range", "port-text", "unclosed", "junk", "five-octets"],
)
def test_parse_address_rejects_with_the_field_named(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_address(text, 53, name="forwarder.upstreams")
    assert info.value.field == "forwarder.upstreams"


def test_forward_mode_needs_an_upstream() -> None:
    with pytest.raises(ConfigError, match=r"forwarder\.upstreams"):
        Config()


def test_recursive_mode_needs_no_upstream() -> None:
    config = Config(mode="recursive")
    assert config.recursion.port == 53
    assert config.recursion.qname_minimisation
    assert config.recursion.randomize_case


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"port": 0}, "recursion.port"),
        ({"max_queries": 0}, "recursion.max_queries"),
        ({"server_timeout": 20.0}, "recursion.server_timeout"),
        ({"qname_minimisation": "yes"}, "recursion.qname_minimisation"),
        ({"root_hints": 3}, "recursion.root_hints"),
    ],
    ids=["port", "max-queries", "server-timeout-above-query-timeout", "not-a-bool", "hints"],
)
def test_bad_recursion_settings_name_the_field(settings: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_mapping({"mode": "recursive", "recursion": settings})
    assert info.value.field == field


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: ForwarderConfig(policy="fastest-ish"), "forwarder.policy"),  # type: ignore[arg-type]
        (lambda: ForwarderConfig(upstream_timeout=0), "forwarder.upstream_timeout"),
        (lambda: ServerConfig(allow=("not-a-net",)), "server.allow"),
        (lambda: ServerConfig(listen=()), "server.listen"),
        (lambda: SocketPoolConfig(max_uses=0), "transport.pool.max_uses"),
        (lambda: SocketPoolConfig(min_size=9, max_size=8), "transport.pool.max_size"),
    ],
    ids=["policy", "timeout", "allow", "listen", "max-uses", "sizes"],
)
def test_invalid_values_name_their_field(build: object, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        build()  # type: ignore[operator]
    assert info.value.field == field


def test_toml_document_builds_the_config(tmp_path: Path) -> None:
    path = tmp_path / "resolver.toml"
    path.write_text(
        """
[server]
listen = ["127.0.0.1:5353"]

[forwarder]
upstreams = ["127.0.0.4", "[::1]:5300"]
policy = "round_robin"

[transport]
randomize_case = true
pool = { max_uses = 50 }

[cache]
max_entries = 10
"""
    )
    config = config_from_mapping(load_config(path))
    assert config.server.listen == (("127.0.0.1", 5353),)
    assert config.forwarder.upstreams == (("127.0.0.4", 53), ("::1", 5300))
    assert config.forwarder.policy == "round_robin"
    assert config.transport.randomize_case is True
    assert config.transport.pool.max_uses == 50
    assert config.cache.max_entries == 10


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"forwarder": {"upstreams": ["127.0.0.1"], "retries": 3}}, "forwarder.retries"),
        ({"bogus": {}, "forwarder": {"upstreams": ["127.0.0.1"]}}, "bogus"),
        ({"forwarder": {"upstreams": "127.0.0.1"}}, "forwarder.upstreams"),
        (
            {"forwarder": {"upstreams": ["127.0.0.1"]}, "cache": {"ttl_floor": -1}},
            "cache.ttl_floor",
        ),
    ],
    ids=["unknown-key", "unknown-section", "upstreams-not-list", "negative-floor"],
)
def test_bad_documents_name_the_field(document: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_mapping(document)
    assert info.value.field == field


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[server\nlisten = 1")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.field == str(path)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.toml"):
        load_config(tmp_path / "missing.toml")


_UPSTREAM = {"upstreams": ["127.0.0.1:5300"]}


@pytest.mark.parametrize(
    ("document", "field"),
    [
        pytest.param(
            {"transport": {"randomize_case": "false"}}, "transport.randomize_case", id="str-bool"
        ),
        pytest.param(
            {"transport": {"randomize_case": 0}}, "transport.randomize_case", id="int-bool"
        ),
        pytest.param(
            {"transport": {"unwanted_reply_threshold": 1.5}},
            "transport.unwanted_reply_threshold",
            id="threshold-float",
        ),
        pytest.param(
            {"transport": {"unwanted_reply_threshold": -1}},
            "transport.unwanted_reply_threshold",
            id="threshold-range",
        ),
        pytest.param({"cache": {"enabled": "no"}}, "cache.enabled", id="enabled-str"),
        pytest.param({"server": {"tcp": 1}}, "server.tcp", id="tcp-int"),
        pytest.param({"server": {"allow": [8]}}, "server.allow", id="allow-int"),
        pytest.param({"server": {"allow": "10.0.0.0/8"}}, "server.allow", id="allow-str"),
        pytest.param({"server": {"listen": [53]}}, "server.listen", id="listen-int"),
        pytest.param(
            {"server": {"max_tcp_connections": 1.5}}, "server.max_tcp_connections", id="int-float"
        ),
        pytest.param({"server": {"max_inflight": True}}, "server.max_inflight", id="int-bool"),
        pytest.param({"server": {"max_inflight": 0}}, "server.max_inflight", id="int-range"),
        pytest.param({"server": {"workers": 0}}, "server.workers", id="workers-zero"),
        pytest.param({"server": {"workers": 65}}, "server.workers", id="workers-too-many"),
        pytest.param({"server": {"workers": "2"}}, "server.workers", id="workers-str"),
        pytest.param(
            {"server": {"tcp_idle_timeout": "10"}}, "server.tcp_idle_timeout", id="seconds-str"
        ),
        pytest.param(
            {"server": {"shutdown_grace": float("inf")}}, "server.shutdown_grace", id="seconds-inf"
        ),
        pytest.param(
            {"server": {"shutdown_grace": float("nan")}}, "server.shutdown_grace", id="seconds-nan"
        ),
        pytest.param({"transport": {"pool": 5}}, "transport.pool", id="pool-int"),
        pytest.param(
            {"transport": {"pool": {"max_age": "5"}}}, "transport.pool.max_age", id="pool-str"
        ),
        pytest.param(
            {"transport": {"pool": {"min_size": 2.0}}}, "transport.pool.min_size", id="pool-float"
        ),
        pytest.param({"transport": {"edns_size": 1232.0}}, "transport.edns_size", id="edns-float"),
        pytest.param(
            {"forwarder": {"upstream_timeout": "2"}}, "forwarder.upstream_timeout", id="timeout-str"
        ),
        pytest.param(
            {"forwarder": {"upstream_timeout": 6, "query_timeout": 5}},
            "forwarder.upstream_timeout",
            id="timeout-above-query-timeout",
        ),
        pytest.param({"forwarder": {"policy": 1}}, "forwarder.policy", id="policy-int"),
        pytest.param({"forwarder": {"down_after": 2.5}}, "forwarder.down_after", id="down-after"),
        pytest.param(
            {"cache": {"prefetch_fraction": "0.1"}}, "cache.prefetch_fraction", id="fraction"
        ),
        pytest.param({"mode": ["forward"]}, "mode", id="mode-list"),
        pytest.param({"server": 5}, "server", id="section-not-table"),
        pytest.param({"server": {"outside_allow": "deny"}}, "server.outside_allow", id="outside"),
        pytest.param(
            {"server": {"udp_receive_buffer": "4M"}}, "server.udp_receive_buffer", id="rcvbuf"
        ),
        pytest.param({"server": {"udp_send_buffer": -1}}, "server.udp_send_buffer", id="sndbuf"),
        pytest.param(
            {"server": {"max_tcp_outstanding": 0}}, "server.max_tcp_outstanding", id="outstanding"
        ),
        pytest.param(
            {"server": {"tcp_write_timeout": 0}}, "server.tcp_write_timeout", id="write-timeout"
        ),
        pytest.param(
            {"server": {"tcp_busy_idle_timeout": True}},
            "server.tcp_busy_idle_timeout",
            id="busy-timeout",
        ),
    ],
)
def test_values_of_the_wrong_type_or_range_name_their_field(
    document: dict[str, Any], field: str
) -> None:
    document = {**document, "forwarder": {**_UPSTREAM, **document.get("forwarder", {})}}
    with pytest.raises(ConfigError) as info:
        config_from_mapping(document)
    assert info.value.field == field


def test_whole_numbers_are_seconds_and_lists_become_tuples() -> None:
    server = ServerConfig(listen=[("127.0.0.1", 53)], allow=["10.0.0.0/8"])  # type: ignore[arg-type]
    assert server.listen == (("127.0.0.1", 53),)
    assert server.allow == ("10.0.0.0/8",)
    forwarder = ForwarderConfig(upstreams=(("::1", 53),), upstream_timeout=1, query_timeout=1)
    assert forwarder.upstream_timeout == 1


@pytest.mark.parametrize(
    ("listen", "upstream", "loops"),
    [
        pytest.param("127.0.0.1:53", "127.0.0.1:53", True, id="same"),
        pytest.param("127.0.0.1:53", "127.0.0.1:5300", False, id="other-port"),
        pytest.param("127.0.0.1:53", "127.0.0.2:53", False, id="other-address"),
        pytest.param("0.0.0.0:53", "127.0.0.1:53", True, id="v4-wildcard"),
        pytest.param("[::]:53", "127.0.0.1:53", True, id="dual-stack-wildcard"),
        pytest.param("[::]:53", "[::1]:53", True, id="v6-wildcard"),
        pytest.param("0.0.0.0:53", "[::1]:53", False, id="v4-wildcard-v6-upstream"),
        pytest.param("[::1]:53", "[0:0::1]:53", True, id="v6-spelled-otherwise"),
        pytest.param("127.0.0.1:53", "[::ffff:127.0.0.1]:53", True, id="v4-mapped"),
        pytest.param("0.0.0.0:53", "192.0.2.1:53", False, id="wildcard-remote"),
    ],
)
def test_an_upstream_that_is_the_daemons_own_listener_is_refused(
    listen: str, upstream: str, loops: bool
) -> None:
    document: dict[str, Any] = {
        "server": {"listen": [listen]},
        "forwarder": {"upstreams": [upstream]},
    }
    if not loops:
        assert config_from_mapping(document).forwarder.upstreams
        return
    with pytest.raises(ConfigError) as info:
        config_from_mapping(document)
    assert info.value.field == "forwarder.upstreams"


def test_a_listen_address_given_twice_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        ServerConfig(listen=(("127.0.0.1", 53), ("127.0.0.1", 53)))
    assert info.value.field == "server.listen"


def test_a_file_that_is_not_utf8_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[server]\nallow = ["\xe9"]\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.field == str(path)
    assert "UTF-8" in info.value.reason
