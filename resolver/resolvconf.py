"""The name servers of a resolv.conf file, as default upstreams (what dnsmasq does, and
CoreDNS's ``forward . /etc/resolv.conf``): used when ``serve`` is given no upstream and no
recursive mode. Our own listening addresses are left out, so that we never forward to
ourselves."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from pathlib import Path

from resolver.config import Address, reaches
from resolver.errors import ConfigError

__all__ = ["DEFAULT_PATH", "nameservers", "upstreams_from"]

DEFAULT_PATH = Path("/etc/resolv.conf")


def nameservers(path: Path) -> list[Address]:
    """The ``nameserver`` addresses of ``path`` in order, each with port 53 (a scope such as
    ``fe80::1%eth0`` kept). Lines that name no IP address are skipped. Raises ConfigError
    naming the file when it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError(str(path), exc.strerror or str(exc)) from exc
    found: list[Address] = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(words) < 2 or words[0] != "nameserver":
            continue
        try:
            ipaddress.ip_address(words[1].split("%", 1)[0])
        except ValueError:
            continue
        if (words[1], 53) not in found:
            found.append((words[1], 53))
    return found


def upstreams_from(path: Path, listening: Sequence[Address]) -> tuple[list[Address], list[Address]]:
    """The name servers of ``path`` to forward to, and those left out because queries to them
    would reach one of our ``listening`` addresses. Raises ConfigError (naming
    ``forwarder.upstreams``) when none is left."""
    servers = nameservers(path)
    ours = [server for server in servers if any(reaches(server, listen) for listen in listening)]
    taken = [server for server in servers if server not in ours]
    if not taken:
        why = "only our own listening addresses" if ours else "no nameserver"
        raise ConfigError(
            "forwarder.upstreams",
            f"none given, and {path} names {why} (give --upstream, or --mode recursive)",
        )
    return taken, ours
