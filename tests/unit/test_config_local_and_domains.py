"""Config of the answers of our own (``[local]``) and of per-domain forwarding
(``[[forwarder.domains]]``): defaults, TOML loading, and errors that name the field."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from resolver.config import DomainConfig, ForwarderConfig, LocalConfig, config_from_mapping
from resolver.errors import ConfigError

UPSTREAM = {"upstreams": ["127.0.0.2:53"]}


def load(text: str) -> Any:
    return config_from_mapping(tomllib.loads(text))


def test_local_answers_are_on_and_the_hosts_file_off_by_default() -> None:
    local = LocalConfig()
    assert (local.localhost, local.private_reverse, local.special_reverse) == (True,) * 3
    assert local.special_names is True
    assert local.hosts is None


def test_local_section_loads_switches_and_the_hosts_path() -> None:
    config = load(
        '[forwarder]\nupstreams = ["127.0.0.2"]\n'
        '[local]\nhosts = "/etc/hosts"\nprivate_reverse = false\n'
    )
    assert config.local.hosts == Path("/etc/hosts")
    assert config.local.private_reverse is False
    assert config.local.localhost is True


@pytest.mark.parametrize(
    ("local", "field"),
    [
        ({"localhost": "no"}, "local.localhost"),
        ({"hosts": ""}, "local.hosts"),
        ({"hosts": 5}, "local.hosts"),
        ({"nonsense": True}, "local.nonsense"),
    ],
    ids=["switch-not-bool", "hosts-empty", "hosts-not-text", "unknown"],
)
def test_local_section_errors_name_the_field(local: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_mapping({"forwarder": UPSTREAM, "local": local})
    assert info.value.field == field


def test_forwarder_domains_load_with_normalized_names() -> None:
    config = load(
        '[forwarder]\nupstreams = ["127.0.0.2"]\n'
        '[[forwarder.domains]]\nname = "Corp.Test"\nupstreams = ["127.0.0.62:53"]\n'
        '[[forwarder.domains]]\nname = "168.192.in-addr.arpa."\n'
        'upstreams = ["127.0.0.63", "[::1]:5353"]\npolicy = "round_robin"\n'
    )
    assert config.forwarder.domains == (
        DomainConfig(name="corp.test.", upstreams=(("127.0.0.62", 53),)),
        DomainConfig(
            name="168.192.in-addr.arpa.",
            upstreams=(("127.0.0.63", 53), ("::1", 5353)),
            policy="round_robin",
        ),
    )


@pytest.mark.parametrize(
    ("domain", "field"),
    [
        ({"name": "a..b", "upstreams": ["127.0.0.1"]}, "forwarder.domains.name"),
        ({"name": ".", "upstreams": ["127.0.0.1"]}, "forwarder.domains.name"),
        ({"name": "x" * 64 + ".test", "upstreams": ["127.0.0.1"]}, "forwarder.domains.name"),
        ({"name": 7, "upstreams": ["127.0.0.1"]}, "forwarder.domains.name"),
        ({"name": "a.test", "upstreams": []}, "forwarder.domains.upstreams"),
        ({"name": "a.test", "upstreams": ["dns.test"]}, "forwarder.domains[0].upstreams"),
        ({"name": "a.test", "upstreams": ["127.0.0.1"], "policy": "x"}, "forwarder.domains.policy"),
        ({"upstreams": ["127.0.0.1"]}, "forwarder.domains[0]"),
        ({"name": "a.test", "upstreams": ["127.0.0.1"], "port": 1}, "forwarder.domains[0].port"),
    ],
    ids=[
        "empty-label",
        "root",
        "long-label",
        "not-text",
        "no-upstream",
        "hostname-upstream",
        "policy",
        "no-name",
        "unknown",
    ],
)
def test_forwarder_domain_errors_name_the_field(domain: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_mapping({"forwarder": {**UPSTREAM, "domains": [domain]}})
    assert info.value.field == field


def test_a_domain_listed_twice_is_an_error() -> None:
    twice = tuple(
        DomainConfig(name=n, upstreams=(("127.0.0.1", 53),)) for n in ("a.test", "A.test.")
    )
    with pytest.raises(ConfigError, match=r"a\.test\. is listed more than once"):
        ForwarderConfig(upstreams=(("127.0.0.1", 53),), domains=twice)


def test_domains_must_be_tables() -> None:
    with pytest.raises(ConfigError) as info:
        config_from_mapping({"forwarder": {**UPSTREAM, "domains": ["corp.test"]}})
    assert info.value.field == "forwarder.domains"
