"""Unbound as the oracle of recursive mode: NSD serves the fixture hierarchy on port 53 in a
network namespace of the test's own (benchmarks/hierarchy.py), Unbound (iterator only, the
fixtures' root hints) and our daemon (``mode = "recursive"``) resolve in it, and every
question of the fixture set gets the same answer from both.

Compared, from what dig prints: the rcode; the header flags (qr rd ra: no AA, no TC in the
final reply); whether the UDP reply was truncated (dig then asks again over TCP); the answer
section as a set of (name, type, rdata), names case-folded, TTLs ignored; the owner names of
the answer as written (a resolver keeps the question's case and must not leak its own 0x20
case); and for a negative answer (NXDOMAIN, or NOERROR with no answer) the SOA of the
authority section without its TTL, which Unbound includes. Not compared: the authority section
of positive answers (Unbound, with ``minimal-responses`` at its default, gives none), the
additional section, the order of records, and the EDNS options (ours adds an Extended DNS
Error to SERVFAIL; this Unbound does not).

Everything runs as root in a namespace where only loopback exists; without nsd, unbound, ip,
dig or the rights to make a namespace these tests fail, they never skip.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import NamedTuple

import pytest

from benchmarks.errors import SetupError
from benchmarks.hierarchy import (
    AUTHORITIES,
    Hierarchy,
    Reply,
    Server,
    require,
    running,
)

pytestmark = pytest.mark.interop


class Expect(NamedTuple):
    """What the fixtures say a resolver must answer: the status, the answer records ("OWNER
    TYPE RDATA", owners in the case a resolver should give), the zone whose SOA a negative
    answer carries, and whether the UDP reply is truncated (dig then asks over TCP)."""

    status: str
    answer: tuple[str, ...] = ()
    negative_zone: str | None = None
    truncated: bool = False


def ok(*answer: str, truncated: bool = False) -> Expect:
    return Expect("NOERROR", answer, truncated=truncated)


def nodata(zone: str) -> Expect:
    return Expect("NOERROR", (), zone)


def nxdomain(zone: str, *answer: str) -> Expect:
    return Expect("NXDOMAIN", answer, zone)


SERVFAIL = Expect("SERVFAIL")
WWW = "www.example.com. A 127.1.0.1"
WWW_TEST = "www.example.test. A 127.1.1.1"
MANY = [f"many.example.com. A 127.1.10.{n}" for n in range(1, 49)]
LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789"
BIG = [f'big.example.com. TXT "big-{n}-{LETTERS * 6}{LETTERS[:28]}"' for n in range(8)]
SOA = "example.com. SOA ns1.example.com. hostmaster.example.com. 2024010101 7200 3600 1209600 300"

# The fixture set: every notable name of fixtures/README.md with its types, as
# "NAME TYPE [dig options]", and its answer.
EXPECTED: dict[str, Expect] = {
    # positive answers in one zone
    "www.example.com A": ok(WWW),
    "www.example.com AAAA": ok("www.example.com. AAAA 2001:db8::1"),
    "WwW.ExAmPlE.CoM A": ok("WwW.ExAmPlE.CoM. A 127.1.0.1"),
    "www.example.com A +tcp": ok(WWW),
    "short.example.com A": ok("short.example.com. A 127.1.0.2"),
    "zero.example.com A": ok("zero.example.com. A 127.1.0.3"),
    "example.com MX": ok(
        "example.com. MX 10 mail.example.com.", "example.com. MX 20 mail2.example.test."
    ),
    "example.com TXT": ok('example.com. TXT "v=spf1 -all"'),
    "example.com NS": ok("example.com. NS ns1.example.com."),
    "example.com SOA": ok(SOA),
    "mail.example.com AAAA": ok("mail.example.com. AAAA 2001:db8::25"),
    "_sip._udp.example.com SRV": ok("_sip._udp.example.com. SRV 10 5 5060 sip.example.com."),
    "txtonly.example.com TXT": ok('txtonly.example.com. TXT "only a TXT here" "second string"'),
    "leaf.ent.example.com A": ok("leaf.ent.example.com. A 127.1.0.4"),
    # negative answers: NXDOMAIN at each level, NODATA, the empty non-terminal
    "nonexistent.example.com A": nxdomain("example.com."),
    "txtonly.example.com A": nodata("example.com."),
    "www.example.com MX": nodata("example.com."),
    "ent.example.com A": nodata("example.com."),
    "x.ent.example.com A": nxdomain("example.com."),
    "nothere.example.test A": nxdomain("example.test."),
    "nothere.com A": nxdomain("com."),
    "nothere.nosuchtld A": nxdomain("."),
    # CNAMEs: in the zone, a chain, across zones both ways, into a child, dangling, a loop
    "alias.example.com A": ok("alias.example.com. CNAME www.example.com.", WWW),
    "chain1.example.com A": ok(
        "chain1.example.com. CNAME chain2.example.com.",
        "chain2.example.com. CNAME chain3.example.com.",
        "chain3.example.com. CNAME www.example.com.",
        WWW,
    ),
    "cross.example.com A": ok("cross.example.com. CNAME www.example.test.", WWW_TEST),
    "back.example.test A": ok("back.example.test. CNAME www.example.com.", WWW),
    "cross-sub.example.com A": ok(
        "cross-sub.example.com. CNAME www.sub.example.com.", "www.sub.example.com. A 127.1.2.1"
    ),
    "www.old.example.com A": ok(
        "old.example.com. DNAME example.test.",
        "www.old.example.com. CNAME www.example.test.",
        WWW_TEST,
    ),
    "dangling.example.com A": nxdomain(
        "example.com.", "dangling.example.com. CNAME nothere.example.com."
    ),
    # A loop resolves to nothing: SERVFAIL (Unbound's answer; RFC 1034 4.3.2 says to signal
    # an error).
    "loop1.example.com A": SERVFAIL,
    # sizes: fits EDNS 1232; truncated at 512 (then over TCP); truncated even at 1232
    "many.example.com A": ok(*MANY),
    "many.example.com A +noedns": ok(*MANY, truncated=True),
    "big.example.com TXT": ok(*BIG, truncated=True),
    # delegations: a sub-delegation, an out-of-bailiwick server, half lame, fully lame
    "www.sub.example.com A": ok("www.sub.example.com. A 127.1.2.1"),
    "www.sub.example.com AAAA": ok("www.sub.example.com. AAAA 2001:db8:2::1"),
    "sub.example.com NS": ok("sub.example.com. NS ns1.sub.example.com."),
    "nothere.sub.example.com A": nxdomain("sub.example.com."),
    "www.example.test A": ok(WWW_TEST),
    "www.example.test AAAA": ok("www.example.test. AAAA 2001:db8:1::1"),
    "ns.example.test A": ok("ns.example.test. A 127.0.0.7"),
    "www.oob.com A": ok("www.oob.com. A 127.1.4.1"),
    "www.half.test A": ok("www.half.test. A 127.1.5.1"),
    "www.lame.com A": SERVFAIL,
    # glue from the referring zone: a server in a sibling zone (com.'s glue for sib.com.), a
    # TLD whose server lives under another TLD (the root's glue for org.)
    "www.sib.com A": ok("www.sib.com. A 127.1.7.1"),
    "nothere.sib.com A": nxdomain("sib.com."),
    "www.org A": ok("www.org. A 127.1.6.1"),
    "nothere.org A": nxdomain("org."),
    "a.root-servers.test A": ok("a.root-servers.test. A 127.0.0.2"),
    # wildcards
    "anything.wild.test A": ok("anything.wild.test. A 127.1.3.1"),
    "anything.wild.test TXT": ok('anything.wild.test. TXT "wildcard"'),
    "anything.wild.test MX": nodata("wild.test."),
    "host.wild.test A": ok("host.wild.test. A 127.1.3.2"),
    "host.wild.test TXT": nodata("wild.test."),
    "b.wild.test A": nodata("wild.test."),
    "a.b.wild.test A": ok("a.b.wild.test. A 127.1.3.3"),
    "x.b.wild.test A": nxdomain("wild.test."),
    "foo.alias.wild.test A": ok("foo.alias.wild.test. CNAME www.example.test.", WWW_TEST),
}
QUESTIONS = list(EXPECTED)
SECOND_UNBOUND = "127.0.0.56"
# The negative TTL of a zone (fixtures/README.md): min(SOA TTL, SOA minimum), 300 but here.
NEGATIVE_TTL = {"example.test.": 60}


def ask(hierarchy: Hierarchy, server: Server, question: str) -> Reply:
    name, qtype, *options = question.split()
    return hierarchy.dig(server, name, qtype, *options)


def question_id(question: str) -> str:
    return question.replace(" +", "+").replace(" ", "-")


@contextlib.contextmanager
def failing_setup() -> Iterator[None]:
    """A setup that cannot be done is a failure of the test, with the reason: never a skip."""
    try:
        yield
    except SetupError as exc:
        reason = str(exc)
    else:
        return
    pytest.fail(reason, pytrace=False)  # outside the except: no chained traceback


@pytest.fixture(scope="module")
def hierarchy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hierarchy]:
    """The namespace with the NSD authorities, for the whole module."""
    stack = contextlib.ExitStack()
    with failing_setup():
        require("ip", "nsd", "unbound", "dig")
        started = stack.enter_context(running(tmp_path_factory.mktemp("hierarchy")))
    with stack:
        yield started


@pytest.fixture(scope="module")
def unbound(hierarchy: Hierarchy) -> Server:
    with failing_setup():
        return hierarchy.start_unbound()


@pytest.fixture(scope="module")
def ours(hierarchy: Hierarchy) -> Server:
    with failing_setup():
        return hierarchy.start_resolver()


def summary(reply: Reply) -> dict[str, object]:
    """What the comparison holds equal (the module docstring says why these)."""
    return {
        "status": reply.status,
        "flags": sorted(reply.flags),
        "truncated over UDP": reply.truncated,
        "answer": sorted(reply.answer_set()),
        "answer owners": sorted({record.name for record in reply.answer}),
        "negative SOA": sorted(reply.negative_soa()),
    }


def test_the_namespace_reaches_nothing_but_loopback(hierarchy: Hierarchy) -> None:
    links = hierarchy.run(["ip", "-o", "link", "show"])
    assert [line.split(":")[1].strip() for line in links.stdout.splitlines()] == ["lo"]
    for family, address in (("-4", "192.0.2.1"), ("-6", "2001:db8::1")):
        route = hierarchy.run(["ip", family, "route", "get", address])
        assert route.returncode != 0, route.stdout
        assert "unreachable" in route.stderr, route.stderr


def test_each_authority_answers_only_for_its_zones(hierarchy: Hierarchy) -> None:
    # Its own zones with AA; a zone below one of them with a referral; any other REFUSED.
    origins = [origin for zones in AUTHORITIES.values() for origin in zones]
    for address, zones in AUTHORITIES.items():
        for origin in origins:
            reply = hierarchy.dig(address, origin, "SOA", "+norecurse")
            got = (reply.status, "aa" in reply.flags, [r.rtype for r in reply.answer])
            if origin in zones:
                assert got == ("NOERROR", True, ["SOA"]), (address, origin, reply.text)
            elif any(zone == "." or origin.endswith(f".{zone}") for zone in zones):
                assert got == ("NOERROR", False, []), (address, origin, reply.text)
                assert {r.rtype for r in reply.authority} == {"NS"}, (address, origin)
            else:
                assert got[0] == "REFUSED", (address, origin, reply.text)


@pytest.mark.parametrize("question", QUESTIONS, ids=question_id)
def test_unbound_answers_as_the_fixtures_say(
    hierarchy: Hierarchy, unbound: Server, question: str
) -> None:
    expect = EXPECTED[question]
    reply = ask(hierarchy, unbound, question)
    assert reply.status == expect.status, reply.text
    assert reply.flags == {"qr", "rd", "ra"}, reply.text
    assert reply.truncated == expect.truncated, reply.text
    assert {f"{r.name} {r.rtype} {r.rdata}" for r in reply.answer} == set(expect.answer), reply.text
    soa = [r for r in reply.authority if r.rtype == "SOA"]
    if expect.negative_zone is None:
        assert not soa, reply.text
    else:
        assert [r.name for r in soa] == [expect.negative_zone], reply.text
        assert soa[0].ttl <= NEGATIVE_TTL.get(expect.negative_zone, 300), reply.text


@pytest.mark.parametrize("question", QUESTIONS, ids=question_id)
def test_our_answer_equals_unbounds(
    hierarchy: Hierarchy, unbound: Server, ours: Server, question: str
) -> None:
    theirs = ask(hierarchy, unbound, question)
    mine = ask(hierarchy, ours, question)
    assert summary(mine) == summary(theirs), (
        f"{question}\n--- unbound:\n{theirs.text}\n--- ours:\n{mine.text}"
    )


def test_the_comparison_finds_a_second_unbound_equal(hierarchy: Hierarchy, unbound: Server) -> None:
    # A cold Unbound against the warm one: what the comparison holds equal does not depend
    # on a cache or on which server of half.test. was tried first.
    other = hierarchy.start_unbound(address=SECOND_UNBOUND)
    try:
        for question in QUESTIONS:
            theirs, again = ask(hierarchy, unbound, question), ask(hierarchy, other, question)
            assert summary(again) == summary(theirs), f"{theirs.text}\n{again.text}"
    finally:
        other.proc.stop()
