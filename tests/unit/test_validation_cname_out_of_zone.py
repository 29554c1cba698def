"""A wildcard CNAME into another zone: the NSEC that proves the expansion (no closer match)
rides beside the CNAME, and must not be read as a denial of the target, which lies in another
zone its server says nothing about."""

from __future__ import annotations

import dns.name
from signing import NOW, SignedZone, name

from resolver.engine.validation import (
    NeedDNSKEY,
    NeedDS,
    Outcome,
    Reply,
    Security,
    TrustAnchor,
    TrustAnchors,
    Validator,
    ZoneKeys,
)

SOA = "@ SOA ns hostmaster 1 7200 3600 1209600 300\n@ NS ns\nns A 192.0.2.53\n"


def _world() -> dict[dns.name.Name, SignedZone]:
    leaf = SignedZone("example.test.", SOA + "*.walias CNAME www.other.test.\nwww A 192.0.2.1\n")
    ds = "".join(f"example DS {rd.to_text()}\n" for rd in leaf.ds())
    test = SignedZone("test.", SOA + "example NS ns.example\nns.example A 192.0.2.55\n" + ds)
    root = SignedZone(
        ".",
        SOA
        + "test. NS ns.test.\nns.test. A 192.0.2.57\n"
        + "".join(f"test. DS {rd.to_text()}\n" for rd in test.ds()),
    )
    return {z.origin: z for z in (leaf, test, root)}


def _resolve(zones: dict[dns.name.Name, SignedZone], reply: Reply) -> Outcome:
    root = zones[dns.name.root]
    anchors = TrustAnchors({dns.name.root: TrustAnchor(dns.name.root, tuple(root.ds()))})
    validator = Validator(anchors, clock=lambda: NOW)
    for _ in range(20):
        verdict = validator.validate(reply)
        if isinstance(verdict, Outcome):
            return verdict
        # Fetch what it needs, and what that needs, until the zone's keys are known.
        need: NeedDS | NeedDNSKEY | ZoneKeys = verdict
        while not isinstance(need, ZoneKeys):
            if isinstance(need, NeedDS):
                parent = zones[need.zone.parent()]
                ds = Reply(need.zone, 43, answer=(parent.signed(need.zone.to_text(), "DS"),))
                need = validator.learn_ds(need.zone, ds)
            else:
                need = validator.learn_dnskey(need.zone, zones[need.zone].dnskey_reply())
    raise AssertionError("the validator kept asking")


def test_a_wildcard_cname_into_another_zone_is_secure_by_its_proof() -> None:
    zones = _world()
    leaf = zones[name("example.test.")]
    reply = Reply(
        name("x.walias.example.test."),
        1,
        answer=(leaf.expanded("x.walias.example.test.", "*.walias.example.test.", "CNAME"),),
        authority=(leaf.nsec("x.walias.example.test."),),
        zone=name("example.test."),
    )
    verdict = _resolve(zones, reply)
    assert verdict.security is Security.SECURE, verdict


def test_the_same_cname_without_its_proof_is_still_bogus() -> None:
    zones = _world()
    leaf = zones[name("example.test.")]
    reply = Reply(
        name("x.walias.example.test."),
        1,
        answer=(leaf.expanded("x.walias.example.test.", "*.walias.example.test.", "CNAME"),),
        zone=name("example.test."),
    )
    assert _resolve(zones, reply).security is Security.BOGUS
