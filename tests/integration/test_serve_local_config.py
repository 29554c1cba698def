"""`resolver serve --config FILE` as a real subprocess with ``[local]`` and
``[[forwarder.domains]]``: the keys as an operator writes them reach the running daemon."""

from __future__ import annotations

from pathlib import Path

from support import STOP, dns_query, free_port, start_resolver


def test_serve_takes_local_answers_hosts_and_domains_from_its_config_file(
    authority_port: int, tmp_path: Path
) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.10 printer.lan\n")
    port, silent = free_port(), free_port()  # nothing listens on the default upstream
    config = tmp_path / "resolver.toml"
    config.write_text(
        f"""
[server]
listen = ["127.0.0.1:{port}"]

[forwarder]
upstreams = ["127.0.0.1:{silent}"]
upstream_timeout = 0.3

[[forwarder.domains]]
name = "example.com"
upstreams = ["127.0.0.1:{authority_port}"]

[local]
hosts = "{hosts}"
special_names = false
"""
    )
    process = start_resolver(
        ["serve", "--config", str(config), "--log-level", "warning"], port, "localhost."
    )
    try:
        assert [str(rr.rdata) for rr in dns_query(port, "localhost.").rr] == ["127.0.0.1"]
        assert [str(rr.rdata) for rr in dns_query(port, "printer.lan.").rr] == ["192.0.2.10"]
        assert [str(rr.rdata) for rr in dns_query(port, "www.example.com.").rr] == ["127.1.0.1"]
        assert dns_query(port, "x.1.168.192.in-addr.arpa.", "PTR").header.rcode == 3
        # special_names is off: x.invalid goes to the silent default upstream and fails.
        assert dns_query(port, "x.invalid.", timeout=4.0).header.rcode == 2
    finally:
        process.terminate()
        process.communicate(timeout=STOP)
    assert process.returncode == 0
