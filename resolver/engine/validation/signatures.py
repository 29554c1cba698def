"""Signature checks (RFC 4035 5.3) and DS matching (RFC 4035 5.2), with dnspython's
``dns.dnssec`` doing the cryptography.

The algorithms validated are those RFC 8624 section 3.1 says a validator MUST (or, for
RSASHA1, still does in practice) implement; a zone whose DS records name only others is
insecure, not bogus (RFC 4035 5.2). Times are compared in RFC 1982 serial arithmetic, as
RFC 4034 3.1.5 asks, against the injected ``now``, with Unbound's clock skew around each
signature's window (a tenth of it, from 3 minutes to a day).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import dns.dnssec
import dns.exception
import dns.name
import dns.rdataset
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.DNSKEY import DNSKEY
from dns.rdtypes.ANY.DS import DS
from dns.rdtypes.ANY.RRSIG import RRSIG

from resolver.engine.validation.outcome import (
    EDE_DNSKEY_MISSING,
    EDE_DNSSEC_BOGUS,
    EDE_RRSIGS_MISSING,
    EDE_SIGNATURE_EXPIRED,
    EDE_SIGNATURE_NOT_YET_VALID,
    Outcome,
    Security,
    SignedRRset,
)

__all__ = [
    "SUPPORTED_ALGORITHMS",
    "SUPPORTED_DIGESTS",
    "Checked",
    "Verified",
    "ds_matches",
    "usable_ds",
    "verify_rrset",
]

SUPPORTED_ALGORITHMS = frozenset({5, 7, 8, 10, 13, 14, 15, 16})
"""RSASHA1, RSASHA1-NSEC3-SHA1, RSASHA256, RSASHA512, ECDSAP256SHA256, ECDSAP384SHA384,
ED25519, ED448 (RFC 8624 3.1)."""

SUPPORTED_DIGESTS = frozenset({1, 2, 4})
"""DS digests SHA-1, SHA-256, SHA-384 (RFC 8624 3.3)."""

_ZONE_KEY = 0x0100  # DNSKEY flags: the Zone Key bit (RFC 4034 2.1.1)
_REVOKE = 0x0080  # DNSKEY flags: the REVOKE bit (RFC 5011 3)
_PROTOCOL = 3
_SERIAL = 2**32
_SKEW_MIN = 180
_SKEW_MAX = 86400
# Which failure names a set of signatures that all failed, most telling first.
_EDE_ORDER = (
    EDE_SIGNATURE_EXPIRED,
    EDE_SIGNATURE_NOT_YET_VALID,
    EDE_DNSSEC_BOGUS,
    EDE_DNSKEY_MISSING,
)


@dataclass(frozen=True, slots=True)
class Checked:
    """The verdict on one RRset's signatures.

    ``wildcard`` is the wildcard's closest encloser (the source was ``*.`` it) when the
    verifying signature shows the RRset was synthesized from a wildcard (RFC 4035 5.3.4):
    the caller must then see a proof that the name itself does not exist.
    """

    outcome: Outcome
    wildcard: dns.name.Name | None = None


def _serial_before(a: int, b: int) -> bool:
    """True if 32-bit time ``a`` is before ``b`` in RFC 1982 serial arithmetic."""
    return a != b and ((b - a) % _SERIAL) < 2**31


def _skew(sig: RRSIG) -> int:
    """The clock skew allowed around a signature's window, as Unbound allows it: a tenth of
    the window, at least 3 minutes and at most a day (``val-sig-skew-min``/``-max``)."""
    window = (sig.expiration - sig.inception) % _SERIAL
    return max(_SKEW_MIN, min(_SKEW_MAX, window // 10))


def _label_count(name: dns.name.Name) -> int:
    count = len(name) - 1  # the root label does not count
    if name.is_wild():
        count -= 1
    return count


_KEY_TAGS_MAX = 4096
# Key tags by key (its flags, protocol, algorithm and key bytes: hashing the rdata itself
# would write it out in wire form each time, as computing the tag does).
_key_tags: dict[tuple[int, int, int, bytes], int] = {}


def _key_tag(key: DNSKEY) -> int:
    known = (key.flags, key.protocol, key.algorithm, key.key)
    tag = _key_tags.get(known)
    if tag is None:
        if len(_key_tags) >= _KEY_TAGS_MAX:
            _key_tags.clear()
        tag = _key_tags[known] = int(dns.dnssec.key_id(key))
    return tag


def _check_signature(
    rrset: dns.rrset.RRset, sig: RRSIG, signer: dns.name.Name, candidates: list[DNSKEY]
) -> None:
    """dnspython's check of ``sig`` over ``rrset``; raises ValidationFailure."""
    keyset = dns.rdataset.from_rdata_list(0, candidates)
    # The window was checked by the caller (serial arithmetic, skew); dnspython checks it
    # again in plain integers, so hand it a time inside the window.
    dns.dnssec.validate_rrsig(rrset, sig, {signer: keyset}, now=float(sig.inception) + 1)


_Fingerprint = tuple[
    tuple[int, ...],
    bytes,
    tuple[bytes, ...],
    tuple[bytes, ...],
    int,
    int,
    tuple[bytes, ...],
    tuple[tuple[int, int, int, bytes], ...],
]


def _labels(name: dns.name.Name) -> tuple[bytes, ...]:
    return tuple(label.lower() for label in name.labels)


class Verified:
    """The signatures already found to verify, at most ``max_entries`` (the oldest go first),
    so that one signature over the same data is checked once: the RRset a wildcard expands
    under many names is signed as the wildcard's (RFC 4035 5.3.2), and the same NSEC comes in
    many replies. An entry holds all that the signed data is made of (RFC 4034 3.1.8.1): the
    RRSIG's fields and signature, the owner lowercased (or the wildcard it came from), class,
    type and the records' rdata as they came (uncompressed, case kept, sorted: a finer key
    than their canonical form, so two entries never stand for different data), and the keys
    tried. Only successes are kept; the signature's validity window is the caller's to check
    each time. ``max_entries`` 0 keeps none (every signature is checked)."""

    __slots__ = ("_entries", "_max", "hits", "misses")

    def __init__(self, max_entries: int = 10_000) -> None:
        self._entries: dict[_Fingerprint, None] = {}
        self._max = max_entries
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<Verified entries={len(self._entries)} hits={self.hits} misses={self.misses}>"

    def check(
        self,
        signed: SignedRRset,
        sig: RRSIG,
        signer: dns.name.Name,
        candidates: list[DNSKEY],
    ) -> None:
        """`_check_signature`, unless this signature over this data with these keys has
        verified before; raises ValidationFailure."""
        rrset = signed.rrset
        if not self._max:
            self.misses += 1
            _check_signature(rrset, sig, signer, candidates)
            return
        owner = _labels(rrset.name)
        if sig.labels < _label_count(rrset.name):
            owner = (b"*", *owner[-(sig.labels + 1) :])
        data = signed.raw
        if data is None:  # as `Reply.from_records` keeps it: uncompressed, case kept, sorted
            data = tuple(sorted(rd.to_wire() for rd in rrset))
        fingerprint: _Fingerprint = (
            (
                int(sig.type_covered),
                sig.algorithm,
                sig.labels,
                sig.original_ttl,
                sig.expiration,
                sig.inception,
                sig.key_tag,
            ),
            sig.signature,
            _labels(sig.signer),
            owner,
            int(rrset.rdclass),
            int(rrset.rdtype),
            data,
            tuple((k.flags, k.protocol, k.algorithm, k.key) for k in candidates),
        )
        if fingerprint in self._entries:
            self.hits += 1
            return
        self.misses += 1
        _check_signature(rrset, sig, signer, candidates)
        if not self._max:
            return
        if len(self._entries) >= self._max:
            del self._entries[next(iter(self._entries))]
        self._entries[fingerprint] = None


def _zone_keys(keys: Iterable[DNSKEY]) -> list[DNSKEY]:
    """The keys that may sign zone data: the Zone Key bit set, protocol 3, not revoked
    (RFC 5011 7: a revoked key signs only its own revocation)."""
    return [
        k for k in keys if k.flags & _ZONE_KEY and not k.flags & _REVOKE and k.protocol == _PROTOCOL
    ]


def verify_rrset(
    signed: SignedRRset,
    signer: dns.name.Name,
    keys: Iterable[DNSKEY],
    now: int,
    verified: Verified | None = None,
) -> Checked:
    """Check ``signed`` against ``keys``, the zone keys of ``signer``, at ``now``; with
    ``verified``, a signature that verified before over the same data is not checked again.

    Secure if one RRSIG by a key of ``keys`` whose algorithm is supported verifies within its
    validity window; bogus otherwise, with EDE 10 when there is no RRSIG at all, 7 or 8 when
    the only candidates are expired or not yet valid, 9 when no RRSIG names one of the keys,
    and 6 for a signature that does not verify; the reason in the words Unbound uses ("signature
    expired"), without the RRset (the caller names it and the server). The TTL cap is the least
    of the RRset's TTL, the RRSIG's original TTL and the seconds left before it expires.
    """
    rrset = signed.rrset
    what = f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)}"
    if not signed.sigs:
        return Checked(Outcome(Security.BOGUS, EDE_RRSIGS_MISSING, "no signatures"))
    key_list = _zone_keys(keys)
    if not key_list:
        return Checked(Outcome(Security.BOGUS, EDE_DNSKEY_MISSING, "signatures from unknown keys"))
    failures: list[tuple[int, str]] = []
    owner_labels = _label_count(rrset.name)
    for sig in signed.sigs:
        if sig.signer != signer or int(sig.type_covered) != int(rrset.rdtype):
            continue
        if sig.algorithm not in SUPPORTED_ALGORITHMS:
            failures.append((EDE_DNSSEC_BOGUS, "unsupported algorithm by crypto library"))
            continue
        if sig.labels > owner_labels:
            failures.append((EDE_DNSSEC_BOGUS, "signature labelcount out of range"))
            continue
        candidates = [
            k for k in key_list if k.algorithm == sig.algorithm and _key_tag(k) == sig.key_tag
        ]
        if not candidates:
            failures.append((EDE_DNSKEY_MISSING, "signatures from unknown keys"))
            continue
        stamp = now % _SERIAL
        skew = _skew(sig)
        if _serial_before((sig.expiration + skew) % _SERIAL, stamp):
            failures.append((EDE_SIGNATURE_EXPIRED, "signature expired"))
            continue
        if _serial_before(stamp, (sig.inception - skew) % _SERIAL):
            failures.append((EDE_SIGNATURE_NOT_YET_VALID, "signature before inception date"))
            continue
        try:
            if verified is not None:
                verified.check(signed, sig, signer, candidates)
            else:
                _check_signature(rrset, sig, signer, candidates)
        except (dns.exception.ValidationFailure, dns.exception.UnsupportedAlgorithm) as exc:
            failures.append((EDE_DNSSEC_BOGUS, f"signature crypto failed ({exc})"))
            continue
        left = (sig.expiration - stamp) % _SERIAL if _serial_before(stamp, sig.expiration) else 0
        ttl = min(int(rrset.ttl), int(sig.original_ttl), left)
        wildcard = None
        if sig.labels < owner_labels:
            wildcard = rrset.name.split(sig.labels + 1)[1]
        return Checked(Outcome(Security.SECURE, ttl=ttl, reason=f"{what} verified"), wildcard)
    if not failures:
        return Checked(Outcome(Security.BOGUS, EDE_RRSIGS_MISSING, "signature missing"))
    ede, reason = min(failures, key=lambda f: _EDE_ORDER.index(f[0]))
    return Checked(Outcome(Security.BOGUS, ede, reason))


def ds_matches(ds: DS, key: DNSKEY, owner: dns.name.Name) -> bool:
    """True if ``ds`` is the digest of ``key`` owned by ``owner`` (tag, algorithm, digest)."""
    if ds.algorithm != key.algorithm or ds.key_tag != _key_tag(key):
        return False
    if ds.digest_type not in SUPPORTED_DIGESTS:
        return False
    try:
        made = dns.dnssec.make_ds(
            owner, key, ds.digest_type, policy=dns.dnssec.allow_all_policy, validating=True
        )
    except dns.exception.DNSException:
        return False
    return bool(made.digest == ds.digest)


def usable_ds(records: Iterable[DS]) -> list[DS]:
    """The DS records this validator can use: supported algorithm and digest; SHA-1 ones
    dropped when a stronger digest is present (RFC 4509 3)."""
    usable = [
        ds
        for ds in records
        if ds.algorithm in SUPPORTED_ALGORITHMS and ds.digest_type in SUPPORTED_DIGESTS
    ]
    if any(ds.digest_type != 1 for ds in usable):
        usable = [ds for ds in usable if ds.digest_type != 1]
    return usable
