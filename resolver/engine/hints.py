"""Root hints: the names and addresses of the root servers, where iteration starts.

The file is in the format of IANA's ``named.root`` (a master file holding the root's NS
records and their servers' A and AAAA records); a copy of IANA's ships with the package and is
the default. Only NS, A and AAAA records are read; comments, blank lines and ``$TTL`` are
skipped. Every problem raises ConfigError naming ``recursion.root_hints`` and the line.
"""

from __future__ import annotations

import functools
import ipaddress
from importlib import resources
from pathlib import Path
from typing import NamedTuple

from resolver.errors import ConfigError, WireError
from resolver.wire.message import name_to_wire

__all__ = ["RootHints", "read_root_hints"]

_FIELD = "recursion.root_hints"
_CLASSES = frozenset({"IN"})
_TYPES = frozenset({"NS", "A", "AAAA"})


class RootHints(NamedTuple):
    """The root servers' names (lowercase wire form) and each one's addresses."""

    servers: tuple[bytes, ...]
    addresses: dict[bytes, tuple[str, ...]]


def _wire(text: str, where: str) -> bytes:
    if not text.endswith("."):
        raise ConfigError(_FIELD, f"{where}: {text!r} is not an absolute name (no final dot)")
    try:
        return name_to_wire(text).lower()
    except (WireError, ValueError) as exc:
        raise ConfigError(_FIELD, f"{where}: {text!r} is not a domain name ({exc})") from None


def parse_root_hints(text: str, source: str) -> RootHints:
    """Root hints from the text of a named.root file (``source`` names it in errors)."""
    servers: list[bytes] = []
    addresses: dict[bytes, list[str]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        where = f"{source}:{number}"
        words = line.split(";", 1)[0].split()
        if not words or words[0].upper() == "$TTL":
            continue
        if words[0].startswith("$"):
            raise ConfigError(_FIELD, f"{where}: {words[0]} is not supported in root hints")
        owner, rest = words[0], words[1:]
        if rest and rest[0].isdigit():
            rest = rest[1:]
        if rest and rest[0].upper() in _CLASSES:
            rest = rest[1:]
        if len(rest) != 2:
            raise ConfigError(_FIELD, f"{where}: expected 'name [ttl] [IN] type data'")
        rtype, data = rest[0].upper(), rest[1]
        if rtype not in _TYPES:
            continue
        if rtype == "NS":
            if _wire(owner, where) != b"\x00":
                raise ConfigError(_FIELD, f"{where}: an NS record of {owner}, not of the root")
            name = _wire(data, where)
            if name not in servers:
                servers.append(name)
            continue
        try:
            address = ipaddress.ip_address(data)
        except ValueError:
            raise ConfigError(_FIELD, f"{where}: {data!r} is not an IP address") from None
        if (address.version == 4) != (rtype == "A"):
            raise ConfigError(_FIELD, f"{where}: {data} is not an {rtype} address")
        addresses.setdefault(_wire(owner, where), []).append(str(address))
    if not servers:
        raise ConfigError(_FIELD, f"{source}: no NS records for the root")
    usable = {name: tuple(addresses[name]) for name in servers if name in addresses}
    if not usable:
        raise ConfigError(_FIELD, f"{source}: no root server has an address")
    return RootHints(tuple(servers), usable)


@functools.cache
def _packaged() -> RootHints:
    """The package's copy of IANA's named.root, read once per process: workers forked after
    a privilege drop find it read already, wherever the package is installed."""
    text = resources.files("resolver").joinpath("named.root").read_text("ascii")
    return parse_root_hints(text, "named.root")


def read_root_hints(path: Path | None = None) -> RootHints:
    """The root hints in ``path``, or the package's copy of IANA's when None. Raises
    ConfigError naming the field, the file and the reason."""
    if path is None:
        return _packaged()
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ConfigError(_FIELD, f"{path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(_FIELD, f"{path}: not UTF-8 text") from exc
    return parse_root_hints(text, str(path))
