"""examples/resolver.toml names every setting with its default and a comment, loads, and marks
exactly the settings a reload cannot change: it cannot drift from the Config's dataclasses."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import Any

from resolver.config import (
    CacheConfig,
    Config,
    DnssecConfig,
    DomainConfig,
    ForwarderConfig,
    ListConfig,
    LocalConfig,
    LogConfig,
    MetricsConfig,
    PolicyConfig,
    RecursionConfig,
    RpzConfig,
    ServerConfig,
    SocketPoolConfig,
    TransportConfig,
    config_from_mapping,
    config_problems,
)
from resolver.daemon import needs_restart

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "resolver.toml"
# Settings whose default TOML cannot write (None, an empty list of tables): shown commented out.
COMMENTED = {
    "forwarder.domains",
    "local.hosts",
    "cache.file",
    "log.query_log",
    "recursion.root_hints",
    "metrics.listen",
    "policy.rpz",
    "policy.lists",
    "server.tls_cert",
    "server.tls_key",
    "transport.tls_ca",
    "dnssec.validation",
    "dnssec.trust_anchors",
}
# Settings given a value other than the default, because the default does not start.
NOT_DEFAULT = {"forwarder.upstreams"}
TABLES: dict[str, type[Any]] = {
    "server": ServerConfig,
    "forwarder": ForwarderConfig,
    "forwarder.domains": DomainConfig,
    "transport": TransportConfig,
    "transport.pool": SocketPoolConfig,
    "cache": CacheConfig,
    "local": LocalConfig,
    "log": LogConfig,
    "recursion": RecursionConfig,
    "metrics": MetricsConfig,
    "policy": PolicyConfig,
    "policy.rpz": RpzConfig,
    "policy.lists": ListConfig,
    "dnssec": DnssecConfig,
}
_UNCOMMENT = re.compile(r"^# ?(?=\[|\w+ +=)")
_HEADER = re.compile(r"^\[\[?([\w.]+)\]\]?")
_SETTING = re.compile(r"^(\w+) += (.*?) +# (.+)$")


def settings() -> dict[str, tuple[str, bool]]:
    """Every setting line: its dotted name -> (its comment, whether commented out)."""
    found: dict[str, tuple[str, bool]] = {}
    section = ""
    for line in EXAMPLE.read_text().splitlines():
        active = _UNCOMMENT.sub("", line)
        header = _HEADER.match(active)
        if header:
            section = header.group(1) + "."
            continue
        setting = _SETTING.match(active)
        if setting:
            found[section + setting.group(1)] = (setting.group(3), active != line)
        elif active != line or (line and not line.startswith("#")):
            raise AssertionError(f"a setting without a comment: {line!r}")
    return found


def test_the_example_loads_as_it_is_and_with_its_commented_settings() -> None:
    text = EXAMPLE.read_text()
    assert config_problems(tomllib.loads(text)) == []
    full = "\n".join(_UNCOMMENT.sub("", line) for line in text.splitlines())
    config = config_from_mapping(tomllib.loads(full))
    assert config.forwarder.domains[0].name == "corp.test."
    assert config.local.hosts == Path("/etc/hosts")
    assert config.metrics.listen == ("127.0.0.1", 9153)
    assert config.policy.rpz[0].name == "malware"
    assert config.policy.lists[0].clients == ("10.0.0.0/24",)


def test_the_example_names_every_setting_once_with_a_comment() -> None:
    found = settings()
    expected = {"mode"}
    for table, cls in TABLES.items():
        for field in dataclasses.fields(cls):
            if field.name not in ("pool", "domains", "lists", "rpz"):
                expected.add(f"{table}.{field.name}")
    assert set(found) == expected
    assert {name for name, (_, commented) in found.items() if commented} == {
        name for name in found if any(name.startswith(c) for c in COMMENTED)
    }
    assert all(len(comment) > 10 for comment, _ in found.values())


def test_the_example_gives_the_defaults() -> None:
    config = config_from_mapping(tomllib.loads(EXAMPLE.read_text()))
    defaults = Config(forwarder=ForwarderConfig(upstreams=config.forwarder.upstreams))
    for table in (
        "server",
        "forwarder",
        "transport",
        "cache",
        "local",
        "log",
        "recursion",
        "metrics",
        "policy",
        "dnssec",
    ):
        for field in dataclasses.fields(getattr(config, table)):
            name = f"{table}.{field.name}"
            if name not in NOT_DEFAULT:
                given = getattr(getattr(config, table), field.name)
                assert given == getattr(getattr(defaults, table), field.name), name
    assert config.mode == defaults.mode


def test_the_restart_marks_are_the_settings_a_reload_keeps() -> None:
    marked = {name for name, (comment, _) in settings().items() if "[restart]" in comment}
    running = config_from_mapping(tomllib.loads(EXAMPLE.read_text()))
    kept = set()
    # Change each setting alone and ask the reload logic whether it takes a restart.
    changes: dict[str, object] = {
        "server.listen": (("127.0.0.1", 5353),),
        "server.udp_receive_buffer": 1,
        "server.udp_send_buffer": 1,
        "server.tcp": False,
        "metrics.listen": ("127.0.0.1", 9153),
        "server.workers": 2,
    }
    for name in changes:
        table, key = name.split(".")
        new = dataclasses.replace(
            running,
            **{table: dataclasses.replace(getattr(running, table), **{key: changes[name]})},
        )
        kept.update(needs_restart(running, new)[1])
    new = dataclasses.replace(running, cache=dataclasses.replace(running.cache, enabled=False))
    kept.update(needs_restart(running, new)[1])
    new = dataclasses.replace(running, mode="recursive")
    kept.update(needs_restart(running, new)[1])
    for key in ("listen_tls", "listen_https"):  # these need a certificate too
        server = dataclasses.replace(
            running.server,
            **{key: (("127.0.0.1", 8853),)},
            tls_cert=Path("cert.pem"),
            tls_key=Path("key.pem"),
        )
        kept.update(needs_restart(running, dataclasses.replace(running, server=server))[1])
    assert marked == kept


def test_the_unit_file_runs_commands_the_cli_has() -> None:
    import shlex

    import click

    from resolver.cli import main

    unit = (EXAMPLE.parent / "resolver.service").read_text()
    commands = [
        shlex.split(line.split("=", 1)[1])
        for line in unit.splitlines()
        if line.startswith(("ExecStart=", "ExecStartPre="))
    ]
    assert [argv[1] for argv in commands] == ["check-config", "serve"]
    for argv in commands:
        command = main.commands[argv[1]]
        assert isinstance(command, click.Command)
        command.make_context(argv[1], argv[2:])  # raises on an unknown option
    assert "Type=notify\n" in unit
    assert "RestartPreventExitStatus=3\n" in unit
