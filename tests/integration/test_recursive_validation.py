"""DNSSEC validation in recursive mode, through the running server: a hierarchy of zones
signed in the test with fresh keys (root on 127.0.0.2, test. on 127.0.0.3, its children on
127.0.0.4, each a `resolver` Authority), the engine's trust anchor the test root's DS.

Secure answers carry AD (asked with AD, or with DO: with their RRSIGs then), an insecure
delegation's answers do not, bogus zones (an expired signature, RRSIGs stripped) are SERVFAIL
with their Extended DNS Error and are not asked again at once, CD gives the bogus data without
AD, and an NSEC3 NXDOMAIN is secure with its proof. With the validated NSEC records of one
answer, later questions they prove are answered without asking (RFC 8198), never under CD, a
negative trust anchor or from NSEC3.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import NamedTuple

import dns.dnssec
import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest
from conftest import Hierarchy
from signing import SignedZone, zone_text
from support import free_port, udp_exchange

from resolver.authority import Authority
from resolver.authority.zone import parse_zone
from resolver.cache import Cache
from resolver.config import (
    CacheConfig,
    DnssecConfig,
    ForwarderConfig,
    RecursionConfig,
    ServerConfig,
    TransportConfig,
    Validation,
)
from resolver.engine import Engine
from resolver.rrsets import Security as Status
from resolver.server import Server
from resolver.wire.message import name_to_wire

DAY = 86400
NOW = int(time.time())
SOA = "@ SOA ns hostmaster 1 7200 3600 1209600 300\n"
LEAF = SOA + "@ NS ns\nns A 127.0.0.4\nwww A 192.0.2.1\n*.wild TXT wild\n"
ROOT, TLD, LEAVES = "127.0.0.2", "127.0.0.3", "127.0.0.4"
# CNAMEs from good.test. into the other zones, link by link.
CHAINS = (
    "to-nsec3 CNAME www.nsec3.test.\n"
    "to-unsigned CNAME www.unsigned.test.\n"
    "to-expired CNAME www.expired.test.\n"
)


def strip_signatures(text: str) -> str:
    kept = [
        line
        for line in text.splitlines()
        if not any(f" {kind} " in line for kind in ("RRSIG", "NSEC", "NSEC3", "NSEC3PARAM"))
    ]
    return "\n".join(kept) + "\n"


def signed_world(directory: Path) -> tuple[dict[str, list[str]], Path, Path]:
    """Zone texts by server address, the root hints file and the trust anchor file."""
    window = {"inception": NOW - 3600, "expiration": NOW + 30 * DAY}
    leaves = {
        "good": (SignedZone("good.test.", LEAF + CHAINS, **window), True, True),
        "nsec3": (SignedZone("nsec3.test.", LEAF, nsec3=(1, "ab", False), **window), True, True),
        # More NSEC3 iterations than the validator's limit (150): its denials are insecure.
        "costly": (
            SignedZone("costly.test.", LEAF, nsec3=(200, "ab", False), **window),
            True,
            True,
        ),
        "expired": (
            SignedZone("expired.test.", LEAF, inception=NOW - 30 * DAY, expiration=NOW - 3 * DAY),
            True,
            True,
        ),
        "stripped": (SignedZone("stripped.test.", LEAF, **window), True, False),
        "unsigned": (SignedZone("unsigned.test.", LEAF, **window), False, False),
        # Served by test.'s own server: its answers come without a referral to carry its DS.
        "shared": (
            SignedZone("shared.test.", LEAF.replace(LEAVES, TLD), **window),
            True,
            True,
        ),
    }
    delegations = ""
    for label, (zone, with_ds, _) in leaves.items():
        address = TLD if label == "shared" else LEAVES
        delegations += f"{label} NS ns.{label}\nns.{label} A {address}\n"
        if with_ds:
            delegations += "".join(f"{label} DS {rd.to_text()}\n" for rd in zone.ds())
    test = SignedZone("test.", SOA + f"@ NS ns\nns A {TLD}\n" + delegations, **window)
    root_ds = "".join(f"test. DS {rd.to_text()}\n" for rd in test.ds())
    root = SignedZone(
        ".",
        SOA.replace("ns hostmaster", "a.root-servers.test. hostmaster.test.")
        + f"@ NS a.root-servers.test.\ntest. NS ns.test.\nns.test. A {TLD}\n"
        + root_ds,
        **window,
    )
    texts = {ROOT: [zone_text(root)], TLD: [zone_text(test)], LEAVES: []}
    for label, (zone, _, signed) in leaves.items():
        text = zone_text(zone)
        texts[TLD if label == "shared" else LEAVES].append(
            text if signed else strip_signatures(text)
        )
    hints = directory / "root.hints"
    hints.write_text(
        ".  3600000 NS A.ROOT-SERVERS.TEST.\nA.ROOT-SERVERS.TEST. 3600000 A 127.0.0.2\n"
    )
    anchor = directory / "root.key"
    anchor.write_text("".join(f". DS {rd.to_text()}\n" for rd in root.ds()))
    return texts, hints, anchor


class Signed(NamedTuple):
    engine: Engine
    port: int
    authorities: dict[str, Authority]


async def _serving(
    directory: Path,
    validation: Validation = "on",
    negative: tuple[str, ...] = (),
    *,
    aggressive: bool = True,
) -> AsyncIterator[Signed]:
    texts, hints, anchor = signed_world(directory)
    zones = {
        address: [parse_zone(text, source=f"{address}-{i}") for i, text in enumerate(served)]
        for address, served in texts.items()
    }
    port = free_port(ROOT)
    authorities: dict[str, Authority] = {}
    try:
        for address, served in zones.items():
            authority = Authority(served)
            authorities[address] = authority
            await authority.start(address, port)
        engine = Engine(
            ForwarderConfig(),
            TransportConfig(),
            cache=Cache(CacheConfig()),
            recursion=RecursionConfig(root_hints=hints, port=port),
            dnssec=DnssecConfig(
                trust_anchors=anchor, negative_trust_anchors=negative, aggressive_nsec=aggressive
            ),
            validation=validation,
        )
        await engine.start()
        server = Server(ServerConfig(listen=(("127.0.0.1", 0),)), engine)
        try:
            await server.start()
            yield Signed(engine, server.addresses[0][1], authorities)
        finally:
            await server.aclose()
            await engine.aclose()
    finally:
        for authority in authorities.values():
            await authority.aclose()


@pytest.fixture
async def signed(tmp_path: Path) -> AsyncIterator[Signed]:
    async for served in _serving(tmp_path):
        yield served


_ids = itertools.count(1)


async def ask(
    served: Signed,
    name: str,
    qtype: str = "A",
    *,
    ad: bool = False,
    do: bool = False,
    cd: bool = False,
) -> dns.message.Message:
    query = dns.message.make_query(name, qtype, use_edns=0, want_dnssec=do)
    query.id = next(_ids) & 0xFFFF
    query.flags &= ~dns.flags.AD
    if ad:
        query.flags |= dns.flags.AD
    if cd:
        query.flags |= dns.flags.CD
    wire = await asyncio.to_thread(udp_exchange, served.port, query.to_wire(), 12.0)
    return dns.message.from_wire(wire)


def ede(reply: dns.message.Message) -> list[int]:
    return [int(o.code) for o in reply.options if isinstance(o, dns.edns.EDEOption)]


def types(section: list[dns.rrset.RRset]) -> set[str]:
    return {dns.rdatatype.to_text(rrset.rdtype) for rrset in section}


async def test_a_secure_answer_has_ad_when_asked_with_ad(signed: Signed) -> None:
    reply = await ask(signed, "www.good.test.", ad=True)
    assert reply.rcode() == dns.rcode.NOERROR
    assert [rd.to_text() for rd in reply.answer[0]] == ["192.0.2.1"]
    assert reply.flags & dns.flags.AD
    assert types(reply.answer) == {"A"}  # no DO: no RRSIGs
    assert signed.engine.statistics().secure == 1


async def test_a_secure_answer_asked_with_do_has_ad_and_its_rrsigs(signed: Signed) -> None:
    reply = await ask(signed, "www.good.test.", do=True)
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AD
    assert types(reply.answer) == {"A", "RRSIG"}


async def test_a_secure_answer_has_no_ad_for_a_client_that_asked_for_neither(
    signed: Signed,
) -> None:
    reply = await ask(signed, "www.good.test.")
    assert reply.rcode() == dns.rcode.NOERROR
    assert not reply.flags & dns.flags.AD


async def test_an_insecure_delegation_answers_without_ad(signed: Signed) -> None:
    reply = await ask(signed, "www.unsigned.test.", ad=True, do=True)
    assert reply.rcode() == dns.rcode.NOERROR
    assert [rd.to_text() for rd in reply.answer[0]] == ["192.0.2.1"]
    assert not reply.flags & dns.flags.AD
    assert signed.engine.statistics().insecure == 1


@pytest.mark.parametrize(
    ("zone", "code"),
    [("expired", 7), ("stripped", 10)],
    ids=["expired-signature", "stripped-rrsigs"],
)
async def test_a_bogus_zone_is_servfail_with_its_ede_and_not_asked_again_at_once(
    signed: Signed, zone: str, code: int
) -> None:
    reply = await ask(signed, f"www.{zone}.test.", ad=True)
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert ede(reply) == [code]
    assert not reply.answer
    leaves = len(signed.authorities[LEAVES].queries)
    again = await ask(signed, f"www.{zone}.test.", ad=True)
    assert again.rcode() == dns.rcode.SERVFAIL
    assert ede(again) == [code]
    assert len(signed.authorities[LEAVES].queries) == leaves
    assert signed.engine.statistics().bogus == 1


async def test_cd_gives_bogus_data_as_it_came_without_ad(signed: Signed) -> None:
    reply = await ask(signed, "www.expired.test.", ad=True, cd=True)
    assert reply.rcode() == dns.rcode.NOERROR
    assert [rd.to_text() for rd in reply.answer[0]] == ["192.0.2.1"]
    assert not reply.flags & dns.flags.AD
    assert reply.flags & dns.flags.CD
    # The CD answer is not what a client without CD gets.
    plain = await ask(signed, "www.expired.test.")
    assert plain.rcode() == dns.rcode.SERVFAIL


async def test_an_nsec3_nxdomain_is_secure_with_its_proof(signed: Signed) -> None:
    reply = await ask(signed, "nothere.nsec3.test.", do=True)
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert reply.flags & dns.flags.AD
    assert {"SOA", "NSEC3", "RRSIG"} <= types(reply.authority)


async def test_an_nsec_nodata_is_secure_with_its_proof(signed: Signed) -> None:
    reply = await ask(signed, "www.good.test.", "MX", do=True)
    assert reply.rcode() == dns.rcode.NOERROR
    assert not reply.answer
    assert reply.flags & dns.flags.AD
    assert {"SOA", "NSEC", "RRSIG"} <= types(reply.authority)


async def test_a_wildcard_answer_is_secure_with_its_nsec(signed: Signed) -> None:
    reply = await ask(signed, "x.wild.good.test.", "TXT", do=True)
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AD
    assert types(reply.answer) == {"TXT", "RRSIG"}
    assert "NSEC" in types(reply.authority)


async def test_an_insecure_answer_keeps_its_ede_when_served_from_the_cache(
    signed: Signed,
) -> None:
    # RFC 9276 3.2: a denial by NSEC3 of too many iterations is insecure, with EDE 27; the
    # repeat comes from the cache (the authorities are not asked again) and says so too.
    first = await ask(signed, "nothere.costly.test.", ad=True)
    asked = signed.engine.statistics().upstream_queries
    again = await ask(signed, "nothere.costly.test.", ad=True)
    assert signed.engine.statistics().upstream_queries == asked
    for reply in (first, again):
        assert reply.rcode() == dns.rcode.NXDOMAIN
        assert not reply.flags & dns.flags.AD
        assert ede(reply) == [27]


async def test_a_warm_validator_fetches_no_key_twice(signed: Signed) -> None:
    await ask(signed, "www.good.test.", ad=True)
    before = {a: len(s.queries) for a, s in signed.authorities.items()}
    reply = await ask(signed, "x.wild.good.test.", "TXT", ad=True)
    assert reply.flags & dns.flags.AD
    after = {a: len(s.queries) for a, s in signed.authorities.items()}
    assert after[ROOT] == before[ROOT]
    assert after[TLD] == before[TLD]
    asked = [(q.qname.lower(), q.qtype_name) for q in signed.authorities[LEAVES].queries]
    # The question itself (QNAME minimisation asks wild.good.test. first), no DNSKEY again.
    assert asked[before[LEAVES] :] == [("wild.good.test.", "A"), ("x.wild.good.test.", "TXT")]


async def test_an_unsigned_private_root_under_the_shipped_anchor_is_bogus_and_says_why(
    hierarchy: Hierarchy, fixtures_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = Engine(
        ForwarderConfig(),
        TransportConfig(),
        cache=Cache(CacheConfig()),
        recursion=RecursionConfig(root_hints=fixtures_dir / "root.hints", port=hierarchy.port),
        dnssec=DnssecConfig(),
        validation="on",
    )
    await engine.start()
    server = Server(ServerConfig(listen=(("127.0.0.1", 0),)), engine)
    try:
        await server.start()
        served = Signed(engine, server.addresses[0][1], {})
        with caplog.at_level(logging.WARNING, logger="resolver.engine.driver"):
            reply = await ask(served, "www.example.com.")
        assert reply.rcode() == dns.rcode.SERVFAIL
        assert ede(reply) == [9]  # DNSKEY Missing: the fixture root has no keys
        assert "do not match the trust anchor" in caplog.text
        assert 'validation = "off"' in caplog.text
    finally:
        await server.aclose()
        await engine.aclose()


async def test_the_rrset_cache_keeps_each_answer_s_security_status(signed: Signed) -> None:
    await ask(signed, "www.good.test.")
    await ask(signed, "www.unsigned.test.")
    await ask(signed, "www.expired.test.")
    delegations = signed.engine.delegations
    assert delegations is not None
    now = asyncio.get_running_loop().time()

    def status(name: str) -> Status | None:
        rrset = delegations.rrsets.get(name_to_wire(name).lower(), 1, now)
        return None if rrset is None else rrset.security

    assert status("www.good.test.") is Status.SECURE
    assert status("www.unsigned.test.") is Status.INSECURE
    assert status("www.expired.test.") is Status.BOGUS


async def test_permissive_answers_bogus_data_without_ad_and_logs_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async for served in _serving(tmp_path, validation="permissive"):
        with caplog.at_level(logging.WARNING, logger="resolver.engine.driver"):
            reply = await ask(served, "www.expired.test.", ad=True)
        assert reply.rcode() == dns.rcode.NOERROR
        assert [rd.to_text() for rd in reply.answer[0]] == ["192.0.2.1"]
        assert not reply.flags & dns.flags.AD
        # In Unbound's words at val-log-level 2, then the EDE and what was done.
        assert (
            "validation failure <www.expired.test. A IN>: signature expired from "
            f"{LEAVES} for key expired.test. while building chain of trust (EDE 7; permissive"
        ) in caplog.text
        secure = await ask(served, "www.good.test.", ad=True)
        assert secure.flags & dns.flags.AD
        assert served.engine.statistics().bogus == 1


# Forward mode with validation on: the upstream is one Authority holding every zone (it
# answers as a DNSSEC-aware upstream relays: RRSIGs with DO, DS from the parent side).


async def _forwarding(directory: Path, *, strip: bool = False) -> AsyncIterator[Signed]:
    texts, _, anchor = signed_world(directory)
    every = [text for served in texts.values() for text in served]
    if strip:
        every = [strip_signatures(text) for text in every]
    upstream = Authority([parse_zone(text, source=f"zone-{i}") for i, text in enumerate(every)])
    host, port = await upstream.start("127.0.0.1", 0)
    try:
        engine = Engine(
            ForwarderConfig(upstreams=((host, port),)),
            TransportConfig(),
            cache=Cache(CacheConfig()),
            dnssec=DnssecConfig(trust_anchors=anchor),
            validation="on",
        )
        await engine.start()
        server = Server(ServerConfig(listen=(("127.0.0.1", 0),)), engine)
        try:
            await server.start()
            yield Signed(engine, server.addresses[0][1], {"upstream": upstream})
        finally:
            await server.aclose()
            await engine.aclose()
    finally:
        await upstream.aclose()


@pytest.fixture
async def forwarding(tmp_path: Path) -> AsyncIterator[Signed]:
    async for served in _forwarding(tmp_path):
        yield served


async def test_forward_mode_validates_a_secure_answer(forwarding: Signed) -> None:
    reply = await ask(forwarding, "www.good.test.", ad=True)
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AD
    assert types(reply.answer) == {"A"}  # asked without DO: the RRSIGs are not relayed
    signed = await ask(forwarding, "www.good.test.", do=True)
    assert signed.flags & dns.flags.AD
    assert types(signed.answer) == {"A", "RRSIG"}
    # Every query upstream asked with DO and CD, the keys through the same upstream.
    asked = {(q.qname.lower(), q.qtype_name) for q in forwarding.authorities["upstream"].queries}
    assert {(".", "DNSKEY"), ("good.test.", "DS"), ("good.test.", "DNSKEY")} <= asked


async def test_forward_mode_answers_insecure_data_without_ad(forwarding: Signed) -> None:
    reply = await ask(forwarding, "www.unsigned.test.", ad=True)
    assert reply.rcode() == dns.rcode.NOERROR
    assert not reply.flags & dns.flags.AD


@pytest.mark.parametrize(
    ("zone", "code"), [("expired", 7), ("stripped", 10)], ids=["expired", "stripped"]
)
async def test_forward_mode_refuses_bogus_data_with_its_ede(
    forwarding: Signed, zone: str, code: int
) -> None:
    reply = await ask(forwarding, f"www.{zone}.test.")
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert ede(reply) == [code]


async def test_forward_mode_logs_a_bogus_answer_naming_the_upstream_it_came_from(
    forwarding: Signed, caplog: pytest.LogCaptureFixture
) -> None:
    # As Unbound behind a forward zone: what failed, from which server, for which key.
    with caplog.at_level(logging.WARNING, logger="resolver.engine.driver"):
        reply = await ask(forwarding, "www.expired.test.")
    assert reply.rcode() == dns.rcode.SERVFAIL
    upstream = forwarding.engine.upstreams[0].name
    assert (
        f"validation failure <www.expired.test. A IN>: signature expired from {upstream} "
        "for key expired.test. while building chain of trust (EDE 7)"
    ) in caplog.text


async def test_forward_mode_behind_an_upstream_that_strips_signatures_is_bogus(
    tmp_path: Path,
) -> None:
    async for served in _forwarding(tmp_path, strip=True):
        reply = await ask(served, "www.good.test.", ad=True)
        assert reply.rcode() == dns.rcode.SERVFAIL
        assert ede(reply) == [10]  # RRSIGs Missing, not silently insecure


async def test_a_zone_whose_ds_came_in_no_referral_has_it_fetched(signed: Signed) -> None:
    reply = await ask(signed, "www.shared.test.", ad=True)
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AD
    asked = [(q.qname.lower(), q.qtype_name) for q in signed.authorities[TLD].queries]
    assert ("shared.test.", "DS") in asked
    assert asked.count(("shared.test.", "DNSKEY")) == 1


async def _trace(signed: Signed, directory: Path, name: str) -> subprocess.CompletedProcess[str]:
    port = signed.authorities[ROOT].address[1]
    command = [sys.executable, "-m", "resolver", "query", "+trace", "+dnssec", "-p", str(port)]
    command += ["--root-hints", str(directory / "root.hints")]
    command += ["--trust-anchor", str(directory / "root.key"), name]
    env = {**os.environ, "RESOLVER_SERVER": "127.0.0.1:1"}
    process = await asyncio.create_subprocess_exec(
        *command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return subprocess.CompletedProcess(command, process.returncode, out.decode(), err.decode())


async def test_trace_with_dnssec_shows_the_keys_fetched_and_the_verdict(
    signed: Signed, tmp_path: Path
) -> None:
    done = await _trace(signed, tmp_path, "www.good.test.")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert re.search(r"\. DNSKEY .*\. secure \(the DNSKEY set of \. is signed", out), out
    assert re.search(r"good\.test\. DNSKEY .*good\.test\. secure", out), out
    assert ";; DNSSEC: secure" in out
    assert re.search(r"flags:[a-z ]* ad", out), out
    bogus = await _trace(signed, tmp_path, "www.expired.test.")
    assert ";; DNSSEC: bogus (EDE 7)" in bogus.stdout, bogus.stdout


async def test_trace_refuses_an_unreadable_trust_anchor_in_one_line(
    signed: Signed, tmp_path: Path
) -> None:
    (tmp_path / "root.key").write_text("this is not a zone file\n")
    done = await _trace(signed, tmp_path, "www.good.test.")
    assert done.returncode == 2
    assert "--trust-anchor" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("name", "rcode", "ad"),
    [
        ("to-nsec3.good.test.", dns.rcode.NOERROR, True),
        ("to-unsigned.good.test.", dns.rcode.NOERROR, False),
        ("to-expired.good.test.", dns.rcode.SERVFAIL, False),
    ],
    ids=["secure-into-secure", "secure-into-insecure", "secure-into-bogus"],
)
async def test_a_cname_chain_across_zones_validates_link_by_link(
    signed: Signed, name: str, rcode: int, ad: bool
) -> None:
    reply = await ask(signed, name, ad=True)
    assert reply.rcode() == rcode
    assert bool(reply.flags & dns.flags.AD) == ad
    if rcode == dns.rcode.NOERROR:
        assert "192.0.2.1" in {rd.to_text() for rrset in reply.answer for rd in rrset}


async def test_a_negative_trust_anchor_makes_a_bogus_zone_insecure(tmp_path: Path) -> None:
    async for served in _serving(tmp_path, negative=("expired.test.",)):
        reply = await ask(served, "www.expired.test.", ad=True)
        assert reply.rcode() == dns.rcode.NOERROR
        assert not reply.flags & dns.flags.AD
        good = await ask(served, "www.good.test.", ad=True)
        assert good.flags & dns.flags.AD


@pytest.mark.parametrize(
    ("name", "qtype", "rcode"),
    [
        ("good.test.", "DS", dns.rcode.NOERROR),
        ("good.test.", "DNSKEY", dns.rcode.NOERROR),
        (".", "DNSKEY", dns.rcode.NOERROR),
        ("unsigned.test.", "DS", dns.rcode.NOERROR),
        ("nothere.good.test.", "A", dns.rcode.NXDOMAIN),
        ("nothere.test.", "A", dns.rcode.NXDOMAIN),
    ],
    ids=["ds", "dnskey", "root-dnskey", "proven-no-ds", "nsec-nxdomain", "tld-nxdomain"],
)
async def test_the_keys_and_denials_themselves_are_secure(
    signed: Signed, name: str, qtype: str, rcode: int
) -> None:
    reply = await ask(signed, name, qtype, ad=True)
    assert reply.rcode() == rcode
    assert reply.flags & dns.flags.AD


async def test_rrsig_records_asked_for_on_purpose_are_given_unjudged(signed: Signed) -> None:
    reply = await ask(signed, "www.good.test.", "RRSIG", ad=True)
    assert reply.rcode() == dns.rcode.NOERROR
    assert types(reply.answer) == {"RRSIG"}
    assert not reply.flags & dns.flags.AD


# --- aggressive use of the validated cache (RFC 8198) ----------------------------------


def asked(served: Signed) -> int:
    return sum(len(a.queries) for a in served.authorities.values())


@pytest.mark.parametrize(
    ("first", "then", "qtype", "rcode", "answered"),
    [
        ("x.wild.good.test.", "y.wild.good.test.", "TXT", dns.rcode.NOERROR, {"TXT", "RRSIG"}),
        ("nothere.good.test.", "mz.good.test.", "A", dns.rcode.NXDOMAIN, set()),
        ("zz.good.test.", "zy.good.test.", "A", dns.rcode.NXDOMAIN, set()),
        ("www.good.test.", "www.good.test.", "MX", dns.rcode.NOERROR, set()),
        ("x.wild.good.test.", "y.wild.good.test.", "MX", dns.rcode.NOERROR, set()),
    ],
    ids=["wildcard", "nxdomain", "nxdomain-last-span", "nodata", "wildcard-nodata"],
)
async def test_validated_nsec_answers_later_questions_without_asking(
    signed: Signed, first: str, then: str, qtype: str, rcode: int, answered: set[str]
) -> None:
    learnt = await ask(signed, first, "TXT" if first == then else qtype, do=True)
    assert learnt.flags & dns.flags.AD
    before = asked(signed)
    reply = await ask(signed, then, qtype, do=True)
    assert asked(signed) == before
    assert signed.engine.statistics().synthesised == 1
    assert reply.rcode() == rcode
    assert reply.flags & dns.flags.AD
    assert types(reply.answer) == answered
    assert "NSEC" in types(reply.authority)
    if rcode == dns.rcode.NOERROR and answered:
        (data,) = (r for r in reply.answer if r.rdtype == dns.rdatatype.TXT)
        assert data.name == dns.name.from_text(then)
    else:
        assert "SOA" in types(reply.authority)
    plain = await ask(signed, then.replace("y.", "z.").replace("nz.", "nw."), qtype, ad=True)
    assert plain.rcode() == rcode
    assert plain.flags & dns.flags.AD
    assert types(plain.authority) <= {"SOA"}


async def test_a_synthesised_wildcard_answer_validates_downstream(signed: Signed) -> None:
    await ask(signed, "x.wild.good.test.", "TXT", do=True)
    reply = await ask(signed, "y.wild.good.test.", "TXT", do=True)
    assert signed.engine.statistics().synthesised == 1
    key = await ask(signed, "good.test.", "DNSKEY", do=True)
    keys = {dns.name.from_text("good.test."): key.find_rrset(
        key.answer, dns.name.from_text("good.test."), dns.rdataclass.IN, dns.rdatatype.DNSKEY
    )}  # fmt: skip
    data = reply.find_rrset(
        reply.answer, dns.name.from_text("y.wild.good.test."), dns.rdataclass.IN,
        dns.rdatatype.TXT,
    )  # fmt: skip
    sigs = reply.find_rrset(
        reply.answer, data.name, dns.rdataclass.IN, dns.rdatatype.RRSIG, dns.rdatatype.TXT
    )
    dns.dnssec.validate(data, sigs, keys)  # raises if the signature does not hold
    for rrset in reply.authority:
        if rrset.rdtype == dns.rdatatype.NSEC:
            nsec_sigs = reply.find_rrset(
                reply.authority, rrset.name, dns.rdataclass.IN, dns.rdatatype.RRSIG,
                dns.rdatatype.NSEC,
            )  # fmt: skip
            dns.dnssec.validate(rrset, nsec_sigs, keys)


@pytest.mark.parametrize(
    ("first", "then", "cd"),
    [
        ("nothere.good.test.", "mz.good.test.", True),
        ("nothere.nsec3.test.", "nz.nsec3.test.", False),
        ("x.wild.nsec3.test.", "y.wild.nsec3.test.", False),
        ("nothere.unsigned.test.", "nz.unsigned.test.", False),
    ],
    ids=["cd", "nsec3-nxdomain", "nsec3-wildcard", "insecure"],
)
async def test_no_answer_is_synthesised_under_cd_from_nsec3_or_for_insecure_zones(
    signed: Signed, first: str, then: str, cd: bool
) -> None:
    await ask(signed, first, "TXT", do=True)
    before = asked(signed)
    await ask(signed, then, "TXT", do=True, cd=cd)
    assert asked(signed) > before
    assert signed.engine.statistics().synthesised == 0


@pytest.mark.parametrize(
    ("aggressive", "negative"),
    [(False, ()), (True, ("good.test.",))],
    ids=["switched-off", "negative-trust-anchor"],
)
async def test_no_answer_is_synthesised_when_off_or_under_a_negative_anchor(
    tmp_path: Path, aggressive: bool, negative: tuple[str, ...]
) -> None:
    async for served in _serving(tmp_path, negative=negative, aggressive=aggressive):
        await ask(served, "nothere.good.test.", do=True)
        before = asked(served)
        reply = await ask(served, "mz.good.test.", do=True)
        assert reply.rcode() == dns.rcode.NXDOMAIN
        assert asked(served) > before
        assert served.engine.statistics().synthesised == 0


async def test_validated_nsec_is_kept_no_longer_than_the_soa_minimum(signed: Signed) -> None:
    await ask(signed, "nothere.good.test.", do=True)
    rrsets = signed.engine.delegations
    assert rrsets is not None
    nsec = rrsets.rrsets.get(name_to_wire("good.test."), dns.rdatatype.NSEC, time.monotonic())
    assert nsec is not None
    assert nsec.security is Status.SECURE
    assert nsec.sigs
    assert nsec.ttl <= 300
