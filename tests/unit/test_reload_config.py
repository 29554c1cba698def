"""What a reload applies in place and what it keeps for a restart, without a running daemon."""

from __future__ import annotations

import dataclasses

import pytest
from dnslib import RR, DNSRecord

from resolver.cache import Cache, CacheKey
from resolver.config import CacheConfig, Config, ForwarderConfig, ServerConfig
from resolver.daemon import needs_restart
from resolver.errors import ConfigError
from resolver.wire.view import scan


def running() -> Config:
    return Config(
        server=ServerConfig(listen=(("127.0.0.1", 5353),)),
        forwarder=ForwarderConfig(upstreams=(("127.0.0.1", 5300),)),
    )


def test_a_reload_applies_the_allow_list_and_cache_settings_in_place() -> None:
    old = running()
    new = dataclasses.replace(
        old,
        server=dataclasses.replace(old.server, allow=("10.0.0.0/8",), tcp_idle_timeout=3.0),
        cache=dataclasses.replace(old.cache, max_entries=10, stale_ttl=5),
    )
    applied, changed = needs_restart(old, new)
    assert changed == []
    assert applied == new


def test_a_reload_keeps_listeners_and_cache_switch_for_a_restart() -> None:
    old = running()
    new = dataclasses.replace(
        old,
        server=dataclasses.replace(old.server, listen=(("127.0.0.1", 5454),), tcp=False),
        forwarder=ForwarderConfig(upstreams=(("127.0.0.2", 53),), policy="random"),
        cache=dataclasses.replace(old.cache, enabled=False, ttl_floor=5),
    )
    applied, changed = needs_restart(old, new)
    assert changed == ["server.listen", "server.tcp", "cache.enabled"]
    assert applied.server == old.server
    assert applied.forwarder == new.forwarder  # a new engine takes it up
    assert applied.cache == dataclasses.replace(old.cache, ttl_floor=5)


def test_cache_reconfigure_evicts_down_to_a_smaller_size_and_keeps_the_rest() -> None:
    cache = Cache(CacheConfig(max_entries=10), clock=lambda: 100.0)
    keys = []
    for i in range(10):
        name = f"n{i}.example."
        reply = DNSRecord.question(name).reply()
        reply.add_answer(*RR.fromZone(f"{name} 300 IN A 192.0.2.1"))
        key = CacheKey.of(b"\x02n%d\x07example\x00" % i, 1, 1, do=False, cd=False)
        keys.append(key)
        assert cache.put(key, scan(reply.pack())) is not None
    cache.reconfigure(CacheConfig(max_entries=4, stale_ttl=7))
    assert len(cache) == 4
    assert cache.statistics().evictions == 6
    assert all(key in cache for key in keys[6:])
    assert cache.config.stale_ttl == 7


def test_a_reload_whose_upstream_is_the_running_listener_is_refused() -> None:
    old = running()
    # Valid on its own (it would listen elsewhere), but the listener stays until a restart.
    new = Config(
        server=ServerConfig(listen=(("127.0.0.1", 5454),)),
        forwarder=ForwarderConfig(upstreams=(("127.0.0.1", 5353),)),
    )
    with pytest.raises(ConfigError) as info:
        needs_restart(old, new)
    assert info.value.field == "forwarder.upstreams"
