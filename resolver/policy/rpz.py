"""RPZ zones (draft-vixie-dnsop-dns-rpz, as BIND and Unbound read them) read into triggers.

The file is a master file, read by ``resolver.authority.masterfile``; its SOA names the zone.
Each owner name below the zone is a trigger:

* ``name.zone.`` and ``*.name.zone.``: QNAME, the name itself, or the names below it;
* ``PREFIX.REVERSED-ADDRESS.rpz-ip.zone.``: an address in an answer (``32.1.0.0.127``
  is 127.0.0.1/32; IPv6 groups reversed, ``zz`` for ``::``);
* ``...rpz-client-ip.zone.``: the client's address, written the same way;
* ``name.rpz-nsdname.zone.`` and ``*.name.rpz-nsdname.zone.``: the name of a name server of
  a zone on the way to the answer (recursive mode only);
* ``...rpz-nsip.zone.``: an address of such a name server, written as ``rpz-ip``'s.

Its records are the action: ``CNAME .`` NXDOMAIN, ``CNAME *.`` NODATA, ``CNAME
rpz-passthru.`` (or a CNAME to the trigger's own name) PASSTHRU, ``CNAME rpz-drop.`` DROP,
``CNAME rpz-tcp-only.`` TCP-only, another CNAME a rewrite to that name, anything else local
data (several records, several types). A CNAME beside other data, and triggers that do not
parse are counted and the first few named
``file:line``; they never stop the zone from loading. A file that is not a master file at
all (a syntax error) does: ConfigError naming its line.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from resolver.authority.masterfile import Entry, read_master
from resolver.engine.policy import (
    DROP,
    LOCAL,
    NODATA,
    NXDOMAIN_ACTION,
    PASSTHRU,
    TCP_ONLY,
    Networks,
    RpzZone,
    RuleData,
)
from resolver.errors import ConfigError

__all__ = ["RpzFile", "default_origin", "read_rpz"]

_TYPE_SOA = 6
_TYPE_NS = 2
_TYPE_CNAME = 5
_BAD_NAMED = 5
_SPECIAL_TARGETS = {
    b"\x00": NXDOMAIN_ACTION,
    b"\x01*\x00": NODATA,
    b"\x0crpz-passthru\x00": PASSTHRU,
    b"\x08rpz-drop\x00": DROP,
    b"\x0crpz-tcp-only\x00": TCP_ONLY,
}
_ADDRESS_KINDS = (b"rpz-ip", b"rpz-client-ip", b"rpz-nsip")


@dataclass(slots=True)
class RpzFile:
    """A zone's triggers as read (see ``engine.policy.RpzZone``), with its bad records."""

    apex: str
    names: dict[bytes, RuleData] = field(default_factory=dict)
    wildcards: dict[bytes, RuleData] = field(default_factory=dict)
    ips: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, RuleData]] = field(
        default_factory=list
    )
    client_ips: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, RuleData]] = field(
        default_factory=list
    )
    nsdnames: dict[bytes, RuleData] = field(default_factory=dict)
    nsdname_wildcards: dict[bytes, RuleData] = field(default_factory=dict)
    nsips: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, RuleData]] = field(
        default_factory=list
    )
    bad: int = 0
    bad_lines: list[str] = field(default_factory=list)

    def report(self, where: str, why: str) -> None:
        self.bad += 1
        if len(self.bad_lines) < _BAD_NAMED:
            self.bad_lines.append(f"{where}: {why}")

    def zone(self, name: str, **settings: object) -> RpzZone:
        """An ``RpzZone`` of these triggers (``settings``: its other fields)."""
        return RpzZone(
            name=name,
            names=self.names,
            wildcards=self.wildcards,
            ips=Networks(self.ips),
            client_ips=Networks(self.client_ips),
            nsdnames=self.nsdnames,
            nsdname_wildcards=self.nsdname_wildcards,
            nsips=Networks(self.nsips),
            **settings,  # type: ignore[arg-type]
        )

    def rules(self) -> int:
        return (
            len(self.names)
            + len(self.wildcards)
            + len(self.ips)
            + len(self.client_ips)
            + len(self.nsdnames)
            + len(self.nsdname_wildcards)
            + len(self.nsips)
        )


def _wire(labels: Sequence[bytes]) -> bytes:
    return b"".join(bytes((len(label),)) + label for label in labels) + b"\x00"


def _network(
    labels: Sequence[bytes],
) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """``32.1.0.0.127`` as 127.0.0.1/32, ``128.1.zz.db8.2001`` as 2001:db8::1/128."""
    try:
        text = [label.decode("ascii").lower() for label in labels]
        prefix = int(text[0])
        parts = text[1:][::-1]
        if len(parts) == 4 and all(part.isdigit() for part in parts):
            return ipaddress.IPv4Network(f"{'.'.join(parts)}/{prefix}", strict=True)
        address = ":".join("" if part == "zz" else part for part in parts)
        if address.startswith(":"):
            address = ":" + address
        if address.endswith(":"):
            address += ":"
        return ipaddress.IPv6Network(f"{address}/{prefix}", strict=True)
    except (ValueError, UnicodeDecodeError, IndexError):
        return None


def _rule(entries: list[Entry], trigger: bytes, text: str, out: RpzFile) -> RuleData | None:
    cnames = [entry for entry in entries if entry.rtype == _TYPE_CNAME]
    if cnames:
        if len(entries) > 1:
            out.report(cnames[0].where, "a CNAME beside other records")
            return None
        target = cnames[0].rdata.lower()
        action = _SPECIAL_TARGETS.get(target)
        if action is None and target == trigger:
            action = PASSTHRU  # the draft's older way of writing PASSTHRU
        rule_text = f"{text} CNAME {_text(cnames[0].rdata)}"
        if action is not None:
            return (action, (), rule_text)
        return (LOCAL, ((_TYPE_CNAME, cnames[0].ttl, cnames[0].rdata),), rule_text)
    records = tuple((entry.rtype, entry.ttl, entry.rdata) for entry in entries)
    types = " ".join(sorted({entry.type_text for entry in entries}))
    return (LOCAL, records, f"{text} {types}")


def _text(wire: bytes) -> str:
    labels = []
    pos = 0
    while pos < len(wire) and wire[pos]:
        labels.append(wire[pos + 1 : pos + 1 + wire[pos]].decode("ascii", "replace"))
        pos += wire[pos] + 1
    return ".".join(labels) + "."


def default_origin(path: Path) -> str:
    """The zone's name when its file sets no ``$ORIGIN``: the file's name without its last
    extension (``rpz.example.zone`` is ``rpz.example.``)."""
    stem = path.name.rsplit(".", 1)[0] if "." in path.name else path.name
    return stem.strip(".") + "." if stem.strip(".") else "rpz."


def read_rpz(
    path: Path, *, origin: str | None = None, field_name: str = "policy.rpz.file"
) -> RpzFile:
    """Read the RPZ zone at ``path``; relative names before any ``$ORIGIN`` are relative to
    ``origin`` (``default_origin`` when None). Raises ConfigError naming ``field_name`` when
    it cannot be read, and naming ``file:line`` when it is not a master file or has no SOA."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(field_name, f"{path}: {reason or exc}") from exc
    entries = read_master(
        text, source=str(path), origin=origin or default_origin(path), directory=path.parent
    )
    soa = next((entry for entry in entries if entry.rtype == _TYPE_SOA), None)
    if soa is None:
        raise ConfigError(field_name, f"{path}: no SOA record names the zone")
    apex = tuple(label.lower() for label in soa.owner)
    out = RpzFile(apex=_text(_wire(apex)))
    grouped: dict[tuple[bytes, ...], list[Entry]] = {}
    for entry in entries:
        owner = tuple(label.lower() for label in entry.owner)
        if owner == apex:
            if entry.rtype not in (_TYPE_SOA, _TYPE_NS):
                out.report(entry.where, "a record at the zone's apex is no trigger")
            continue
        if len(owner) <= len(apex) or owner[len(owner) - len(apex) :] != apex:
            out.report(entry.where, f"{entry.owner_text} is outside the zone")
            continue
        grouped.setdefault(owner[: len(owner) - len(apex)], []).append(entry)
    for relative, group in grouped.items():
        where = group[0].where
        text = _text(_wire(relative))[:-1]
        kind = relative[-1]
        if kind in _ADDRESS_KINDS:
            network = _network(relative[:-1])
            if network is None:
                out.report(where, f"{text} is not an address trigger")
                continue
            rule = _rule(group, b"", text, out)
            if rule is not None:
                table = {b"rpz-ip": out.ips, b"rpz-client-ip": out.client_ips}.get(kind, out.nsips)
                table.append((network, rule))
            continue
        if kind == b"rpz-nsdname":
            server = relative[:-1]
            if not server or (server[0] == b"*" and len(server) < 2):
                out.report(where, f"{text} names no name server")
                continue
            rule = _rule(group, b"", text, out)
            if rule is not None:
                if server[0] == b"*":
                    out.nsdname_wildcards[b".".join(server[1:])] = rule
                else:
                    out.nsdnames[b".".join(server)] = rule
            continue
        if relative[0] == b"*":
            rule = _rule(group, b"", text, out)
            if rule is not None:
                out.wildcards[b".".join(relative[1:])] = rule
            continue
        rule = _rule(group, _wire(relative), text, out)
        if rule is not None:
            out.names[b".".join(relative)] = rule
    return out
