"""The fake hierarchy of fixtures/zones, one container per server: each answers for its zones,
refers downward with glue that leads to the server's container, and refuses what is not its
own."""

from __future__ import annotations

import dns.flags
import dns.rcode
import dns.rdatatype
import pytest
from conftest import TRANSPORTS, address, ask

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


# Name server N of the fixture zones is container 172.30.0.N: the authority image rewrites the
# zones' 127.0.0.N to match, so a resolver that follows glue reaches the right container.
GLUE = [
    ("root", "www.example.com.", "ns1.nic.com.", "tld"),
    ("root", "www.example.test.", "ns1.nic.test.", "tld"),
    ("tld", "www.example.com.", "ns1.example.com.", "example-com"),
    ("tld", "www.example.test.", "ns1.example.test.", "example-test"),
    ("tld", "www.wild.test.", "ns1.wild.test.", "example-test"),
    ("tld", "www.half.test.", "ns2.half.test.", "example-test"),
    ("example-com", "www.sub.example.com.", "ns1.sub.example.com.", "sub-example-com"),
]


@pytest.mark.parametrize(
    ("service", "name", "server", "container"), GLUE, ids=[g[2].rstrip(".") for g in GLUE]
)
def test_the_glue_of_a_referral_is_the_address_of_the_server_container(
    service: str, name: str, server: str, container: str
) -> None:
    reply = ask(service, name, recurse=False)
    glue = {
        rdata.to_text()
        for rrset in reply.additional
        if rrset.name.to_text() == server and rrset.rdtype == dns.rdatatype.A
        for rdata in rrset
    }
    assert glue == {address(container)}


@pytest.mark.parametrize(
    ("service", "server", "container"),
    [
        ("tld", "a.root-servers.test.", "root"),
        ("example-test", "ns.example.test.", "oob-com"),
    ],
    ids=["root-server", "out-of-bailiwick-server"],
)
def test_a_name_server_address_is_the_address_of_its_container(
    service: str, server: str, container: str
) -> None:
    reply = ask(service, server, recurse=False)
    assert reply.flags & dns.flags.AA
    assert {rdata.to_text() for rrset in reply.answer for rdata in rrset} == {address(container)}
