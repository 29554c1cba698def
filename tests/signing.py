"""Zones signed in the test, with keys made for it: the records a validator is given.

`SignedZone` signs a small zone with a fresh KSK and ZSK (any algorithm RFC 8624 lists), with
an NSEC or NSEC3 chain (salt, iterations and opt-out chosen by the test), and hands out its
RRsets with their RRSIGs, the NSEC or NSEC3 records that match or cover a name, and its DS.
Tests assemble replies from these by hand, so each one says exactly what the validator sees.
No key leaves the process.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass

import dns.dnssec
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zonefile
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from dns.rdtypes.ANY.DNSKEY import DNSKEY
from dns.rdtypes.ANY.RRSIG import RRSIG

from resolver.engine.validation import Reply, SignedRRset

NOW = 1_800_000_000  # 2027-01-15: every test's clock
INCEPTION = NOW - 3600
EXPIRATION = NOW + 30 * 86400

_CURVES = {13: ec.SECP256R1, 14: ec.SECP384R1}


RSA_BITS = 1024  # small keys sign and verify fast; the benchmark sets 2048


def private_key(algorithm: int) -> object:
    """A fresh private key for the DNSSEC ``algorithm`` number."""
    if algorithm in (5, 7, 8, 10):
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    if algorithm in _CURVES:
        return ec.generate_private_key(_CURVES[algorithm]())
    if algorithm == 15:
        return ed25519.Ed25519PrivateKey.generate()
    if algorithm == 16:
        return ed448.Ed448PrivateKey.generate()
    raise ValueError(f"no key maker for algorithm {algorithm}")


@dataclass(frozen=True)
class Key:
    private: object
    dnskey: DNSKEY


def make_key(algorithm: int, flags: int) -> Key:
    private = private_key(algorithm)
    dnskey = dns.dnssec.make_dnskey(private.public_key(), algorithm, flags)  # type: ignore[attr-defined]
    return Key(private, dnskey)


def name(text: str) -> dns.name.Name:
    return dns.name.from_text(text)


def rrset(owner: str, rdtype: str, *rdatas: str, ttl: int = 300) -> dns.rrset.RRset:
    return dns.rrset.from_text_list(owner, ttl, "IN", rdtype, list(rdatas))


class SignedZone:
    """The zone ``origin`` holding ``records`` (master-file lines, names relative to it).

    ``nsec3`` is None for an NSEC chain, else ``(iterations, salt_hex, opt_out)``; with
    opt-out, delegations without DS get no NSEC3. ``inception``/``expiration`` bound every
    signature; ``dnskey_signer`` is "ksk" (the usual), "zsk" (the DNSKEY set signed only by
    the ZSK) or "none".
    """

    def __init__(
        self,
        origin: str,
        records: str,
        *,
        algorithm: int = 13,
        nsec3: tuple[int, str, bool] | None = None,
        inception: int = INCEPTION,
        expiration: int = EXPIRATION,
        dnskey_signer: str = "ksk",
        ttl: int = 300,
    ) -> None:
        self.origin = name(origin)
        self.algorithm = algorithm
        self.inception, self.expiration = inception, expiration
        self.ksk = make_key(algorithm, 257)
        self.zsk = make_key(algorithm, 256)
        self.nsec3_params = nsec3
        self.rrsets: dict[tuple[dns.name.Name, int], dns.rrset.RRset] = {}
        for item in dns.zonefile.read_rrsets(
            records, origin=self.origin, relativize=False, default_ttl=ttl
        ):
            self.rrsets[(item.name, int(item.rdtype))] = item
        keys = dns.rrset.from_rdata_list(self.origin, ttl, [self.ksk.dnskey, self.zsk.dnskey])
        self.rrsets[(self.origin, 48)] = keys
        self.cuts = {
            owner for (owner, rdtype) in self.rrsets if rdtype == 2 and owner != self.origin
        }
        self.denial: dict[dns.name.Name, dns.rrset.RRset] = {}
        self.hashes: dict[dns.name.Name, str] = {}
        if nsec3 is None:
            self._nsec_chain(ttl)
        else:
            self._nsec3_chain(ttl, *nsec3)
        self.sigs: dict[tuple[dns.name.Name, int], tuple[RRSIG, ...]] = {}
        for (owner, rdtype), data in self.rrsets.items():
            if self._glue(owner) or (owner in self.cuts and rdtype != 43):
                continue
            if rdtype == 48:
                signer = {"ksk": [self.ksk], "zsk": [self.zsk], "none": []}[dnskey_signer]
            else:
                signer = [self.zsk]
            self.sigs[(owner, rdtype)] = tuple(self.sign(data, key) for key in signer)
        for owner, data in self.denial.items():
            self.sigs[(owner, int(data.rdtype))] = (self.sign(data, self.zsk),)

    def sign(self, data: dns.rrset.RRset, key: Key, **times: int) -> RRSIG:
        return dns.dnssec.sign(
            data,
            key.private,  # type: ignore[arg-type]
            self.origin,
            key.dnskey,
            inception=times.get("inception", self.inception),
            expiration=times.get("expiration", self.expiration),
        )

    def _glue(self, owner: dns.name.Name) -> bool:
        return any(owner.is_subdomain(cut) and owner != cut for cut in self.cuts)

    def _names(self) -> dict[dns.name.Name, set[int]]:
        """Authoritative names (and empty non-terminals) with their types."""
        names: dict[dns.name.Name, set[int]] = {}
        for owner, rdtype in self.rrsets:
            if self._glue(owner):
                continue
            names.setdefault(owner, set()).add(rdtype)
            parent = owner
            while parent != self.origin:
                parent = parent.parent()
                names.setdefault(parent, set())
        return names

    @staticmethod
    def _bitmap(types: Iterable[int]) -> str:
        return " ".join(dns.rdatatype.to_text(t) for t in sorted(types))  # type: ignore[arg-type]

    def _nsec_chain(self, ttl: int) -> None:
        names = self._names()
        ordered = sorted(names)
        for index, owner in enumerate(ordered):
            following = ordered[(index + 1) % len(ordered)]
            types = set(names[owner]) | {47}
            if owner not in self.cuts or 43 in names[owner]:
                types.add(46)
            if owner in self.cuts:
                types.add(46)  # the NSEC itself is signed
            text = f"{following} {self._bitmap(types)}"
            self.denial[owner] = rrset(owner.to_text(), "NSEC", text, ttl=ttl)

    def _nsec3_chain(self, ttl: int, iterations: int, salt: str, opt_out: bool) -> None:
        names = self._names()
        salt_bytes = bytes.fromhex(salt) if salt != "-" else b""
        hashed: dict[str, tuple[dns.name.Name, set[int]]] = {}
        for owner, types in names.items():
            if opt_out and owner in self.cuts and 43 not in types:
                continue
            digest = dns.dnssec.nsec3_hash(owner, salt_bytes, iterations, 1)
            self.hashes[owner] = digest
            kept = set(types)
            if kept and not (owner in self.cuts and 43 not in types):
                kept.add(46)
            hashed[digest] = (owner, kept)
        ordered = sorted(hashed)
        flags = 1 if opt_out else 0
        for index, digest in enumerate(ordered):
            following = ordered[(index + 1) % len(ordered)]
            _, types = hashed[digest]
            owner = dns.name.Name((digest.lower().encode(),)).concatenate(self.origin)
            text = f"1 {flags} {iterations} {salt} {following} {self._bitmap(types)}"
            self.denial[owner] = rrset(owner.to_text(), "NSEC3", text, ttl=ttl)
        param = rrset(self.origin.to_text(), "NSEC3PARAM", f"1 0 {iterations} {salt}", ttl=0)
        self.rrsets[(self.origin, 51)] = param

    # --- what tests take ---------------------------------------------------------------

    def signed(self, owner: str, rdtype: str) -> SignedRRset:
        key = (name(owner), int(dns.rdatatype.from_text(rdtype)))
        return SignedRRset(self.rrsets[key], self.sigs.get(key, ()))

    def unsigned(self, owner: str, rdtype: str) -> SignedRRset:
        return SignedRRset(self.signed(owner, rdtype).rrset)

    def ds(self, digest: int = 2, key: Key | None = None) -> dns.rrset.RRset:
        made = dns.dnssec.make_ds(
            self.origin,
            (key or self.ksk).dnskey,
            digest,
            policy=dns.dnssec.allow_all_policy,
        )
        return dns.rrset.from_rdata_list(self.origin, 300, [made])

    def dnskey_reply(self) -> Reply:
        return Reply(self.origin, 48, answer=(self.signed(self.origin.to_text(), "DNSKEY"),))

    def expanded(self, qname: str, wildcard: str, rdtype: str) -> SignedRRset:
        """The RRset of ``wildcard`` as an answer for ``qname`` synthesized from it."""
        source = self.signed(wildcard, rdtype)
        data = dns.rrset.from_rdata_list(qname, source.rrset.ttl, list(source.rrset))
        return SignedRRset(data, source.sigs)

    def _denial_rrset(self, owner: dns.name.Name) -> SignedRRset:
        data = self.denial[owner]
        return SignedRRset(data, self.sigs[(owner, int(data.rdtype))])

    def nsec(self, text: str) -> SignedRRset:
        """The NSEC owned by ``text``, or else the one covering it."""
        target = name(text)
        if target in self.denial:
            return self._denial_rrset(target)
        owners = sorted(self.denial)
        before = [o for o in owners if o < target]
        return self._denial_rrset(before[-1] if before else owners[-1])

    def nsec3(self, text: str) -> SignedRRset:
        """The NSEC3 matching ``text``'s hash, or else the one covering it."""
        assert self.nsec3_params is not None, "the zone has an NSEC chain"
        iterations, salt, _ = self.nsec3_params
        salt_bytes = bytes.fromhex(salt) if salt != "-" else b""
        digest = dns.dnssec.nsec3_hash(name(text), salt_bytes, iterations, 1)
        by_hash = {o[0].decode().upper(): o for o in self.denial}
        if digest in by_hash:
            return self._denial_rrset(by_hash[digest])
        ordered = sorted(by_hash)
        before = [h for h in ordered if h < digest]
        return self._denial_rrset(by_hash[before[-1] if before else ordered[-1]])

    def soa(self) -> SignedRRset:
        return self.signed(self.origin.to_text(), "SOA")


def b32(data: bytes) -> str:
    return base64.b32hexencode(data).decode()


def zone_text(zone: SignedZone) -> str:
    """The signed zone as a master file: its records, NSEC or NSEC3 chain and RRSIGs."""
    lines: list[str] = []
    for data in [*zone.rrsets.values(), *zone.denial.values()]:
        lines.append(data.to_text())
    for (owner, _), sigs in zone.sigs.items():
        if sigs:
            lines.append(dns.rrset.from_rdata_list(owner, 300, list(sigs)).to_text())
    return "\n".join(lines) + "\n"
