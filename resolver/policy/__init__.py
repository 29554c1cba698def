"""The response policy's files: blocklists (``lists``) and RPZ zones (``rpz``) read into the
``resolver.engine.policy.Policy`` the engine applies.

``PolicyLoader.load`` reads every file of a ``PolicyConfig`` and builds a new Policy beside
the running one (the daemon swaps it in, in one step). It keeps what each file gave, by the
file's identity (device, inode, size, modification time), so that a reload or a change of one
list reads only the files that changed; ``changed`` tells whether any did.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from resolver.config import PolicyConfig
from resolver.engine.policy import (
    LOCAL,
    Blocklist,
    Networks,
    Policy,
    RpzZone,
    Rule,
)
from resolver.errors import ConfigError
from resolver.policy.lists import ListFile, read_list
from resolver.policy.rpz import RpzFile, read_rpz

__all__ = ["LoadReport", "PolicyLoader"]

log = logging.getLogger(__name__)

Stamp = tuple[int, int, int, int]
_RPZ_TTL = 5  # seconds: RPZ answers with no data of their own (NXDOMAIN, NODATA)


@dataclass(frozen=True, slots=True)
class LoadReport:
    """What one load read: per file read anew, ``file: N rules, M bad lines (first: ...)``."""

    lines: tuple[str, ...]


def _stamp(path: Path, field_name: str) -> Stamp:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ConfigError(field_name, f"{path}: {exc.strerror or exc}") from exc
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _networks(clients: tuple[str, ...]) -> Networks | None:
    if not clients:
        return None
    return Networks((ipaddress.ip_network(text, strict=False), True) for text in clients)


class PolicyLoader:
    """Reads policy files, remembering each one's content until it changes."""

    def __init__(self) -> None:
        self._lists: dict[tuple[Path, str], tuple[Stamp, ListFile]] = {}
        self._zones: dict[Path, tuple[Stamp, RpzFile]] = {}
        self._loaded: dict[tuple[str, Path, str], Stamp] = {}

    def __repr__(self) -> str:
        return f"<PolicyLoader lists={len(self._lists)} zones={len(self._zones)}>"

    def forget(self) -> None:
        """What was last loaded did not take effect: the next ``changed`` says so."""
        self._loaded = {}

    def changed(self, config: PolicyConfig) -> bool:
        """Whether a file of ``config`` is not the one last loaded (or cannot be read)."""
        for key in self._keys(config):
            try:
                stamp = _stamp(key[1], "policy")
            except ConfigError:
                return True
            if self._loaded.get(key) != stamp:
                return True
        return False

    @staticmethod
    def _keys(config: PolicyConfig) -> list[tuple[str, Path, str]]:
        keys = [("list", item.file, item.format) for item in config.lists]
        return keys + [("rpz", item.file, "") for item in config.rpz]

    def load(self, config: PolicyConfig) -> tuple[Policy | None, LoadReport]:
        """The Policy of ``config`` (None when it has neither lists nor zones), and a report
        of the files read anew. Raises ConfigError naming the field (``policy.lists[0].file``)
        or ``file:line`` when a file cannot be read or an RPZ zone is not a master file."""
        lines: list[str] = []
        loaded: dict[tuple[str, Path, str], Stamp] = {}
        zones: list[RpzZone] = []
        for index, item in enumerate(config.rpz):
            where = f"policy.rpz[{index}].file"
            stamp = _stamp(item.file, where)
            known = self._zones.get(item.file)
            if known is None or known[0] != stamp:
                data = read_rpz(item.file, origin=item.zone, field_name=where)
                known = self._zones[item.file] = (stamp, data)
                lines.append(_summary(str(item.file), data.rules(), data.bad, data.bad_lines))
            loaded[("rpz", item.file, "")] = stamp
            override = None
            if item.action.startswith("cname "):
                target = _wire_name(item.action[6:])
                override = Rule(LOCAL, ((5, _RPZ_TTL, target),), item.action)
            elif item.action != "given":
                override = Rule(item.action, (), item.action)
            zones.append(
                known[1].zone(
                    item.name or item.file.name,
                    clients=_networks(item.clients),
                    override=override,
                    log=item.log,
                    ttl=_RPZ_TTL,
                )
            )
        lists: list[Blocklist] = []
        for index, entry in enumerate(config.lists):
            where = f"policy.lists[{index}].file"
            stamp = _stamp(entry.file, where)
            cached = self._lists.get((entry.file, entry.format))
            if cached is None or cached[0] != stamp:
                content = read_list(entry.file, entry.format, field_name=where)
                cached = self._lists[(entry.file, entry.format)] = (stamp, content)
                note = f", {content.skipped} rules not about DNS names skipped" * bool(
                    content.skipped
                )
                rules = len(content.names) + len(content.allowed)
                lines.append(
                    _summary(str(entry.file), rules, content.bad, content.bad_lines) + note
                )
            loaded[("list", entry.file, entry.format)] = stamp
            content = cached[1]
            name = entry.name or entry.file.name
            clients = _networks(entry.clients)
            if content.names:
                lists.append(
                    Blocklist(name, entry.action, clients, entry.allow, content.names, entry.format)
                )
            if content.allowed:
                lists.append(
                    Blocklist(name, entry.action, clients, True, content.allowed, entry.format)
                )
        # Forget the files no longer configured.
        self._lists = {key: value for key, value in self._lists.items() if ("list", *key) in loaded}
        self._zones = {
            key: value for key, value in self._zones.items() if ("rpz", key, "") in loaded
        }
        self._loaded = loaded
        if not zones and not lists:
            return None, LoadReport(tuple(lines))
        policy = Policy(zones, lists, ttl=config.ttl, censored=config.censored)
        return policy, LoadReport(tuple(lines))


def _wire_name(text: str) -> bytes:
    labels = [label.encode("ascii") for label in text.rstrip(".").split(".") if label]
    return b"".join(bytes((len(label),)) + label for label in labels) + b"\x00"


def _summary(source: str, rules: int, bad: int, bad_lines: list[str]) -> str:
    text = f"{source}: {rules} rules"
    if bad:
        more = bad - len(bad_lines)
        text += f", {bad} bad lines skipped: " + "; ".join(bad_lines)
        if more > 0:
            text += f"; and {more} more"
    return text
