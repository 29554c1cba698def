"""`resolver check-config FILE`: exit 0 for a good file, else every bad field with its reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from resolver.cli import main
from resolver.config import config_problems

GOOD = """
[server]
listen = ["127.0.0.1:5353"]

[forwarder]
upstreams = ["127.0.0.2"]
"""

BAD = """
mode = "sideways"

[server]
listen = ["nowhere:53"]
allow = [8]

[forwarder]
upstreams = ["127.0.0.2"]
upstream_timeout = 10      # good: query_timeout below allows it
query_timeout = 20
policy = "bogus"

[[forwarder.domains]]
name = "a..b"
upstreams = ["127.0.0.3"]

[[forwarder.domains]]
name = "ok.test"
upstreams = ["127.0.0.3"]
color = "red"

[transport.pool]
min_size = -1
max_uses = 0

[cache]
ttl_floor = 100000         # good: the ceiling below allows it
ttl_ceiling = 200000
servfail_ttl = 99

[extra]
"""


def check(tmp_path: Path, text: str) -> tuple[int, str, str]:
    path = tmp_path / "resolver.toml"
    path.write_text(text)
    result = CliRunner().invoke(main, ["check-config", str(path)])
    return result.exit_code, result.stdout, result.stderr


def test_a_good_file_exits_zero(tmp_path: Path) -> None:
    code, out, err = check(tmp_path, GOOD)
    assert (code, err) == (0, "")
    assert out.endswith(": ok\n")


def test_every_bad_field_is_named_once_and_good_ones_are_not(tmp_path: Path) -> None:
    code, out, err = check(tmp_path, BAD)
    assert code == 3
    assert out == ""
    fields = [line.split(": ")[2] for line in err.splitlines()]
    assert fields == [
        "mode",
        "server.listen",
        "server.allow",
        "forwarder.policy",
        "forwarder.domains[0].name",
        "forwarder.domains[1].color",
        "transport.pool.min_size",
        "transport.pool.max_uses",
        "cache.servfail_ttl",
        "extra",
    ]
    assert "'nowhere' is not an IP address" in err


@pytest.mark.parametrize(
    ("text", "field"),
    [
        pytest.param(
            "[forwarder]\nupstreams = ['127.0.0.2']\nupstream_timeout = 9\n",
            "forwarder.upstream_timeout",
            id="conflict-within-a-table",
        ),
        pytest.param(
            "[server]\nlisten = ['127.0.0.1:53']\n[forwarder]\nupstreams = ['127.0.0.1']\n",
            "forwarder.upstreams",
            id="conflict-between-tables",
        ),
        pytest.param("[forwarder]\n", "forwarder.upstreams", id="no-upstream"),
    ],
)
def test_a_conflict_is_reported_once_every_value_is_good(text: str, field: str) -> None:
    import tomllib

    problems = config_problems(tomllib.loads(text))
    assert [problem.field for problem in problems] == [field]


def test_an_unreadable_hosts_file_is_a_bad_field(tmp_path: Path) -> None:
    code, _, err = check(tmp_path, GOOD + f'\n[local]\nhosts = "{tmp_path / "missing"}"\n')
    assert code == 3
    assert ": local.hosts: " in err


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        pytest.param(None, "No such file or directory", id="missing"),
        pytest.param("[server\n", "invalid TOML", id="not-toml"),
    ],
)
def test_a_file_that_cannot_be_read_is_one_line(
    tmp_path: Path, text: str | None, reason: str
) -> None:
    path = tmp_path / "resolver.toml"
    if text is not None:
        path.write_text(text)
    done = subprocess.run(
        [sys.executable, "-m", "resolver", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 3
    assert done.stderr.count("\n") == 1
    assert reason in done.stderr
    assert done.stderr.startswith(f"resolver: {path}: ")


@pytest.mark.parametrize(
    ("policy", "field"),
    [
        ('[[policy.lists]]\nfile = "LIST"\nformat = "abp"\n', "policy.lists[0].format"),
        ('[[policy.lists]]\nfile = "LIST"\nclients = ["x"]\n', "policy.lists[0].clients"),
        ('[[policy.lists]]\nfile = "LIST"\nallow = "yes"\n', "policy.lists[0].allow"),
        ('[[policy.lists]]\nfile = "MISSING"\n', "policy.lists[0].file"),
        ('[[policy.rpz]]\nfile = "RPZ"\naction = "explode"\n', "policy.rpz[0].action"),
        ('[[policy.rpz]]\nfile = "RPZ"\n[[policy.rpz]]\nfile = "MISSING"\n', "policy.rpz[1].file"),
        ("[policy]\nreload_interval = 0\n", "policy.reload_interval"),
        ('[policy]\nlists = "ads.txt"\n', "policy.lists"),
    ],
    ids=[
        "format",
        "clients",
        "allow",
        "missing-list",
        "rpz-action",
        "missing-zone",
        "reload-interval",
        "lists-not-tables",
    ],
)
def test_a_bad_policy_setting_is_named(tmp_path: Path, policy: str, field: str) -> None:
    (tmp_path / "list.txt").write_text("ads.example\n")
    (tmp_path / "z.rpz").write_text("@ 300 SOA a. b. 1 2 3 4 5\nx.example 300 CNAME .\n")
    text = (
        policy.replace("LIST", str(tmp_path / "list.txt"))
        .replace("RPZ", str(tmp_path / "z.rpz"))
        .replace("MISSING", str(tmp_path / "missing"))
    )
    code, _, err = check(tmp_path, GOOD + text)
    assert code == 3, err
    assert f": {field}: " in err
    assert len(err.strip().splitlines()) == 1


def test_an_rpz_zone_that_is_no_master_file_names_its_line(tmp_path: Path) -> None:
    zone = tmp_path / "z.rpz"
    zone.write_text("@ 300 SOA a. b. 1 2 3 4 5\nx.example 300 BOGUS .\n")
    code, _, err = check(tmp_path, GOOD + f'[[policy.rpz]]\nfile = "{zone}"\n')
    assert code == 3
    assert f"{zone}:2: " in err


def test_a_good_policy_passes(tmp_path: Path) -> None:
    (tmp_path / "list.txt").write_text("0.0.0.0 ads.example\n")
    (tmp_path / "z.rpz").write_text("@ 300 SOA a. b. 1 2 3 4 5\nx.example 300 CNAME .\n")
    text = (
        f'[[policy.lists]]\nfile = "{tmp_path / "list.txt"}"\nformat = "hosts"\n'
        f'[[policy.rpz]]\nfile = "{tmp_path / "z.rpz"}"\naction = "cname walled.example"\n'
    )
    code, out, err = check(tmp_path, GOOD + text)
    assert code == 0, err
    assert out.endswith(": ok\n")
