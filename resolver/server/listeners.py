"""What the workers share: the listening sockets, bound once (by the parent process with
``serve --workers``) and served by each worker, and their buffer sizes."""

from __future__ import annotations

import errno
import logging
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from resolver.config import Address, ServerConfig
from resolver.transport import format_address

__all__ = ["Listener", "ListenerKind", "bind_listeners", "bind_stream_listener"]

log = logging.getLogger(__name__)

_BIND_ATTEMPTS = 20  # port 0: tries at a UDP port whose TCP twin is free too
_TCP_SEND_BUFFER = 64 * 1024  # a TCP connection's kernel send buffer (Linux doubles it)
# Linux's setsockopt options that pass net.core.rmem_max / wmem_max (asm-generic/socket.h),
# and the factor by which it reports a buffer size (it doubles what it is given).
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
_SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)
_KERNEL_DOUBLES = 2 if sys.platform == "linux" else 1


# What a listening socket set serves: plain DNS (UDP, and TCP on the same port), DNS over TLS
# (RFC 7858) or DNS over HTTPS (RFC 8484), the last two on one TCP socket each.
ListenerKind = Literal["dns", "tls", "https"]


@dataclass(frozen=True, slots=True)
class Listener:
    """The bound sockets of one listen address: for ``kind`` "dns" UDP, and TCP on the same
    port unless TCP is off; for "tls" and "https" the one TCP socket (``udp`` is None). Whoever
    binds them closes them, unless a Server took them over."""

    udp: socket.socket | None
    tcp: socket.socket | None
    kind: ListenerKind = "dns"

    @property
    def address(self) -> Address:
        sock = self.udp if self.udp is not None else self.tcp
        assert sock is not None
        host, port = sock.getsockname()[:2]
        return host, port

    def sockets(self) -> list[socket.socket]:
        return [sock for sock in (self.udp, self.tcp) if sock is not None]

    def close(self) -> None:
        for sock in self.sockets():
            sock.close()


def bind_listeners(
    config: ServerConfig, *, reuse_port: bool = False, like: Sequence[Listener] = ()
) -> list[Listener]:
    """Bind UDP (and TCP unless ``config.tcp`` is off) on every address of ``config.listen``,
    then a TCP socket on each address of ``config.listen_tls`` and of ``config.listen_https``
    (in that order). Raises OSError, after closing whatever it had bound.

    With port 0 the UDP port is picked first and TCP takes the same number; if that TCP port
    is taken, both are tried again on another port (a bounded number of times). An IPv6
    socket is dual-stack (it serves IPv4 clients too, as ``::ffff:a.b.c.d``) unless an IPv4
    address in ``listen`` has the same port: then each family has its own socket, so that
    ``0.0.0.0:53`` and ``[::]:53`` can both be bound.

    ``reuse_port`` sets SO_REUSEPORT, so that more sets can be bound on the same addresses
    and the kernel spreads the clients over them; ``like`` (listeners bound so before, one
    per address) binds such a further set on their very ports, port 0 included. Its buffer
    sizes are not reported again."""
    encrypted: list[tuple[ListenerKind, Address]] = [("tls", a) for a in config.listen_tls]
    encrypted += [("https", address) for address in config.listen_https]
    assert not like or len(like) == len(config.listen) + len(encrypted)
    v4_ports = {port for host, port in config.listen if ":" not in host and port}
    bound: list[Listener] = []
    try:
        for index, (host, port) in enumerate(config.listen):
            v6only = port in v4_ports
            if like:
                bound.append(_bind(config, host, like[index].address[1], v6only, reuse_port, False))
                continue
            for attempt in range(_BIND_ATTEMPTS):
                try:
                    bound.append(_bind(config, host, port, v6only, reuse_port, True))
                    break
                except OSError as exc:
                    last = attempt == _BIND_ATTEMPTS - 1
                    if port != 0 or exc.errno != errno.EADDRINUSE or last:
                        raise
        for index, (kind, (host, port)) in enumerate(encrypted, len(config.listen)):
            if like:
                port = like[index].address[1]
            sock = bind_stream_listener(host, port, reuse_port=reuse_port)
            bound.append(Listener(None, sock, kind))
    except BaseException:
        for listener in bound:
            listener.close()
        raise
    return bound


def _bind(
    config: ServerConfig, host: str, port: int, v6only: bool, reuse_port: bool, report: bool
) -> Listener:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    udp = _listening_socket(family, socket.SOCK_DGRAM, v6only, reuse_port)
    try:
        udp.bind((host, port))
        _size_buffers(config, udp, host, report)
    except BaseException:
        udp.close()
        raise
    if not config.tcp:
        return Listener(udp, None)
    tcp = _listening_socket(family, socket.SOCK_STREAM, v6only, reuse_port)
    try:
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Inherited by every accepted connection: the kernel keeps at most this much of a
        # client's unread replies (autotuned, it would take megabytes), so the rest waits in
        # our write buffer, where it stops the reading of more queries.
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _TCP_SEND_BUFFER)
        tcp.bind((host, udp.getsockname()[1]))
    except BaseException:
        tcp.close()
        udp.close()
        raise
    return Listener(udp, tcp)


def bind_stream_listener(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` for the TLS or HTTPS listener (IPv6 ones for
    IPv6 only), with SO_REUSEPORT when ``reuse_port`` (worker processes). Raises OSError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = _listening_socket(family, socket.SOCK_STREAM, True, reuse_port)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # As for TCP: the kernel keeps little of a client's unread replies (see _bind).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _TCP_SEND_BUFFER)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def _listening_socket(family: int, kind: int, v6only: bool, reuse_port: bool) -> socket.socket:
    sock = socket.socket(family, kind)
    try:
        sock.setblocking(False)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    except BaseException:
        sock.close()
        raise
    return sock


def _size_buffers(config: ServerConfig, sock: socket.socket, host: str, report: bool) -> None:
    """The configured buffer sizes, forced past the system's limit when we may (as Unbound's
    so-rcvbuf); a warning when less was granted (if ``report``)."""
    for option, forced, size, name in (
        (socket.SO_RCVBUF, _SO_RCVBUFFORCE, config.udp_receive_buffer, "receive"),
        (socket.SO_SNDBUF, _SO_SNDBUFFORCE, config.udp_send_buffer, "send"),
    ):
        if not size:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, forced, size)
        except OSError:  # no CAP_NET_ADMIN (or no such option): capped at the limit
            sock.setsockopt(socket.SOL_SOCKET, option, size)
        granted = sock.getsockopt(socket.SOL_SOCKET, option) // _KERNEL_DOUBLES
        if granted < size and report:
            log.warning(
                "UDP %s buffer of %s is %d bytes, not the %d configured (raise net.core.%s)",
                name,
                format_address((host, sock.getsockname()[1])),
                granted,
                size,
                "rmem_max" if option == socket.SO_RCVBUF else "wmem_max",
            )
