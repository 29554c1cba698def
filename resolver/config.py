"""Configuration: one frozen dataclass per component, validated on construction.

Every invalid value raises ConfigError naming the field (``server.listen``, ``forwarder.policy``)
and the reason. A Config is built once, in the CLI, from an optional TOML file plus flags.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args

from resolver.errors import ConfigError

__all__ = [
    "CacheConfig",
    "Config",
    "DomainConfig",
    "ForwarderConfig",
    "LocalConfig",
    "ServerConfig",
    "SocketPoolConfig",
    "TransportConfig",
    "load_config",
    "parse_address",
]

Address = tuple[str, int]
Policy = Literal["sequential", "round_robin", "random", "fastest"]
Order = Literal["fifo", "random"]
Mode = Literal["forward", "recursive"]
_MAX_TTL = 0x7FFF_FFFF  # RFC 2181 section 8


def parse_address(text: str, default_port: int, *, name: str = "address") -> Address:
    """Parse ``"127.0.0.1"``, ``"127.0.0.1:5353"``, ``"::1"`` or ``"[::1]:53"``.

    Only IP addresses are accepted (a resolver must not need a resolver to find its upstreams).
    Raises ConfigError naming ``name``.
    """
    text = text.strip()
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ConfigError(name, f"{text!r} has an unclosed '['")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ConfigError(name, f"{text!r} has junk after ']'")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(name, f"{host!r} is not an IP address") from None
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(name, f"port {port_text!r} is not a number from 0 to 65535")
    return host, int(port_text)


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(name, f"must be positive, got {value!r}")


def _choice(name: str, value: object, allowed: object) -> None:
    options = get_args(allowed)
    if value not in options:
        raise ConfigError(name, f"must be one of {', '.join(map(str, options))}; got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class SocketPoolConfig:
    """The pool of pre-bound UDP sockets kept per upstream.

    RFC 5452 section 4.5 wants an unpredictable source port per query. A pre-bound socket
    fixes its port for its lifetime, so sockets retire after ``max_uses`` queries or
    ``max_age`` seconds and are replaced in the background, and an idle socket is chosen at
    random (``order = "random"``), so that neither the next port nor how long it stays in use
    can be predicted. With the defaults a port serves at most 8 queries or 10 seconds, while
    binding a replacement (tens of microseconds) stays off the query path. ``max_uses = 1``
    gives every query a port of its own (recursive mode, where the authority may be the
    attacker). ``order = "fifo"`` (oldest released first) is there for tests and comparison.
    ``min_idle`` sockets (up to ``max_size`` in all) are kept bound and idle ahead of demand,
    so that a burst or a retired socket does not make a query wait for a bind; sockets above
    ``min_size`` close after ``idle_timeout`` seconds unused, so descriptors return to the
    baseline after a burst.
    """

    min_size: int = 8
    max_size: int = 256
    max_uses: int = 8
    max_age: float = 10.0
    order: Order = "random"
    min_idle: int = 32
    idle_timeout: float = 15.0

    def __post_init__(self) -> None:
        if self.min_size < 0:
            raise ConfigError("pool.min_size", "must be 0 or more")
        if self.max_size < max(1, self.min_size):
            raise ConfigError("pool.max_size", "must be at least 1 and at least min_size")
        if self.max_uses < 1:
            raise ConfigError("pool.max_uses", "must be at least 1")
        _positive("pool.max_age", self.max_age)
        _positive("pool.idle_timeout", self.idle_timeout)
        if self.min_idle < 0:
            raise ConfigError("pool.min_idle", "must be 0 or more")
        _choice("pool.order", self.order, Order)


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportConfig:
    """How queries go upstream: EDNS size, 0x20 case randomisation, the socket pools."""

    edns_size: int = 1232
    randomize_case: bool = False
    pool: SocketPoolConfig = field(default_factory=SocketPoolConfig)

    def __post_init__(self) -> None:
        if not 512 <= self.edns_size <= 65535:
            raise ConfigError("transport.edns_size", "must be from 512 to 65535")


def _domain_name(field: str, name: object) -> str:
    """``name`` as a lowercase absolute domain name (``"Corp.Test"`` -> ``"corp.test."``).

    Plain hostname-style text only: labels of 1 to 63 printable ASCII characters, 255 bytes
    in wire form at most, no escapes. Raises ConfigError naming ``field``."""
    if not isinstance(name, str):
        raise ConfigError(field, f"must be a domain name, not {type(name).__name__}")
    text = name.strip().lower()
    if text.endswith("."):
        text = text[:-1]
    if not text:
        raise ConfigError(field, f"{name!r} is not a domain name below the root")
    labels = text.split(".")
    for label in labels:
        if not 1 <= len(label) <= 63 or not label.isascii() or not label.isprintable():
            raise ConfigError(field, f"{name!r} has an empty, long or non-ASCII label")
        if " " in label or "\\" in label:
            raise ConfigError(field, f"{name!r} has a space or an escape in a label")
    if sum(len(label) + 1 for label in labels) + 1 > 255:
        raise ConfigError(field, f"{name!r} is longer than 255 bytes in wire form")
    return text + "."


@dataclass(frozen=True, slots=True, kw_only=True)
class DomainConfig:
    """Questions for ``name`` and the names below it go to ``upstreams`` instead of the
    default ones (dnsmasq's ``server=/name/address``, Unbound's forward-zone), chosen by
    ``policy`` (the forwarder's when None), with their own health; timeouts and the health
    thresholds are the forwarder's. ``name`` is kept lowercase with a trailing dot."""

    name: str
    upstreams: tuple[Address, ...]
    policy: Policy | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", _domain_name("forwarder.domains.name", self.name))
        if not self.upstreams:
            raise ConfigError("forwarder.domains.upstreams", f"{self.name} needs an upstream")
        for host, port in self.upstreams:
            if not 1 <= port <= 65535:
                raise ConfigError(
                    "forwarder.domains.upstreams", f"port {port} of {host} is not 1-65535"
                )
        if self.policy is not None:
            _choice("forwarder.domains.policy", self.policy, Policy)


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwarderConfig:
    """Upstreams and how to choose among them.

    ``upstream_timeout`` bounds one attempt at one upstream; ``query_timeout`` bounds the
    whole answer to one client query, failover included. A server with ``down_after``
    consecutive failures is skipped for ``down_for`` seconds unless every server is down.
    ``domains`` send the questions for some names to upstreams of their own (the longest
    matching name wins); every other question goes to ``upstreams``.
    """

    upstreams: tuple[Address, ...] = ()
    policy: Policy = "sequential"
    upstream_timeout: float = 2.0
    query_timeout: float = 5.0
    down_after: int = 3
    down_for: float = 30.0
    domains: tuple[DomainConfig, ...] = ()

    def __post_init__(self) -> None:
        _choice("forwarder.policy", self.policy, Policy)
        names = [domain.name for domain in self.domains]
        for name in names:
            if names.count(name) > 1:
                raise ConfigError("forwarder.domains", f"{name} is listed more than once")
        _positive("forwarder.upstream_timeout", self.upstream_timeout)
        _positive("forwarder.query_timeout", self.query_timeout)
        _positive("forwarder.down_for", self.down_for)
        if self.down_after < 1:
            raise ConfigError("forwarder.down_after", "must be at least 1")
        for host, port in self.upstreams:
            if not 1 <= port <= 65535:
                raise ConfigError("forwarder.upstreams", f"port {port} of {host} is not 1-65535")


def _check_int(field: str, value: object, low: int, high: int) -> None:
    # bool is an int, but `ttl_floor = true` in a TOML file is a mistake worth naming.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(field, f"must be an integer, not {type(value).__name__}")
    if not low <= value <= high:
        raise ConfigError(field, f"must be between {low} and {high}, not {value}")


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheConfig:
    """Settings of the answer cache; every duration is whole seconds.

    Defaults: ``max_entries`` 100 000 (tens of MB at a few hundred bytes per answer);
    ``ttl_floor`` 0 and ``ttl_ceiling`` 86 400 (a day, as Unbound's cache-max-ttl);
    ``negative_ttl_max`` 3600 (Unbound's cache-max-negative-ttl; RFC 2308 section 5 suggests
    one to three hours, and shorter means a newly added name shows up sooner); ``servfail_ttl``
    5 (long enough to absorb a retry storm, short enough that a fixed upstream is seen quickly;
    at most 30, 0 disables); ``stale_max`` 86 400 (RFC 8767 suggests one to three days, 0
    disables serve-stale); ``stale_ttl`` 30 (RFC 8767 section 4); ``prefetch_fraction`` 0.1
    (the last tenth of the lifetime, as Unbound's prefetch; 0 disables).

    Raises ConfigError naming the field when a value is out of range or of the wrong type.
    """

    enabled: bool = True
    max_entries: int = 100_000
    ttl_floor: int = 0
    ttl_ceiling: int = 86_400
    negative_ttl_max: int = 3_600
    servfail_ttl: int = 5
    stale_max: int = 86_400
    stale_ttl: int = 30
    prefetch_fraction: float = 0.1

    def __post_init__(self) -> None:
        _check_int("cache.max_entries", self.max_entries, 1, 2**40)
        _check_int("cache.ttl_ceiling", self.ttl_ceiling, 1, _MAX_TTL)
        _check_int("cache.ttl_floor", self.ttl_floor, 0, self.ttl_ceiling)
        _check_int("cache.negative_ttl_max", self.negative_ttl_max, 0, _MAX_TTL)
        _check_int("cache.servfail_ttl", self.servfail_ttl, 0, 30)
        _check_int("cache.stale_max", self.stale_max, 0, _MAX_TTL)
        _check_int("cache.stale_ttl", self.stale_ttl, 1, _MAX_TTL)
        fraction = self.prefetch_fraction
        if not isinstance(fraction, int | float) or isinstance(fraction, bool):
            raise ConfigError("cache.prefetch_fraction", f"must be a number, not {fraction!r}")
        if not 0.0 <= fraction < 1.0:
            raise ConfigError("cache.prefetch_fraction", f"must be in [0, 1), not {fraction}")


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalConfig:
    """Questions answered here, without asking upstream; each switch is on by default.

    ``localhost`` (RFC 6761 section 6.3): ``localhost.`` and every name below it answer
    127.0.0.1 and ::1, the reverse names of 127.0.0.1 and ::1 answer ``localhost.``, the rest
    of ``127.in-addr.arpa.`` is NXDOMAIN. ``private_reverse`` (RFC 6303, RFC 7793, RFC 4193):
    the reverse zones of 10/8, 172.16/12, 192.168/16, 100.64/10 and fd00::/8 answer
    NXDOMAIN. ``special_reverse`` (the other zones RFC 6303 lists): the reverse zones of 0/8,
    169.254/16, the documentation networks, 255.255.255.255, ::, fe80::/10 and 2001:db8::/32
    answer NXDOMAIN. ``special_names``: ``invalid.`` (RFC 6761 section 6.4) and ``onion.``
    (RFC 7686) answer NXDOMAIN. ``hosts``: a file in the hosts(5) format whose names answer A,
    AAAA and PTR (off when None).
    """

    localhost: bool = True
    private_reverse: bool = True
    special_reverse: bool = True
    special_names: bool = True
    hosts: Path | None = None

    def __post_init__(self) -> None:
        for name in ("localhost", "private_reverse", "special_reverse", "special_names"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"local.{name}", "must be true or false")
        if self.hosts is not None and (
            not isinstance(self.hosts, Path) or not str(self.hosts).strip()
        ):
            raise ConfigError("local.hosts", f"must be the path of a file, not {self.hosts!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    """The listeners. By default only loopback clients are served; others get REFUSED."""

    listen: tuple[Address, ...] = (("127.0.0.1", 53),)
    allow: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    tcp: bool = True
    tcp_idle_timeout: float = 10.0
    max_tcp_connections: int = 256
    max_inflight: int = 10_000
    shutdown_grace: float = 5.0

    def __post_init__(self) -> None:
        if not self.listen:
            raise ConfigError("server.listen", "needs at least one address")
        for network in self.allow:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ConfigError("server.allow", f"{network!r} is not a network") from None
        _positive("server.tcp_idle_timeout", self.tcp_idle_timeout)
        _positive("server.shutdown_grace", self.shutdown_grace)
        if self.max_tcp_connections < 1:
            raise ConfigError("server.max_tcp_connections", "must be at least 1")
        if self.max_inflight < 1:
            raise ConfigError("server.max_inflight", "must be at least 1")


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The whole daemon's configuration."""

    mode: Mode = "forward"
    server: ServerConfig = field(default_factory=ServerConfig)
    forwarder: ForwarderConfig = field(default_factory=ForwarderConfig)
    transport: TransportConfig = field(default_factory=TransportConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    local: LocalConfig = field(default_factory=LocalConfig)

    def __post_init__(self) -> None:
        _choice("mode", self.mode, Mode)
        if self.mode == "recursive":
            raise ConfigError("mode", "recursive mode is not built yet; use 'forward'")
        if self.mode == "forward" and not self.forwarder.upstreams:
            raise ConfigError("forwarder.upstreams", "forward mode needs at least one upstream")


_SECTIONS: dict[str, type[Any]] = {
    "server": ServerConfig,
    "forwarder": ForwarderConfig,
    "transport": TransportConfig,
    "cache": CacheConfig,
    "local": LocalConfig,
}


def _build(cls: type[Any], section: str, values: Mapping[str, Any]) -> Any:
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{section}.{key}"
        if key not in known:
            raise ConfigError(name, "unknown setting")
        if key == "pool" and isinstance(value, Mapping):
            value = _build(SocketPoolConfig, "transport.pool", value)
        elif key in ("listen", "upstreams"):
            default_port = 53
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(name, "must be a list of addresses such as '127.0.0.1:53'")
            value = tuple(parse_address(v, default_port, name=name) for v in value)
        elif key == "domains":
            if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
                raise ConfigError(name, "must be tables: [[forwarder.domains]]")
            value = tuple(
                _build(DomainConfig, f"{name}[{index}]", item) for index, item in enumerate(value)
            )
        elif key == "hosts":
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(name, "must be the path of a file")
            value = Path(value)
        elif key == "allow":
            if not isinstance(value, list):
                raise ConfigError(name, "must be a list of networks")
            value = tuple(value)
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(section, str(exc)) from exc


def config_from_mapping(data: Mapping[str, Any]) -> Config:
    """Build a Config from a parsed TOML document. Raises ConfigError naming the field."""
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key == "mode":
            kwargs["mode"] = value
        elif key in _SECTIONS:
            if not isinstance(value, Mapping):
                raise ConfigError(key, "must be a table")
            kwargs[key] = _build(_SECTIONS[key], key, value)
        else:
            raise ConfigError(key, "unknown section")
    return Config(**kwargs)


def load_config(path: Path) -> dict[str, Any]:
    """Read a TOML config file. Raises ConfigError naming the file on unreadable or bad TOML."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(str(path), exc.strerror or str(exc)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"invalid TOML: {exc}") from exc
