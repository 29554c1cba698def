"""The iteration's decisions, driven without sockets over the fixture hierarchy.

Each server address of fixtures/README.md answers from its own zones through the authority's
responder, called directly; 127.0.0.254 cannot be reached. The tests follow what the
iteration asks and what it concludes."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support import HIERARCHY

from resolver.authority.respond import Responder
from resolver.authority.zone import load_zone
from resolver.config import RecursionConfig
from resolver.engine.actions import EDE_NETWORK_ERROR, EDE_NO_REACHABLE_AUTHORITY, Done, Query
from resolver.engine.delegations import Delegations, ServerTimes
from resolver.engine.hints import read_root_hints
from resolver.engine.iteration import Iteration, Step
from resolver.errors import CaseMismatch, UpstreamTimeout, UpstreamUnreachable
from resolver.wire.message import name_to_wire
from resolver.wire.raw import NOERROR, NXDOMAIN, name_to_text
from resolver.wire.records import read_message
from resolver.wire.view import scan

FIXTURES = Path(__file__).resolve().parent.parent.parent / "fixtures"
A, NS, CNAME, MX, TXT, AAAA, DS = 1, 2, 5, 15, 16, 28, 43
# A reply rewritten by a test's server before the iteration sees it (None: never answers).
Tamper = Callable[[Query, bytes], bytes | BaseException]


def _responders() -> dict[str, Responder]:
    return {
        address: Responder([load_zone(FIXTURES / "zones" / name) for name in names])
        for address, names in HIERARCHY.items()
    }


RESPONDERS = _responders()


def query_bytes(action: Query) -> bytes:
    header = struct.pack("!6H", 0x1234, 0, 1, 0, 0, 1 if action.edns else 0)
    opt = struct.pack("!BHHBBHH", 0, 41, 1232, 0, 0, 0, 0) if action.edns else b""
    return header + action.name + struct.pack("!HH", action.qtype, 1) + opt


@dataclass
class Network:
    """The fixture servers, with optional faults per address."""

    tamper: dict[str, Tamper] = field(default_factory=dict)
    asked: list[Query] = field(default_factory=list)

    def exchange(self, action: Query) -> bytes | BaseException:
        self.asked.append(action)
        address = action.server[0]
        responder = RESPONDERS.get(address)
        if responder is None:
            return UpstreamUnreachable(address, "connection refused")
        reply = responder.answer(query_bytes(action), max_udp=None if action.tcp else 1232)
        assert reply is not None
        fault = self.tamper.get(address)
        return fault(action, reply) if fault is not None else reply


@dataclass
class World:
    """What outlives one question: the delegation cache and server times."""

    config: RecursionConfig = field(default_factory=lambda: RecursionConfig(port=53))
    delegations: Delegations = field(
        default_factory=lambda: Delegations(read_root_hints(FIXTURES / "root.hints"))
    )
    times: ServerTimes = field(default_factory=ServerTimes)
    network: Network = field(default_factory=Network)
    steps: list[Step] = field(default_factory=list)
    clock: float = 1000.0

    def resolve(self, name: str, qtype: int, *, families: frozenset[int] = frozenset({4})) -> Done:
        iteration = Iteration(
            name_to_wire(name),
            qtype,
            1,
            self.clock + self.config.query_timeout,
            config=self.config,
            delegations=self.delegations,
            times=self.times,
            families=families,
            steps=self.steps,
        )
        action = iteration.start(self.clock)
        while isinstance(action, Query):
            assert action.deadline > self.clock
            result = self.network.exchange(action)
            self.clock += 0.001
            if isinstance(result, BaseException):
                if isinstance(result, UpstreamTimeout):
                    self.clock = action.deadline
                action = iteration.on_failure(result, self.clock)
            else:
                action = iteration.on_reply(scan(result), self.clock)
        return action


def answers(done: Done) -> tuple[int, list[tuple[str, int, bytes]]]:
    assert done.reply is not None
    message = read_message(done.reply.message)
    records = [(name_to_text(r.name).lower(), r.rtype, r.rdata) for r in message.answer]
    return message.rcode, records


def rdata_a(text: str) -> bytes:
    return bytes(int(part) for part in text.split("."))


@pytest.fixture
def world() -> World:
    return World()


def test_a_name_is_resolved_from_the_root(world: World) -> None:
    rcode, records = answers(world.resolve("www.example.com.", A))
    assert rcode == NOERROR
    assert records == [("www.example.com.", A, rdata_a("127.1.0.1"))]
    assert [q.server[0] for q in world.network.asked] == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]


def test_the_reply_holds_the_question_as_asked(world: World) -> None:
    done = world.resolve("WwW.Example.COM.", A)
    assert done.reply is not None
    message = read_message(done.reply.message)
    assert message.question is not None
    assert message.question.name == name_to_wire("WwW.Example.COM.")


def test_qname_minimisation_asks_one_label_more_each_time(world: World) -> None:
    world.resolve("www.example.com.", AAAA)
    asked = [(name_to_text(q.name), q.qtype) for q in world.network.asked]
    assert asked == [("com.", A), ("example.com.", A), ("www.example.com.", AAAA)]


def test_without_minimisation_the_full_name_goes_to_every_server() -> None:
    world = World(config=RecursionConfig(qname_minimisation=False))
    world.resolve("www.example.com.", AAAA)
    assert {name_to_text(q.name) for q in world.network.asked} == {"www.example.com."}
    assert {q.qtype for q in world.network.asked} == {AAAA}


def test_the_delegation_cache_sends_the_next_question_straight_to_the_zone(world: World) -> None:
    world.resolve("www.example.com.", A)
    world.network.asked.clear()
    rcode, records = answers(world.resolve("mail.example.com.", A))
    assert (rcode, records) == (NOERROR, [("mail.example.com.", A, rdata_a("127.1.0.25"))])
    assert [q.server[0] for q in world.network.asked] == ["127.0.0.4"]


def test_a_delegation_expires_with_its_ns_ttl(world: World) -> None:
    world.resolve("www.example.com.", A)
    world.clock += 86_400 - 1  # example.com.'s NS TTL in com.; com.'s is capped at a day
    world.network.asked.clear()
    world.resolve("mail.example.com.", A)
    assert [q.server[0] for q in world.network.asked] == ["127.0.0.4"]
    world.clock += 2
    world.network.asked.clear()
    world.resolve("www.example.com.", AAAA)
    assert next(q.server[0] for q in world.network.asked) == "127.0.0.2"


def test_nxdomain_carries_the_soa(world: World) -> None:
    done = world.resolve("nonexistent.example.com.", A)
    assert done.reply is not None
    message = read_message(done.reply.message)
    assert message.rcode == NXDOMAIN
    assert [r.rtype for r in message.authority] == [6]
    assert name_to_text(message.authority[0].name) == "example.com."


def test_nodata_carries_the_soa(world: World) -> None:
    done = world.resolve("txtonly.example.com.", A)
    assert done.reply is not None
    message = read_message(done.reply.message)
    assert (message.rcode, message.answer) == (NOERROR, ())
    assert [r.rtype for r in message.authority] == [6]


def test_an_empty_non_terminal_is_nodata_not_nxdomain(world: World) -> None:
    rcode, records = answers(world.resolve("ent.example.com.", A))
    assert (rcode, records) == (NOERROR, [])
    rcode, records = answers(world.resolve("leaf.ent.example.com.", A))
    assert rcode == NOERROR
    assert records[0][2] == rdata_a("127.1.0.4")


def test_a_cname_chain_inside_a_zone(world: World) -> None:
    rcode, records = answers(world.resolve("chain1.example.com.", A))
    assert rcode == NOERROR
    assert [(name, rtype) for name, rtype, _ in records] == [
        ("chain1.example.com.", CNAME),
        ("chain2.example.com.", CNAME),
        ("chain3.example.com.", CNAME),
        ("www.example.com.", A),
    ]


def test_a_cname_across_zones_and_servers(world: World) -> None:
    rcode, records = answers(world.resolve("cross.example.com.", A))
    assert rcode == NOERROR
    assert records == [
        ("cross.example.com.", CNAME, name_to_wire("www.example.test.")),
        ("www.example.test.", A, rdata_a("127.1.1.1")),
    ]


def test_a_cname_into_a_delegated_child(world: World) -> None:
    rcode, records = answers(world.resolve("cross-sub.example.com.", A))
    assert rcode == NOERROR
    assert records[-1] == ("www.sub.example.com.", A, rdata_a("127.1.2.1"))
    assert "127.0.0.6" in [q.server[0] for q in world.network.asked]


def test_a_dangling_cname_is_nxdomain_with_the_cname(world: World) -> None:
    rcode, records = answers(world.resolve("dangling.example.com.", A))
    assert rcode == NXDOMAIN
    assert [(name, rtype) for name, rtype, _ in records] == [("dangling.example.com.", CNAME)]


def test_a_cname_loop_is_servfail(world: World) -> None:
    assert world.resolve("loop1.example.com.", A) == Done(None, None)


def test_cname_asked_for_itself_is_not_followed(world: World) -> None:
    rcode, records = answers(world.resolve("cross.example.com.", CNAME))
    assert (rcode, [(n, t) for n, t, _ in records]) == (NOERROR, [("cross.example.com.", CNAME)])


def test_a_glueless_name_server_is_looked_up_first(world: World) -> None:
    rcode, records = answers(world.resolve("www.oob.com.", A))
    assert (rcode, records) == (NOERROR, [("www.oob.com.", A, rdata_a("127.1.4.1"))])
    servers = [q.server[0] for q in world.network.asked]
    assert servers.index("127.0.0.5") < servers.index("127.0.0.7")  # ns.example.test. first


def test_a_dead_server_of_a_half_lame_zone_is_passed_over(world: World) -> None:
    world.times.succeeded("127.0.0.5", 0.5, world.clock)  # slower than unknown: asked second
    rcode, records = answers(world.resolve("www.half.test.", A))
    assert (rcode, records) == (NOERROR, [("www.half.test.", A, rdata_a("127.1.5.1"))])
    leaf = [q.server[0] for q in world.network.asked if q.server[0] in ("127.0.0.5", "127.0.0.254")]
    assert leaf == ["127.0.0.254", "127.0.0.5"]


def test_a_zone_whose_servers_all_fail_is_servfail_never_a_guess(world: World) -> None:
    done = world.resolve("www.lame.com.", A)
    assert done == Done(None, EDE_NETWORK_ERROR)


def test_silent_servers_get_a_second_round_then_servfail(world: World) -> None:
    def silent(action: Query, reply: bytes) -> BaseException:
        return UpstreamTimeout(action.server[0], "no reply")

    world.network.tamper["127.0.0.4"] = silent
    done = world.resolve("www.example.com.", A)
    assert done == Done(None, EDE_NO_REACHABLE_AUTHORITY)
    assert [q.server[0] for q in world.network.asked].count("127.0.0.4") == 2


def test_wildcards_are_answered_for_the_name_asked(world: World) -> None:
    rcode, records = answers(world.resolve("anything.wild.test.", A))
    assert (rcode, records) == (NOERROR, [("anything.wild.test.", A, rdata_a("127.1.3.1"))])


def test_a_wildcard_cname_across_zones(world: World) -> None:
    rcode, records = answers(world.resolve("foo.alias.wild.test.", A))
    assert rcode == NOERROR
    assert records[0][:2] == ("foo.alias.wild.test.", CNAME)
    assert records[-1] == ("www.example.test.", A, rdata_a("127.1.1.1"))


def test_truncated_reply_is_asked_again_over_tcp(world: World) -> None:
    rcode, records = answers(world.resolve("big.example.com.", TXT))
    assert rcode == NOERROR
    assert len(records) == 8
    last_two = world.network.asked[-2:]
    assert [q.tcp for q in last_two] == [False, True]


def test_formerr_to_edns_is_asked_again_without(world: World) -> None:
    def no_edns(action: Query, reply: bytes) -> bytes:
        if action.edns:
            return reply[:2] + bytes([reply[2], (reply[3] & 0xF0) | 1]) + reply[4:]
        return reply

    world.network.tamper["127.0.0.4"] = no_edns
    rcode, _ = answers(world.resolve("www.example.com.", A))
    assert rcode == NOERROR
    assert [q.edns for q in world.network.asked if q.server[0] == "127.0.0.4"] == [True, False]


def test_servfail_to_a_minimised_query_falls_back_to_the_full_name(world: World) -> None:
    def refuses_minimised(action: Query, reply: bytes) -> bytes:
        if action.name == name_to_wire("example.com."):
            return reply[:3] + bytes([(reply[3] & 0xF0) | 2]) + reply[4:]
        return reply

    world.network.tamper["127.0.0.3"] = refuses_minimised
    rcode, records = answers(world.resolve("www.example.com.", A))
    assert rcode == NOERROR
    assert records
    asked = [(q.server[0], name_to_text(q.name)) for q in world.network.asked]
    assert ("127.0.0.3", "www.example.com.") in asked


def test_nxdomain_to_a_minimised_query_falls_back_to_the_full_name(world: World) -> None:
    rcode, _ = answers(world.resolve("x.nothere.example.com.", A))
    assert rcode == NXDOMAIN
    asked = [name_to_text(q.name) for q in world.network.asked if q.server[0] == "127.0.0.4"]
    assert asked == ["nothere.example.com.", "x.nothere.example.com."]


def test_out_of_bailiwick_glue_is_not_believed(world: World) -> None:
    poison = rdata_a("192.0.2.66")

    def add_poison(action: Query, reply: bytes) -> bytes:
        # A referral from com. carrying an A record for a name outside example.com.
        message = read_message(reply)
        if not message.authority or message.authority[0].rtype != NS:
            return reply
        extra = name_to_wire("ns.example.test.") + struct.pack("!HHIH", A, 1, 3600, 4) + poison
        count = struct.unpack("!H", reply[10:12])[0] + 1
        return reply[:10] + struct.pack("!H", count) + reply[12:] + extra

    world.network.tamper["127.0.0.3"] = add_poison
    rcode, records = answers(world.resolve("www.oob.com.", A))
    assert (rcode, records) == (NOERROR, [("www.oob.com.", A, rdata_a("127.1.4.1"))])
    assert "192.0.2.66" not in {q.server[0] for q in world.network.asked}


def test_an_upward_referral_is_lame(world: World) -> None:
    def upward(action: Query, reply: bytes) -> bytes:
        return RESPONDERS["127.0.0.2"].answer(query_bytes(action), max_udp=1232) or b""

    world.network.tamper["127.0.0.4"] = upward  # example.com.'s server refers to the root
    done = world.resolve("www.example.com.", A)
    assert done.reply is None
    assert [q.server[0] for q in world.network.asked].count("127.0.0.2") == 1


def test_the_query_budget_bounds_the_work() -> None:
    world = World(config=RecursionConfig(max_queries=2))
    done = world.resolve("www.example.com.", A)
    assert done.reply is None
    assert len(world.network.asked) == 2


def test_ds_is_asked_of_the_parent(world: World) -> None:
    world.resolve("www.example.com.", A)  # example.com. is now a known zone
    world.network.asked.clear()
    world.resolve("example.com.", DS)
    assert world.network.asked[0].server[0] == "127.0.0.3"


def test_a_case_mismatch_is_asked_twice_without_0x20_and_compared(world: World) -> None:
    mismatched: list[Query] = []

    def no_case(action: Query, reply: bytes) -> bytes | BaseException:
        if action.randomize_case:
            mismatched.append(action)
            return CaseMismatch(action.server[0], "case not echoed")
        return reply

    world.network.tamper["127.0.0.4"] = no_case
    rcode, records = answers(world.resolve("www.example.com.", A))
    assert rcode == NOERROR
    assert records
    to_leaf = [q.randomize_case for q in world.network.asked if q.server[0] == "127.0.0.4"]
    assert to_leaf == [True, False, False]


def test_differing_replies_without_0x20_skip_the_server(world: World) -> None:
    calls = 0

    def flaky(action: Query, reply: bytes) -> bytes | BaseException:
        nonlocal calls
        calls += 1
        if action.randomize_case:
            return CaseMismatch(action.server[0], "case not echoed")
        if calls == 3:  # the second reply without 0x20 says something else
            return reply[:3] + bytes([(reply[3] & 0xF0) | 3]) + reply[4:]
        return reply

    world.network.tamper["127.0.0.4"] = flaky
    assert world.resolve("www.example.com.", A).reply is None


def test_faster_servers_are_asked_first() -> None:
    world = World()
    world.times.succeeded("127.0.0.254", 0.5, world.clock)
    world.times.succeeded("127.0.0.5", 0.001, world.clock)
    world.resolve("www.half.test.", A)
    leaf = [q.server[0] for q in world.network.asked if q.server[0] in ("127.0.0.5", "127.0.0.254")]
    assert leaf == ["127.0.0.5"]


def test_a_failed_server_is_tried_last_next_time(world: World) -> None:
    world.resolve("www.half.test.", A)
    world.network.asked.clear()
    world.resolve("www.half.test.", AAAA)
    assert "127.0.0.254" not in [q.server[0] for q in world.network.asked]


def test_trace_steps_name_each_server_and_outcome(world: World) -> None:
    world.resolve("www.example.com.", A)
    outcomes = [(step.server[0], step.outcome) for step in world.steps]
    assert outcomes[0][0] == "127.0.0.2"
    assert outcomes[0][1].startswith("referral to com.")
    assert outcomes[-1] == ("127.0.0.4", "answer")


def test_trace_steps_of_a_name_server_lookup_name_it(world: World) -> None:
    world.resolve("www.oob.com.", A)
    lookups = {step.lookup for step in world.steps}
    assert lookups == {None, name_to_wire("ns.example.test.")}
    assert world.steps[-1].lookup is None


def test_a_name_server_lookup_that_loops_is_given_up() -> None:
    # oob.com.'s only server is ns.example.test.: make example.test. served by a name under
    # oob.com., so that finding either needs the other.
    world = World()
    world.delegations.learn_zone(
        name_to_wire("example.test."), (name_to_wire("ns.oob.com."),), 3600, world.clock
    )
    done = world.resolve("www.oob.com.", A)
    assert done.reply is None
    assert len(world.network.asked) < 20


def test_the_0x20_case_of_the_question_does_not_leak_into_the_answer(world: World) -> None:
    def shouting(action: Query, reply: bytes) -> bytes:
        # The question echoed in the case a 0x20 query had; the server compressed the later
        # names into it (www.example.com. is "www" and a pointer to the question's suffix).
        end = 12 + len(action.name)
        return reply[:12] + reply[12:end].upper() + reply[end:]

    world.network.tamper["127.0.0.4"] = shouting
    done = world.resolve("alias.example.com.", A)
    assert done.reply is not None
    owners = [record.name for record in read_message(done.reply.message).answer]
    assert owners == [name_to_wire("alias.example.com."), name_to_wire("www.example.com.")]


def test_a_dname_is_followed_with_the_cname_made_here(world: World) -> None:
    rcode, records = answers(world.resolve("www.old.example.com.", A))
    assert rcode == NOERROR
    assert records == [
        ("old.example.com.", 39, name_to_wire("example.test.")),
        ("www.old.example.com.", CNAME, name_to_wire("www.example.test.")),
        ("www.example.test.", A, rdata_a("127.1.1.1")),
    ]
