"""The validator over the authority's own replies: zones signed in the test are served by
the authority's `Responder` (sans I/O: query bytes in, reply bytes out), asked with DO, and
every reply goes through `Reply.from_wire` to the validator, which fetches DS and DNSKEY sets
the same way. What the authority sends with DO must be exactly what a validator needs."""

from __future__ import annotations

import dataclasses

import dns.message
import dns.name
import dns.rdatatype
import dns.rrset
import pytest
from signing import NOW, SignedZone, zone_text

from resolver.authority import Responder, name_key, parse_zone
from resolver.engine.validation import (
    EDE_DNSSEC_BOGUS,
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
from resolver.errors import WireError
from resolver.wire.records import read_message

SOA = "@ SOA ns hostmaster 1 7200 3600 1209600 300\n@ NS ns\nns A 192.0.2.53\n"
LEAF = (
    SOA
    + "www A 192.0.2.1\n"
    + "*.wild TXT wild\n"
    + "host.ent A 192.0.2.7\n"
    + "alias CNAME www\n"
    + "dn DNAME target\n"
    + "t.target A 192.0.2.8\n"
    + "sub NS ns.sub\n"
    + "ns.sub A 192.0.2.54\n"
)


class Served:
    """A signed hierarchy behind one Responder, and the iteration's part."""

    def __init__(self, nsec3: tuple[int, str, bool] | None, tamper: bool = False) -> None:
        leaf = SignedZone("example.test.", LEAF, nsec3=nsec3)
        insecure = SignedZone("insecure.test.", SOA + "www A 192.0.2.2\n")
        ds = "".join(f"example DS {rd.to_text()}\n" for rd in leaf.ds())
        test = SignedZone(
            "test.",
            SOA
            + "example NS ns.example\nns.example A 192.0.2.55\n"
            + ds
            + "insecure NS ns.insecure\nns.insecure A 192.0.2.56\n",
            nsec3=nsec3,
        )
        root_ds = "".join(f"test. DS {rd.to_text()}\n" for rd in test.ds())
        root = SignedZone(".", SOA + "test. NS ns.test.\nns.test. A 192.0.2.57\n" + root_ds)
        leaf_text = zone_text(leaf)
        if tamper:
            leaf_text = leaf_text.replace("192.0.2.1\n", "203.0.113.66\n")
        unsigned = "\n".join(
            line
            for line in zone_text(insecure).splitlines()
            if " RRSIG " not in line and " NSEC " not in line and " DNSKEY " not in line
        )
        self.responder = Responder(
            parse_zone(text, source=name)
            for name, text in (
                (".", zone_text(root)),
                ("test.", zone_text(test)),
                ("example.test.", leaf_text),
                ("insecure.test.", unsigned + "\n"),
            )
        )
        self.anchors = TrustAnchors({dns.name.root: TrustAnchor(dns.name.root, tuple(root.ds()))})

    def ask(self, name: dns.name.Name, rdtype: str) -> Reply:
        query = dns.message.make_query(name, rdtype, want_dnssec=True)
        wire = self.responder.answer(query.to_wire(), max_udp=None)
        assert wire is not None
        zone = self.responder.zone_for(name_key(name.to_text()), dns.rdatatype.from_text(rdtype))
        assert zone is not None
        return Reply.from_wire(wire, dns.name.from_text(zone.origin))

    def resolve(self, validator: Validator, qname: str, rdtype: str) -> Outcome:
        reply = self.ask(dns.name.from_text(qname), rdtype)
        for _ in range(30):
            verdict = validator.validate(reply)
            if isinstance(verdict, Outcome):
                return verdict
            self.learn(validator, verdict)
        raise AssertionError("the validator kept asking")

    def learn(self, validator: Validator, need: NeedDS | NeedDNSKEY) -> None:
        for _ in range(30):
            if isinstance(need, NeedDS):
                result = validator.learn_ds(need.zone, self.ask(need.zone, "DS"))
                if result == NeedDNSKEY(need.zone):
                    return
            else:
                result = validator.learn_dnskey(need.zone, self.ask(need.zone, "DNSKEY"))
            if isinstance(result, ZoneKeys):
                return
            self.learn(validator, result)
        raise AssertionError("learning kept asking")


@pytest.fixture(
    scope="module",
    params=[None, (0, "-", False), (2, "beef", True)],
    ids=["nsec", "nsec3", "nsec3-optout"],
)
def served(request: pytest.FixtureRequest) -> Served:
    return Served(request.param)


CASES = [
    ("www.example.test.", "A", Security.SECURE),
    ("alias.example.test.", "A", Security.SECURE),
    ("t.dn.example.test.", "A", Security.SECURE),
    ("x.dn.example.test.", "A", Security.SECURE),
    ("nothere.example.test.", "A", Security.SECURE),
    ("www.example.test.", "MX", Security.SECURE),
    ("ent.example.test.", "A", Security.SECURE),
    ("x.wild.example.test.", "TXT", Security.SECURE),
    ("x.wild.example.test.", "A", Security.SECURE),
    ("example.test.", "DNSKEY", Security.SECURE),
    ("www.insecure.test.", "A", Security.INSECURE),
    ("www.sub.example.test.", "A", Security.INSECURE),
]


@pytest.mark.parametrize(
    ("qname", "rdtype", "state"),
    CASES,
    ids=[
        "answer",
        "cname",
        "dname-synthesized-cname",
        "dname-to-a-missing-name",
        "nxdomain",
        "nodata",
        "empty-non-terminal",
        "wildcard",
        "wildcard-nodata",
        "dnskey",
        "insecure-delegation",
        "referral-to-unsigned-child",
    ],
)
def test_the_authoritys_signed_replies_validate(
    served: Served, qname: str, rdtype: str, state: Security, request: pytest.FixtureRequest
) -> None:
    if "optout" in request.node.callspec.id and qname.startswith(("nothere.", "x.dn.")):
        state = Security.INSECURE  # a missing name in an opt-out span: RFC 5155 9.2
    validator = Validator(served.anchors, clock=lambda: NOW)
    verdict = served.resolve(validator, qname, rdtype)
    assert verdict.security is state, verdict.reason


def test_data_changed_after_signing_is_bogus() -> None:
    served = Served(None, tamper=True)
    validator = Validator(served.anchors, clock=lambda: NOW)
    verdict = served.resolve(validator, "www.example.test.", "A")
    assert (verdict.security, verdict.ede) == (Security.BOGUS, EDE_DNSSEC_BOGUS)


@pytest.mark.parametrize(
    "wire",
    [b"", b"\x00" * 11, b"\x12\x34\x81\x80\x00\x02" + b"\x00" * 6],
    ids=["empty", "short-header", "two-questions-missing"],
)
def test_malformed_reply_is_a_wire_error(wire: bytes) -> None:
    with pytest.raises(WireError):
        Reply.from_wire(wire)


def records_of(served: Served, qname: str, rdtype: str) -> Reply:
    """The reply as the iteration hands it over: the records it read, not the wire."""
    query = dns.message.make_query(dns.name.from_text(qname), rdtype, want_dnssec=True)
    wire = served.responder.answer(query.to_wire(), max_udp=None)
    assert wire is not None
    message = read_message(wire)
    question = message.question
    assert question is not None
    zone = dns.name.from_text("example.test.")
    return Reply.from_records(
        question.name, question.qtype, message.rcode, message.answer, message.authority, zone
    )


@pytest.mark.parametrize(
    ("qname", "rdtype", "state"), CASES[:9], ids=[c[0] + c[1] for c in CASES[:9]]
)
def test_records_already_read_group_as_the_wire_does(
    served: Served, qname: str, rdtype: str, state: Security
) -> None:
    from_wire = served.ask(dns.name.from_text(qname), rdtype)
    from_records = records_of(served, qname, rdtype)
    assert from_records == dataclasses.replace(from_wire, zone=from_records.zone)
    validator = Validator(served.anchors, clock=lambda: NOW)
    served.resolve(validator, qname, rdtype)  # keys learnt
    assert validator.validate(from_records) == validator.validate(from_wire)


@pytest.mark.parametrize(
    "remembered", [10_000, 1, 0], ids=["remembered", "bound-of-one", "memo-off"]
)
def test_a_signature_over_the_same_data_is_checked_once(remembered: int) -> None:
    served = Served(None)
    validator = Validator(served.anchors, clock=lambda: NOW, remembered_signatures=remembered)
    served.resolve(validator, "x.wild.example.test.", "TXT")
    before = validator.statistics()
    for label in ("y", "z"):
        verdict = validator.validate(records_of(served, f"{label}.wild.example.test.", "TXT"))
        assert isinstance(verdict, Outcome)
        assert verdict.security is Security.SECURE
    after = validator.statistics()
    # The wildcard's TXT set (one canonical form under *.wild) and the NSEC covering both
    # names: each was checked for x. already.
    checked = after["signatures_checked"] - before["signatures_checked"]
    again = after["signatures_remembered"] - before["signatures_remembered"]
    # With room for one, the TXT set's signature and the NSEC's push each other out.
    assert (checked, again) == ((0, 4) if remembered > 1 else (4, 0))


def test_a_remembered_signature_does_not_vouch_for_other_data() -> None:
    served = Served(None)
    validator = Validator(served.anchors, clock=lambda: NOW)
    assert served.resolve(validator, "www.example.test.", "A").security is Security.SECURE
    reply = served.ask(dns.name.from_text("www.example.test."), "A")
    (signed,) = reply.answer
    forged = dns.rrset.from_text(signed.name, 300, "IN", "A", "203.0.113.66")
    verdict = validator.validate(
        dataclasses.replace(reply, answer=(dataclasses.replace(signed, rrset=forged),))
    )
    assert isinstance(verdict, Outcome)
    assert (verdict.security, verdict.ede) == (Security.BOGUS, EDE_DNSSEC_BOGUS)
