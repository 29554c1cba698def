"""What ``resolver query +trace`` shows of DNSSEC, zone by zone.

Under each referral step, the DS records the parent gave for the zone it refers to and their
RRSIGs, in dig's columns (as ``dig +trace`` prints them), or, when there are none, the NSEC or
NSEC3 records (with their RRSIGs) by which the parent proves it; the same under a DS query of
the trace's own. Under a DNSKEY query (``+trace +dnssec``), the zone's keys: role, key tag,
algorithm, and which of them signed the set. At the end, with a validator, a line per zone:
secure (which DS, from where, matched which key, which signed the DNSKEY set), insecure (the
proof that there is no DS, or the insecure zone above), bogus (the Extended DNS Error and the
reason), as the validator judged it.

It only reads the replies the trace received and the validator's verdicts: the decisions are
the iteration's and the validator's.
"""

from __future__ import annotations

from typing import NamedTuple

import dns.dnssec
import dns.dnssectypes
import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
from dns.rdtypes.ANY.DNSKEY import DNSKEY
from dns.rdtypes.ANY.DS import DS
from dns.rdtypes.ANY.RRSIG import RRSIG

from resolver.dig import Message, Record, decode, record_line, server_text
from resolver.engine.iteration import Step
from resolver.engine.validation import Security, TrustAnchors, Validator, ZoneKeys
from resolver.engine.validation.signatures import ds_matches
from resolver.errors import WireError

__all__ = ["TrustTrace"]

_TYPE_DS = 43
_TYPE_DNSKEY = 48
_PROOF_TYPES = frozenset({"NSEC", "NSEC3"})
_SEP = 0x0001  # the DNSKEY flag of a key-signing key


class _DsSeen(NamedTuple):
    """What the trace was told about one zone's DS set, and by whom."""

    ds: tuple[DS, ...]
    source: str
    proof: tuple[str, ...]  # the types of the records that prove there is no DS


def _name(text: str) -> dns.name.Name | None:
    try:
        return dns.name.from_text(text)
    except dns.exception.DNSException:
        return None


def _rdata(rtype: str, text: str) -> dns.rdata.Rdata | None:
    try:
        return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rtype), text)
    except (dns.exception.DNSException, ValueError):
        return None


def _covers(record: Record, rtypes: frozenset[str]) -> bool:
    """Whether ``record`` is an RRSIG over one of ``rtypes``."""
    return record.rtype == "RRSIG" and record.data.split(" ", 1)[0] in rtypes


def _algorithm(number: int) -> str:
    return dns.dnssec.algorithm_to_text(number)


def _digest(number: int) -> str:
    try:
        return dns.dnssectypes.DSDigest(number).name
    except ValueError:
        return f"digest {number}"


def _ds_text(ds: DS, source: str) -> str:
    return f"DS {ds.key_tag} ({_algorithm(ds.algorithm)}, {_digest(ds.digest_type)}; {source})"


def _key_text(key: DNSKEY) -> str:
    role = "KSK" if key.flags & _SEP else "ZSK"
    return f"{role} {dns.dnssec.key_id(key)} ({_algorithm(key.algorithm)})"


def _comment(text: str) -> str:
    return f";; {text}"


class TrustTrace:
    """Collects, step by step, the DS and DNSKEY records of the zones a trace goes through,
    and explains the verdict on each; ``anchors``: the trust anchors the validator uses (None
    for a trace that does not validate)."""

    def __init__(self, anchors: TrustAnchors | None = None) -> None:
        self._anchors = anchors
        self._zones: dict[dns.name.Name, None] = {}  # in the order the trace met them
        self._ds: dict[dns.name.Name, _DsSeen] = {}
        self._keys: dict[dns.name.Name, tuple[DNSKEY, ...]] = {}
        self._signers: dict[dns.name.Name, frozenset[int]] = {}

    def __repr__(self) -> str:
        return f"<TrustTrace zones={len(self._zones)} ds={len(self._ds)} keys={len(self._keys)}>"

    def step(self, step: Step, data: bytes | None) -> list[str]:
        """The lines to show under ``step``, whose reply was ``data`` (None when no reply
        came): the DS records at a referral or of a DS query, or the proof of their absence;
        a DNSKEY set's keys. Name server lookups show nothing: they are not validated."""
        if step.lookup is not None:
            return []
        zone = _name_of(step.zone)
        if zone is not None:
            self._zones.setdefault(zone)
        if step.cut is not None:
            about, kind = _name_of(step.cut), "referral"
        elif step.qtype in (_TYPE_DS, _TYPE_DNSKEY):
            about, kind = _name_of(step.name), "DS answer"
        else:
            return []
        if data is None or about is None:
            return []
        try:
            message = decode(data)
        except WireError:
            return []
        if step.qtype == _TYPE_DNSKEY and step.cut is None:
            return self._dnskey_lines(about, message)
        return self._ds_lines(about, message, f"{kind} by {server_text(step.server)}")

    def _ds_lines(self, zone: dns.name.Name, message: Message, source: str) -> list[str]:
        self._zones.setdefault(zone)
        records = [*message.answer, *message.authority]
        ds = [r for r in records if r.rtype == "DS" and _name(r.name) == zone]
        if ds:
            sigs = [r for r in records if _covers(r, frozenset({"DS"})) and _name(r.name) == zone]
            found = tuple(x for r in ds if isinstance(x := _rdata("DS", r.data), DS))
            self._ds[zone] = _DsSeen(found, source, ())
            return [record_line(r) for r in [*ds, *sigs]]
        proof = [r for r in message.authority if r.rtype in _PROOF_TYPES]
        if not proof:
            return []  # an unsigned parent says nothing about DS: nor does dig
        sigs = [r for r in message.authority if _covers(r, _PROOF_TYPES)]
        kinds = tuple(dict.fromkeys(r.rtype for r in proof))
        self._ds[zone] = _DsSeen((), source, kinds)
        return [record_line(r) for r in [*proof, *sigs]]

    def _dnskey_lines(self, zone: dns.name.Name, message: Message) -> list[str]:
        owned = [r for r in message.answer if _name(r.name) == zone]
        keys = tuple(
            x
            for r in owned
            if r.rtype == "DNSKEY" and isinstance(x := _rdata(r.rtype, r.data), DNSKEY)
        )
        sigs = [
            x
            for r in owned
            if _covers(r, frozenset({"DNSKEY"})) and isinstance(x := _rdata("RRSIG", r.data), RRSIG)
        ]
        self._keys[zone] = keys
        self._signers[zone] = frozenset(sig.key_tag for sig in sigs)
        if not keys:
            return [_comment(f"no DNSKEY set for {zone}")]
        shown = ", ".join(_key_text(key) for key in keys)
        signed = ", ".join(str(tag) for tag in sorted(self._signers[zone])) or "no key"
        return [_comment(f"DNSKEY of {zone}: {shown}; the set is signed by {signed}")]

    def summary(self, validator: Validator) -> list[str]:
        """A line per zone the trace went through: the validator's verdict on it and why."""
        if not self._zones:
            return []
        width = max(len(zone.to_text()) for zone in self._zones)
        lines = [_comment("chain of trust, zone by zone:")]
        for zone in self._zones:
            lines.append(_comment(f"  {zone.to_text():<{width}}  {self._explain(zone, validator)}"))
        return lines

    def _explain(self, zone: dns.name.Name, validator: Validator) -> str:
        keys = validator.keys_for(zone)
        if not isinstance(keys, ZoneKeys):
            return "not judged: nothing it signed was checked"
        state = keys.security.name.lower()
        if keys.ede is not None:
            state += f" (EDE {keys.ede})"
        if keys.zone != zone:
            return f"{state}: below {keys.zone}, {keys.reason or state}"
        seen = self._ds.get(zone)
        if keys.security is Security.SECURE:
            return f"{state}: {self._secure_why(zone, keys)}"
        why = keys.reason
        insecure = keys.security is Security.INSECURE
        if insecure and seen is not None and seen.proof and not seen.ds:
            why += f" ({'/'.join(seen.proof)} in the {seen.source})"
        if keys.security is Security.BOGUS and zone in self._keys:
            # Its DNSKEY set was fetched: which DS it was held to, and whether a key matched.
            match = self._matches(zone, self._keys[zone])
            if match:
                why += f"; {match}"
        return f"{state}: {why}"

    def _ds_set(self, zone: dns.name.Name) -> tuple[tuple[DS, ...], tuple[DNSKEY, ...], str]:
        """The DS records trusted for ``zone``, anchor keys, and where they came from."""
        anchor = None if self._anchors is None else self._anchors.anchors.get(zone)
        if anchor is not None:
            return anchor.ds, anchor.dnskeys, "the trust anchor"
        seen = self._ds.get(zone)
        if seen is None:
            return (), (), ""
        return seen.ds, (), seen.source

    def _matches(self, zone: dns.name.Name, keys: tuple[DNSKEY, ...]) -> str:
        """Which DS matched which key, for a zone whose DNSKEY set was not trusted."""
        ds_set, anchor_keys, source = self._ds_set(zone)
        if not ds_set and not anchor_keys:
            return ""
        pairs = [(ds, key) for ds in ds_set for key in keys if ds_matches(ds, key, zone)]
        if pairs:
            ds, key = pairs[0]
            return f"{_ds_text(ds, source)} matches {_key_text(key)}"
        wanted = ", ".join(_ds_text(ds, source) for ds in ds_set) or f"the keys of {source}"
        return f"no key of its DNSKEY set matches {wanted}"

    def _secure_why(self, zone: dns.name.Name, keys: ZoneKeys) -> str:
        ds_set, anchor_keys, source = self._ds_set(zone)
        signers = self._signers.get(zone, frozenset())
        pairs = [(ds, key) for ds in ds_set for key in keys.dnskeys if ds_matches(ds, key, zone)]
        for ds, key in sorted(pairs, key=lambda p: dns.dnssec.key_id(p[1]) not in signers):
            signs = "which signs" if dns.dnssec.key_id(key) in signers else "trusted for"
            return f"{_ds_text(ds, source)} matches {_key_text(key)}, {signs} the DNSKEY set"
        trusted = [key for key in keys.dnskeys if key in anchor_keys]
        if trusted:
            return f"{_key_text(trusted[0])}, a key of {source}, signs the DNSKEY set"
        return keys.reason


def _name_of(wire: bytes) -> dns.name.Name | None:
    try:
        return dns.name.from_wire(wire, 0)[0]
    except dns.exception.DNSException:
        return None
