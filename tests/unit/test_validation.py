"""The validator over zones signed in the test with fresh keys, clock injected, no sockets.

A small hierarchy (the root, ``test.``, ``example.test.`` and the unsigned
``insecure.test.``) is signed here; `World.resolve` plays the part of the iteration, answering
the validator's NeedDS and NeedDNSKEY from those zones, so each test states one reply and the
verdict it must get.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import dns.name
import dns.rrset
import pytest
from signing import EXPIRATION, INCEPTION, NOW, SignedZone, make_key, name, rrset

from resolver.engine.validation import (
    EDE_DNSKEY_MISSING,
    EDE_DNSSEC_BOGUS,
    EDE_NSEC3_ITERATIONS,
    EDE_NSEC_MISSING,
    EDE_RRSIGS_MISSING,
    EDE_SIGNATURE_EXPIRED,
    EDE_SIGNATURE_NOT_YET_VALID,
    EDE_UNSUPPORTED_ALGORITHM,
    EDE_UNSUPPORTED_DIGEST,
    Answering,
    NeedDNSKEY,
    NeedDS,
    Outcome,
    Reply,
    Security,
    SignedRRset,
    TrustAnchor,
    TrustAnchors,
    Validator,
    ZoneKeys,
    answering,
    parse_trust_anchors,
    root_anchors,
)
from resolver.errors import ConfigError

SOA = "@ SOA ns hostmaster 1 7200 3600 1209600 300\n@ NS ns\nns A 192.0.2.53\n"
LEAF = (
    SOA
    + "www A 192.0.2.1\n"
    + "www AAAA 2001:db8::1\n"
    + "*.wild A 192.0.2.9\n"
    + "host.ent A 192.0.2.7\n"
    + "alias CNAME www.insecure.test.\n"
    + "inside CNAME www\n"
    + "sub NS ns.sub\n"
    + "ns.sub A 192.0.2.54\n"
)
NXDOMAIN = 3
DAY = 86400


def ds_lines(owner: str, ds: dns.rrset.RRset) -> str:
    return "".join(f"{owner} DS {rd.to_text()}\n" for rd in ds)


@dataclass
class World:
    """The signed hierarchy, and the iteration's part: answering NeedDS and NeedDNSKEY."""

    leaf: SignedZone
    test: SignedZone
    root: SignedZone
    insecure: SignedZone
    zones: dict[dns.name.Name, SignedZone] = field(default_factory=dict)
    fetched: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.zones = {z.origin: z for z in (self.leaf, self.test, self.root, self.insecure)}

    def ds_reply(self, zone: dns.name.Name) -> Reply:
        parent_name = zone.parent()
        while parent_name not in self.zones:
            parent_name = parent_name.parent()
        parent = self.zones[parent_name]
        if (zone, 43) in parent.rrsets:
            return Reply(zone, 43, answer=(parent.signed(zone.to_text(), "DS"),))
        if parent.nsec3_params is None:
            return Reply(zone, 43, authority=(parent.soa(), parent.nsec(zone.to_text())))
        if zone in parent.hashes:
            return Reply(zone, 43, authority=(parent.soa(), parent.nsec3(zone.to_text())))
        proof = closest_encloser_proof(parent, zone.to_text(), parent_name.to_text())
        return Reply(zone, 43, authority=(parent.soa(), *proof))

    def resolve(self, validator: Validator, reply: Reply) -> Outcome:
        for _ in range(20):
            verdict = validator.validate(reply)
            if isinstance(verdict, Outcome):
                return verdict
            self.learn(validator, verdict)
        raise AssertionError("the validator kept asking")

    def learn(self, validator: Validator, need: NeedDS | NeedDNSKEY) -> None:
        for _ in range(20):
            if isinstance(need, NeedDS):
                self.fetched.append(f"DS {need.zone}")
                result = validator.learn_ds(need.zone, self.ds_reply(need.zone))
            else:
                self.fetched.append(f"DNSKEY {need.zone}")
                zone = self.zones[need.zone]
                result = validator.learn_dnskey(need.zone, zone.dnskey_reply())
            if isinstance(result, ZoneKeys):
                return
            if isinstance(need, NeedDS) and result == NeedDNSKEY(need.zone):
                return  # the DS set is learned; the DNSKEY set is the next step
            self.learn(validator, result)  # a prerequisite; then the same reply again
        raise AssertionError("learning kept asking")


def build(
    *,
    leaf: Callable[[], SignedZone] | None = None,
    leaf_ds: Callable[[SignedZone], str] | None = None,
    test_nsec3: tuple[int, str, bool] | None = None,
) -> World:
    leaf_zone = leaf() if leaf else SignedZone("example.test.", LEAF)
    insecure = SignedZone("insecure.test.", SOA + "www A 192.0.2.2\n")
    ds = leaf_ds(leaf_zone) if leaf_ds else ds_lines("example", leaf_zone.ds())
    test = SignedZone(
        "test.",
        SOA
        + "example NS ns.example\nns.example A 192.0.2.55\n"
        + ds
        + "insecure NS ns.insecure\nns.insecure A 192.0.2.56\n",
        nsec3=test_nsec3,
    )
    root = SignedZone(
        ".",
        SOA + "test. NS ns.test.\nns.test. A 192.0.2.57\n" + ds_lines("test.", test.ds()),
    )
    return World(leaf_zone, test, root, insecure)


def anchors_of(world: World) -> TrustAnchors:
    return TrustAnchors({dns.name.root: TrustAnchor(dns.name.root, tuple(world.root.ds()))})


def validator(world: World, **options: int) -> Validator:
    return Validator(anchors_of(world), clock=lambda: NOW, **options)


@pytest.fixture(scope="module")
def world() -> World:
    return build()


def answer(*rrsets: SignedRRset, qname: str = "www.example.test.", qtype: int = 1) -> Reply:
    return Reply(name(qname), qtype, answer=rrsets)


def negative(
    qname: str, qtype: int, *authority: SignedRRset, rcode: int = 0, zone: str | None = None
) -> Reply:
    return Reply(name(qname), qtype, rcode, authority=authority, zone=name(zone) if zone else None)


# --- positive answers ------------------------------------------------------------------


def test_signed_answer_is_secure_through_the_chain_from_the_root(world: World) -> None:
    world.fetched.clear()
    verdict = world.resolve(validator(world), answer(world.leaf.signed("www.example.test.", "A")))
    assert verdict.security is Security.SECURE
    assert verdict.ede is None
    assert list(dict.fromkeys(world.fetched)) == [
        "DNSKEY .",
        "DS example.test.",
        "DS test.",
        "DNSKEY test.",
        "DNSKEY example.test.",
    ]


def test_warm_keys_need_no_fetch(world: World) -> None:
    checker = validator(world)
    world.resolve(checker, answer(world.leaf.signed("www.example.test.", "A")))
    world.fetched.clear()
    verdict = world.resolve(
        checker, answer(world.leaf.signed("www.example.test.", "AAAA"), qtype=28)
    )
    assert verdict.secure
    assert world.fetched == []
    assert checker.statistics()["secure"] == 2


@pytest.mark.parametrize(
    "algorithm",
    [5, 7, 8, 10, 13, 14, 15, 16],
    ids=[
        "RSASHA1",
        "RSASHA1-NSEC3-SHA1",
        "RSASHA256",
        "RSASHA512",
        "ECDSAP256SHA256",
        "ECDSAP384SHA384",
        "ED25519",
        "ED448",
    ],
)
def test_each_rfc8624_algorithm_validates(algorithm: int) -> None:
    nsec3 = (0, "-", False) if algorithm == 7 else None
    world = build(leaf=lambda: SignedZone("example.test.", LEAF, algorithm=algorithm, nsec3=nsec3))
    verdict = world.resolve(validator(world), answer(world.leaf.signed("www.example.test.", "A")))
    assert verdict.security is Security.SECURE


@pytest.mark.parametrize("digest", [1, 2, 4], ids=["SHA-1", "SHA-256", "SHA-384"])
def test_each_ds_digest_validates(digest: int) -> None:
    world = build(leaf_ds=lambda z: ds_lines("example", z.ds(digest)))
    verdict = world.resolve(validator(world), answer(world.leaf.signed("www.example.test.", "A")))
    assert verdict.secure


def test_ttl_is_capped_by_original_ttl_and_signature_expiry() -> None:
    world = build(leaf=lambda: SignedZone("example.test.", LEAF, expiration=NOW + 120, ttl=600))
    verdict = world.resolve(validator(world), answer(world.leaf.signed("www.example.test.", "A")))
    assert verdict.secure
    assert verdict.ttl == 120
    signed = world.leaf.signed("www.example.test.", "A")
    longer = dns.rrset.from_rdata_list(signed.name, 3600, list(signed.rrset))
    verdict = world.resolve(validator(world), answer(SignedRRset(longer, signed.sigs)))
    assert verdict.secure
    assert verdict.ttl == 120  # the RRSIG's original TTL (600) and expiry (120) both cap it


def test_ttl_is_capped_by_the_rrsigs_original_ttl(world: World) -> None:
    signed = world.leaf.signed("www.example.test.", "A")
    longer = dns.rrset.from_rdata_list(signed.name, 86400, list(signed.rrset))
    verdict = world.resolve(validator(world), answer(SignedRRset(longer, signed.sigs)))
    assert verdict.secure
    assert verdict.ttl == 300


# --- bogus answers ----------------------------------------------------------------------


def test_expired_signature_is_bogus_with_ede_7() -> None:
    world = build(
        leaf=lambda: SignedZone(
            "example.test.", LEAF, inception=NOW - 30 * DAY, expiration=NOW - 2 * DAY
        )
    )
    verdict = world.resolve(validator(world), answer(world.leaf.signed("www.example.test.", "A")))
    assert (verdict.security, verdict.ede) == (Security.BOGUS, EDE_SIGNATURE_EXPIRED)


def test_future_signature_is_bogus_with_ede_8() -> None:
    world = build(
        leaf=lambda: SignedZone(
            "example.test.", LEAF, inception=NOW + 2 * DAY, expiration=NOW + 30 * DAY
        )
    )
    verdict = world.resolve(validator(world), answer(world.leaf.signed("www.example.test.", "A")))
    assert (verdict.security, verdict.ede) == (Security.BOGUS, EDE_SIGNATURE_NOT_YET_VALID)


def test_expired_rrset_signature_under_good_keys_is_bogus_with_ede_7(world: World) -> None:
    signed = world.leaf.signed("www.example.test.", "A")
    stale = world.leaf.sign(
        signed.rrset, world.leaf.zsk, inception=NOW - 9000, expiration=NOW - 901
    )
    verdict = world.resolve(validator(world), answer(SignedRRset(signed.rrset, (stale,))))
    assert (verdict.security, verdict.ede) == (Security.BOGUS, EDE_SIGNATURE_EXPIRED)


@pytest.mark.parametrize(
    ("expiration", "state"),
    [(NOW - 100, Security.SECURE), (NOW - 181, Security.BOGUS)],
    ids=["expired-within-the-skew-secure", "expired-past-the-skew-bogus"],
)
def test_signature_window_allows_unbounds_clock_skew(
    world: World, expiration: int, state: Security
) -> None:
    # A window under 30 minutes: a tenth of it is below the 3-minute floor, the skew allowed.
    signed = world.leaf.signed("www.example.test.", "A")
    sig = world.leaf.sign(signed.rrset, world.leaf.zsk, inception=NOW - 1700, expiration=expiration)
    verdict = world.resolve(validator(world), answer(SignedRRset(signed.rrset, (sig,))))
    assert verdict.security is state


def test_ds_matching_no_key_is_bogus_with_ede_9() -> None:
    stranger = make_key(13, 257)
    world = build(leaf_ds=lambda z: ds_lines("example", z.ds(key=stranger)))
    verdict = world.resolve(validator(world), answer(world.leaf.signed("www.example.test.", "A")))
    assert (verdict.security, verdict.ede) == (Security.BOGUS, EDE_DNSKEY_MISSING)


def test_dnskey_set_signed_only_by_the_zsk_is_bogus_with_ede_10() -> None:
    # As Unbound reports it: the KSK matches the DS, but its signature is missing.
    world = build(leaf=lambda: SignedZone("example.test.", LEAF, dnskey_signer="zsk"))
    verdict = world.resolve(validator(world), answer(world.leaf.signed("www.example.test.", "A")))
    assert (verdict.security, verdict.ede) == (Security.BOGUS, EDE_RRSIGS_MISSING)


def test_unsigned_dnskey_set_is_bogus_with_ede_10() -> None:
    world = build(leaf=lambda: SignedZone("example.test.", LEAF, dnskey_signer="none"))
    verdict = world.resolve(validator(world), answer(world.leaf.signed("www.example.test.", "A")))
    assert (verdict.security, verdict.ede) == (Security.BOGUS, EDE_RRSIGS_MISSING)


def test_stripped_rrsigs_are_bogus_with_ede_10(world: World) -> None:
    reply = answer(world.leaf.unsigned("www.example.test.", "A"), qname="www.example.test.")
    verdict = world.resolve(
        validator(world), Reply(reply.qname, 1, answer=reply.answer, zone=name("example.test."))
    )
    assert (verdict.security, verdict.ede) == (Security.BOGUS, EDE_RRSIGS_MISSING)


def test_stripped_rrsigs_are_bogus_even_without_the_zone_named(world: World) -> None:
    # Asked of the owner name, the parent proves it is no zone cut: the zone's keys apply.
    verdict = world.resolve(validator(world), answer(world.leaf.unsigned("www.example.test.", "A")))
    assert (verdict.security, verdict.ede) == (Security.BOGUS, EDE_RRSIGS_MISSING)


def test_forged_data_under_a_good_signature_is_bogus_with_ede_6(world: World) -> None:
    signed = world.leaf.signed("www.example.test.", "A")
    forged = rrset("www.example.test.", "A", "203.0.113.66")
    verdict = world.resolve(validator(world), answer(SignedRRset(forged, signed.sigs)))
    assert (verdict.security, verdict.ede) == (Security.BOGUS, EDE_DNSSEC_BOGUS)


def test_ds_signed_by_the_child_itself_is_not_trusted(world: World) -> None:
    checker = validator(world)
    ds = world.leaf.ds()
    self_signed = SignedRRset(ds, (world.leaf.sign(ds, world.leaf.zsk),))
    result = checker.learn_ds(
        name("example.test."), Reply(name("example.test."), 43, answer=(self_signed,))
    )
    while not isinstance(result, ZoneKeys):
        world.learn(checker, result)
        result = checker.learn_ds(
            name("example.test."), Reply(name("example.test."), 43, answer=(self_signed,))
        )
    assert result.security is Security.BOGUS


def test_bogus_zone_is_remembered_then_asked_again() -> None:
    world = build(leaf=lambda: SignedZone("example.test.", LEAF, dnskey_signer="zsk"))
    clock = [float(NOW)]
    checker = Validator(anchors_of(world), clock=lambda: clock[0], bogus_ttl=60)
    world.resolve(checker, answer(world.leaf.signed("www.example.test.", "A")))
    world.fetched.clear()
    verdict = world.resolve(checker, answer(world.leaf.signed("www.example.test.", "A")))
    assert verdict.bogus
    assert world.fetched == []
    clock[0] += 61
    verdict = world.resolve(checker, answer(world.leaf.signed("www.example.test.", "A")))
    assert verdict.bogus
    assert "DNSKEY example.test." in world.fetched


# --- insecure and indeterminate ---------------------------------------------------------


def test_unsigned_answer_below_a_proven_insecure_delegation_is_insecure(world: World) -> None:
    reply = answer(world.insecure.unsigned("www.insecure.test.", "A"), qname="www.insecure.test.")
    verdict = world.resolve(validator(world), reply)
    assert verdict.security is Security.INSECURE
    assert verdict.ede is None


def test_insecure_delegation_proven_by_nsec3_is_insecure() -> None:
    world = build(test_nsec3=(0, "-", False))
    reply = answer(world.insecure.unsigned("www.insecure.test.", "A"), qname="www.insecure.test.")
    assert world.resolve(validator(world), reply).security is Security.INSECURE


def test_nsec3_opt_out_span_makes_the_delegation_insecure() -> None:
    world = build(test_nsec3=(0, "-", True))
    assert (name("insecure.test."), 43) not in world.test.rrsets
    reply = answer(world.insecure.unsigned("www.insecure.test.", "A"), qname="www.insecure.test.")
    assert world.resolve(validator(world), reply).security is Security.INSECURE


def test_ds_of_only_unsupported_algorithms_is_insecure_with_ede_1() -> None:
    world = build(leaf_ds=lambda z: "example DS 12345 253 2 " + "AB" * 32 + "\n")
    verdict = world.resolve(validator(world), answer(world.leaf.signed("www.example.test.", "A")))
    assert (verdict.security, verdict.ede) == (Security.INSECURE, EDE_UNSUPPORTED_ALGORITHM)


def test_ds_of_only_unsupported_digests_is_insecure_with_ede_2() -> None:
    world = build(leaf_ds=lambda z: f"example DS {z.ds()[0].key_tag} 13 3 " + "AB" * 32 + "\n")
    verdict = world.resolve(validator(world), answer(world.leaf.signed("www.example.test.", "A")))
    assert (verdict.security, verdict.ede) == (Security.INSECURE, EDE_UNSUPPORTED_DIGEST)


def test_no_trust_anchor_above_the_zone_is_indeterminate(world: World) -> None:
    anchors = TrustAnchors({name("other."): TrustAnchor(name("other."), tuple(world.root.ds()))})
    checker = Validator(anchors, clock=lambda: NOW)
    verdict = checker.validate(answer(world.leaf.signed("www.example.test.", "A")))
    assert isinstance(verdict, Outcome)
    assert verdict.security is Security.INDETERMINATE


def test_negative_trust_anchor_makes_the_zone_insecure(world: World) -> None:
    checker = Validator(anchors_of(world).with_negative(["example.test."]), clock=lambda: NOW)
    verdict = checker.validate(answer(world.leaf.unsigned("www.example.test.", "A")))
    assert isinstance(verdict, Outcome)
    assert verdict.security is Security.INSECURE


def test_dnskey_trust_anchor_validates_without_ds(world: World) -> None:
    anchors = TrustAnchors(
        {name("example.test."): TrustAnchor(name("example.test."), (), (world.leaf.ksk.dnskey,))}
    )
    checker = Validator(anchors, clock=lambda: NOW)
    verdict = world.resolve(checker, answer(world.leaf.signed("www.example.test.", "A")))
    assert verdict.secure
    assert not any(f.startswith("DS") for f in world.fetched[-1:])


# --- CNAME chains -----------------------------------------------------------------------


def test_cname_from_secure_into_insecure_is_insecure(world: World) -> None:
    reply = answer(
        world.leaf.signed("alias.example.test.", "CNAME"),
        world.insecure.unsigned("www.insecure.test.", "A"),
        qname="alias.example.test.",
    )
    assert world.resolve(validator(world), reply).security is Security.INSECURE


def test_cname_into_bogus_is_bogus(world: World) -> None:
    forged = rrset("www.example.test.", "A", "203.0.113.66")
    reply = answer(
        world.leaf.signed("inside.example.test.", "CNAME"),
        SignedRRset(forged, world.leaf.signed("www.example.test.", "A").sigs),
        qname="inside.example.test.",
    )
    assert world.resolve(validator(world), reply).bogus


def test_secure_cname_chain_within_the_zone_is_secure(world: World) -> None:
    reply = answer(
        world.leaf.signed("inside.example.test.", "CNAME"),
        world.leaf.signed("www.example.test.", "A"),
        qname="inside.example.test.",
    )
    assert world.resolve(validator(world), reply).secure


# --- denial of existence with NSEC ------------------------------------------------------


def test_nsec_nxdomain_is_secure(world: World) -> None:
    z = world.leaf
    reply = negative(
        "nope.example.test.",
        1,
        z.soa(),
        z.nsec("nope.example.test."),
        z.nsec("*.example.test."),
        rcode=NXDOMAIN,
    )
    assert world.resolve(validator(world), reply).secure


def test_nsec_nxdomain_without_the_wildcard_proof_is_bogus_with_ede_12(world: World) -> None:
    z = world.leaf
    covering = z.nsec("nope.example.test.")
    wildcard = z.nsec("*.example.test.")
    assert covering != wildcard  # the proof needs both
    reply = negative("nope.example.test.", 1, z.soa(), covering, rcode=NXDOMAIN)
    verdict = world.resolve(validator(world), reply)
    assert (verdict.security, verdict.ede) == (Security.BOGUS, EDE_NSEC_MISSING)


def test_nxdomain_without_any_nsec_is_bogus_with_ede_12(world: World) -> None:
    reply = negative("nope.example.test.", 1, world.leaf.soa(), rcode=NXDOMAIN)
    verdict = world.resolve(validator(world), reply)
    assert (verdict.security, verdict.ede) == (Security.BOGUS, EDE_NSEC_MISSING)


def test_nsec_nodata_is_secure(world: World) -> None:
    z = world.leaf
    reply = negative("www.example.test.", 16, z.soa(), z.nsec("www.example.test."))
    assert world.resolve(validator(world), reply).secure


def test_nsec_listing_the_type_does_not_prove_nodata(world: World) -> None:
    z = world.leaf
    reply = negative("www.example.test.", 1, z.soa(), z.nsec("www.example.test."))
    verdict = world.resolve(validator(world), reply)
    assert (verdict.security, verdict.ede) == (Security.BOGUS, EDE_NSEC_MISSING)


def test_nsec_empty_non_terminal_nodata_is_secure(world: World) -> None:
    z = world.leaf
    reply = negative("ent.example.test.", 1, z.soa(), z.nsec("ent.example.test."))
    assert world.resolve(validator(world), reply).secure


def test_nsec_wildcard_answer_is_secure(world: World) -> None:
    z = world.leaf
    reply = Reply(
        name("x.wild.example.test."),
        1,
        answer=(z.expanded("x.wild.example.test.", "*.wild.example.test.", "A"),),
        authority=(z.nsec("x.wild.example.test."),),
    )
    assert world.resolve(validator(world), reply).secure


def test_wildcard_answer_without_its_nsec_is_bogus_with_ede_12(world: World) -> None:
    z = world.leaf
    reply = Reply(
        name("x.wild.example.test."),
        1,
        answer=(z.expanded("x.wild.example.test.", "*.wild.example.test.", "A"),),
    )
    verdict = world.resolve(validator(world), reply)
    assert (verdict.security, verdict.ede) == (Security.BOGUS, EDE_NSEC_MISSING)


def test_nsec_wildcard_nodata_is_secure(world: World) -> None:
    z = world.leaf
    reply = negative(
        "x.wild.example.test.",
        16,
        z.soa(),
        z.nsec("x.wild.example.test."),
        z.nsec("*.wild.example.test."),
    )
    assert world.resolve(validator(world), reply).secure


def test_unsigned_nsec_is_bogus_with_ede_10(world: World) -> None:
    z = world.leaf
    proof = z.nsec("www.example.test.")
    reply = negative("www.example.test.", 16, z.soa(), SignedRRset(proof.rrset))
    verdict = world.resolve(validator(world), reply)
    assert (verdict.security, verdict.ede) == (Security.BOGUS, EDE_RRSIGS_MISSING)


# --- denial of existence with NSEC3 -----------------------------------------------------


@pytest.fixture(scope="module")
def world3() -> World:
    return build(leaf=lambda: SignedZone("example.test.", LEAF, nsec3=(5, "cafe", False)))


def closest_encloser_proof(z: SignedZone, qname: str, encloser: str) -> list[SignedRRset]:
    next_closer = name(qname).split(len(name(encloser)) + 1)[1]
    return unique(z.nsec3(encloser), z.nsec3(next_closer.to_text()))


def unique(*rrsets: SignedRRset) -> list[SignedRRset]:
    kept: list[SignedRRset] = []
    for item in rrsets:
        if item not in kept:
            kept.append(item)
    return kept


def test_nsec3_nxdomain_is_secure(world3: World) -> None:
    z = world3.leaf
    proof = closest_encloser_proof(z, "nope.example.test.", "example.test.")
    proof.append(z.nsec3("*.example.test."))
    reply = negative("nope.example.test.", 1, z.soa(), *unique(*proof), rcode=NXDOMAIN)
    assert world3.resolve(validator(world3), reply).secure


def test_nsec3_nxdomain_without_the_wildcard_proof_is_bogus_with_ede_12(world3: World) -> None:
    z = world3.leaf
    wildcard = z.nsec3("*.example.test.")
    # A missing name whose next closer name's NSEC3 is not also the wildcard's.
    qname, proof = next(
        (q, p)
        for q in (f"n{i}.example.test." for i in range(64))
        if wildcard not in (p := closest_encloser_proof(z, q, "example.test."))
    )
    reply = negative(qname, 1, z.soa(), *proof, rcode=NXDOMAIN)
    verdict = world3.resolve(validator(world3), reply)
    assert (verdict.security, verdict.ede) == (Security.BOGUS, EDE_NSEC_MISSING)


def test_nsec3_nodata_is_secure(world3: World) -> None:
    z = world3.leaf
    reply = negative("www.example.test.", 16, z.soa(), z.nsec3("www.example.test."))
    assert world3.resolve(validator(world3), reply).secure


def test_nsec3_wildcard_answer_is_secure(world3: World) -> None:
    z = world3.leaf
    reply = Reply(
        name("x.wild.example.test."),
        1,
        answer=(z.expanded("x.wild.example.test.", "*.wild.example.test.", "A"),),
        authority=(z.nsec3("x.wild.example.test."),),
    )
    assert world3.resolve(validator(world3), reply).secure


def test_nsec3_wildcard_answer_without_its_nsec3_is_bogus(world3: World) -> None:
    z = world3.leaf
    reply = Reply(
        name("x.wild.example.test."),
        1,
        answer=(z.expanded("x.wild.example.test.", "*.wild.example.test.", "A"),),
    )
    verdict = world3.resolve(validator(world3), reply)
    assert (verdict.security, verdict.ede) == (Security.BOGUS, EDE_NSEC_MISSING)


def test_nsec3_wildcard_nodata_is_secure(world3: World) -> None:
    z = world3.leaf
    proof = closest_encloser_proof(z, "x.wild.example.test.", "wild.example.test.")
    proof.append(z.nsec3("*.wild.example.test."))
    reply = negative("x.wild.example.test.", 16, z.soa(), *unique(*proof))
    assert world3.resolve(validator(world3), reply).secure


def test_nsec3_nxdomain_in_an_opt_out_span_is_insecure() -> None:
    world = build(leaf=lambda: SignedZone("example.test.", LEAF, nsec3=(0, "-", True)))
    z = world.leaf
    proof = closest_encloser_proof(z, "nope.example.test.", "example.test.")
    proof.append(z.nsec3("*.example.test."))
    reply = negative("nope.example.test.", 1, z.soa(), *unique(*proof), rcode=NXDOMAIN)
    verdict = world.resolve(validator(world), reply)
    assert verdict.security is Security.INSECURE


@pytest.mark.parametrize(
    ("iterations", "state", "ede"),
    [(150, Security.SECURE, None), (151, Security.INSECURE, EDE_NSEC3_ITERATIONS)],
    ids=["at-the-limit-secure", "above-the-limit-insecure-ede-27"],
)
def test_nsec3_iterations_above_the_limit_make_the_answer_insecure(
    iterations: int, state: Security, ede: int | None
) -> None:
    world = build(leaf=lambda: SignedZone("example.test.", LEAF, nsec3=(iterations, "-", False)))
    z = world.leaf
    reply = negative("www.example.test.", 16, z.soa(), z.nsec3("www.example.test."))
    verdict = world.resolve(validator(world), reply)
    assert (verdict.security, verdict.ede) == (state, ede)


def test_signature_window_uses_serial_arithmetic_across_the_epoch() -> None:
    # RFC 4034 3.1.5: 32-bit times compare modulo 2**32; a clock past 2106 still works.
    later = NOW + 2**32
    world = build()
    checker = Validator(anchors_of(world), clock=lambda: later)
    verdict = world.resolve(checker, answer(world.leaf.signed("www.example.test.", "A")))
    assert verdict.secure
    assert INCEPTION < NOW < EXPIRATION


# --- trust anchors ------------------------------------------------------------------------


def test_shipped_root_anchor_holds_both_root_ksks() -> None:
    anchors = root_anchors()
    root = anchors.anchors[dns.name.root]
    assert sorted(ds.key_tag for ds in root.ds) == [20326, 38696]
    assert {(ds.algorithm, ds.digest_type) for ds in root.ds} == {(8, 2)}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("example. A 192.0.2.1\n", "not a DS or DNSKEY"),
        ("", "no DS or DNSKEY"),
        ("example. DS 1 2\n", "dnssec.trust_anchors"),
        ("example. DNSKEY 0 3 13 " + "A" * 88 + "\n", "no zone key"),
    ],
    ids=["other-type", "empty", "malformed", "not-a-zone-key"],
)
def test_bad_trust_anchor_file_raises_config_error(text: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words) as caught:
        parse_trust_anchors(text, "anchors.txt")
    assert caught.value.field == "dnssec.trust_anchors"


def test_dnskey_anchor_file_is_read(world: World) -> None:
    text = f"example.test. 3600 IN DNSKEY {world.leaf.ksk.dnskey.to_text()}\n"
    anchors = parse_trust_anchors(text, "anchors.txt")
    assert anchors.anchors[name("example.test.")].dnskeys == (world.leaf.ksk.dnskey,)


def test_bad_negative_trust_anchor_names_the_field() -> None:
    with pytest.raises(ConfigError) as caught:
        TrustAnchors().with_negative(["a..b."])
    assert caught.value.field == "dnssec.negative_trust_anchors"


# --- referrals ----------------------------------------------------------------------------


def test_referral_with_a_signed_ds_is_secure(world: World) -> None:
    reply = Reply(
        name("www.example.test."),
        1,
        authority=(
            world.test.unsigned("example.test.", "NS"),
            world.test.signed("example.test.", "DS"),
        ),
        zone=name("test."),
    )
    assert world.resolve(validator(world), reply).secure


def test_referral_to_an_unsigned_child_proven_by_nsec_is_insecure(world: World) -> None:
    reply = Reply(
        name("www.insecure.test."),
        1,
        authority=(world.test.unsigned("insecure.test.", "NS"), world.test.nsec("insecure.test.")),
        zone=name("test."),
    )
    assert world.resolve(validator(world), reply).security is Security.INSECURE


def test_referral_without_ds_or_its_denial_is_bogus_with_ede_12(world: World) -> None:
    reply = Reply(
        name("www.insecure.test."),
        1,
        authority=(world.test.unsigned("insecure.test.", "NS"),),
        zone=name("test."),
    )
    verdict = world.resolve(validator(world), reply)
    assert (verdict.security, verdict.ede) == (Security.BOGUS, EDE_NSEC_MISSING)


def test_cname_into_another_zone_without_the_target_is_judged_by_its_link(world: World) -> None:
    # The server of example.test. does not answer for insecure.test.: no denial is claimed.
    reply = answer(world.leaf.signed("alias.example.test.", "CNAME"), qname="alias.example.test.")
    verdict = world.resolve(validator(world), reply)
    assert verdict.secure


def test_validation_package_exports_its_api() -> None:
    import resolver.engine.validation as validation

    assert sorted(validation.__all__) == sorted(
        [
            "BOGUS_TTL",
            "Answering",
            "EDE_DNSKEY_MISSING",
            "EDE_DNSSEC_BOGUS",
            "EDE_NSEC3_ITERATIONS",
            "EDE_NSEC_MISSING",
            "EDE_RRSIGS_MISSING",
            "EDE_SIGNATURE_EXPIRED",
            "EDE_SIGNATURE_NOT_YET_VALID",
            "EDE_UNSUPPORTED_ALGORITHM",
            "EDE_UNSUPPORTED_DIGEST",
            "MAX_ZONES",
            "NSEC3_ITERATION_LIMIT",
            "REMEMBERED_SIGNATURES",
            "ROOT_ANCHORS",
            "SUPPORTED_ALGORITHMS",
            "SUPPORTED_DIGESTS",
            "Need",
            "NeedDNSKEY",
            "NeedDS",
            "Outcome",
            "Reply",
            "Security",
            "SignedRRset",
            "TrustAnchor",
            "TrustAnchors",
            "Validator",
            "ZoneKeys",
            "answering",
            "parse_trust_anchors",
            "read_trust_anchors",
            "root_anchors",
        ]
    )
    for exported in validation.__all__:
        assert hasattr(validation, exported)


def test_nxdomain_for_an_empty_non_terminal_is_bogus(world: World) -> None:
    # ent.example.test. exists (host.ent is below it): NXDOMAIN for it cannot be proven.
    z = world.leaf
    reply = negative(
        "ent.example.test.",
        1,
        z.soa(),
        z.nsec("ent.example.test."),
        z.nsec("*.example.test."),
        rcode=NXDOMAIN,
    )
    verdict = world.resolve(validator(world), reply)
    assert (verdict.security, verdict.ede) == (Security.BOGUS, EDE_NSEC_MISSING)


def test_signature_by_a_revoked_key_does_not_count(world: World) -> None:
    z = world.leaf
    revoked = make_key(13, 256 | 0x80)  # the REVOKE bit (RFC 5011)
    keys = dns.rrset.from_rdata_list(z.origin, 300, [z.ksk.dnskey, z.zsk.dnskey, revoked.dnskey])
    key_reply = Reply(z.origin, 48, answer=(SignedRRset(keys, (z.sign(keys, z.ksk),)),))
    data = z.signed("www.example.test.", "A").rrset
    by_revoked = SignedRRset(data, (z.sign(data, revoked),))
    world.zones[z.origin] = _with_keys(z, key_reply)  # type: ignore[assignment]
    try:
        verdict = world.resolve(validator(world), answer(by_revoked))
    finally:
        world.zones[z.origin] = z
    assert (verdict.security, verdict.ede) == (Security.BOGUS, EDE_DNSKEY_MISSING)


class _with_keys:
    """A zone whose DNSKEY reply is another one."""

    def __init__(self, zone: SignedZone, reply: Reply) -> None:
        self._zone, self._reply = zone, reply

    def dnskey_reply(self) -> Reply:
        return self._reply

    def __getattr__(self, attribute: str) -> object:
        return getattr(self._zone, attribute)


# --- what a verdict does to the answer ----------------------------------------------------

SECURE = Outcome(Security.SECURE)
BOGUS = Outcome(Security.BOGUS, EDE_SIGNATURE_EXPIRED, "expired")
ITERATIONS = Outcome(Security.INSECURE, EDE_NSEC3_ITERATIONS, "too many iterations")


@pytest.mark.parametrize(
    ("outcome", "mode", "bits", "expected"),
    [
        (SECURE, "on", {"do": True}, Answering(ad=True)),
        (SECURE, "on", {"ad": True}, Answering(ad=True)),
        (SECURE, "on", {}, Answering()),
        (SECURE, "on", {"do": True, "cd": True}, Answering(ad=True)),
        (SECURE, "off", {"do": True}, Answering()),
        (BOGUS, "on", {}, Answering(servfail=True, ede=EDE_SIGNATURE_EXPIRED, log_bogus=True)),
        (Outcome(Security.BOGUS), "on", {}, Answering(servfail=True, ede=6, log_bogus=True)),
        (BOGUS, "permissive", {"do": True}, Answering(log_bogus=True)),
        (BOGUS, "on", {"cd": True}, Answering()),
        (ITERATIONS, "on", {"do": True}, Answering(ede=EDE_NSEC3_ITERATIONS)),
        (Outcome(Security.INDETERMINATE), "on", {"do": True}, Answering()),
    ],
    ids=[
        "secure-do-ad",
        "secure-ad-ad",
        "secure-plain-no-ad",
        "secure-cd-ad-as-unbound",
        "off-no-ad",
        "bogus-servfail-with-its-ede",
        "bogus-servfail-ede-6",
        "bogus-permissive-answers",
        "bogus-cd-answers",
        "insecure-iterations-ede-27",
        "indeterminate-plain",
    ],
)
def test_verdict_sets_ad_servfail_and_ede_as_unbound(
    outcome: Outcome, mode: str, bits: dict[str, bool], expected: Answering
) -> None:
    flags = {"ad": False, "do": False, "cd": False, **bits}
    assert answering(outcome, mode=mode, **flags) == expected  # type: ignore[arg-type]


def test_zones_past_max_zones_are_forgotten_oldest_first_anchors_kept(world: World) -> None:
    checker = Validator(anchors_of(world), clock=lambda: NOW, max_zones=2)
    world.resolve(checker, answer(world.leaf.signed("www.example.test.", "A")))
    assert checker.statistics()["zones"] == 2
    # The root's anchor stays; the leaf's keys, learned last, stay; test.'s went.
    world.fetched.clear()
    world.resolve(checker, answer(world.leaf.signed("www.example.test.", "AAAA"), qtype=28))
    assert world.fetched == []
    assert isinstance(checker.keys_for(name("test.")), NeedDS)
