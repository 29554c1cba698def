"""Blocklists in the formats people download, read into sets of lowercase wire-form names.

* ``hosts``: ``0.0.0.0 name [name...]`` (any address; ``#`` starts a comment). Each name is
  blocked exactly, not the names below it (as AdGuard Home reads hosts lines). The preamble
  of public hosts lists (``localhost``, ``broadcasthost``, ``0.0.0.0 0.0.0.0``, the ``ip6-*``
  names, ``local``) is skipped without a word.
* ``domains``: one name a line; it blocks itself and every name below it (as AdGuard Home
  and blocky read plain domain lists); ``*.name`` blocks the names below ``name`` only.
* ``adblock``: ``||name^`` blocks the name and every name below it, ``@@||name^`` is an
  exception that wins over every list's block; a plain ``name`` line is read as in
  ``domains``. Rules that are not about DNS names are skipped and counted: comments (``!``),
  headers (``[...]``), cosmetic rules (``##``, ``#@#``, ``#?#``, ``#$#``), paths, rules with
  ``$`` modifiers, regular expressions (``/.../``) and patterns with ``*`` inside a name.

A line that is none of these (a malformed name, a hosts line without an address) is bad: it is
counted, and the first few are named ``file:line``; never fatal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from resolver.errors import ConfigError

__all__ = ["ListFile", "read_list"]

_NAME = re.compile(rb"(?:[a-z0-9_-]{1,63}\.)*[a-z0-9_-]{1,63}\.?")
_ADDRESS = re.compile(rb"[0-9a-f:.]+(?:%\S+)?")
_PREAMBLE = frozenset(
    {
        b"localhost",
        b"localhost.localdomain",
        b"local",
        b"broadcasthost",
        b"0.0.0.0",
        b"ip6-localhost",
        b"ip6-loopback",
        b"ip6-localnet",
        b"ip6-mcastprefix",
        b"ip6-allnodes",
        b"ip6-allrouters",
        b"ip6-allhosts",
    }
)
_COSMETIC = (b"##", b"#@#", b"#?#", b"#$#", b"#%#")
_LENGTHS = bytes(range(64))
_BAD_NAMED = 5  # bad lines named in the report; the rest are counted


@dataclass(slots=True)
class ListFile:
    """What a list file holds: blocked names (``exact``: the name only; ``below``: the names
    strictly below it), exceptions likewise (adblock ``@@``), how many rules were skipped as
    not DNS-level, and the bad lines (count, and the first few as ``file:line: why``)."""

    exact: set[bytes] = field(default_factory=set)
    below: set[bytes] = field(default_factory=set)
    allow_exact: set[bytes] = field(default_factory=set)
    allow_below: set[bytes] = field(default_factory=set)
    skipped: int = 0
    bad: int = 0
    bad_lines: list[str] = field(default_factory=list)

    def report(self, where: str, why: str) -> None:
        self.bad += 1
        if len(self.bad_lines) < _BAD_NAMED:
            self.bad_lines.append(f"{where}: {why}")


def _wire(name: bytes) -> bytes | None:
    """``name`` (lowercase text) in wire form, or None when it is not a usable name."""
    if len(name) > 253 or not _NAME.fullmatch(name):
        return None
    if name.endswith(b"."):
        name = name[:-1]
    lengths = _LENGTHS
    return b"".join(
        [lengths[len(label) : len(label) + 1] + label for label in name.split(b".")]
    ) + (b"\x00")


def read_list(path: Path, fmt: str, *, field_name: str = "policy.lists.file") -> ListFile:
    """Read the list at ``path`` in format ``fmt`` (``hosts``, ``domains``, ``adblock``).
    Raises ConfigError naming ``field_name`` when the file cannot be read."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(field_name, f"{path}: {exc.strerror or exc}") from exc
    out = ListFile()
    reader = {"hosts": _hosts, "domains": _domains, "adblock": _adblock}[fmt]
    reader(data.lower().splitlines(), str(path), out)
    return out


def _hosts(lines: list[bytes], source: str, out: ListFile) -> None:
    add = out.exact.add
    for number, line in enumerate(lines, 1):
        if b"#" in line:
            line = line.split(b"#", 1)[0]
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2 or not _ADDRESS.fullmatch(parts[0]):
            out.report(f"{source}:{number}", "not an address and names")
            continue
        for name in parts[1:]:
            if name in _PREAMBLE:
                continue
            wire = _wire(name)
            if wire is None:
                out.report(f"{source}:{number}", f"{name.decode(errors='replace')!r} is not a name")
                continue
            add(wire)


def _domain(name: bytes, where: str, out: ListFile, allow: bool = False) -> None:
    below_only = name.startswith(b"*.")
    wire = _wire(name[2:] if below_only else name)
    if wire is None:
        out.report(where, f"{name.decode(errors='replace')!r} is not a name")
        return
    if allow:
        out.allow_below.add(wire)
        if not below_only:
            out.allow_exact.add(wire)
    else:
        out.below.add(wire)
        if not below_only:
            out.exact.add(wire)


def _domains(lines: list[bytes], source: str, out: ListFile) -> None:
    for number, line in enumerate(lines, 1):
        if b"#" in line:
            line = line.split(b"#", 1)[0]
        parts = line.split()
        if not parts:
            continue
        if len(parts) > 1:
            out.report(f"{source}:{number}", "more than one name")
            continue
        _domain(parts[0], f"{source}:{number}", out)


def _adblock(lines: list[bytes], source: str, out: ListFile) -> None:
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith((b"!", b"#", b"[")):
            continue
        if any(marker in line for marker in _COSMETIC) or b"$" in line or b"/" in line:
            out.skipped += 1
            continue
        allow = line.startswith(b"@@")
        if allow:
            line = line[2:]
        if line.startswith(b"||"):
            if not line.endswith(b"^"):
                out.skipped += 1  # a URL pattern, not a whole name
                continue
            name = line[2:-1]
        elif line.startswith(b"|") or b"^" in line:
            out.skipped += 1
            continue
        else:
            name = line
        if b"*" in name:
            out.skipped += 1
            continue
        _domain(name, f"{source}:{number}", out, allow)
