"""The [dnssec] section: validation per mode, trust anchor files, negative trust anchors."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from resolver.cli import build_serve_config, main
from resolver.config import config_from_mapping
from resolver.errors import ConfigError

UPSTREAM = {"forwarder": {"upstreams": ["127.0.0.1:5300"]}}


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"mode": "recursive"}, "on"),
        (UPSTREAM, "off"),
        ({**UPSTREAM, "dnssec": {"validation": "on"}}, "on"),
        ({"mode": "recursive", "dnssec": {"validation": "permissive"}}, "permissive"),
        ({"mode": "recursive", "dnssec": {"validation": "off"}}, "off"),
    ],
    ids=["recursive-default-on", "forward-default-off", "forward-on", "permissive", "off"],
)
def test_validation_defaults_by_mode_and_follows_the_setting(
    document: dict[str, object], expected: str
) -> None:
    assert config_from_mapping(document).validation == expected


def test_dnssec_section_builds(tmp_path: Path) -> None:
    config = config_from_mapping(
        {
            "mode": "recursive",
            "dnssec": {
                "trust_anchors": str(tmp_path / "anchors.txt"),
                "negative_trust_anchors": ["Broken.Example", "lab.test."],
                "nsec3_max_iterations": 100,
                "bogus_ttl": 30,
                "aggressive_nsec": False,
            },
        }
    )
    assert config.dnssec.trust_anchors == tmp_path / "anchors.txt"
    assert config.dnssec.negative_trust_anchors == ("broken.example.", "lab.test.")
    assert (config.dnssec.nsec3_max_iterations, config.dnssec.bogus_ttl) == (100, 30)
    assert config.dnssec.aggressive_nsec is False


def test_aggressive_nsec_is_on_by_default() -> None:
    assert config_from_mapping({"mode": "recursive"}).dnssec.aggressive_nsec is True


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"validation": "yes"}, "dnssec.validation"),
        ({"validation": True}, "dnssec.validation"),
        ({"trust_anchors": ""}, "dnssec.trust_anchors"),
        ({"negative_trust_anchors": "example."}, "dnssec.negative_trust_anchors"),
        ({"negative_trust_anchors": ["bad..name"]}, "dnssec.negative_trust_anchors"),
        ({"nsec3_max_iterations": -1}, "dnssec.nsec3_max_iterations"),
        ({"bogus_ttl": 0}, "dnssec.bogus_ttl"),
        ({"aggressive_nsec": "yes"}, "dnssec.aggressive_nsec"),
        ({"strict": True}, "dnssec.strict"),
    ],
    ids=[
        "unknown-validation",
        "validation-bool",
        "empty-anchor-path",
        "nta-not-a-list",
        "nta-bad-name",
        "negative-iterations",
        "zero-bogus-ttl",
        "aggressive-not-a-bool",
        "unknown-key",
    ],
)
def test_bad_dnssec_settings_name_the_field(settings: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_mapping({"mode": "recursive", "dnssec": settings})
    assert info.value.field == field


def test_trust_anchor_flag_sets_the_anchor_file(tmp_path: Path) -> None:
    anchors = tmp_path / "anchors.txt"
    config = build_serve_config(None, mode="recursive", trust_anchor=anchors)
    assert config.dnssec.trust_anchors == anchors


def test_check_config_reads_the_trust_anchor_file(tmp_path: Path) -> None:
    anchors = tmp_path / "anchors.txt"
    anchors.write_text("example. 3600 IN A 192.0.2.1\n")
    path = tmp_path / "resolver.toml"
    path.write_text(f'mode = "recursive"\n[dnssec]\ntrust_anchors = "{anchors}"\n')
    result = CliRunner().invoke(main, ["check-config", str(path)])
    assert result.exit_code == 3
    assert "dnssec.trust_anchors" in result.output
    assert "not a DS or DNSKEY" in result.output
    anchors.write_text(". IN DS 20326 8 2 " + "E0" * 32 + "\n")
    result = CliRunner().invoke(main, ["check-config", str(path)])
    assert result.exit_code == 0, result.output


def test_serve_refuses_a_bad_trust_anchor_file(tmp_path: Path) -> None:
    anchors = tmp_path / "anchors.txt"
    anchors.write_text("this is not a master file\n")
    result = CliRunner().invoke(
        main,
        ["serve", "--mode", "recursive", "--trust-anchor", str(anchors), "--listen", "127.0.0.1:0"],
    )
    assert result.exit_code == 3
    assert "dnssec.trust_anchors" in result.output
