"""``resolver query``: dig-style arguments, the server to ask, and one question over the transport.

The arguments are parsed as dig parses them (``@SERVER`` anywhere, then NAME [TYPE] [CLASS]);
the default server is the first usable ``nameserver`` of resolv.conf. The question goes out
through :class:`resolver.transport.Upstream`, the daemon's own transport: a pooled UDP socket,
TCP when the reply is truncated. No click and no printing here.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from resolver.config import Address, SocketPoolConfig, TransportConfig, parse_address
from resolver.dig import Reply, decode
from resolver.errors import (
    BadResponse,
    ConfigError,
    UpstreamTimeout,
    UpstreamUnreachable,
    WireError,
)
from resolver.transport import Upstream
from resolver.wire import CLASS_IN, TYPE_A, check_name, name_to_wire, qclass_value, qtype_value

__all__ = [
    "DEFAULT_RESOLV_CONF",
    "QueryOptions",
    "Question",
    "ask",
    "nameserver_from_resolv_conf",
    "parse_arguments",
    "run_query",
    "server_address",
]

DEFAULT_RESOLV_CONF = Path("/etc/resolv.conf")
DEFAULT_PORT = 53
# glibc (and so dig) ask the local host when resolv.conf names no server.
_FALLBACK_SERVER = "127.0.0.1"
_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
# One query needs one socket; a retry after a timeout opens a fresh one anyway.
_ONE_SHOT_TRANSPORT = TransportConfig(pool=SocketPoolConfig(min_size=1, max_size=4))


@dataclass(frozen=True, slots=True)
class Question:
    """A validated question: ``name`` as text with a trailing dot, numeric type and class."""

    name: str
    qtype: int = TYPE_A
    qclass: int = CLASS_IN

    @property
    def wire_name(self) -> bytes:
        return name_to_wire(self.name)


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryOptions:
    """How to ask: ``timeout`` seconds per try, ``tries`` UDP tries (a timed-out try is retried;
    TCP is tried once), ``tcp`` to skip UDP, ``dnssec`` sets DO, ``recurse`` sets RD.

    Raises ConfigError for a timeout that is not positive or fewer than one try.
    """

    timeout: float = 5.0
    tries: int = 3
    tcp: bool = False
    dnssec: bool = False
    recurse: bool = True

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ConfigError("--timeout", f"must be positive, got {self.timeout!r}")
        if self.tries < 1:
            raise ConfigError("--tries", f"must be at least 1, got {self.tries!r}")


def parse_arguments(args: Sequence[str]) -> tuple[Question, str | None]:
    """Split dig-style arguments into the question and the ``@SERVER`` text (without ``@``).

    After the name, each argument is a type if the type is not yet given and it names one,
    else a class (so ``NAME MX``, ``NAME MX CH`` and ``NAME ANY ANY`` work). Raises
    ConfigError for a missing name, a second ``@SERVER`` or an argument that fits nowhere,
    WireError for a name that is too long or has an empty label.
    """
    server: str | None = None
    rest: list[str] = []
    for arg in args:
        if arg.startswith("@"):
            if server is not None:
                raise ConfigError("@SERVER", f"given twice ({server!r} and {arg[1:]!r})")
            if not arg[1:]:
                raise ConfigError("@SERVER", "'@' needs an address after it")
            server = arg[1:]
        else:
            rest.append(arg)
    if not rest:
        raise ConfigError("NAME", "missing: what should be looked up?")
    name = check_name(rest[0])
    qtype: int | None = None
    qclass: int | None = None
    for arg in rest[1:]:
        if qtype is None and (value := _maybe(qtype_value, arg)) is not None:
            qtype = value
        elif qclass is None and (value := _maybe(qclass_value, arg)) is not None:
            qclass = value
        elif qtype is None:
            raise ConfigError("TYPE", f"unknown type {arg!r}")
        elif qclass is None:
            raise ConfigError("CLASS", f"unknown class {arg!r}")
        else:
            raise ConfigError(arg, "unexpected: the type and the class are already given")
    return Question(
        name, TYPE_A if qtype is None else qtype, CLASS_IN if qclass is None else qclass
    ), server


def _maybe(convert: Callable[[str], int], text: str) -> int | None:
    try:
        return convert(text)
    except WireError:
        return None


def nameserver_from_resolv_conf(path: Path = DEFAULT_RESOLV_CONF) -> str | None:
    """The first ``nameserver`` in resolv.conf whose value is an IP address, or None.

    Comments (``#``, ``;``) and other options are ignored, as are nameserver lines that do not
    hold an address (glibc skips them too). A file that cannot be read counts as empty.
    """
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            try:
                ipaddress.ip_address(fields[1])
            except ValueError:
                continue
            return fields[1]
    return None


def server_address(
    server: str | None,
    port: int | None,
    *,
    env_server: str | None = None,
    resolv_conf: Path = DEFAULT_RESOLV_CONF,
) -> Address:
    """The address to ask: ``@SERVER``, else ``env_server``, else resolv.conf, else 127.0.0.1.

    ``server`` and ``env_server`` may carry a port (``127.0.0.1:5353``, ``[::1]:53``); ``port``
    (``-p``) overrides it; the default is 53. Raises ConfigError naming the bad part for an
    address that is not an IP, is multicast or broadcast, or a port outside 1-65535.
    """
    if server is not None:
        text, field = server, "@SERVER"
    elif env_server:
        text, field = env_server, "RESOLVER_SERVER"
    else:
        found = nameserver_from_resolv_conf(resolv_conf)
        text, field = found or _FALLBACK_SERVER, str(resolv_conf)
        # resolv.conf holds bare addresses: an IPv6 one must not be split at its colons.
        text = f"[{text}]" if ":" in text else text
    host, text_port = parse_address(text, DEFAULT_PORT, name=field)
    ip = ipaddress.ip_address(host.partition("%")[0])
    if ip.is_multicast or ip == _BROADCAST:
        raise ConfigError(field, f"{host} is a multicast or broadcast address, not a server")
    if port is not None:
        text_port, field = port, "--port"
    if not 1 <= text_port <= 65535:
        raise ConfigError(field, f"port {text_port} is not a number from 1 to 65535")
    return host, text_port


async def ask(upstream: Upstream, question: Question, options: QueryOptions) -> Reply:
    """Ask ``upstream`` one question; return the decoded reply and how it came.

    A UDP try that times out is repeated up to ``options.tries`` times, each with its own
    ``options.timeout``. Raises UpstreamTimeout when every try timed out, UpstreamUnreachable
    when the server refused (ICMP unreachable, TCP reset), BadResponse for a reply that cannot
    be decoded.
    """
    loop = asyncio.get_running_loop()
    tries = 1 if options.tcp else options.tries
    name = question.wire_name
    for attempt in range(1, tries + 1):
        tcp_before = upstream.statistics().tcp_queries
        start = loop.time()
        # uvloop's clock ticks in milliseconds; the query time wants finer.
        started = time.perf_counter()
        try:
            data = await upstream.exchange(
                name,
                question.qtype,
                question.qclass,
                deadline=start + options.timeout,
                do=options.dnssec,
                rd=options.recurse,
                tcp=options.tcp,
            )
        except UpstreamTimeout:
            if attempt == tries:
                raise
            continue
        elapsed = time.perf_counter() - started
        try:
            message = decode(data)
        except WireError as exc:
            raise BadResponse(upstream.name, f"malformed reply: {exc}") from exc
        used_tcp = upstream.statistics().tcp_queries > tcp_before
        return Reply(
            message,
            upstream.address,
            "TCP" if used_tcp else "UDP",
            elapsed,
            datetime.now().astimezone(),
        )
    raise AssertionError("unreachable: the last try returns or raises")


async def run_query(server: Address, question: Question, options: QueryOptions) -> Reply:
    """Open a one-socket Upstream to ``server``, :func:`ask`, close it.

    Raises ConfigError when no socket toward ``server`` can be opened (a broadcast address,
    an unreachable network), otherwise as :func:`ask`.
    """
    upstream = Upstream(server, _ONE_SHOT_TRANSPORT)
    try:
        try:
            await upstream.start()
        except UpstreamUnreachable as exc:
            raise ConfigError("server", f"cannot send to {upstream.name}: {exc.reason}") from exc
        return await ask(upstream, question, options)
    finally:
        await upstream.aclose()
