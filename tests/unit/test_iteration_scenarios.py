"""The iteration over the scripted internet of tests/scenarios.py, without sockets: each
behaviour of a real resolver among misbehaving authorities, one at a time."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import pytest
import scenarios
from scenarios import World

from resolver.config import RecursionConfig
from resolver.engine.actions import Done, Query
from resolver.engine.delegations import Delegations, ServerTimes
from resolver.engine.hints import parse_root_hints
from resolver.engine.iteration import Iteration, Step
from resolver.errors import UpstreamTimeout, UpstreamUnreachable
from resolver.rrsets import Rank
from resolver.wire.message import name_to_wire
from resolver.wire.raw import NOERROR, NXDOMAIN, name_to_text
from resolver.wire.records import read_message
from resolver.wire.view import scan

A, NS, CNAME, SOA, TXT, AAAA = 1, 2, 5, 6, 16, 28


def query_bytes(action: Query) -> bytes:
    header = struct.pack("!6H", 0x4242, 0, 1, 0, 0, 1 if action.edns else 0)
    opt = struct.pack("!BHHBBHH", 0, 41, 1232, 0, 0, 0, 0) if action.edns else b""
    return header + action.name + struct.pack("!HH", action.qtype, 1) + opt


@dataclass
class Resolver:
    """What outlives one question, over the scripted world."""

    world: World = field(default_factory=World)
    config: RecursionConfig = field(default_factory=lambda: RecursionConfig(port=53))
    delegations: Delegations = field(
        default_factory=lambda: Delegations(parse_root_hints(scenarios.ROOT_HINTS, "hints"))
    )
    times: ServerTimes = field(default_factory=ServerTimes)
    steps: list[Step] = field(default_factory=list)
    clock: float = 1000.0
    queries: list[Query] = field(default_factory=list)
    # Perform the lookups a Query asks for beside it, before its own reply: as the driver
    # does when they finish first.
    side_lookups: bool = False

    def resolve(self, name: str, qtype: int = A) -> Done:
        iteration = Iteration(
            name_to_wire(name),
            qtype,
            1,
            self.clock + self.config.query_timeout,
            config=self.config,
            delegations=self.delegations,
            times=self.times,
            families=frozenset({4}),
            steps=self.steps,
        )
        action = iteration.start(self.clock)
        while isinstance(action, Query):
            self.queries.append(action)
            if self.side_lookups:
                for lookup, lookup_type in action.lookups:
                    self.resolve(name_to_text(lookup), lookup_type)
            address = action.server[0]
            self.clock += 0.001
            if address not in scenarios.RESPONDERS:
                action = iteration.on_failure(
                    UpstreamUnreachable(address, "port unreachable"), self.clock
                )
                continue
            reply = self.world.respond(address, query_bytes(action), action.tcp)
            if reply is None:
                self.clock = action.deadline
                action = iteration.on_failure(UpstreamTimeout(address, "no reply"), self.clock)
            else:
                action = iteration.on_reply(scan(reply), self.clock)
        return action

    def answer(self, name: str, qtype: int = A) -> tuple[int, list[tuple[str, int, str]]]:
        done = self.resolve(name, qtype)
        assert done.reply is not None, self.steps
        message = read_message(done.reply.message)
        records = [
            (name_to_text(r.name).lower(), r.rtype, _rdata(r.rtype, r.rdata))
            for r in message.answer
        ]
        return message.rcode, records

    def negative_soa(self, name: str, qtype: int = A) -> list[str]:
        done = self.resolve(name, qtype)
        assert done.reply is not None, self.steps
        return [
            name_to_text(r.name)
            for r in read_message(done.reply.message).authority
            if r.rtype == SOA
        ]


def _rdata(rtype: int, rdata: bytes) -> str:
    if rtype == A:
        return ".".join(str(b) for b in rdata)
    if rtype in (NS, CNAME, 39):
        return name_to_text(rdata).lower()
    return rdata.hex()


@pytest.fixture
def resolver() -> Resolver:
    return Resolver()


def test_glue_from_the_referring_zone_is_used_for_servers_in_another_zone(
    resolver: Resolver,
) -> None:
    # The root refers com. to a.gtld.net. with its address; com. refers example.com. to
    # ns.other.com. (a sibling zone's server) with its address: neither is looked up.
    assert resolver.answer("www.example.com.") == (
        NOERROR,
        [("www.example.com.", A, "127.1.0.1")],
    )
    assert [a.address for a in resolver.world.asked] == ["127.0.0.2", "127.0.0.10", "127.0.0.11"]


def test_glue_beyond_the_referring_zone_is_not_believed(resolver: Resolver) -> None:
    # The root's glue for a.gtld.net. is in the root's zone; com.'s glue for a name under
    # net. would not be: a CNAME answer's poisoned address for the target is ignored too.
    resolver.world.faults["127.0.0.13"] = scenarios.foreign_authority
    rcode, records = resolver.answer("www.alias.com.")
    assert rcode == NOERROR
    assert records == [
        ("www.alias.com.", CNAME, "www.example.net."),
        ("www.example.net.", A, "127.1.1.1"),
    ]


def test_a_cname_answer_with_foreign_authority_data_is_followed(resolver: Resolver) -> None:
    resolver.world.faults["127.0.0.13"] = scenarios.foreign_authority
    resolver.answer("www.alias.com.")
    # The target's zone was found from net., not from the alias zone's server's word.
    assert resolver.delegations.closest(name_to_wire("www.example.net."), resolver.clock).servers[
        0
    ] == name_to_wire("ns.example.net.")
    assert resolver.delegations.addresses(name_to_wire("ns.evil.example.net."), 0.0) is None
    assert "127.0.0.10" in [a.address for a in resolver.world.asked]


@pytest.mark.parametrize(
    ("name", "rcode"),
    [("nothere.example.com.", NXDOMAIN), ("txt.example.com.", NOERROR)],
    ids=["nxdomain", "nodata"],
)
def test_a_negative_answer_with_the_zones_soa_stands_without_aa(
    resolver: Resolver, name: str, rcode: int
) -> None:
    resolver.world.faults["127.0.0.11"] = scenarios.not_authoritative
    assert resolver.negative_soa(name) == ["example.com."]
    done = resolver.resolve(name)
    assert done.reply is not None
    assert read_message(done.reply.message).rcode == rcode
    assert resolver.world.names_asked("127.0.0.254") == []


def test_an_empty_non_terminal_without_aa_does_not_end_a_minimised_resolution(
    resolver: Resolver,
) -> None:
    resolver.world.faults["127.0.0.11"] = scenarios.not_authoritative
    rcode, records = resolver.answer("leaf.ent.example.com.")
    assert (rcode, records) == (NOERROR, [("leaf.ent.example.com.", A, "127.1.0.4")])
    assert resolver.world.names_asked("127.0.0.11") == ["ent.example.com.", "leaf.ent.example.com."]


def test_a_referral_that_claims_aa_is_a_referral(resolver: Resolver) -> None:
    resolver.world.faults["127.0.0.10"] = scenarios.claims_aa
    assert resolver.answer("www.aa.com.") == (NOERROR, [("www.aa.com.", A, "127.1.2.1")])
    assert resolver.world.names_asked("127.0.0.12") == ["www.aa.com."]


def test_a_glueless_server_whose_zone_begins_with_dead_and_lame_servers(
    resolver: Resolver,
) -> None:
    resolver.world.faults["127.0.0.14"] = scenarios.upward_referral
    # Make the dead and lame servers of dns.net. look fastest, so that they are asked first.
    resolver.times.succeeded("127.0.0.254", 0.001, resolver.clock)
    resolver.times.succeeded("127.0.0.14", 0.002, resolver.clock)
    assert resolver.answer("www.glueless.com.") == (
        NOERROR,
        [("www.glueless.com.", A, "127.1.4.1")],
    )
    assert resolver.world.names_asked("127.0.0.14")  # the lame one was asked and passed over


def test_an_in_zone_server_without_glue_waits_for_the_other_servers(resolver: Resolver) -> None:
    assert resolver.answer("www.inzone.com.") == (NOERROR, [("www.inzone.com.", A, "127.1.5.1")])
    lookups = {step.lookup for step in resolver.steps} - {None}
    assert lookups == {name_to_wire("ns2.dns.net.")}  # ns1.inzone.com. needed no lookup


def test_the_childs_authoritative_ns_set_replaces_the_parents(resolver: Resolver) -> None:
    resolver.world.faults["127.0.0.12"] = scenarios.with_own_ns(300)
    resolver.answer("www.child.com.")
    zone = resolver.delegations.zone(name_to_wire("child.com."), resolver.clock)
    assert zone is not None
    assert zone.expires == pytest.approx(resolver.clock + 300, abs=1)  # not the parent's day
    rrset = resolver.delegations.rrsets.get(name_to_wire("child.com."), NS, resolver.clock)
    assert rrset is not None
    assert rrset.rank == Rank.AUTHORITY_AA


def test_nodata_without_soa_is_an_empty_noerror_remembered_briefly(resolver: Resolver) -> None:
    resolver.world.faults["127.0.0.11"] = scenarios.without_authority
    assert resolver.answer("txt.example.com.") == (NOERROR, [])
    asked = len(resolver.world.asked)
    assert resolver.answer("txt.example.com.") == (NOERROR, [])
    assert len(resolver.world.asked) == asked  # from the RRset cache
    resolver.clock += 6
    assert resolver.answer("txt.example.com.") == (NOERROR, [])
    assert len(resolver.world.asked) == asked + 1


def test_a_recursive_lame_server_is_passed_over(resolver: Resolver) -> None:
    resolver.world.faults["127.0.0.14"] = scenarios.recursive_lame
    resolver.times.succeeded("127.0.0.14", 0.001, resolver.clock)
    assert resolver.answer("www.example.net.") == (NOERROR, [("www.example.net.", A, "127.1.1.1")])
    assert resolver.world.names_asked("127.0.0.14") == ["www.example.net."]
    assert any("recursive server" in step.outcome for step in resolver.steps)


@pytest.mark.parametrize(
    "fault",
    [scenarios.upward_referral, scenarios.sideways_referral, None],
    ids=["upward-referral", "sideways-referral", "refused"],
)
def test_a_lame_server_of_a_half_lame_zone_is_passed_over(
    resolver: Resolver, fault: scenarios.Fault | None
) -> None:
    if fault is not None:
        resolver.world.faults["127.0.0.14"] = fault
    resolver.times.succeeded("127.0.0.14", 0.001, resolver.clock)
    assert resolver.answer("www.example.net.") == (NOERROR, [("www.example.net.", A, "127.1.1.1")])
    assert resolver.world.names_asked("127.0.0.14")
    asked = {a.address for a in resolver.world.asked}
    assert "127.0.0.254" not in {s.server[0] for s in resolver.steps if s.outcome == "answer"}
    assert "127.0.0.11" in asked


@pytest.mark.parametrize("name", ["www.alias.com.", "www.old.example.com."], ids=["cname", "dname"])
def test_alias_chains_through_a_half_lame_zone(resolver: Resolver, name: str) -> None:
    resolver.world.faults["127.0.0.14"] = scenarios.upward_referral
    resolver.times.succeeded("127.0.0.14", 0.001, resolver.clock)
    rcode, records = resolver.answer(name)
    assert rcode == NOERROR
    assert records[-1] == ("www.example.net.", A, "127.1.1.1")


def test_a_cname_target_already_cached_is_not_asked_again(resolver: Resolver) -> None:
    resolver.answer("www.example.net.")
    before = len(resolver.world.asked)
    rcode, records = resolver.answer("www.alias.com.")
    assert (rcode, records[-1]) == (NOERROR, ("www.example.net.", A, "127.1.1.1"))
    assert "www.example.net." not in [a.qname for a in resolver.world.asked[before:]]


def test_glue_never_replaces_an_address_from_an_answer(resolver: Resolver) -> None:
    resolver.answer("ns.other.com.")  # the authoritative answer: 127.0.0.11
    rrset = resolver.delegations.rrsets.get(name_to_wire("ns.other.com."), A, resolver.clock)
    assert rrset is not None
    assert rrset.rank == Rank.ANSWER_AA
    resolver.answer("www.example.com.")  # com.'s referral carries the same name as glue
    again = resolver.delegations.rrsets.get(name_to_wire("ns.other.com."), A, resolver.clock)
    assert again == rrset


def test_a_server_that_drops_edns_is_asked_without_it(resolver: Resolver) -> None:
    resolver.world.faults["127.0.0.12"] = scenarios.drops_edns
    resolver.config = RecursionConfig(port=53, server_timeout=0.2)
    assert resolver.answer("www.aa.com.") == (NOERROR, [("www.aa.com.", A, "127.1.2.1")])
    assert [a.edns for a in resolver.world.asked if a.address == "127.0.0.12"] == [True, False]


def test_a_truncated_referral_is_asked_again_over_tcp(resolver: Resolver) -> None:
    resolver.world.faults["127.0.0.10"] = scenarios.truncates_referrals
    assert resolver.answer("www.aa.com.") == (NOERROR, [("www.aa.com.", A, "127.1.2.1")])
    to_com = [a.tcp for a in resolver.world.asked if a.address == "127.0.0.10"]
    assert to_com == [False, True]


def test_a_server_that_answers_only_over_tcp(resolver: Resolver) -> None:
    resolver.world.faults["127.0.0.12"] = scenarios.tcp_only
    assert resolver.answer("www.aa.com.") == (NOERROR, [("www.aa.com.", A, "127.1.2.1")])
    assert [a.tcp for a in resolver.world.asked if a.address == "127.0.0.12"] == [False, True]


def test_other_glueless_servers_are_looked_up_beside_the_first(resolver: Resolver) -> None:
    assert resolver.answer("www.multi.com.") == (NOERROR, [("www.multi.com.", A, "127.1.8.1")])
    side = [q.lookups for q in resolver.queries if q.lookups]
    assert side == [((name_to_wire("ns2.dns.net."), A),)]


def test_an_address_found_beside_ends_the_lookup_in_progress(resolver: Resolver) -> None:
    resolver.side_lookups = True
    assert resolver.answer("www.multi.com.") == (NOERROR, [("www.multi.com.", A, "127.1.8.1")])
    # ns2.dns.net. was found beside; the lookup of ns.dns.net. stopped after its first query.
    own = [s for s in resolver.steps if s.lookup == name_to_wire("ns.dns.net.")]
    assert len(own) == 1
    assert resolver.steps[-1].outcome == "answer"
