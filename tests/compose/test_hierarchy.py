"""The fake hierarchy of fixtures/zones, one container per server: each answers for its zones,
refers downward, and refuses what is not its own."""

from __future__ import annotations

import dns.flags
import dns.rcode
import dns.rdatatype
import pytest
from conftest import TRANSPORTS, ask

ZONES = [
    ("root", "."),
    ("tld", "com."),
    ("tld", "test."),
    ("example-com", "example.com."),
    ("example-test", "example.test."),
    ("example-test", "wild.test."),
    ("example-test", "half.test."),
    ("sub-example-com", "sub.example.com."),
    ("oob-com", "oob.com."),
]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(("service", "zone"), ZONES, ids=[f"{s}-{z}" for s, z in ZONES])
def test_each_authority_answers_for_its_zone(service: str, zone: str, transport: str) -> None:
    reply = ask(service, zone, "SOA", transport=transport, recurse=False)
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA
    assert [(r.name.to_text(), r.rdtype) for r in reply.answer] == [(zone, dns.rdatatype.SOA)]


@pytest.mark.parametrize(
    ("service", "name", "cut"),
    [
        ("root", "www.example.com.", "com."),
        ("root", "www.example.test.", "test."),
        ("tld", "www.example.com.", "example.com."),
        ("tld", "www.wild.test.", "wild.test."),
        ("example-com", "www.sub.example.com.", "sub.example.com."),
    ],
    ids=["root-to-com", "root-to-test", "com-to-example", "test-to-wild", "example-to-sub"],
)
def test_a_parent_refers_to_the_child_zone(service: str, name: str, cut: str) -> None:
    reply = ask(service, name, recurse=False)
    assert reply.rcode() == dns.rcode.NOERROR
    assert not reply.flags & dns.flags.AA
    assert not reply.answer
    assert {(r.name.to_text(), r.rdtype) for r in reply.authority} == {(cut, dns.rdatatype.NS)}
    assert reply.additional, "glue expected with the referral"


def test_a_leaf_refuses_a_name_outside_its_zones() -> None:
    reply = ask("example-com", "www.example.test.", recurse=False)
    assert reply.rcode() == dns.rcode.REFUSED
