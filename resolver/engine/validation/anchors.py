"""Trust anchors: the DS or DNSKEY records validation starts from, and the names it must not
validate (negative trust anchors, RFC 7646).

Anchor files are in master-file format holding DS or DNSKEY records (as Unbound's
``trust-anchor-file``); the IANA root anchor ships with the package as ``root.key`` and is the
default. The root key is not followed through an RFC 5011 rollover: a new root key needs a
new package (or a new file named in the configuration).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import dns.exception
import dns.name
import dns.rdatatype
import dns.zonefile
from dns.rdtypes.ANY.DNSKEY import DNSKEY
from dns.rdtypes.ANY.DS import DS

from resolver.errors import ConfigError

__all__ = [
    "ROOT_ANCHORS",
    "TrustAnchor",
    "TrustAnchors",
    "parse_trust_anchors",
    "read_trust_anchors",
    "root_anchors",
]

ROOT_ANCHORS = "root.key"
"""The file, inside the package, holding IANA's root trust anchor."""

_FIELD = "dnssec.trust_anchors"


@dataclass(frozen=True, slots=True)
class TrustAnchor:
    """The DS records and DNSKEY records trusted for one zone."""

    zone: dns.name.Name
    ds: tuple[DS, ...] = ()
    dnskeys: tuple[DNSKEY, ...] = ()


@dataclass(frozen=True, slots=True)
class TrustAnchors:
    """Anchors by zone, and the negative trust anchors (names validated as insecure)."""

    anchors: Mapping[dns.name.Name, TrustAnchor] = field(default_factory=dict)
    negative: frozenset[dns.name.Name] = frozenset()

    def closest(self, name: dns.name.Name) -> TrustAnchor | None:
        """The anchor of the closest zone at or above ``name``, or None."""
        for depth in range(len(name), 0, -1):
            anchor = self.anchors.get(name.split(depth)[1])
            if anchor is not None:
                return anchor
        return None

    def negated(self, name: dns.name.Name) -> bool:
        """True if ``name`` is at or below a negative trust anchor."""
        return any(name.is_subdomain(n) for n in self.negative)

    def with_negative(self, names: Iterable[str]) -> TrustAnchors:
        """These anchors with ``names`` (absolute names as text) as negative anchors; raises
        ConfigError naming ``dnssec.negative_trust_anchors`` for a name that is not one."""
        negative = set(self.negative)
        for text in names:
            try:
                negative.add(dns.name.from_text(text))
            except dns.exception.DNSException as exc:
                raise ConfigError(
                    "dnssec.negative_trust_anchors", f"{text!r} is not a domain name ({exc})"
                ) from None
        return TrustAnchors(self.anchors, frozenset(negative))


def parse_trust_anchors(text: str, source: str) -> TrustAnchors:
    """Anchors from master-file ``text`` (``source`` names it in errors).

    Raises ConfigError naming ``dnssec.trust_anchors`` for text that is not a master file,
    records other than DS and DNSKEY, DNSKEYs without the zone-key bit, or no records at all.
    """
    try:
        rrsets = dns.zonefile.read_rrsets(
            text, rdclass=None, default_ttl=3600, origin=dns.name.root, relativize=False
        )
    except dns.exception.DNSException as exc:
        raise ConfigError(_FIELD, f"{source}: {exc}") from None
    found: dict[dns.name.Name, tuple[list[DS], list[DNSKEY]]] = {}
    for rrset in rrsets:
        ds, keys = found.setdefault(rrset.name, ([], []))
        if rrset.rdtype == dns.rdatatype.DS:
            ds.extend(rrset)
        elif rrset.rdtype == dns.rdatatype.DNSKEY:
            for key in rrset:
                if not key.flags & 0x0100:
                    raise ConfigError(
                        _FIELD, f"{source}: the DNSKEY of {rrset.name} is no zone key"
                    )
                keys.append(key)
        else:
            kind = dns.rdatatype.to_text(rrset.rdtype)
            raise ConfigError(_FIELD, f"{source}: {rrset.name} {kind} is not a DS or DNSKEY")
    if not found:
        raise ConfigError(_FIELD, f"{source}: no DS or DNSKEY records")
    return TrustAnchors(
        {zone: TrustAnchor(zone, tuple(ds), tuple(keys)) for zone, (ds, keys) in found.items()}
    )


def read_trust_anchors(path: str | Path) -> TrustAnchors:
    """Anchors from the file at ``path``; raises ConfigError (see `parse_trust_anchors`)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(_FIELD, f"cannot read {path}: {exc}") from None
    return parse_trust_anchors(text, str(path))


def root_anchors() -> TrustAnchors:
    """IANA's root trust anchor, as shipped with the package."""
    text = resources.files("resolver").joinpath(ROOT_ANCHORS).read_text(encoding="utf-8")
    return parse_trust_anchors(text, ROOT_ANCHORS)
