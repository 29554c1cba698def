"""Client questions through each entry point: the forwarding daemon, and dnsdist in front of
two forwarding replicas. Every answer comes from the authority containers behind them."""

from __future__ import annotations

import subprocess
import time

import dns.flags
import dns.rcode
import dns.rdatatype
import pytest
from conftest import ENTRY_POINTS, TRANSPORTS, addresses, ask

# One name per leaf authority; the forwarders find the server that holds each.
ANSWERS = [
    ("www.example.com.", "A", {"127.1.0.1"}),
    ("www.example.com.", "AAAA", {"2001:db8::1"}),
    ("www.sub.example.com.", "A", {"127.1.2.1"}),
    ("www.example.test.", "A", {"127.1.1.1"}),
    ("anything.wild.test.", "A", {"127.1.3.1"}),
    ("www.oob.com.", "A", {"127.1.4.1"}),
]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize(
    ("name", "rdtype", "expected"), ANSWERS, ids=[f"{n}{t}" for n, t, _ in ANSWERS]
)
def test_entry_point_answers(
    entry: str, transport: str, name: str, rdtype: str, expected: set[str]
) -> None:
    reply = ask(entry, name, rdtype, transport=transport)
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.RA
    assert addresses(reply) == expected


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_entry_point_relays_nxdomain_with_the_soa(entry: str, transport: str) -> None:
    reply = ask(entry, "nonexistent.example.com.", transport=transport)
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert not reply.answer
    assert [(r.name.to_text(), r.rdtype) for r in reply.authority] == [
        ("example.com.", dns.rdatatype.SOA)
    ]


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_entry_point_truncates_over_udp_and_answers_in_full_over_tcp(entry: str) -> None:
    # big.example.com: 8 TXT records of 250 bytes, more than an EDNS size of 1232 holds.
    truncated = ask(entry, "big.example.com.", "TXT")
    assert truncated.flags & dns.flags.TC
    full = ask(entry, "big.example.com.", "TXT", transport="tcp")
    assert not full.flags & dns.flags.TC
    assert full.rcode() == dns.rcode.NOERROR
    assert sum(len(rrset) for rrset in full.answer) == 8


# The daemons that cache what each entry point answers.
CACHES = {"forwarder": ("forwarder",), "dnsdist": ("replica-a", "replica-b")}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_entry_point_answers_a_repeat_from_its_cache(entry: str) -> None:
    # An authority always gives the zone's TTL; a smaller one has aged in a cache. Behind
    # dnsdist, either replica may answer: both must have cached the name.
    name = "mail.example.com."
    zone_ttl = ask("example-com", name, recurse=False).answer[0].ttl
    for service in CACHES[entry]:
        assert ask(service, name).rcode() == dns.rcode.NOERROR
    time.sleep(1.5)
    for _ in range(4):
        reply = ask(entry, name)
        assert addresses(reply) == {"127.1.0.25"}
        assert 0 < reply.answer[0].ttl < zone_ttl


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_resolver_query_reaches_the_entry_point_by_service_name(entry: str) -> None:
    done = subprocess.run(
        ["resolver", "query", f"@{entry}", "www.example.com", "A", "+short", "+tcp"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["127.1.0.1"]


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_resolver_query_retries_a_truncated_reply_over_tcp(entry: str) -> None:
    done = subprocess.run(
        ["resolver", "query", f"@{entry}", "big.example.com", "TXT", "+short"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 8
