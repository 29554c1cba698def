"""Upstream syntax: plain addresses, tls:// and https:// with names, ports and pins; the
listeners' TLS settings."""

from __future__ import annotations

import pytest

from resolver.config import (
    EncryptedUpstream,
    ServerConfig,
    config_from_mapping,
    parse_upstream,
)
from resolver.errors import ConfigError

PIN = "A" * 43 + "="


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("9.9.9.9", ("9.9.9.9", 53)),
        ("[::1]:5353", ("::1", 5353)),
        (
            "tls://1.1.1.1#cloudflare-dns.com",
            EncryptedUpstream(
                protocol="tls", host="1.1.1.1", port=853, tls_name="cloudflare-dns.com"
            ),
        ),
        ("tls://[::1]:8853", EncryptedUpstream(protocol="tls", host="::1", port=8853)),
        ("TLS://127.0.0.1:853", EncryptedUpstream(protocol="tls", host="127.0.0.1", port=853)),
        (
            f"tls://127.0.0.1?pin-sha256={PIN}#dns.test",
            EncryptedUpstream(
                protocol="tls", host="127.0.0.1", port=853, tls_name="dns.test", pins=(PIN,)
            ),
        ),
        (
            "https://dns.example/dns-query",
            EncryptedUpstream(protocol="https", host="dns.example", port=443),
        ),
        (
            "https://127.0.0.1:8443/q#dns.test",
            EncryptedUpstream(
                protocol="https", host="127.0.0.1", port=8443, path="/q", tls_name="dns.test"
            ),
        ),
    ],
    ids=["plain", "plain-v6", "tls-name", "tls-v6-port", "scheme-case", "pin", "https", "https-ip"],
)
def test_upstream_syntax_parses(text: str, expected: object) -> None:
    assert parse_upstream(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("tls://dns.example", "not an IP address"),
        ("quic://1.1.1.1", "unknown scheme"),
        ("tls://1.1.1.1:0", "not a number from 1"),
        ("tls://1.1.1.1/path", "no path"),
        ("tls://1.1.1.1?pin=abc", "pin-sha256"),
        ("tls://[::1", "bracketed"),
    ],
    ids=["tls-name-host", "scheme", "port", "tls-path", "pin", "bracket"],
)
def test_bad_upstream_is_a_config_error(text: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        parse_upstream(text, name="forwarder.upstreams")


def test_encrypted_upstreams_in_toml_forwarder_and_domains() -> None:
    config = config_from_mapping(
        {
            "forwarder": {
                "upstreams": ["tls://127.0.0.1:853#dns.test", "127.0.0.1:5300"],
                "bootstrap": ["127.0.0.9"],
                "domains": [{"name": "corp.test", "upstreams": ["https://127.0.0.1/dns-query"]}],
            },
            "transport": {"tls_ca": "/tmp/ca.pem", "max_connections": 2},
        }
    )
    first = config.forwarder.upstreams[0]
    assert isinstance(first, EncryptedUpstream)
    assert str(first) == "tls://127.0.0.1:853#dns.test"
    assert config.forwarder.bootstrap == (("127.0.0.9", 53),)
    assert isinstance(config.forwarder.domains[0].upstreams[0], EncryptedUpstream)
    assert config.transport.max_connections == 2


def test_tls_listener_needs_certificate_and_key() -> None:
    with pytest.raises(ConfigError, match=r"server\.tls_cert"):
        ServerConfig(listen_tls=(("127.0.0.1", 853),))


def test_tls_listener_port_defaults_to_853() -> None:
    config = config_from_mapping(
        {
            "forwarder": {"upstreams": ["127.0.0.1:5300"]},
            "server": {"listen_tls": ["127.0.0.1"], "tls_cert": "c.pem", "tls_key": "k.pem"},
        }
    )
    assert config.server.listen_tls == (("127.0.0.1", 853),)
