"""The forwarders' response policy (docker/forwarder.toml, docker/policy/): an RPZ zone and an
adblock-style blocklist, through the forwarder and through dnsdist in front of the replicas."""

from __future__ import annotations

import dns.edns
import dns.exception
import dns.message
import dns.rcode
import pytest
from conftest import ENTRY_POINTS, TRANSPORTS, addresses, ask


def ede(reply: dns.message.Message) -> list[int]:
    return [option.code for option in reply.options if isinstance(option, dns.edns.EDEOption)]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("service", ENTRY_POINTS)
def test_rpz_local_data_answers(service: str, transport: str) -> None:
    reply = ask(service, "rpz-local.example.com.", transport=transport)
    assert reply.rcode() == dns.rcode.NOERROR
    assert addresses(reply) == {"192.0.2.1", "192.0.2.2"}
    assert ede(reply) == [17]


@pytest.mark.parametrize("service", ENTRY_POINTS)
def test_rpz_nxdomain_carries_filtered(service: str) -> None:
    reply = ask(service, "rpz-nx.example.com.")
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert ede(reply) == [17]


def test_rpz_drop_gets_no_reply() -> None:
    with pytest.raises(dns.exception.Timeout):
        ask("forwarder", "rpz-drop.example.com.", timeout=2.0)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("service", ENTRY_POINTS)
def test_a_listed_name_and_its_subdomains_get_the_null_address(
    service: str, transport: str
) -> None:
    for name in ("ads.example.com.", "x.ads.example.com."):
        reply = ask(service, name, transport=transport)
        assert reply.rcode() == dns.rcode.NOERROR
        assert addresses(reply) == {"0.0.0.0"}
        assert ede(reply) == [15]


@pytest.mark.parametrize("service", ENTRY_POINTS)
def test_an_exception_lets_the_upstream_answer(service: str) -> None:
    reply = ask(service, "ok.ads.example.com.")
    assert reply.rcode() == dns.rcode.NXDOMAIN  # the fixture zone has no such name
    assert ede(reply) == []


@pytest.mark.parametrize("service", ENTRY_POINTS)
def test_a_cname_to_a_listed_name_is_blocked(service: str) -> None:
    # dangling.example.com. is a CNAME to nothere.example.com., which the list blocks.
    reply = ask(service, "dangling.example.com.")
    assert reply.rcode() == dns.rcode.NOERROR
    assert addresses(reply) == {"0.0.0.0"}  # the question's own name, no CNAME
    assert [rrset.name.to_text() for rrset in reply.answer] == ["dangling.example.com."]
    assert ede(reply) == [15]
