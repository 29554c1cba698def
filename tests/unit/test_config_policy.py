"""[policy] settings: each checked and named, and serve --rpz after the file's zones."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from resolver.cli import build_serve_config
from resolver.config import ListConfig, PolicyConfig, RpzConfig, config_from_mapping
from resolver.errors import ConfigError

BASE = '[forwarder]\nupstreams = ["127.0.0.2"]\n'


def test_the_defaults_have_no_lists_and_no_zones() -> None:
    policy = config_from_mapping(tomllib.loads(BASE)).policy
    assert policy == PolicyConfig()
    assert policy.reload_interval == 60.0
    assert policy.ttl == 60


def test_lists_and_zones_are_read_in_order() -> None:
    text = BASE + (
        '[[policy.rpz]]\nfile = "a.rpz"\nlog = false\nzone = "A.RPZ"\n'
        '[[policy.rpz]]\nfile = "b.rpz"\naction = "nxdomain"\n'
        '[[policy.lists]]\nfile = "ads.txt"\nformat = "adblock"\naction = "null"\n'
        '[[policy.lists]]\nfile = "ok.txt"\nallow = true\nclients = ["10.0.0.0/8"]\n'
    )
    policy = config_from_mapping(tomllib.loads(text)).policy
    assert [zone.file for zone in policy.rpz] == [Path("a.rpz"), Path("b.rpz")]
    assert policy.rpz[0].zone == "a.rpz."
    assert not policy.rpz[0].log
    assert policy.lists[0] == ListConfig(file=Path("ads.txt"), format="adblock", action="null")
    assert policy.lists[1].allow
    assert policy.lists[1].clients == ("10.0.0.0/8",)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"format": "abp"}, "policy.lists.format"),
        ({"action": "drop"}, "policy.lists.action"),
        ({"allow": 1}, "policy.lists.allow"),
        ({"clients": "10.0.0.0/8"}, "policy.lists.clients"),
        ({"clients": ["10.0.0.0/33"]}, "policy.lists.clients"),
        ({"name": ""}, "policy.lists.name"),
    ],
    ids=["format", "action", "allow", "clients-text", "clients-bad", "name"],
)
def test_a_bad_list_setting_is_named(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ListConfig(file=Path("x"), **kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("action", "good"),
    [
        ("given", True),
        ("tcp-only", True),
        ("cname walled.example", True),
        ("cname a..b", False),
        ("NXDOMAIN", False),
    ],
    ids=["given", "tcp-only", "cname", "cname-bad", "uppercase"],
)
def test_an_rpz_action_is_checked(action: str, good: bool) -> None:
    if good:
        assert RpzConfig(file=Path("z"), action=action).action == action
    else:
        with pytest.raises(ConfigError, match=r"^policy\.rpz\.action: "):
            RpzConfig(file=Path("z"), action=action)


def test_rpz_flags_come_after_the_files_zones(tmp_path: Path) -> None:
    path = tmp_path / "resolver.toml"
    path.write_text(BASE + '[[policy.rpz]]\nfile = "first.rpz"\n')
    config = build_serve_config(path, rpz=(Path("second.rpz"), Path("third.rpz")))
    assert [zone.file for zone in config.policy.rpz] == [
        Path("first.rpz"),
        Path("second.rpz"),
        Path("third.rpz"),
    ]
    alone = build_serve_config(None, upstream=("127.0.0.2",), rpz=(Path("z.rpz"),))
    assert [zone.file for zone in alone.policy.rpz] == [Path("z.rpz")]
