"""The recursive daemon (`recursive` in docker-compose.yml): it starts at the root container that
docker/root.hints names and follows the referrals and glue of the authority containers down to
the answer. No forwarder stands between it and the authorities."""

from __future__ import annotations

import time

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from conftest import TRANSPORTS, addresses, ask

RECURSIVE = "recursive"

# The daemon's whole-query limit (query_timeout, 10 s by default) and a margin: the longest a
# fully lame zone may take to fail.
LAME_TIMEOUT = 12.0

# Each answer takes another path down the hierarchy.
ANSWERS = [
    ("plain", "www.example.com.", "A", {"127.1.0.1"}),
    ("plain-aaaa", "www.example.com.", "AAAA", {"2001:db8::1"}),
    ("sub-delegation", "www.sub.example.com.", "A", {"127.1.2.1"}),
    ("other-tld", "www.example.test.", "A", {"127.1.1.1"}),
    ("wildcard", "anything.wild.test.", "A", {"127.1.3.1"}),
    # oob.com.'s server, ns.example.test., has no glue in com.: it is looked up first.
    ("glueless-out-of-bailiwick-ns", "www.oob.com.", "A", {"127.1.4.1"}),
    # half.test.'s ns1 is 172.30.0.254, where nothing answers; ns2 does.
    ("half-lame", "www.half.test.", "A", {"127.1.5.1"}),
]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("name", "rdtype", "expected"), [a[1:] for a in ANSWERS], ids=[a[0] for a in ANSWERS]
)
def test_recursive_answers(name: str, rdtype: str, expected: set[str], transport: str) -> None:
    reply = ask(RECURSIVE, name, rdtype, transport=transport)
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.RA
    assert not reply.flags & dns.flags.AA
    assert {rrset.name.to_text() for rrset in reply.answer} == {name}
    assert addresses(reply) == expected


CNAMES = [
    ("com-to-test", "cross.example.com.", "www.example.test.", "127.1.1.1"),
    ("test-to-com", "back.example.test.", "www.example.com.", "127.1.0.1"),
    ("into-a-child-zone", "cross-sub.example.com.", "www.sub.example.com.", "127.1.2.1"),
]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("name", "target", "address"), [c[1:] for c in CNAMES], ids=[c[0] for c in CNAMES]
)
def test_recursive_follows_a_cname_into_another_zone(
    name: str, target: str, address: str, transport: str
) -> None:
    # The CNAME's zone and its target's have different servers: the target is resolved anew.
    reply = ask(RECURSIVE, name, transport=transport)
    assert reply.rcode() == dns.rcode.NOERROR
    assert [
        (rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype), rdata.to_text())
        for rrset in reply.answer
        for rdata in rrset
    ] == [(name, "CNAME", target), (target, "A", address)]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_recursive_answers_nxdomain_with_the_soa(transport: str) -> None:
    reply = ask(RECURSIVE, "nonexistent.example.com.", transport=transport)
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert not reply.answer
    assert [(r.name.to_text(), r.rdtype) for r in reply.authority] == [
        ("example.com.", dns.rdatatype.SOA)
    ]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_recursive_answers_a_dangling_cname_with_nxdomain(transport: str) -> None:
    # dangling.example.com. is a CNAME to nothere.example.com., which does not exist: the
    # CNAME and NXDOMAIN for its target (RFC 6604), with the target zone's SOA.
    reply = ask(RECURSIVE, "dangling.example.com.", transport=transport)
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert [
        (rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype), rdata.to_text())
        for rrset in reply.answer
        for rdata in rrset
    ] == [("dangling.example.com.", "CNAME", "nothere.example.com.")]
    assert [(r.name.to_text(), r.rdtype) for r in reply.authority] == [
        ("example.com.", dns.rdatatype.SOA)
    ]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("name", "rdtype", "zone"),
    [
        ("www.example.com.", "MX", "example.com."),
        ("ent.example.com.", "A", "example.com."),
        ("host.wild.test.", "TXT", "wild.test."),
    ],
    ids=["other-type", "empty-non-terminal", "beside-a-wildcard"],
)
def test_recursive_answers_nodata_with_the_soa(
    name: str, rdtype: str, zone: str, transport: str
) -> None:
    reply = ask(RECURSIVE, name, rdtype, transport=transport)
    assert reply.rcode() == dns.rcode.NOERROR
    assert not reply.answer
    assert [(r.name.to_text(), r.rdtype) for r in reply.authority] == [(zone, dns.rdatatype.SOA)]


def test_recursive_truncates_over_udp_and_answers_in_full_over_tcp() -> None:
    # big.example.com: 8 TXT records of 250 bytes, more than an EDNS size of 1232 holds; the
    # daemon itself has to ask the authority over TCP.
    truncated = ask(RECURSIVE, "big.example.com.", "TXT")
    assert truncated.flags & dns.flags.TC
    full = ask(RECURSIVE, "big.example.com.", "TXT", transport="tcp")
    assert not full.flags & dns.flags.TC
    assert full.rcode() == dns.rcode.NOERROR
    assert sum(len(rrset) for rrset in full.answer) == 8


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_recursive_answers_servfail_when_every_server_of_a_zone_is_dead(transport: str) -> None:
    # lame.com.'s only server is 172.30.0.254, where nothing answers.
    reply = ask(RECURSIVE, "www.lame.com.", transport=transport, timeout=LAME_TIMEOUT)
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert not reply.answer
    # Timeouts or an unreachable host, depending on how soon the network reports the latter.
    assert [error.code for error in reply.extended_errors()] in (
        [dns.edns.EDECode.NO_REACHABLE_AUTHORITY],
        [dns.edns.EDECode.NETWORK_ERROR],
    )


def test_recursive_answers_a_repeat_from_its_cache() -> None:
    # An authority always gives the zone's TTL; a smaller one has aged in the daemon's cache.
    # No other test asks the daemon this name.
    name = "mail.example.com."
    zone_ttl = ask("example-com", name, recurse=False).answer[0].ttl
    first = ask(RECURSIVE, name)
    assert addresses(first) == {"127.1.0.25"}
    time.sleep(1.5)
    for transport in TRANSPORTS:
        again = ask(RECURSIVE, name, transport=transport)
        assert addresses(again) == {"127.1.0.25"}
        assert 0 < again.answer[0].ttl < first.answer[0].ttl <= zone_ttl


def _content(reply: dns.message.Message) -> tuple[object, ...]:
    """What a client reads in a reply, TTLs aside: rcode, flags, answer and authority."""

    def section(rrsets: list[dns.rrset.RRset]) -> list[tuple[str, int, list[str]]]:
        return sorted(
            (r.name.to_text(), r.rdtype, sorted(rdata.to_text() for rdata in r)) for r in rrsets
        )

    flags = reply.flags & (dns.flags.QR | dns.flags.AA | dns.flags.TC | dns.flags.RD | dns.flags.RA)
    return (reply.rcode(), flags, section(reply.answer), section(reply.authority))


# Names whose answer one authority gives in full: the forwarder relays it, the recursive daemon
# builds the same. (A CNAME into another zone differs: the forwarder relays the CNAME alone.
# dangling.example.com. differs too: the forwarder's blocklist blocks its CNAME's target,
# test_policy.py.)
SAME_AS_FORWARDER = [
    ("www.example.com.", "A"),
    ("www.example.com.", "AAAA"),
    ("example.com.", "MX"),
    ("_sip._udp.example.com.", "SRV"),
    ("alias.example.com.", "A"),
    ("chain1.example.com.", "A"),
    ("nonexistent.example.com.", "A"),
    ("www.example.com.", "MX"),
    ("ent.example.com.", "A"),
    ("big.example.com.", "TXT"),
    ("www.sub.example.com.", "A"),
    ("www.example.test.", "A"),
    ("nothere.example.test.", "A"),
    ("anything.wild.test.", "TXT"),
    ("x.b.wild.test.", "A"),
    ("www.oob.com.", "A"),
    ("www.half.test.", "A"),
]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("name", "rdtype"), SAME_AS_FORWARDER, ids=[f"{n}{t}" for n, t in SAME_AS_FORWARDER]
)
def test_recursive_answers_as_the_forwarder_does(name: str, rdtype: str, transport: str) -> None:
    recursive = ask(RECURSIVE, name, rdtype, transport=transport)
    forwarded = ask("forwarder", name, rdtype, transport=transport)
    assert _content(recursive) == _content(forwarded)
