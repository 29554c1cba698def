"""Config of the metrics listener (``[metrics]``, ``--metrics``): off by default, TOML and
the flag, errors that name the field, and a reload that keeps it for a restart."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

import pytest

from resolver.cli import build_serve_config
from resolver.config import (
    Config,
    ForwarderConfig,
    MetricsConfig,
    ServerConfig,
    config_from_mapping,
    config_problems,
)
from resolver.daemon import needs_restart
from resolver.errors import ConfigError

BASE = '[server]\nlisten = ["127.0.0.1:5353"]\n[forwarder]\nupstreams = ["127.0.0.2"]\n'


def load(text: str) -> Config:
    return config_from_mapping(tomllib.loads(BASE + text))


def test_metrics_are_off_by_default() -> None:
    assert MetricsConfig().listen is None
    assert load("").metrics.listen is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param('"127.0.0.1:9100"', ("127.0.0.1", 9100), id="v4-port"),
        pytest.param('"127.0.0.1"', ("127.0.0.1", 9153), id="default-port"),
        pytest.param('"[::1]:9100"', ("::1", 9100), id="v6-port"),
        pytest.param('"127.0.0.1:0"', ("127.0.0.1", 0), id="any-free-port"),
    ],
)
def test_the_metrics_section_gives_the_listen_address(text: str, expected: tuple[str, int]) -> None:
    assert load(f"[metrics]\nlisten = {text}\n").metrics.listen == expected


@pytest.mark.parametrize(
    ("metrics", "field", "reason"),
    [
        pytest.param({"listen": "localhost:9153"}, "metrics.listen", "not an IP", id="name"),
        pytest.param({"listen": "127.0.0.1:70000"}, "metrics.listen", "port", id="port"),
        pytest.param({"listen": ["127.0.0.1:9153"]}, "metrics.listen", "an address", id="list"),
        pytest.param({"listen": 9153}, "metrics.listen", "an address", id="number"),
        pytest.param({"port": 9153}, "metrics.port", "unknown", id="unknown-key"),
    ],
)
def test_bad_metrics_settings_name_the_field(metrics: Any, field: str, reason: str) -> None:
    document = {**tomllib.loads(BASE), "metrics": metrics}
    with pytest.raises(ConfigError) as info:
        config_from_mapping(document)
    assert info.value.field == field
    assert reason in info.value.reason
    (problem,) = config_problems(document)
    assert problem.field == field


def test_the_metrics_section_must_be_a_table() -> None:
    (problem,) = config_problems({**tomllib.loads(BASE), "metrics": "127.0.0.1:9153"})
    assert problem.field == "metrics"


@pytest.mark.parametrize(
    "listen", [("localhost", 9153), "127.0.0.1:9153", ("127.0.0.1", -1), ("127.0.0.1", "80")]
)
def test_a_metrics_config_made_in_code_is_checked_too(listen: Any) -> None:
    with pytest.raises(ConfigError) as info:
        MetricsConfig(listen=listen)
    assert info.value.field == "metrics.listen"


@pytest.mark.parametrize(
    ("dns", "metrics"),
    [
        pytest.param("127.0.0.1:5353", "127.0.0.1:5353", id="same"),
        pytest.param("0.0.0.0:5353", "127.0.0.1:5353", id="dns-wildcard"),
        pytest.param("127.0.0.1:5353", "0.0.0.0:5353", id="metrics-wildcard"),
        pytest.param("[::]:5353", "127.0.0.1:5353", id="dual-stack-wildcard"),
    ],
)
def test_the_dns_listener_s_tcp_port_is_refused_naming_the_field(dns: str, metrics: str) -> None:
    text = f'[server]\nlisten = ["{dns}"]\n[forwarder]\nupstreams = ["127.0.0.2"]\n'
    text += f'[metrics]\nlisten = "{metrics}"\n'
    with pytest.raises(ConfigError) as info:
        config_from_mapping(tomllib.loads(text))
    assert info.value.field == "metrics.listen"
    assert "DNS listener" in info.value.reason


@pytest.mark.parametrize(
    ("tcp", "metrics"),
    [
        pytest.param("true", "127.0.0.1:5354", id="other-port"),
        pytest.param("true", "127.0.0.2:5353", id="other-address"),
        pytest.param("false", "127.0.0.1:5353", id="dns-on-udp-only"),
    ],
)
def test_a_metrics_listener_beside_the_dns_one_is_fine(tcp: str, metrics: str) -> None:
    text = f'[server]\nlisten = ["127.0.0.1:5353"]\ntcp = {tcp}\n'
    text += f'[forwarder]\nupstreams = ["127.0.0.2"]\n[metrics]\nlisten = "{metrics}"\n'
    assert config_from_mapping(tomllib.loads(text)).metrics.listen is not None


def test_the_flag_overrides_the_file(tmp_path: Path) -> None:
    path = tmp_path / "resolver.toml"
    path.write_text(BASE + '[metrics]\nlisten = "127.0.0.1:9100"\n')
    assert build_serve_config(path).metrics.listen == ("127.0.0.1", 9100)
    config = build_serve_config(path, metrics="[::1]:9200")
    assert config.metrics.listen == ("::1", 9200)
    with pytest.raises(ConfigError) as info:
        build_serve_config(path, metrics="nowhere")
    assert info.value.field == "metrics.listen"


def test_a_reload_keeps_the_metrics_listener_for_a_restart() -> None:
    old = load('[metrics]\nlisten = "127.0.0.1:9100"\n')
    new = dataclasses.replace(old, metrics=MetricsConfig(listen=("127.0.0.1", 9200)))
    applied, changed = needs_restart(old, new)
    assert changed == ["metrics.listen"]
    assert applied.metrics == old.metrics
    applied, changed = needs_restart(old, dataclasses.replace(old, metrics=MetricsConfig()))
    assert changed == ["metrics.listen"]
    assert applied.metrics == old.metrics


def test_metrics_need_a_single_worker() -> None:
    with pytest.raises(ConfigError) as info:
        Config(
            forwarder=ForwarderConfig(upstreams=(("127.0.0.1", 53),)),
            server=ServerConfig(listen=(("127.0.0.1", 5300),), workers=2),
            metrics=MetricsConfig(listen=("127.0.0.1", 9153)),
        )
    assert info.value.field == "metrics.listen"
    assert "workers" in info.value.reason
