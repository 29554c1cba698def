"""Blocklists in the formats people download, read into sets of lowercase names.

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

from resolver.engine.policy import BELOW, ITSELF
from resolver.errors import ConfigError

__all__ = ["ListFile", "read_list"]

# A name as list files write it, lowercase (labels of 1 to 63 characters); the final dot is
# optional and not kept.
_NAME_TEXT = rb"[a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})*"
_NAME = re.compile(_NAME_TEXT + rb"\.?")
_ADDRESS = re.compile(rb"[0-9a-f:.]+(?:%\S+)?")
_TRAILER = rb"\.?[ \t]*(?:#[^\n]*)?\r?$"
# The common lines of each format, read in bulk (the regular expression engine walks the whole
# file; Python sees only the names): the rest of the lines are read one by one.
_BULK = {
    "hosts": re.compile(rb"(?m)^[ \t]*[0-9a-f:.]+[ \t]+(" + _NAME_TEXT + rb")" + _TRAILER),
    "domains": re.compile(rb"(?m)^[ \t]*(" + _NAME_TEXT + rb")" + _TRAILER),
    "adblock": re.compile(rb"(?m)^[ \t]*\|\|(" + _NAME_TEXT + rb")\^[ \t]*\r?$"),
}
_BULK_LINE = {fmt: re.compile(pattern.pattern[4:]) for fmt, pattern in _BULK.items()}
_MEANINGFUL = re.compile(rb"(?m)^[ \t]*[^\s#!\[]")  # a line neither blank nor a comment
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
_BAD_NAMED = 5  # bad lines named in the report; the rest are counted
_MAX_NAME = 253  # characters of a name in text, without the final dot


@dataclass(slots=True)
class ListFile:
    """What a list file holds, names as lowercase dotted text without the final dot, each
    with what it matches (``engine.policy.ITSELF``, ``BELOW``, or both; a dict of ints is
    not tracked by the garbage collector, which would otherwise walk a million names at
    every full collection): the blocked ``names``, the ``allowed`` ones (adblock ``@@``),
    how many rules were skipped as not DNS-level, and the bad lines (count, and the first
    few as ``file:line: why``)."""

    names: dict[bytes, int] = field(default_factory=dict)
    allowed: dict[bytes, int] = field(default_factory=dict)
    skipped: int = 0
    bad: int = 0
    bad_lines: list[str] = field(default_factory=list)

    def report(self, where: str, why: str) -> None:
        self.bad += 1
        if len(self.bad_lines) < _BAD_NAMED:
            self.bad_lines.append(f"{where}: {why}")

    def add(self, name: bytes, flags: int, allow: bool = False) -> None:
        names = self.allowed if allow else self.names
        names[name] = names.get(name, 0) | flags


def _name(name: bytes) -> bytes | None:
    """``name`` (lowercase text) without its final dot, or None when it is not a name."""
    if not _NAME.fullmatch(name):
        return None
    name = name.removesuffix(b".")
    return name if len(name) <= _MAX_NAME else None


def read_list(path: Path, fmt: str, *, field_name: str = "policy.lists.file") -> ListFile:
    """Read the list at ``path`` in format ``fmt`` (``hosts``, ``domains``, ``adblock``).
    Raises ConfigError naming ``field_name`` when the file cannot be read."""
    try:
        data = path.read_bytes().removeprefix(b"\xef\xbb\xbf").lower()  # a UTF-8 BOM
    except OSError as exc:
        raise ConfigError(field_name, f"{path}: {exc.strerror or exc}") from exc
    out = ListFile()
    bulk = _BULK[fmt].findall(data)
    out.names = dict.fromkeys(bulk, ITSELF if fmt == "hosts" else ITSELF | BELOW)
    meaningful = len(_MEANINGFUL.findall(data))
    if meaningful != len(bulk):
        # Some lines are of another form (several names, exceptions, rules to skip, bad
        # ones): read those one by one.
        reader = {"hosts": _hosts, "domains": _domains, "adblock": _adblock}[fmt]
        common = _BULK_LINE[fmt]
        for number, line in enumerate(data.splitlines(), 1):
            if not common.fullmatch(line):
                reader(line, f"{path}:{number}", out)
    if fmt == "hosts":
        for name in _PREAMBLE:
            out.names.pop(name, None)
    if bulk and max(map(len, bulk)) > _MAX_NAME:
        for name in bulk:
            if len(name) > _MAX_NAME:
                out.names.pop(name, None)
                out.report(str(path), f"{name[:40].decode()}... is longer than 253 characters")
    return out


def _hosts(line: bytes, where: str, out: ListFile) -> None:
    if b"#" in line:
        line = line.split(b"#", 1)[0]
    parts = line.split()
    if not parts:
        return
    if len(parts) < 2 or not _ADDRESS.fullmatch(parts[0]):
        out.report(where, "not an address and names")
        return
    for text in parts[1:]:
        if text in _PREAMBLE:
            continue
        name = _name(text)
        if name is None:
            out.report(where, f"{text.decode(errors='replace')!r} is not a name")
            continue
        out.add(name, ITSELF)


def _domain(text: bytes, where: str, out: ListFile, allow: bool = False) -> None:
    below_only = text.startswith(b"*.")
    name = _name(text[2:] if below_only else text)
    if name is None:
        out.report(where, f"{text.decode(errors='replace')!r} is not a name")
        return
    out.add(name, BELOW if below_only else ITSELF | BELOW, allow)


def _domains(line: bytes, where: str, out: ListFile) -> None:
    if b"#" in line:
        line = line.split(b"#", 1)[0]
    parts = line.split()
    if not parts:
        return
    if len(parts) > 1:
        out.report(where, "more than one name")
        return
    _domain(parts[0], where, out)


def _adblock(raw: bytes, where: str, out: ListFile) -> None:
    line = raw.strip()
    if not line or line.startswith((b"!", b"#", b"[")):
        return
    if any(marker in line for marker in _COSMETIC) or b"$" in line or b"/" in line:
        out.skipped += 1
        return
    allow = line.startswith(b"@@")
    if allow:
        line = line[2:]
    if line.startswith(b"||"):
        if not line.endswith(b"^"):
            out.skipped += 1  # a URL pattern, not a whole name
            return
        name = line[2:-1]
    elif line.startswith(b"|") or b"^" in line:
        out.skipped += 1
        return
    else:
        name = line
    if b"*" in name:
        out.skipped += 1
        return
    _domain(name, where, out, allow)
