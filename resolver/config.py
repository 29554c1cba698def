"""Configuration: one frozen dataclass per component, validated on construction.

Every invalid value raises ConfigError naming the field (``server.listen``, ``forwarder.policy``)
and the reason. A Config is built once, in the CLI, from an optional TOML file plus flags.
"""

from __future__ import annotations

import ipaddress
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args

from resolver.errors import ConfigError

__all__ = [
    "CacheConfig",
    "Config",
    "DnssecConfig",
    "DomainConfig",
    "EncryptedUpstream",
    "ForwarderConfig",
    "ListConfig",
    "LocalConfig",
    "LogConfig",
    "MetricsConfig",
    "PolicyConfig",
    "RecursionConfig",
    "RpzConfig",
    "ServerConfig",
    "SocketPoolConfig",
    "TransportConfig",
    "config_problems",
    "load_config",
    "parse_address",
    "parse_upstream",
    "reaches",
]

Address = tuple[str, int]
# A client's socket address as the kernel reports it: (host, port) over IPv4, (host, port,
# flowinfo, scope_id) over IPv6. Replies go back to the whole of it (scope_id included).
PeerAddress = tuple[str, int] | tuple[str, int, int, int]
Encryption = Literal["tls", "https"]
Policy = Literal["sequential", "round_robin", "random", "fastest"]
Order = Literal["fifo", "random"]
Mode = Literal["forward", "recursive"]
OutsideAllow = Literal["refuse", "drop"]
ListFormat = Literal["hosts", "domains", "adblock"]
ListAction = Literal["nxdomain", "nodata", "null", "refused"]
RpzAction = Literal["given", "nxdomain", "nodata", "passthru", "drop", "tcp-only"]
Validation = Literal["on", "permissive", "off"]
_MAX_TTL = 0x7FFF_FFFF  # RFC 2181 section 8
_DAY = 86_400.0  # the longest duration any setting accepts
_MAX_SOCKETS = 65_535  # per upstream pool: one per local port at most
_MAX_BUFFER = 1 << 30  # a socket buffer, bytes: the kernel takes an int and doubles it
METRICS_PORT = 9153  # the metrics listener's port when none is given (CoreDNS's)
_MAX_WORKERS = 64  # worker processes; far more than cores is only contention


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


@dataclass(frozen=True, slots=True, kw_only=True)
class EncryptedUpstream:
    """An upstream spoken to over TLS (``tls://``, RFC 7858) or HTTPS (``https://``, RFC 8484).

    ``host`` is an IP address for TLS; for HTTPS it may be a name, looked up through
    ``forwarder.bootstrap`` or the hosts file, never through ourselves. ``tls_name`` is the name
    the certificate must carry (the host when None: an address is then checked against the
    certificate's IP addresses). ``pins``: base64 SHA-256 digests of acceptable public keys
    (RFC 7858 section 4.2); when given, the certificate's key must be one of them.
    """

    protocol: Encryption
    host: str
    port: int
    tls_name: str | None = None
    path: str = "/dns-query"
    pins: tuple[str, ...] = ()

    @property
    def address(self) -> Address:
        return self.host, self.port

    @property
    def certificate_name(self) -> str:
        return self.tls_name or self.host

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        path = self.path if self.protocol == "https" else ""
        name = f"#{self.tls_name}" if self.tls_name else ""
        return f"{self.protocol}://{host}:{self.port}{path}{name}"


Upstream = Address | EncryptedUpstream
_SCHEME_PORTS = {"tls": 853, "https": 443}
_PIN_LENGTH = 44  # base64 of 32 bytes


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def parse_upstream(text: str, *, name: str = "upstream") -> Upstream:
    """Parse one upstream: a plain address (``"9.9.9.9"``, ``"[::1]:5353"``, port 53 by
    default), ``tls://ADDRESS[:PORT][?pin-sha256=PIN...][#NAME]`` (port 853) or
    ``https://HOST[:PORT]/PATH[#NAME]`` (port 443). Raises ConfigError naming ``name``."""
    text = text.strip()
    scheme, found, rest = text.partition("://")
    if not found:
        return parse_address(text, 53, name=name)
    scheme = scheme.lower()
    if scheme not in _SCHEME_PORTS:
        raise ConfigError(name, f"{text!r}: unknown scheme {scheme!r} (tls or https)")
    rest, _, tls_name = rest.partition("#")
    rest, _, query = rest.partition("?")
    path = "/dns-query"
    if scheme == "https" and "/" in rest:
        rest, slash, tail = rest.partition("/")
        path = slash + tail
    elif "/" in rest:
        raise ConfigError(name, f"{text!r}: a tls:// upstream has no path")
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0 or (rest[end + 1 :] and not rest[end + 1 :].startswith(":")):
            raise ConfigError(name, f"{text!r}: a bracketed address is '[ADDRESS]:PORT'")
        host, port_text = rest[1:end], rest[end + 2 :]
    elif rest.count(":") == 1:
        host, port_text = rest.split(":")
    else:  # no port, or a bare IPv6 address
        host, port_text = rest, ""
    if not host:
        raise ConfigError(name, f"{text!r} has no host")
    if scheme == "tls" and not _is_ip(host):
        raise ConfigError(name, f"{host!r} is not an IP address (give the name after '#')")
    if scheme == "https" and not _is_ip(host):
        _domain_name(name, host)
    port = _SCHEME_PORTS[scheme]
    if port_text:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ConfigError(name, f"port {port_text!r} is not a number from 1 to 65535")
        port = int(port_text)
    pins: list[str] = []
    for item in filter(None, query.split("&")):
        key, _, value = item.partition("=")
        if key != "pin-sha256" or len(value) != _PIN_LENGTH:
            raise ConfigError(name, f"{item!r}: expected pin-sha256=BASE64 (44 characters)")
        pins.append(value)
    if tls_name:
        _domain_name(name, tls_name)
    return EncryptedUpstream(
        protocol="tls" if scheme == "tls" else "https",
        host=host,
        port=port,
        tls_name=tls_name or None,
        path=path,
        pins=tuple(pins),
    )


def _shown(value: object) -> str:
    return f"{type(value).__name__} {value!r}"


def _check_bool(name: str, value: object) -> None:
    # `enabled = "no"` is a non-empty string, true to Python: only a real boolean is one.
    if not isinstance(value, bool):
        raise ConfigError(name, f"must be true or false, not {_shown(value)}")


def _check_int(name: str, value: object, low: int, high: int) -> None:
    # bool is an int, but `ttl_floor = true` in a TOML file is a mistake worth naming; a float
    # such as 1.5 is not an integer either.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(name, f"must be an integer, not {_shown(value)}")
    if not low <= value <= high:
        raise ConfigError(name, f"must be between {low} and {high}, not {value}")


def _check_seconds(name: str, value: object, high: float) -> None:
    """A positive, finite number of seconds (an integer will do) up to ``high``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(name, f"must be a number of seconds, not {_shown(value)}")
    if not (math.isfinite(value) and 0 < value <= high):
        raise ConfigError(name, f"must be more than 0 and at most {high:g}, not {value}")


def _check_path(name: str, value: object) -> None:
    """None (no file), or the path of a file."""
    if value is not None and (not isinstance(value, Path) or not str(value).strip()):
        raise ConfigError(name, f"must be the path of a file, not {value!r}")


def _check_timeouts(section: str, name: str, attempt: object, query: object) -> None:
    """An attempt's timeout and the whole query's: each a number of seconds up to an hour,
    the first at most the second (no attempt could use the rest)."""
    _check_seconds(f"{section}.{name}", attempt, 3600)
    _check_seconds(f"{section}.query_timeout", query, 3600)
    assert isinstance(attempt, int | float)
    assert isinstance(query, int | float)
    if attempt > query:
        raise ConfigError(
            f"{section}.{name}", f"must be at most query_timeout ({query:g}), not {attempt:g}"
        )


def _choice(name: str, value: object, allowed: object) -> None:
    options = get_args(allowed)
    if not isinstance(value, str) or value not in options:
        raise ConfigError(name, f"must be one of {', '.join(map(str, options))}; got {value!r}")


def _addresses(
    owner: object, attribute: str, name: str, lowest_port: int, *, single: bool = False
) -> None:
    """Check that ``owner.attribute`` is a sequence of (IP address, port) pairs and store it
    as a tuple of tuples (a list given by a caller becomes immutable too); with ``single``,
    that it is one such pair."""
    value = getattr(owner, attribute)
    if single:
        value = [value]
    elif isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ConfigError(name, f"must be a list of (address, port) pairs, not {_shown(value)}")
    pairs: list[Any] = []
    for item in value:
        if isinstance(item, EncryptedUpstream) and not single:
            pairs.append(item)
            continue
        if (
            not isinstance(item, Sequence)
            or isinstance(item, str | bytes)
            or len(item) != 2
            or not isinstance(item[0], str)
        ):
            raise ConfigError(name, f"{item!r} is not an (address, port) pair")
        host, port = item
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ConfigError(name, f"{host!r} is not an IP address") from None
        if isinstance(port, bool) or not isinstance(port, int):
            raise ConfigError(name, f"port of {host} must be an integer, not {_shown(port)}")
        if not lowest_port <= port <= 65535:
            raise ConfigError(name, f"port {port} of {host} is not {lowest_port}-65535")
        pairs.append((host, port))
    object.__setattr__(owner, attribute, pairs[0] if single else tuple(pairs))


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The address ``host`` names, an IPv4-mapped IPv6 address as the IPv4 one."""
    address = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _same_socket(one: Address, other: Address) -> bool:
    """Whether TCP listeners on ``one`` and ``other`` cannot both be bound: the same port (not
    0, which picks a free one) and the same address, or a wildcard covering the other."""
    if one[1] != other[1] or not one[1]:
        return False
    a, b = ipaddress.ip_address(one[0]), ipaddress.ip_address(other[0])
    if a == b:
        return True
    if a.is_unspecified or b.is_unspecified:
        return a.version == b.version or (a if a.is_unspecified else b).version == 6
    return False


def reaches(upstream: Address, listen: Address) -> bool:
    """Whether queries sent to ``upstream`` would arrive at the listener on ``listen``."""
    if upstream[1] != listen[1]:
        return False
    target, bound = _ip(upstream[0]), _ip(listen[0])
    if target == bound:
        return True
    # A wildcard listener receives what is sent to any local address; loopback ones are
    # certainly local. `[::]` (dual-stack) receives IPv4 too.
    local = target.is_loopback or target.is_unspecified
    if not (bound.is_unspecified and local):
        return False
    return bound.version == target.version or bound.version == 6


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
        _check_int("transport.pool.min_size", self.min_size, 0, _MAX_SOCKETS)
        _check_int("transport.pool.max_size", self.max_size, 1, _MAX_SOCKETS)
        if self.max_size < self.min_size:
            raise ConfigError(
                "transport.pool.max_size",
                f"must be at least min_size ({self.min_size}), not {self.max_size}",
            )
        _check_int("transport.pool.max_uses", self.max_uses, 1, 2**31)
        _check_seconds("transport.pool.max_age", self.max_age, _DAY)
        _check_seconds("transport.pool.idle_timeout", self.idle_timeout, _DAY)
        _check_int("transport.pool.min_idle", self.min_idle, 0, _MAX_SOCKETS)
        _choice("transport.pool.order", self.order, Order)


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportConfig:
    """How queries go upstream: EDNS size, 0x20 case randomisation, the socket pools.

    ``unwanted_reply_threshold`` (Unbound's option of that name): once an upstream's pooled
    sockets have received that many replies matching no query within a minute, a warning is
    logged (once a minute) and every socket that receives another is retired when its query
    ends, so a flood of forged replies keeps chasing fresh ports. 0 turns it off.

    Stream upstreams (TCP after a truncated reply, ``tls://``, ``https://``): per upstream at
    most ``max_connections`` persistent connections, each carrying up to ``pipeline_depth``
    queries at once, closed after ``connection_idle_timeout`` seconds without a query (sooner
    when the server's edns-tcp-keepalive asks). Certificates are verified against the
    system's CA store, or only ``tls_ca`` (a PEM file) when given."""

    edns_size: int = 1232
    randomize_case: bool = False
    unwanted_reply_threshold: int = 1000
    pool: SocketPoolConfig = field(default_factory=SocketPoolConfig)
    tls_ca: Path | None = None
    max_connections: int = 4
    pipeline_depth: int = 64
    connection_idle_timeout: float = 10.0

    def __post_init__(self) -> None:
        _check_path("transport.tls_ca", self.tls_ca)
        _check_int("transport.max_connections", self.max_connections, 1, 1024)
        _check_int("transport.pipeline_depth", self.pipeline_depth, 1, 65535)
        _check_seconds("transport.connection_idle_timeout", self.connection_idle_timeout, _DAY)
        _check_int("transport.edns_size", self.edns_size, 512, 65535)
        _check_bool("transport.randomize_case", self.randomize_case)
        _check_int("transport.unwanted_reply_threshold", self.unwanted_reply_threshold, 0, 2**31)
        if not isinstance(self.pool, SocketPoolConfig):
            raise ConfigError("transport.pool", f"must be a table, not {_shown(self.pool)}")


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
    upstreams: tuple[Upstream, ...]
    policy: Policy | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", _domain_name("forwarder.domains.name", self.name))
        _addresses(self, "upstreams", "forwarder.domains.upstreams", 1)
        if not self.upstreams:
            raise ConfigError("forwarder.domains.upstreams", f"{self.name} needs an upstream")
        if self.policy is not None:
            _choice("forwarder.domains.policy", self.policy, Policy)


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwarderConfig:
    """Upstreams and how to choose among them.

    ``upstream_timeout`` bounds one attempt at one upstream; ``query_timeout`` bounds the
    whole answer to one client query, failover included. A server with ``down_after``
    consecutive failures is skipped for ``down_for`` seconds unless every server is down.
    ``upstream_timeout`` may not exceed ``query_timeout``: no attempt could use the rest.
    ``domains`` send the questions for some names to upstreams of their own (the longest
    matching name wins); every other question goes to ``upstreams``. An upstream is a plain
    address (UDP, and TCP after a truncated reply) or an :class:`EncryptedUpstream`
    (``tls://``, ``https://``). ``bootstrap``: plain servers that look up the host names of
    ``https://`` upstreams (the hosts file is read first); never the daemon itself.
    """

    upstreams: tuple[Upstream, ...] = ()
    policy: Policy = "sequential"
    upstream_timeout: float = 2.0
    query_timeout: float = 5.0
    down_after: int = 3
    down_for: float = 30.0
    domains: tuple[DomainConfig, ...] = ()
    bootstrap: tuple[Address, ...] = ()

    def __post_init__(self) -> None:
        _addresses(self, "upstreams", "forwarder.upstreams", 1)
        _addresses(self, "bootstrap", "forwarder.bootstrap", 1)
        _choice("forwarder.policy", self.policy, Policy)
        names = [domain.name for domain in self.domains]
        for name in names:
            if names.count(name) > 1:
                raise ConfigError("forwarder.domains", f"{name} is listed more than once")
        _check_timeouts("forwarder", "upstream_timeout", self.upstream_timeout, self.query_timeout)
        _check_int("forwarder.down_after", self.down_after, 1, 1_000_000)
        _check_seconds("forwarder.down_for", self.down_for, _DAY)


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
    (the last tenth of the lifetime, as Unbound's prefetch; 0 disables). ``file``: where the
    answers are written at a clean stop and read back at start, aged by the wall-clock time in
    between (None: the cache starts empty).

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
    file: Path | None = None

    def __post_init__(self) -> None:
        _check_bool("cache.enabled", self.enabled)
        _check_path("cache.file", self.file)
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
        _check_path("local.hosts", self.hosts)


@dataclass(frozen=True, slots=True, kw_only=True)
class LogConfig:
    """What is logged besides the daemon's own messages. ``query_log``: a file that gets one
    JSON line per answered query (off when None; see ``resolver.querylog``)."""

    query_log: Path | None = None

    def __post_init__(self) -> None:
        _check_path("log.query_log", self.query_log)


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsConfig:
    """Prometheus metrics: ``listen``, an address and TCP port on which ``GET /metrics``
    answers in Prometheus's text format (off when None). Only the HTTP of a scraper is
    spoken there; it belongs on loopback or a management network, since it tells how
    the daemon is used."""

    listen: Address | None = None

    def __post_init__(self) -> None:
        if self.listen is not None:
            _addresses(self, "listen", "metrics.listen", 0, single=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    """The listeners. By default only loopback clients are served.

    A client outside ``allow`` is told REFUSED whatever it sends (``outside_allow =
    "refuse"``), or nothing at all (``"drop"``); its TCP connections are closed at accept
    without reading. IPv4 clients of a dual-stack listener (``[::]``, when no IPv4 address
    shares its port) are matched as IPv4 addresses.

    TCP: at most ``max_tcp_connections`` connections; at the cap a new one closes the one
    that sent a whole query longest ago (and has none in flight) rather than being refused.
    A connection waits ``tcp_idle_timeout`` seconds for its next query, only
    ``tcp_busy_idle_timeout`` while more than half the cap is in use. It has at most
    ``max_tcp_outstanding`` queries in flight, is not read while its unsent replies pass a
    high-water mark, and is closed when they stay unread for ``tcp_write_timeout`` seconds.

    The UDP listening sockets get receive and send buffers of ``udp_receive_buffer`` and
    ``udp_send_buffer`` bytes (4 MiB: a burst of some thousands of queries waits in the kernel
    while the loop is busy, instead of being dropped; 0 keeps the system's default). Beyond
    ``net.core.rmem_max`` they are forced when the process may (CAP_NET_ADMIN), else a warning
    says what was granted.

    ``workers`` above 1 runs that many processes, each with its own listening sockets on every
    address (SO_REUSEPORT: the kernel spreads clients over them by address and port), its own
    engine and its own cache, under a parent that binds the sockets, restarts a worker that
    dies and passes signals on (see ``resolver.workers``).

    ``listen_tls`` (DNS over TLS, RFC 7858) and ``listen_https`` (DNS over HTTPS, RFC 8484, on
    ``/dns-query``) serve with the certificate chain ``tls_cert`` and its key ``tls_key`` (PEM,
    read again on SIGHUP), under the same access control and TCP limits; replies on them are
    padded to RFC 8467's 468-byte blocks.
    """

    listen: tuple[Address, ...] = (("127.0.0.1", 53),)
    allow: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    outside_allow: OutsideAllow = "refuse"
    udp_receive_buffer: int = 4 * 1024 * 1024
    udp_send_buffer: int = 4 * 1024 * 1024
    tcp: bool = True
    tcp_idle_timeout: float = 10.0
    tcp_busy_idle_timeout: float = 1.0
    tcp_write_timeout: float = 5.0
    max_tcp_connections: int = 256
    max_tcp_outstanding: int = 32
    max_inflight: int = 10_000
    shutdown_grace: float = 5.0
    workers: int = 1
    listen_tls: tuple[Address, ...] = ()
    listen_https: tuple[Address, ...] = ()
    tls_cert: Path | None = None
    tls_key: Path | None = None

    def __post_init__(self) -> None:
        _addresses(self, "listen", "server.listen", 0)
        _addresses(self, "listen_tls", "server.listen_tls", 0)
        _addresses(self, "listen_https", "server.listen_https", 0)
        _check_path("server.tls_cert", self.tls_cert)
        _check_path("server.tls_key", self.tls_key)
        if (self.listen_tls or self.listen_https) and (
            self.tls_cert is None or self.tls_key is None
        ):
            raise ConfigError(
                "server.tls_cert", "TLS and HTTPS listeners need tls_cert and tls_key"
            )
        if not self.listen:
            raise ConfigError("server.listen", "needs at least one address")
        seen: set[tuple[object, int]] = set()
        for host, port in self.listen:
            key = (ipaddress.ip_address(host), port)
            if port and key in seen:
                raise ConfigError("server.listen", f"{host} port {port} is listed twice")
            seen.add(key)
        allow = self.allow
        if isinstance(allow, str | bytes) or not isinstance(allow, Sequence):
            raise ConfigError("server.allow", f"must be a list of networks, not {_shown(allow)}")
        for network in allow:
            # ip_network(8) would be 0.0.0.8/32: only text names a network here.
            if not isinstance(network, str):
                raise ConfigError(
                    "server.allow", f"{_shown(network)} is not a network such as '10.0.0.0/8'"
                )
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ConfigError("server.allow", f"{network!r} is not a network") from None
        object.__setattr__(self, "allow", tuple(allow))
        _choice("server.outside_allow", self.outside_allow, OutsideAllow)
        _check_int("server.udp_receive_buffer", self.udp_receive_buffer, 0, _MAX_BUFFER)
        _check_int("server.udp_send_buffer", self.udp_send_buffer, 0, _MAX_BUFFER)
        _check_bool("server.tcp", self.tcp)
        _check_seconds("server.tcp_idle_timeout", self.tcp_idle_timeout, 3600)
        _check_seconds("server.tcp_busy_idle_timeout", self.tcp_busy_idle_timeout, 3600)
        _check_seconds("server.tcp_write_timeout", self.tcp_write_timeout, 3600)
        _check_int("server.max_tcp_connections", self.max_tcp_connections, 1, 1_000_000)
        _check_int("server.max_tcp_outstanding", self.max_tcp_outstanding, 1, 65_535)
        _check_int("server.max_inflight", self.max_inflight, 1, 10_000_000)
        _check_seconds("server.shutdown_grace", self.shutdown_grace, 3600)
        _check_int("server.workers", self.workers, 1, _MAX_WORKERS)


@dataclass(frozen=True, slots=True, kw_only=True)
class RecursionConfig:
    """Recursive mode: resolving from the root instead of asking upstreams.

    ``root_hints``: a file in the named.root format naming the root servers (None: the copy of
    IANA's file that ships with the package). ``port``: the port every authoritative server is
    asked on (53; NS records carry no port, so another value is for test hierarchies on
    loopback). ``qname_minimisation`` (RFC 9156): each server is asked only one label more
    than the zone it serves, falling back to the full name where a server answers that badly.
    ``randomize_case``: 0x20 on the name of every query, with Unbound's fallback for servers
    that do not echo the case. ``server_timeout``: the longest wait for one server before the
    next is asked (known servers get less: a few times their smoothed RTT);
    ``query_timeout``: the whole client query. ``max_queries``: queries to servers for one
    client query, name server lookups included; ``max_referrals``: referrals followed for one
    name. ``max_zones``: the RRset cache (zone cuts, name server addresses, answers) keeps
    four RRsets per zone allowed, the least recently used going first.
    """

    root_hints: Path | None = None
    port: int = 53
    qname_minimisation: bool = True
    randomize_case: bool = True
    server_timeout: float = 1.0
    query_timeout: float = 10.0
    max_queries: int = 64
    max_referrals: int = 30
    max_zones: int = 10_000

    def __post_init__(self) -> None:
        _check_path("recursion.root_hints", self.root_hints)
        _check_int("recursion.port", self.port, 1, 65535)
        _check_bool("recursion.qname_minimisation", self.qname_minimisation)
        _check_bool("recursion.randomize_case", self.randomize_case)
        _check_timeouts("recursion", "server_timeout", self.server_timeout, self.query_timeout)
        _check_int("recursion.max_queries", self.max_queries, 1, 10_000)
        _check_int("recursion.max_referrals", self.max_referrals, 1, 1_000)
        _check_int("recursion.max_zones", self.max_zones, 1, 2**31)


def _check_clients(name: str, owner: object) -> None:
    """``owner.clients``: a list of networks (text), stored as a tuple."""
    value = owner.clients  # type: ignore[attr-defined]
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ConfigError(name, f"must be a list of networks, not {_shown(value)}")
    for network in value:
        if not isinstance(network, str):
            raise ConfigError(name, f"{_shown(network)} is not a network such as '10.0.0.0/24'")
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ConfigError(name, f"{network!r} is not a network") from None
    object.__setattr__(owner, "clients", tuple(value))


@dataclass(frozen=True, slots=True, kw_only=True)
class ListConfig:
    """A blocklist (``[[policy.lists]]``): ``file`` in ``format`` (``hosts``: ``0.0.0.0 name``
    lines, each blocking that name only; ``domains``: one name a line, blocking it and the
    names below it, ``*.name`` the names below only; ``adblock``: ``||name^`` blocking the
    name and below, ``@@||name^`` an exception). ``action``: the answer to a blocked name
    (``nxdomain``; ``nodata``; ``null``: 0.0.0.0 and ::; ``refused``). ``allow = true``
    makes it an allowlist: its names are never blocked by any list. ``clients``: the
    networks it applies to (every client when empty). ``name``: in the query log and the
    metrics (the file's name when None)."""

    file: Path
    format: ListFormat = "domains"
    action: ListAction = "nxdomain"
    allow: bool = False
    clients: tuple[str, ...] = ()
    name: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.file, Path) or not str(self.file).strip():
            raise ConfigError("policy.lists.file", f"must be the path of a file, not {self.file!r}")
        _choice("policy.lists.format", self.format, ListFormat)
        _choice("policy.lists.action", self.action, ListAction)
        _check_bool("policy.lists.allow", self.allow)
        _check_clients("policy.lists.clients", self)
        if self.name is not None and (not isinstance(self.name, str) or not self.name.strip()):
            raise ConfigError("policy.lists.name", f"must be a non-empty text, not {self.name!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class RpzConfig:
    """An RPZ zone (``[[policy.rpz]]``, ``--rpz FILE``): ``file``, a master file in the
    format of draft-vixie-dnsop-dns-rpz. ``action``: ``given`` (each rule's own) or one that
    replaces every rule's: ``nxdomain``, ``nodata``, ``passthru``, ``drop``, ``tcp-only`` or
    ``cname NAME`` (rewrite to NAME). ``log``: its hits in the query log (the metrics count
    them anyway). ``clients``: the networks it applies to (every client when empty);
    ``name``: in the query log and the metrics (the file's name when None). ``zone``: the
    zone's name, the origin of a file that sets no ``$ORIGIN`` (the file's name without
    its extension when None: ``rpz.example.zone`` is ``rpz.example.``)."""

    file: Path
    action: str = "given"
    log: bool = True
    clients: tuple[str, ...] = ()
    name: str | None = None
    zone: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.file, Path) or not str(self.file).strip():
            raise ConfigError("policy.rpz.file", f"must be the path of a file, not {self.file!r}")
        action = self.action
        if not isinstance(action, str):
            raise ConfigError("policy.rpz.action", f"must be a text, not {_shown(action)}")
        if action.startswith("cname "):
            _domain_name("policy.rpz.action", action[6:])
        else:
            _choice("policy.rpz.action", action, RpzAction)
        _check_bool("policy.rpz.log", self.log)
        _check_clients("policy.rpz.clients", self)
        if self.name is not None and (not isinstance(self.name, str) or not self.name.strip()):
            raise ConfigError("policy.rpz.name", f"must be a non-empty text, not {self.name!r}")
        if self.zone is not None:
            object.__setattr__(self, "zone", _domain_name("policy.rpz.zone", self.zone))


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyConfig:
    """The response policy: RPZ zones (``rpz``, in order) and blocklists (``lists``), see
    ``resolver.engine.policy``. A list's file is read again when it changes (checked every
    ``reload_interval`` seconds) and at SIGHUP. ``ttl``: of a list's ``null`` answer's
    records. ``censored``: lists' answers carry EDE 16 (Censored) instead of 15 (Blocked)."""

    lists: tuple[ListConfig, ...] = ()
    rpz: tuple[RpzConfig, ...] = ()
    reload_interval: float = 60.0
    ttl: int = 60
    censored: bool = False

    def __post_init__(self) -> None:
        for name, kind in (("lists", ListConfig), ("rpz", RpzConfig)):
            value = getattr(self, name)
            if isinstance(value, str | bytes) or not isinstance(value, Sequence):
                raise ConfigError(f"policy.{name}", f"must be tables: [[policy.{name}]]")
            if not all(isinstance(item, kind) for item in value):
                raise ConfigError(f"policy.{name}", f"must be tables: [[policy.{name}]]")
            object.__setattr__(self, name, tuple(value))
        _check_seconds("policy.reload_interval", self.reload_interval, _DAY)
        _check_int("policy.ttl", self.ttl, 0, _MAX_TTL)
        _check_bool("policy.censored", self.censored)


@dataclass(frozen=True, slots=True, kw_only=True)
class DnssecConfig:
    """DNSSEC validation (RFC 4033-4035).

    ``validation``: "on" (a bogus answer is SERVFAIL with its Extended DNS Error), "permissive"
    (a bogus answer is logged and given anyway, without AD) or "off"; None, the default, is
    "on" in recursive mode and "off" in forward mode (many upstreams strip signatures).
    ``trust_anchors``: a file of DS or DNSKEY records in master-file format, as Unbound's
    ``trust-anchor-file`` (None: IANA's root anchor, shipped with the package; it is not
    followed through an RFC 5011 rollover). ``negative_trust_anchors`` (RFC 7646, Unbound's
    ``domain-insecure``): names below which answers are treated as insecure, kept lowercase
    with a trailing dot. ``nsec3_max_iterations``: NSEC3 records with more iterations make an
    answer insecure with EDE 27 (RFC 9276 3.2; 150, as Unbound). ``bogus_ttl``: seconds a
    bogus zone is remembered before it is asked again (RFC 9520; 60, as Unbound).
    ``aggressive_nsec``: in recursive mode, answer NXDOMAIN, NODATA and wildcard answers from
    NSEC records already validated, without asking (RFC 8198; on, as Unbound's
    ``aggressive-nsec``).
    """

    validation: Validation | None = None
    trust_anchors: Path | None = None
    negative_trust_anchors: tuple[str, ...] = ()
    nsec3_max_iterations: int = 150
    bogus_ttl: int = 60
    aggressive_nsec: bool = True

    def __post_init__(self) -> None:
        if self.validation is not None:
            _choice("dnssec.validation", self.validation, Validation)
        _check_path("dnssec.trust_anchors", self.trust_anchors)
        names = self.negative_trust_anchors
        if not isinstance(names, tuple):
            raise ConfigError("dnssec.negative_trust_anchors", "must be a list of domain names")
        object.__setattr__(
            self,
            "negative_trust_anchors",
            tuple(_domain_name("dnssec.negative_trust_anchors", name) for name in names),
        )
        _check_int("dnssec.nsec3_max_iterations", self.nsec3_max_iterations, 0, 65535)
        _check_int("dnssec.bogus_ttl", self.bogus_ttl, 1, 3600)
        _check_bool("dnssec.aggressive_nsec", self.aggressive_nsec)


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The whole daemon's configuration."""

    mode: Mode = "forward"
    server: ServerConfig = field(default_factory=ServerConfig)
    forwarder: ForwarderConfig = field(default_factory=ForwarderConfig)
    transport: TransportConfig = field(default_factory=TransportConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    local: LocalConfig = field(default_factory=LocalConfig)
    log: LogConfig = field(default_factory=LogConfig)
    recursion: RecursionConfig = field(default_factory=RecursionConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    dnssec: DnssecConfig = field(default_factory=DnssecConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)

    @property
    def validation(self) -> Validation:
        """DNSSEC validation as it applies to this mode (see `DnssecConfig.validation`)."""
        if self.dnssec.validation is not None:
            return self.dnssec.validation
        return "on" if self.mode == "recursive" else "off"

    def __post_init__(self) -> None:
        _choice("mode", self.mode, Mode)
        for name, section, cls in (
            ("server", self.server, ServerConfig),
            ("forwarder", self.forwarder, ForwarderConfig),
            ("transport", self.transport, TransportConfig),
            ("cache", self.cache, CacheConfig),
            ("recursion", self.recursion, RecursionConfig),
            ("metrics", self.metrics, MetricsConfig),
            ("dnssec", self.dnssec, DnssecConfig),
            ("policy", self.policy, PolicyConfig),
        ):
            if not isinstance(section, cls):
                raise ConfigError(name, f"must be a table, not {_shown(section)}")
        if self.mode == "forward" and not self.forwarder.upstreams:
            raise ConfigError("forwarder.upstreams", "forward mode needs at least one upstream")
        for upstream in self.forwarder.upstreams:
            if isinstance(upstream, EncryptedUpstream):
                continue
            for listen in self.server.listen:
                if reaches(upstream, listen):
                    raise ConfigError(
                        "forwarder.upstreams",
                        f"{upstream[0]} port {upstream[1]} is the daemon's own listener "
                        f"({listen[0]} port {listen[1]}): every query would loop",
                    )
        metrics = self.metrics.listen
        if metrics is not None and self.server.workers > 1:
            # Each worker counts only what it answers; one listener would see one worker.
            raise ConfigError(
                "metrics.listen",
                f"needs server.workers = 1 (not {self.server.workers}): each worker counts "
                "only its own queries",
            )
        if metrics is not None and self.server.tcp:
            for listen in self.server.listen:
                if _same_socket(metrics, listen):
                    raise ConfigError(
                        "metrics.listen",
                        f"{metrics[0]} port {metrics[1]} is taken by the DNS listener on TCP "
                        f"({listen[0]} port {listen[1]})",
                    )


_SECTIONS: dict[str, type[Any]] = {
    "server": ServerConfig,
    "forwarder": ForwarderConfig,
    "transport": TransportConfig,
    "cache": CacheConfig,
    "local": LocalConfig,
    "log": LogConfig,
    "recursion": RecursionConfig,
    "metrics": MetricsConfig,
    "dnssec": DnssecConfig,
    "policy": PolicyConfig,
}


def _build(cls: type[Any], section: str, values: Mapping[str, Any]) -> Any:
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{section}.{key}"
        if key not in known:
            raise ConfigError(name, "unknown setting")
        if section == "metrics" and key == "listen":
            if not isinstance(value, str):
                raise ConfigError(
                    name, f"must be an address such as '127.0.0.1:9153', not {_shown(value)}"
                )
            value = parse_address(value, METRICS_PORT, name=name)
        elif key == "pool":
            if not isinstance(value, Mapping):
                raise ConfigError(name, f"must be a table, not {_shown(value)}")
            value = _build(SocketPoolConfig, "transport.pool", value)
        elif key == "upstreams":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(
                    name, "must be a list of upstreams such as '127.0.0.1:53' or 'tls://9.9.9.9'"
                )
            value = tuple(parse_upstream(v, name=name) for v in value)
        elif key in ("listen", "bootstrap", "listen_tls", "listen_https"):
            default_port = {"listen_tls": 853, "listen_https": 443}.get(key, 53)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(name, "must be a list of addresses such as '127.0.0.1:53'")
            value = tuple(parse_address(v, default_port, name=name) for v in value)
        elif key == "domains":
            if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
                raise ConfigError(name, "must be tables: [[forwarder.domains]]")
            value = tuple(
                _build(DomainConfig, f"{name}[{index}]", item) for index, item in enumerate(value)
            )
        elif section == "policy" and key in ("lists", "rpz"):
            value = _policy_items(key, value)
        elif key in (
            "hosts",
            "query_log",
            "root_hints",
            "file",
            "trust_anchors",
            "tls_ca",
            "tls_cert",
            "tls_key",
        ):
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(name, "must be the path of a file")
            value = Path(value)
        elif key == "negative_trust_anchors":
            if not isinstance(value, list):
                raise ConfigError(name, f"must be a list of domain names, not {_shown(value)}")
            value = tuple(value)
        elif key == "allow" and section == "server":
            if not isinstance(value, list):
                raise ConfigError(name, f"must be a list of networks, not {_shown(value)}")
            value = tuple(value)
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(section, str(exc)) from exc


def _policy_items(key: str, value: object) -> tuple[Any, ...]:
    """``[[policy.lists]]`` or ``[[policy.rpz]]``: each table built, errors naming its index."""
    kind = ListConfig if key == "lists" else RpzConfig
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise ConfigError(f"policy.{key}", f"must be tables: [[policy.{key}]]")
    items = []
    for index, item in enumerate(value):
        where = f"policy.{key}[{index}]"
        try:
            items.append(_build(kind, where, item))
        except ConfigError as exc:
            field = exc.field
            if field.startswith(f"policy.{key}."):  # a check that names no index
                field = where + field.removeprefix(f"policy.{key}")
            raise ConfigError(field, exc.reason) from None
    return tuple(items)


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


def config_problems(data: Mapping[str, Any]) -> list[ConfigError]:
    """Every bad field of a parsed TOML document, each with its reason (empty when it makes a
    Config). Each setting is checked alone and then with the good settings of its table, so
    one bad value does not hide another, nor makes a good one look bad; a conflict between
    settings is reported once every setting is good on its own. Domains in
    ``[[forwarder.domains]]`` are named by their index and report their first bad field."""
    problems: list[ConfigError] = []
    for key, value in data.items():
        if key == "mode":
            try:
                _choice("mode", value, Mode)
            except ConfigError as exc:
                problems.append(exc)
        elif key not in _SECTIONS:
            problems.append(ConfigError(key, "unknown section"))
        elif not isinstance(value, Mapping):
            problems.append(ConfigError(key, "must be a table"))
        else:
            problems += _table_problems(_SECTIONS[key], key, value)
    if not problems:
        try:
            config_from_mapping(data)
        except ConfigError as exc:
            problems.append(exc)
    return problems


def _table_problems(cls: type[Any], section: str, values: Mapping[str, Any]) -> list[ConfigError]:
    try:
        _build(cls, section, values)
    except ConfigError as exc:
        first = exc
    else:
        return []
    good: dict[str, Any] = {}
    bad: list[str] = []
    for key, value in values.items():
        try:
            _build(cls, section, {key: value})
        except ConfigError:
            bad.append(key)
        else:
            good[key] = value
    problems: list[ConfigError] = []
    for key in bad:
        value = values[key]
        if key == "pool" and isinstance(value, Mapping):
            problems += _table_problems(SocketPoolConfig, "transport.pool", value)
            continue
        if key == "domains" and isinstance(value, list):
            problems += _domain_problems(value)
            if problems:
                continue
        try:
            _build(cls, section, {**good, key: value})
        except ConfigError as exc:
            problems.append(exc)
    return problems or [first]


def _domain_problems(domains: list[Any]) -> list[ConfigError]:
    problems: list[ConfigError] = []
    for index, item in enumerate(domains):
        where = f"forwarder.domains[{index}]"
        if not isinstance(item, Mapping):
            problems.append(ConfigError(where, "must be a table: [[forwarder.domains]]"))
            continue
        try:
            _build(DomainConfig, where, item)
        except ConfigError as exc:
            field = exc.field
            if field.startswith("forwarder.domains."):  # a check that names no index
                field = where + field.removeprefix("forwarder.domains")
            problems.append(ConfigError(field, exc.reason))
    return problems


def load_config(path: Path) -> dict[str, Any]:
    """Read a TOML config file. Raises ConfigError naming the file on unreadable or bad TOML."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(str(path), exc.strerror or str(exc)) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            str(path), f"not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"invalid TOML: {exc}") from exc
