"""Config: validation names the field and the reason; TOML and flags build one Config."""

from __future__ import annotations

from pathlib import Path

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


def test_recursive_mode_is_refused_until_it_exists() -> None:
    with pytest.raises(ConfigError) as info:
        Config(mode="recursive")
    assert info.value.field == "mode"


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: ForwarderConfig(policy="fastest-ish"), "forwarder.policy"),  # type: ignore[arg-type]
        (lambda: ForwarderConfig(upstream_timeout=0), "forwarder.upstream_timeout"),
        (lambda: ServerConfig(allow=("not-a-net",)), "server.allow"),
        (lambda: ServerConfig(listen=()), "server.listen"),
        (lambda: SocketPoolConfig(max_uses=0), "pool.max_uses"),
        (lambda: SocketPoolConfig(min_size=9, max_size=8), "pool.max_size"),
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
