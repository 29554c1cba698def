"""The hosts file (hosts(5)): one address and its names per line, ``#`` to the end of a line
is a comment. Reading it is all this module does; ``resolver.engine.local`` answers from it.

``read_hosts`` is what starts the daemon and what a reload calls again: it returns the whole
new content or raises, so a file that cannot be read never leaves half of itself behind.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import NamedTuple

from resolver.errors import ConfigError

__all__ = ["Hosts", "HostsEntry", "parse_hosts", "read_hosts"]

_MAX_BYTES = 64 * 1024 * 1024  # a blocklist is a few MB; a bigger file is a mistake


class HostsEntry(NamedTuple):
    """One line: an address and its names, the first the canonical one (its PTR target)."""

    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    names: tuple[str, ...]


class Hosts(NamedTuple):
    """A hosts file's entries in file order, and the lines skipped, each with its reason."""

    entries: tuple[HostsEntry, ...]
    skipped: tuple[str, ...]


def parse_hosts(text: str, source: str = "hosts") -> Hosts:
    """The entries of hosts-file ``text``. A line with a bad address, or an address without a
    name, is skipped and reported in ``skipped`` as ``source:line: reason``; so is an address
    with a zone (``fe80::1%eth0``), which has no meaning outside its host. Raises nothing."""
    entries: list[HostsEntry] = []
    skipped: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        address_text, names = fields[0], tuple(fields[1:])
        try:
            address = ipaddress.ip_address(address_text)
        except ValueError:
            skipped.append(f"{source}:{number}: {address_text!r} is not an IP address")
            continue
        if getattr(address, "scope_id", None):
            skipped.append(f"{source}:{number}: {address_text} is scoped to an interface")
            continue
        if not names:
            skipped.append(f"{source}:{number}: {address_text} has no name")
            continue
        entries.append(HostsEntry(address, names))
    return Hosts(tuple(entries), tuple(skipped))


def read_hosts(path: Path) -> Hosts:
    """Read and parse the hosts file at ``path``. Raises ConfigError naming ``local.hosts``
    when it cannot be read, is not UTF-8 text or is larger than 64 MiB."""
    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError("local.hosts", f"{path}: {exc.strerror or exc}") from exc
    if len(data) > _MAX_BYTES:
        raise ConfigError("local.hosts", f"{path} is larger than {_MAX_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError("local.hosts", f"{path} is not UTF-8 text: {exc}") from exc
    return parse_hosts(text, str(path))
