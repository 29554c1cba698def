"""The validator: the chain of trust from the anchors down, and the verdict on each reply.

A `Validator` holds what it has learned about zones' keys (a validated DNSKEY set, a DS set
waiting for its DNSKEY set, a proven insecure or bogus zone, a name proven to be no zone
cut), each entry with the time it expires, and judges replies against it. It does no I/O:
when it lacks a DS or DNSKEY set it says so with a `NeedDS` or `NeedDNSKEY` value, the caller
fetches that and hands the reply to `learn_ds` or `learn_dnskey`, and asks again.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dns.dnssec
import dns.name
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.DNSKEY import DNSKEY
from dns.rdtypes.ANY.DS import DS

from resolver.engine.validation.anchors import TrustAnchors
from resolver.engine.validation.denial import (
    NSEC3_ITERATION_LIMIT,
    Denial,
    Proof,
    deny_closer_match,
    deny_ds,
    deny_nodata,
    deny_nxdomain,
)
from resolver.engine.validation.outcome import (
    EDE_DNSKEY_MISSING,
    EDE_NSEC3_ITERATIONS,
    EDE_NSEC_MISSING,
    EDE_RRSIGS_MISSING,
    EDE_UNSUPPORTED_ALGORITHM,
    EDE_UNSUPPORTED_DIGEST,
    Need,
    NeedDNSKEY,
    NeedDS,
    Outcome,
    Reply,
    Security,
    SignedRRset,
    worst,
)
from resolver.engine.validation.signatures import (
    SUPPORTED_ALGORITHMS,
    Checked,
    Verified,
    ds_matches,
    usable_ds,
    verify_rrset,
)

__all__ = ["BOGUS_TTL", "MAX_ZONES", "Validator", "ZoneKeys"]

BOGUS_TTL = 60
"""Seconds a bogus zone's keys are remembered (RFC 9520 3; Unbound's ``val-bogus-ttl``)."""

MAX_ZONES = 10_000
"""Zones (and names proven no zone cut) whose keys a validator keeps at most."""

REMEMBERED_SIGNATURES = 10_000
"""Signatures found to verify that a validator remembers at most, so that one signature over
the same data is not checked again (``signatures.Verified``)."""

_NXDOMAIN = 3
_NOERROR = 0
_CNAME = 5
_DNAME = 39
_DS = 43
_DNSKEY = 48
_SOA = 6
_NS = 2
_NSEC = 47
_NSEC3 = 50
_ANY = 255
_DENIAL_TYPES = frozenset({_SOA, _NSEC, _NSEC3})
_FOREVER = float("inf")


@dataclass(frozen=True, slots=True)
class ZoneKeys:
    """What is known of one zone's keys: its security and, when secure, its validated
    DNSKEY set. ``ede`` and ``reason`` say why a zone is bogus (or insecure through an
    unsupported algorithm, digest or NSEC3 parameter)."""

    zone: dns.name.Name
    security: Security
    dnskeys: tuple[DNSKEY, ...] = ()
    ede: int | None = None
    reason: str = ""
    expires: float = _FOREVER

    def outcome(self) -> Outcome:
        return Outcome(self.security, self.ede, self.reason)


@dataclass(frozen=True, slots=True)
class _Pending:
    """A zone with trusted DS records (or anchor keys) whose DNSKEY set is not yet checked."""

    zone: dns.name.Name
    ds: tuple[DS, ...]
    anchor_keys: tuple[DNSKEY, ...]
    expires: float


@dataclass(frozen=True, slots=True)
class _NoCut:
    """A name proven to be no zone cut by the records of ``parent``, whose keys apply."""

    parent: dns.name.Name
    expires: float


_Entry = ZoneKeys | _Pending | _NoCut


class Validator:
    """DNSSEC validation against ``anchors``, with ``clock`` (wall-clock seconds) injected.

    ``nsec3_iterations`` is the most NSEC3 iterations accepted; above it an answer is
    insecure with EDE 27 (RFC 9276 3.2). ``bogus_ttl`` is how long a bogus zone is
    remembered before its keys are asked for again. ``max_zones`` bounds what is kept about
    zones (trust anchors aside): past it, the entry learned first is forgotten first.
    ``remembered_signatures`` bounds the signatures remembered as verified (0: none).
    """

    def __init__(
        self,
        anchors: TrustAnchors,
        *,
        clock: Callable[[], float] = time.time,
        nsec3_iterations: int = NSEC3_ITERATION_LIMIT,
        bogus_ttl: int = BOGUS_TTL,
        max_zones: int = MAX_ZONES,
        remembered_signatures: int = REMEMBERED_SIGNATURES,
    ) -> None:
        self._anchors = anchors
        self._clock = clock
        self._limit = nsec3_iterations
        self._bogus_ttl = bogus_ttl
        self._max_zones = max_zones
        self._entries: dict[dns.name.Name, _Entry] = {}
        self._counts = {state: 0 for state in Security}
        self._verified = Verified(remembered_signatures)

    def __repr__(self) -> str:
        counts = " ".join(f"{s.name.lower()}={n}" for s, n in self._counts.items())
        return f"<Validator zones={len(self._entries)} {counts}>"

    def statistics(self) -> dict[str, int]:
        """Verdicts given by `validate`, by state; zone entries held; signatures checked
        (``signatures_checked``) and found verified before (``signatures_remembered``)."""
        stats = {s.name.lower(): n for s, n in self._counts.items()}
        stats["zones"] = len(self._entries)
        stats["signatures_checked"] = self._verified.misses
        stats["signatures_remembered"] = self._verified.hits
        return stats

    def _now(self) -> int:
        return int(self._clock())

    # --- the chain of trust -----------------------------------------------------------

    def keys_for(self, zone: dns.name.Name) -> ZoneKeys | Need:
        """The keys that judge data signed by ``zone``, or the DS or DNSKEY set needed first.

        Under a negative trust anchor a zone is insecure; with no anchor above it,
        indeterminate. Below an insecure or bogus zone it is the same (RFC 4035 4.3).
        """
        if self._anchors.negated(zone):
            return ZoneKeys(zone, Security.INSECURE, reason=f"{zone} is under a negative anchor")
        now = self._now()
        known = self._entries.get(zone)
        if isinstance(known, ZoneKeys) and known.expires > now:
            return known  # what the walk below finds first, without it
        for depth in range(len(zone), 0, -1):
            name = zone.split(depth)[1]
            entry = self._entry(name, now)
            if entry is None:
                continue
            if isinstance(entry, _NoCut):
                if name == zone and entry.parent != zone:
                    return self.keys_for(entry.parent)  # the enclosing zone's keys judge it
                continue
            if isinstance(entry, _Pending):
                return NeedDNSKEY(name)
            if name == zone or entry.security is not Security.SECURE:
                return entry
            return NeedDS(zone)
        return ZoneKeys(zone, Security.INDETERMINATE, reason=f"no trust anchor above {zone}")

    def _entry(self, name: dns.name.Name, now: int) -> _Entry | None:
        entry = self._entries.get(name)
        if entry is not None and entry.expires <= now:
            del self._entries[name]
            entry = None
        if entry is None:
            anchor = self._anchors.anchors.get(name)
            if anchor is not None:
                entry = self._anchor_entry(anchor.zone, anchor.ds, anchor.dnskeys)
                self._entries[name] = entry
        return entry

    @staticmethod
    def _anchor_entry(zone: dns.name.Name, ds: Sequence[DS], keys: Sequence[DNSKEY]) -> _Entry:
        usable = usable_ds(ds)
        anchor_keys = tuple(k for k in keys if k.algorithm in SUPPORTED_ALGORITHMS)
        if usable or anchor_keys:
            return _Pending(zone, tuple(usable), anchor_keys, _FOREVER)
        ede = _unsupported_ede(ds)
        return ZoneKeys(
            zone, Security.INSECURE, ede=ede, reason=f"the anchor of {zone} is unsupported"
        )

    def _store(self, zone: dns.name.Name, entry: _Entry) -> ZoneKeys | Need:
        self._remember(zone, entry)
        return self.keys_for(zone)

    def _remember(self, zone: dns.name.Name, entry: _Entry) -> None:
        self._entries.pop(zone, None)
        self._entries[zone] = entry
        while len(self._entries) > self._max_zones:
            oldest = next(
                (name for name in self._entries if name not in self._anchors.anchors), None
            )
            if oldest is None:
                break
            del self._entries[oldest]

    def _judged(
        self, zone: dns.name.Name, outcome: Outcome, now: int, ttl: int | None = None
    ) -> ZoneKeys:
        if outcome.security is Security.BOGUS:
            expires = now + self._bogus_ttl
        else:
            expires = now + (ttl if ttl is not None else (outcome.ttl or self._bogus_ttl))
        entry = ZoneKeys(
            zone, outcome.security, ede=outcome.ede, reason=outcome.reason, expires=expires
        )
        self._remember(zone, entry)
        return entry

    def learn_ds(self, zone: dns.name.Name, reply: Reply) -> ZoneKeys | Need:
        """Take the parent's answer about DS at ``zone`` (a DS reply, or a referral).

        A validated DS set makes the zone wait for its DNSKEY set (the result is then
        `NeedDNSKEY`); a DS set of unsupported algorithms or digests only makes it insecure
        (EDE 1 or 2); a proven absence of DS at a cut makes it insecure, at a name that is no
        cut makes the parent's keys apply; anything unproven makes it bogus. Returns the
        zone's keys, or what must be fetched first (then call again with the same reply).
        """
        now = self._now()
        found = _find(reply, zone, _DS)
        if found is not None:
            checked = self._check(found, reply, zone.parent(), _chain("DS", zone))
            if not isinstance(checked, Checked):
                return checked
            if checked.outcome.security is not Security.SECURE:
                return self._judged(zone, checked.outcome, now)
            usable = usable_ds(found.rrset)
            if not usable:
                outcome = Outcome(
                    Security.INSECURE,
                    _unsupported_ede(found.rrset),
                    f"the DS records of {zone} use only unsupported algorithms or digests",
                )
                return self._judged(zone, outcome, now, checked.outcome.ttl)
            expires = now + (checked.outcome.ttl or 0)
            return self._store(zone, _Pending(zone, tuple(usable), (), expires))
        proof = self._denial_records(reply, zone.parent())
        if not isinstance(proof, tuple):
            return proof
        nsecs, nsec3s, outcome, parent = proof
        if outcome.security is not Security.SECURE:
            return self._judged(zone, outcome, now)
        denial = deny_ds(zone, nsecs, nsec3s, self._limit)
        if denial.proof is Proof.PROVEN and not denial.delegation and parent != zone:
            return self._store(zone, _NoCut(parent, now + (outcome.ttl or 0)))
        judged = _denial_outcome(denial, outcome, insecure=denial.proof is Proof.PROVEN)
        if judged.bogus:
            judged = _said(judged, reply, f"({denial.reason})", "no DS but also no proof of that")
        return self._judged(zone, judged, now)

    def learn_dnskey(self, zone: dns.name.Name, reply: Reply) -> ZoneKeys | Need:
        """Take ``zone``'s answer to a DNSKEY query.

        Secure when a key matching a trusted DS (or an anchor key) signs the DNSKEY set;
        bogus with EDE 9 when no key matches, 10 when no matching key signed it (unsigned,
        or signed by the ZSK alone), or the EDE of the failed signature (an expired one: 7).
        Returns the zone's keys, or what must be fetched first.
        """
        now = self._now()
        entry = self._entry(zone, now)
        if not isinstance(entry, _Pending):
            return self.keys_for(zone)
        found = _find(reply, zone, _DNSKEY)
        chain = _chain("key", zone)
        if found is None:
            outcome = Outcome(Security.BOGUS, EDE_DNSKEY_MISSING, "No DNSKEY record")
            return self._judged(zone, _said(outcome, reply, chain), now)
        trusted = [
            key
            for key in found.rrset
            if key in entry.anchor_keys or any(ds_matches(ds, key, zone) for ds in entry.ds)
        ]
        if not trusted:
            algorithms = sorted({int(ds.algorithm) for ds in entry.ds}) or sorted(
                {int(key.algorithm) for key in entry.anchor_keys}
            )
            named = " ".join(dns.dnssec.algorithm_to_text(a) for a in algorithms)
            outcome = Outcome(
                Security.BOGUS, EDE_DNSKEY_MISSING, f"no keys have a DS with algorithm {named}"
            )
            return self._judged(zone, _said(outcome, reply, chain), now)
        checked = verify_rrset(found, zone, trusted, now)
        if checked.outcome.security is not Security.SECURE:
            outcome = checked.outcome
            if outcome.ede == EDE_DNSKEY_MISSING:
                # Keys match the DS but none of them signed the set (only the ZSK did):
                # the signature that matters is missing, as Unbound reports it.
                outcome = Outcome(Security.BOGUS, EDE_RRSIGS_MISSING, "signature missing")
            return self._judged(zone, _said(outcome, reply, chain), now)
        keys = ZoneKeys(
            zone,
            Security.SECURE,
            tuple(found.rrset),
            reason=f"the DNSKEY set of {zone} is signed by a trusted key",
            expires=now + (checked.outcome.ttl or 0),
        )
        return self._store(zone, keys)

    # --- replies ------------------------------------------------------------------------

    def validate(self, reply: Reply) -> Outcome | Need:
        """The verdict on ``reply``: every RRset of its answer section and, when the answer
        does not hold the data asked for, the denial of existence in its authority section.

        CNAME and DNAME chains are judged link by link; a secure link into an insecure one
        is insecure, any bogus link makes the answer bogus. A wildcard expansion needs the
        proof that the name itself does not exist. Returns what must be fetched first when
        a zone's keys are not known yet (call again with the same reply after learning it).
        """
        outcomes: list[Outcome] = []
        dnames: dict[dns.name.Name, Outcome] = {}
        for signed in reply.answer:
            synthesized = _synthesized_by(signed, reply.answer, dnames)
            if synthesized is not None:
                outcomes.append(synthesized)
                continue
            checked = self._check(signed, reply, signed.name)
            if not isinstance(checked, Checked):
                return checked
            outcome = checked.outcome
            if outcome.secure and checked.wildcard is not None:
                expanded = self._wildcard(signed, checked, reply)
                if not isinstance(expanded, Outcome):
                    return expanded
                outcome = expanded
            if signed.rdtype == _DNAME:
                dnames[signed.name] = outcome
            outcomes.append(_tagged(outcome, signed))
        final = _chain_end(reply)
        answered = any(
            s.name == final and (s.rdtype == reply.qtype or reply.qtype == _ANY)
            for s in reply.answer
        )
        cut = _referral_cut(reply) if not answered else None
        if cut is not None:
            delegation = self._delegation(cut, reply)
            if not isinstance(delegation, Outcome):
                return delegation
            outcomes.append(delegation)
        elif not answered and reply.rcode in (_NOERROR, _NXDOMAIN) and _denies(reply, final):
            negative = self._negative(final, reply)
            if not isinstance(negative, Outcome):
                return negative
            outcomes.append(negative)
        elif not outcomes:
            outcomes.append(Outcome(Security.INDETERMINATE, reason=f"rcode {reply.rcode}"))
        verdict = worst(outcomes)
        self._counts[verdict.security] += 1
        return verdict

    def _delegation(self, cut: dns.name.Name, reply: Reply) -> Outcome | Need:
        """A referral's verdict: secure with a validated DS set, insecure when it proves
        there is none (or the parent is insecure), bogus when it proves neither."""
        keys = self.learn_ds(cut, reply)
        if keys == NeedDNSKEY(cut):
            return Outcome(Security.SECURE, reason=f"the DS set of {cut} is validated")
        if not isinstance(keys, ZoneKeys):
            return keys
        return keys.outcome()

    def _check(
        self,
        signed: SignedRRset,
        reply: Reply,
        fallback: dns.name.Name,
        subject: str | None = None,
    ) -> Checked | Need:
        """Judge one RRset by the keys of its signer (or, unsigned, of the reply's zone); a
        bogus verdict of its own signatures names the server and ``subject`` (by default the
        RRset, as ``<name TYPE CLASS>``)."""
        signers = [
            s
            for s in signed.signers()
            if signed.name.is_subdomain(s) and not (signed.rdtype == _DS and s == signed.name)
        ]
        zone = signers[0] if signers else (reply.zone or fallback)
        keys = self.keys_for(zone)
        if not isinstance(keys, ZoneKeys):
            return keys
        if keys.security is not Security.SECURE:
            return Checked(keys.outcome())
        checked = verify_rrset(signed, keys.zone, keys.dnskeys, self._now(), self._verified)
        if not checked.outcome.bogus:
            return checked
        if subject is None:
            subject = f"for <{signed.name} {dns.rdatatype.to_text(signed.rrset.rdtype)} IN>"
        return Checked(_said(checked.outcome, reply, subject), checked.wildcard)

    def _denial_records(
        self, reply: Reply, fallback: dns.name.Name
    ) -> tuple[list[dns.rrset.RRset], list[dns.rrset.RRset], Outcome, dns.name.Name] | Need:
        """The verified NSEC and NSEC3 RRsets of the authority section, the verdict on them
        (and on the SOA), and the zone whose keys judged them."""
        records = [s for s in reply.authority if s.rdtype in _DENIAL_TYPES]
        signers = [name for s in records for name in s.signers()]
        zone = signers[0] if signers else (reply.zone or fallback)
        outcomes: list[Outcome] = []
        keys = self.keys_for(zone)
        if not isinstance(keys, ZoneKeys):
            return keys
        if keys.security is not Security.SECURE:
            return [], [], keys.outcome(), zone
        for signed in records:
            checked = self._check(signed, reply, zone)
            if not isinstance(checked, Checked):
                return checked
            outcomes.append(_tagged(checked.outcome, signed))
        nsecs = [s.rrset for s in records if s.rdtype == _NSEC]
        nsec3s = [s.rrset for s in records if s.rdtype == _NSEC3]
        if not outcomes:
            outcomes.append(Outcome(Security.SECURE))
        return nsecs, nsec3s, worst(outcomes), zone

    def _negative(self, name: dns.name.Name, reply: Reply) -> Outcome | Need:
        proof = self._denial_records(reply, name)
        if not isinstance(proof, tuple):
            return proof
        nsecs, nsec3s, outcome, _ = proof
        if outcome.security is not Security.SECURE:
            return outcome
        if reply.rcode == _NXDOMAIN:
            denial = deny_nxdomain(name, nsecs, nsec3s, self._limit)
            kind = "nameerror"
        else:
            denial = deny_nodata(name, reply.qtype, nsecs, nsec3s, self._limit)
            kind = "nodata"
        judged = _denial_outcome(denial, outcome)
        if judged.bogus:
            judged = _said(judged, reply, f"({denial.reason})", f"{kind} proof failed")
        return judged

    def _wildcard(self, signed: SignedRRset, checked: Checked, reply: Reply) -> Outcome | Need:
        assert checked.wildcard is not None
        proof = self._denial_records(reply, signed.name)
        if not isinstance(proof, tuple):
            return proof
        nsecs, nsec3s, outcome, _ = proof
        if outcome.security is not Security.SECURE:
            return outcome
        denial = deny_closer_match(signed.name, checked.wildcard, nsecs, nsec3s, self._limit)
        judged = _denial_outcome(denial, outcome)
        if judged.bogus:
            judged = _said(judged, reply, f"({denial.reason})", "wildcard proof failed")
        return worst([checked.outcome, judged])


def _chain(what: str, zone: dns.name.Name) -> str:
    """The end of a reason for a DS or DNSKEY set, as Unbound words it."""
    return f"for {what} {zone} while building chain of trust"


def _said(outcome: Outcome, reply: Reply, subject: str, phrase: str | None = None) -> Outcome:
    """A bogus verdict's reason as Unbound logs it at ``val-log-level: 2``: what failed
    (``phrase``, or the verdict's own words), from which server, and ``subject``: the RRset
    or the key it failed for."""
    origin = f" from {reply.server}" if reply.server else ""
    return dataclasses.replace(outcome, reason=f"{phrase or outcome.reason}{origin} {subject}")


def _find(reply: Reply, name: dns.name.Name, rdtype: int) -> SignedRRset | None:
    for signed in (*reply.answer, *reply.authority):
        if signed.name == name and signed.rdtype == rdtype:
            return signed
    return None


def _denies(reply: Reply, final: dns.name.Name) -> bool:
    """True if the reply claims the name asked (or its CNAME chain's end) has no data: the
    question's own name, or a chain whose authority section holds a negative answer. A chain
    that just stops at a CNAME into another zone claims nothing about the target."""
    if final == reply.qname:
        return True
    return any(s.rdtype in _DENIAL_TYPES for s in reply.authority)


def _referral_cut(reply: Reply) -> dns.name.Name | None:
    """The zone cut a referral points to (NS in the authority section, below the zone the
    reply came from, and no SOA), or None when the reply is no referral."""
    if reply.rcode != _NOERROR or any(s.rdtype == _SOA for s in reply.authority):
        return None
    for signed in reply.authority:
        below = reply.zone is None or signed.name != reply.zone
        if signed.rdtype == _NS and below and reply.qname.is_subdomain(signed.name):
            return signed.name
    return None


def _unsupported_ede(records: Sequence[DS] | dns.rrset.RRset) -> int:
    """EDE 1 when no DS names a supported algorithm, else 2 (only the digests are)."""
    if any(ds.algorithm in SUPPORTED_ALGORITHMS for ds in records):
        return EDE_UNSUPPORTED_DIGEST
    return EDE_UNSUPPORTED_ALGORITHM


def _denial_outcome(denial: Denial, records: Outcome, *, insecure: bool = False) -> Outcome:
    if denial.proof is Proof.PROVEN:
        state = Security.INSECURE if insecure else Security.SECURE
        return Outcome(state, None, denial.reason, records.ttl, records.checked)
    if denial.proof is Proof.OPT_OUT:
        return Outcome(Security.INSECURE, None, denial.reason, records.ttl, records.checked)
    if denial.proof is Proof.ITERATIONS:
        return Outcome(
            Security.INSECURE, EDE_NSEC3_ITERATIONS, denial.reason, records.ttl, records.checked
        )
    return Outcome(Security.BOGUS, EDE_NSEC_MISSING, denial.reason)


def _tagged(outcome: Outcome, signed: SignedRRset) -> Outcome:
    return Outcome(
        outcome.security,
        outcome.ede,
        outcome.reason,
        outcome.ttl,
        ((signed.name, signed.rdtype, outcome.security),),
    )


def _chain_end(reply: Reply) -> dns.name.Name:
    """The name the answer's CNAME chain ends at (the question's name without one)."""
    name = reply.qname
    targets = {
        s.name: s.rrset[0].target for s in reply.answer if s.rdtype == _CNAME and len(s.rrset)
    }
    for _ in range(len(targets)):
        if name not in targets or reply.qtype == _CNAME:
            break
        name = targets[name]
    return name


def _synthesized_by(
    signed: SignedRRset, answer: Sequence[SignedRRset], dnames: dict[dns.name.Name, Outcome]
) -> Outcome | None:
    """The DNAME's verdict for an unsigned CNAME it synthesizes (RFC 6672 5.3.3), else None."""
    if signed.rdtype != _CNAME or signed.sigs or len(signed.rrset) != 1:
        return None
    for owner, outcome in dnames.items():
        if not signed.name.is_subdomain(owner) or signed.name == owner:
            continue
        dname = next(s for s in answer if s.name == owner and s.rdtype == _DNAME)
        prefix = signed.name.relativize(owner)
        if prefix.concatenate(dname.rrset[0].target) == signed.rrset[0].target:
            return _tagged(outcome, signed)
    return None
