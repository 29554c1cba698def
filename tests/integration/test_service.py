"""Running as a service: `--user` drops privileges after binding, sd_notify readiness over
$NOTIFY_SOCKET, and `serve --help` showing the Config's own defaults."""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from support import STOP, Stderr, addresses, free_port, start_resolver, stop, uids, write
from support import dns_query as query

from resolver.cli import SERVE_DEFAULTS, main
from resolver.config import ForwarderConfig, MetricsConfig, ServerConfig, TransportConfig
from resolver.service import Notifier


def test_serve_help_shows_the_config_defaults() -> None:
    server, forwarder = ServerConfig(), ForwarderConfig()
    assert SERVE_DEFAULTS["listen"] == ", ".join(f"{h}:{p}" for h, p in server.listen)
    assert SERVE_DEFAULTS["allow"] == ", ".join(server.allow)
    assert forwarder.upstreams == ()
    assert SERVE_DEFAULTS["policy"] == forwarder.policy
    assert float(SERVE_DEFAULTS["upstream_timeout"]) == forwarder.upstream_timeout
    assert float(SERVE_DEFAULTS["query_timeout"]) == forwarder.query_timeout
    assert SERVE_DEFAULTS["randomize_case"] == (
        "0x20" if TransportConfig().randomize_case else "no-0x20"
    )
    assert SERVE_DEFAULTS["metrics"] == "off"
    assert MetricsConfig().listen is None
    assert int(SERVE_DEFAULTS["workers"]) == server.workers
    serve = main.commands["serve"]
    context = click.Context(serve)
    for param in serve.params:
        if isinstance(param, click.Option) and param.name != "help":
            record = param.get_help_record(context)
            assert record is not None
            assert "[default: " in record[1], param.name
    text = CliRunner().invoke(main, ["serve", "--help"]).stdout
    assert "Exit codes:" in text
    assert "SIGHUP" in text


def test_an_unknown_user_is_a_bad_configuration() -> None:
    result = CliRunner().invoke(main, ["serve", "--upstream", "127.0.0.2", "--user", "no-such"])
    assert result.exit_code == 3
    assert result.stderr == "resolver: error: bad configuration: --user: no user named 'no-such'\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can drop privileges (CI runs as root)")
def test_serve_binds_then_runs_as_the_user_it_is_given(authority_port: int) -> None:
    nobody = pwd.getpwnam("nobody")
    port = free_port()
    process = start_resolver(
        [
            "serve",
            "--listen",
            f"127.0.0.1:{port}",
            "--upstream",
            f"127.0.0.1:{authority_port}",
            "--user",
            "nobody",
        ],
        port,
        "localhost.",
    )
    stderr = Stderr(process)
    try:
        # It answers from the moment its listeners are bound, and becomes the user just after.
        stderr.wait_for("running as user nobody")
        assert uids(process.pid) == [nobody.pw_uid] * 4
        assert addresses(query(port, "www.example.com.")) == ["127.1.0.1"]
    finally:
        stop(process, stderr)


def receive(sock: socket.socket, timeout: float = 10.0) -> str:
    sock.settimeout(timeout)
    return sock.recv(4096).decode()


def test_serve_tells_the_service_manager_ready_reloading_and_stopping(
    authority_port: int, tmp_path: Path
) -> None:
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    address = str(tmp_path / "notify")
    manager.bind(address)
    port = free_port()
    config = tmp_path / "resolver.toml"
    write(
        config,
        f'[server]\nlisten = ["127.0.0.1:{port}"]\n'
        f'[forwarder]\nupstreams = ["127.0.0.1:{authority_port}"]\n',
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "resolver", "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NOTIFY_SOCKET": address},
    )
    try:
        assert receive(manager) == "READY=1"
        # Ready means bound: the first query is answered without a retry.
        assert addresses(query(port, "www.example.com.", timeout=3.0)) == ["127.1.0.1"]
        process.send_signal(signal.SIGHUP)
        reloading = receive(manager).split("\n")
        assert reloading[0] == "RELOADING=1"
        assert reloading[1].startswith("MONOTONIC_USEC=")
        assert 0 < int(reloading[1].split("=")[1]) <= time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        assert receive(manager) == "READY=1"
        process.terminate()
        assert receive(manager) == "STOPPING=1"
        process.communicate(timeout=STOP)
        assert process.returncode == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=STOP)
        manager.close()


def test_a_notifier_without_a_socket_or_with_a_gone_one_does_nothing(tmp_path: Path) -> None:
    Notifier(None)("READY=1")
    gone = Notifier(str(tmp_path / "nobody-listens"))
    gone("READY=1")
    assert gone.sent == []


def test_a_notifier_reaches_an_abstract_socket() -> None:
    name = f"resolver-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind("\0" + name)
        Notifier("@" + name)("READY=1")
        assert receive(manager, 2.0) == "READY=1"
