"""`resolver serve` as a real subprocess under SIGHUP, SIGUSR1 and SIGTERM: a reload applies the
file again without losing a query, a bad file is logged and the running config kept."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

from support import Stderr, addresses, dns_query, free_port, start_resolver, stop, write


def config_text(
    port: int, upstream: int, hosts: Path, *, allow: str = "127.0.0.0/8", timeout: float = 2.0
) -> str:
    return f"""
[server]
listen = ["127.0.0.1:{port}"]
allow = ["{allow}"]

[forwarder]
upstreams = ["127.0.0.1:{upstream}"]
upstream_timeout = {timeout}

[local]
hosts = "{hosts}"
"""


def test_clients_asking_through_reloads_lose_nothing(authority_port: int, tmp_path: Path) -> None:
    port = free_port()
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.10 printer.lan\n")
    config = tmp_path / "resolver.toml"
    write(config, config_text(port, authority_port, hosts))
    process = start_resolver(["serve", "--config", str(config)], port, "localhost.")
    failures: list[str] = []
    answered = [0]
    stopping = threading.Event()

    def client(number: int) -> None:
        # Upstream questions (a new name each time, so never from the cache), local answers
        # and hosts-file answers, one after another until told to stop; bounded in count.
        for i in range(5_000):
            if stopping.is_set():
                return
            name = ("localhost.", "printer.lan.", f"q{number}-{i}.example.com.")[i % 3]
            try:
                reply = dns_query(port, name, timeout=3.0)
            except OSError as exc:
                failures.append(f"{name}: {exc}")
                continue
            if reply.header.rcode not in (0, 3):
                failures.append(f"{name}: rcode {reply.header.rcode}")
            answered[0] += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(3)]
    try:
        for thread in threads:
            thread.start()
        for round_ in range(12):
            # Valid files that change the allow list and the upstream settings (a new engine
            # each time, while the old one answers what it was asked), and a broken one.
            if round_ % 3 == 2:
                write(config, "[server]\nallow = 8\n")
            else:
                text = config_text(
                    port,
                    authority_port,
                    hosts,
                    allow=f"127.0.{round_}.0/8",
                    timeout=1 + round_ / 10,
                )
                write(config, text)
            process.send_signal(signal.SIGHUP)
            time.sleep(0.1)
    finally:
        stopping.set()
        for thread in threads:
            thread.join(timeout=30.0)
    err = stop(process)
    assert not failures, failures[:5]
    assert answered[0] > 100
    # A SIGHUP that comes while a reload runs is one more reload after it, not one each.
    applied = err.count("reloaded the configuration")
    refused = err.count("reload failed, the running configuration is kept: server.allow")
    assert applied >= 1
    assert applied + refused <= 12
    assert 1 <= err.count("reload: new upstream settings") <= applied


def test_reload_applies_hosts_and_allow_and_keeps_listen(
    authority_port: int, tmp_path: Path
) -> None:
    port, other = free_port(), free_port()
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.10 printer.lan\n")
    config = tmp_path / "resolver.toml"
    write(config, config_text(port, authority_port, hosts))
    process = start_resolver(["serve", "--config", str(config)], port, "localhost.")
    stderr = Stderr(process)
    try:
        assert addresses(dns_query(port, "printer.lan.")) == ["192.0.2.10"]
        hosts.write_text("192.0.2.11 printer.lan\n192.0.2.12 scanner.lan\n")
        text = config_text(other, authority_port, hosts).replace(
            "[local]", "[cache]\nmax_entries = 10\n\n[local]"
        )
        write(config, text)
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5.0
        while addresses(dns_query(port, "printer.lan.")) != ["192.0.2.11"]:
            assert time.monotonic() < deadline, "the hosts file was not read again"
            time.sleep(0.05)
        assert addresses(dns_query(port, "scanner.lan.")) == ["192.0.2.12"]
        assert addresses(dns_query(port, "www.example.com.")) == ["127.1.0.1"]
        # Now only 10.0.0.0/8 may ask: loopback clients are refused at once.
        write(config, config_text(port, authority_port, hosts, allow="10.0.0.0/8"))
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5.0
        while dns_query(port, "localhost.").header.rcode != 5:
            assert time.monotonic() < deadline, "the allow list was not applied"
            time.sleep(0.05)
        process.send_signal(signal.SIGUSR1)
        stderr.wait_for("statistics: upstream address=")  # the last of the dump
    finally:
        err = stop(process, stderr)
    assert "server.listen changed; it takes effect at the next restart" in err
    assert "statistics: server udp_queries=" in err
    assert "statistics: cache entries=" in err
    assert "statistics: upstream address=" in err


def test_a_reload_whose_hosts_file_is_gone_keeps_the_running_answers(
    authority_port: int, tmp_path: Path
) -> None:
    port = free_port()
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.10 printer.lan\n")
    config = tmp_path / "resolver.toml"
    write(config, config_text(port, authority_port, hosts))
    process = start_resolver(["serve", "--config", str(config)], port, "localhost.")
    stderr = Stderr(process)
    try:
        hosts.unlink()
        process.send_signal(signal.SIGHUP)
        stderr.wait_for("reload failed, the running configuration is kept: local.hosts")
        assert addresses(dns_query(port, "printer.lan.")) == ["192.0.2.10"]
    finally:
        err = stop(process, stderr)
    assert "reload failed, the running configuration is kept: local.hosts" in err


def test_a_file_that_no_longer_validates_is_logged_and_the_running_config_kept(
    authority_port: int, tmp_path: Path
) -> None:
    port = free_port()
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.10 printer.lan\n")
    config = tmp_path / "resolver.toml"
    write(config, config_text(port, authority_port, hosts))
    process = start_resolver(["serve", "--config", str(config)], port, "localhost.")
    stderr = Stderr(process)
    try:
        write(config, "[server]\nallow = 8\n")
        process.send_signal(signal.SIGHUP)
        stderr.wait_for("reload failed, the running configuration is kept")
        assert addresses(dns_query(port, "printer.lan.")) == ["192.0.2.10"]
        assert addresses(dns_query(port, "www.example.com.")) == ["127.1.0.1"]
    finally:
        err = stop(process, stderr)
    assert (
        "ERROR resolver.daemon: reload failed, the running configuration is kept: "
        "server.allow: must be a list of networks, not int 8"
    ) in err


def test_upstream_failures_and_health_are_logged_at_info_without_a_flood(tmp_path: Path) -> None:
    port, silent = free_port(), free_port()  # nothing listens on the upstream: unreachable
    config = tmp_path / "resolver.toml"
    write(
        config,
        f'[server]\nlisten = ["127.0.0.1:{port}"]\n'
        f'[forwarder]\nupstreams = ["127.0.0.1:{silent}"]\ndown_after = 2\n'
        "upstream_timeout = 0.2\nquery_timeout = 0.5\n",
    )
    process = start_resolver(["serve", "--config", str(config)], port, "localhost.")
    try:
        for i in range(40):
            assert dns_query(port, f"q{i}.example.com.", timeout=3.0).header.rcode == 2
    finally:
        err = stop(process)
    failures = [line for line in err.splitlines() if "upstream failure: " in line]
    # Once per kind (unreachable, timeout) per 10 s, however many queries failed.
    assert 1 <= len(failures) <= 4, failures
    assert f"127.0.0.1:{silent}" in failures[0]
    assert err.count(f"upstream 127.0.0.1:{silent} is down after 2 failures in a row") == 1


def test_a_reload_moves_to_new_upstreams_or_keeps_the_running_ones_if_unusable(
    authority_port: int, tmp_path: Path
) -> None:
    port, silent = free_port(), free_port()
    hosts = tmp_path / "hosts"
    hosts.write_text("")
    config = tmp_path / "resolver.toml"
    write(config, config_text(port, silent, hosts, timeout=0.2).replace("2.0", "0.2"))
    process = start_resolver(["serve", "--config", str(config)], port, "localhost.")
    stderr = Stderr(process)
    try:
        assert dns_query(port, "www.example.com.", timeout=6.0).header.rcode == 2  # SERVFAIL
        write(config, config_text(port, authority_port, hosts))
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5.0
        while dns_query(port, "www.example.com.", timeout=6.0).header.rcode != 0:
            assert time.monotonic() < deadline, "the new upstream was not used"
            time.sleep(0.05)
        assert addresses(dns_query(port, "www.example.com.")) == ["127.1.0.1"]
        # No socket can reach a link-local address without a scope: the reload is refused.
        write(
            config,
            config_text(port, authority_port, hosts).replace(
                f'"127.0.0.1:{authority_port}"', '"[fe80::1]:53"'
            ),
        )
        process.send_signal(signal.SIGHUP)
        stderr.wait_for("reload failed, the running configuration is kept: ")
        assert addresses(dns_query(port, "mail.example.com.")) != []
    finally:
        err = stop(process, stderr)
    assert "reload failed, the running configuration is kept: " in err
    assert err.count("reloaded the configuration") == 1
