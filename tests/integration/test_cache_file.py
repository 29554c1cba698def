"""``[cache] file``: the daemon writes its answers at a clean stop and reads them back at start,
aged by the time in between; a missing or damaged file is one warning and an empty cache."""

from __future__ import annotations

from pathlib import Path

from support import dead_udp_port, dns_query, free_port, start_resolver, stop, write


def config_text(port: int, upstream: int, cache_file: Path) -> str:
    return f"""
[server]
listen = ["127.0.0.1:{port}"]

[forwarder]
upstreams = ["127.0.0.1:{upstream}"]
upstream_timeout = 0.3
query_timeout = 1.0

[cache]
file = "{cache_file}"
stale_max = 0
"""


def test_answers_survive_a_restart_aged_by_the_time_between(
    authority_port: int, tmp_path: Path
) -> None:
    cache_file = tmp_path / "cache.bin"
    config = tmp_path / "resolver.toml"
    port = free_port()
    write(config, config_text(port, authority_port, cache_file))
    process = start_resolver(["serve", "--config", str(config)], port, "localhost.")
    try:
        first = dns_query(port, "www.example.com.")
    finally:
        err = stop(process)
    assert [str(rr.rdata) for rr in first.rr] == ["127.1.0.1"]
    assert cache_file.exists(), err
    assert "answers written" in err

    # The upstream is gone now: only the file can answer.
    write(config, config_text(port, dead_udp_port(), cache_file))
    process = start_resolver(["serve", "--config", str(config)], port, "localhost.")
    try:
        again = dns_query(port, "www.example.com.")
    finally:
        err = stop(process)
    assert again.header.rcode == 0, err
    assert [str(rr.rdata) for rr in again.rr] == ["127.1.0.1"]
    assert again.rr[0].ttl <= first.rr[0].ttl


def test_a_damaged_cache_file_is_one_warning_and_an_empty_cache(
    authority_port: int, tmp_path: Path
) -> None:
    cache_file = tmp_path / "cache.bin"
    cache_file.write_bytes(b"not a cache file at all\n")
    config = tmp_path / "resolver.toml"
    port = free_port()
    write(config, config_text(port, authority_port, cache_file))
    process = start_resolver(["serve", "--config", str(config)], port, "localhost.")
    try:
        reply = dns_query(port, "www.example.com.")
    finally:
        err = stop(process)
    assert [str(rr.rdata) for rr in reply.rr] == ["127.1.0.1"]
    warnings = [line for line in err.splitlines() if "cache file not read" in line]
    assert len(warnings) == 1, err
    assert "Traceback" not in err
