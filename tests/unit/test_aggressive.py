"""Aggressive use of the validated cache (RFC 8198) on the RRset cache, without sockets: what
a secure answer's records leave there (TTL capped by the SOA minimum and the validator,
NSEC3 never chained), and what is made from it. The signatures here are not checked (the
validator did that before ``learn``): the records are built by hand."""

from __future__ import annotations

import pytest

from resolver.engine.aggressive import expanded, learn, synthesise
from resolver.rrsets import RRsetCache, Security
from resolver.wire.message import name_to_wire
from resolver.wire.records import Record

A, NS, SOA, TXT, MX, RRSIG, NSEC, NSEC3 = 1, 2, 6, 16, 15, 46, 47, 50
ZONE = name_to_wire("example.")


def w(name: str) -> bytes:
    return name_to_wire(name)


def bitmap(*types: int) -> bytes:
    octets = bytearray(32)
    for t in types:
        octets[t // 8] |= 0x80 >> (t % 8)
    while octets and not octets[-1]:
        octets.pop()
    return bytes((0, len(octets))) + bytes(octets)


def rrsig(covered: int, labels: int, signer: str = "example.") -> bytes:
    return covered.to_bytes(2, "big") + bytes((13, labels)) + bytes(14) + w(signer) + b"sig"


def soa(ttl: int = 3600, minimum: int = 300) -> list[Record]:
    rdata = w("ns.example.") + w("host.example.") + (1).to_bytes(4, "big") * 4
    rdata += minimum.to_bytes(4, "big")
    return [
        Record(ZONE, SOA, 1, ttl, rdata),
        Record(ZONE, RRSIG, 1, ttl, rrsig(SOA, 1)),
    ]


def nsec(owner: str, next_name: str, *types: int, ttl: int = 3600) -> list[Record]:
    count = len(owner.strip(".").split(".")) - (1 if owner.startswith("*.") else 0)
    return [
        Record(w(owner), NSEC, 1, ttl, w(next_name) + bitmap(*types)),
        Record(w(owner), RRSIG, 1, ttl, rrsig(NSEC, count)),
    ]


def test_nsec_is_kept_no_longer_than_the_soa_minimum_nor_the_validators_cap() -> None:
    cache = RRsetCache()
    learn(cache, [*soa(), *nsec("a.example.", "d.example.", A, RRSIG, NSEC)], None, 0.0)
    kept = cache.get(w("a.example."), NSEC, 1.0)
    assert kept is not None
    assert (kept.ttl, kept.security, len(kept.sigs)) == (300, Security.SECURE, 1)
    learn(cache, [*soa(), *nsec("a.example.", "d.example.", A, RRSIG, NSEC)], 120, 0.0)
    kept = cache.get(w("a.example."), NSEC, 1.0)
    assert kept is not None
    assert kept.ttl == 120


def test_a_wildcard_answers_nsec_is_capped_by_the_cached_soa_minimum() -> None:
    cache = RRsetCache()
    learn(cache, soa(minimum=200), None, 0.0)
    answer = [
        Record(w("x.example."), TXT, 1, 600, b"\x04wild"),
        Record(w("x.example."), RRSIG, 1, 600, rrsig(TXT, 1)),
    ]
    assert expanded(answer)
    learn(cache, [*answer, *nsec("*.example.", "z.example.", TXT, RRSIG, NSEC)], None, 0.0)
    kept = cache.get(w("*.example."), NSEC, 1.0)
    assert kept is not None
    assert kept.ttl == 200
    source = cache.get(w("*.example."), TXT, 1.0)
    assert source is not None
    assert (source.rdatas, source.security) == ((b"\x04wild",), Security.SECURE)


def test_nsec3_records_not_even_an_opt_out_span_are_never_chained() -> None:
    cache = RRsetCache()
    hashed = "0p9mhaveqvm6t7vbl5lop2u3t2rp3tom.example."
    # SHA-1, the opt-out flag set, no iterations, no salt: an opt-out span proves no
    # NXDOMAIN (RFC 5155 9.2), and no NSEC3 is used for synthesis at all.
    records = [
        Record(w(hashed), NSEC3, 1, 300, b"\x01\x01\x00\x00\x00\x14" + bytes(20) + bitmap(A)),
        Record(w(hashed), RRSIG, 1, 300, rrsig(NSEC3, 2)),
    ]
    assert learn(cache, [*soa(), *records], None, 0.0) == 0
    assert cache.chained(ZONE) == 0
    assert synthesise(cache, w("nothere.example."), A, ZONE, 1.0) is None


@pytest.mark.parametrize(
    ("name", "qtype", "rcode", "answered"),
    [
        ("b.example.", A, 3, False),
        ("a.example.", MX, 0, False),
        ("q.w.example.", TXT, 0, True),
        ("q.w.example.", MX, 0, False),
    ],
    ids=["nxdomain", "nodata", "wildcard", "wildcard-nodata"],
)
def test_secure_nsec_records_prove_answers(
    name: str, qtype: int, rcode: int, answered: bool
) -> None:
    cache = RRsetCache()
    records = [
        *soa(),
        *nsec("example.", "a.example.", NS, SOA, RRSIG, NSEC),
        *nsec("a.example.", "*.w.example.", A, RRSIG, NSEC),
        *nsec("*.w.example.", "example.", TXT, RRSIG, NSEC),
        Record(w("p.w.example."), TXT, 1, 600, b"\x04wild"),
        Record(w("p.w.example."), RRSIG, 1, 600, rrsig(TXT, 2)),
    ]
    learn(cache, records, None, 0.0)
    made = synthesise(cache, w(name), qtype, ZONE, 1.0)
    assert made is not None
    assert made.rcode == rcode
    assert bool(made.answer) == answered
    assert all(r.name == w(name) for r in made.answer)
    assert {r.rtype for r in made.proofs} >= {NSEC, RRSIG}
    if not answered:  # the negative TTL: the SOA's minimum, not its TTL (RFC 2308, 8198 5.4)
        assert [(r.rtype, r.ttl) for r in made.authority] == [(SOA, 299)]


@pytest.mark.parametrize(
    ("name", "qtype"),
    [
        ("a.example.", A),  # the type is there: not ours to deny
        ("x.sub.example.", A),  # below a cut the parent's NSEC proves nothing
        ("e.example.", A),  # an empty non-terminal above the next name
        ("q.w.example.", A),  # the wildcard has A, not cached
    ],
    ids=["type-present", "below-a-cut", "empty-non-terminal", "wildcard-data-not-cached"],
)
def test_nothing_is_made_where_the_records_prove_nothing(name: str, qtype: int) -> None:
    cache = RRsetCache()
    records = [
        *soa(),
        *nsec("example.", "a.example.", NS, SOA, RRSIG, NSEC),
        *nsec("a.example.", "f.e.example.", A, RRSIG, NSEC),
        *nsec("f.e.example.", "sub.example.", A, RRSIG, NSEC),
        *nsec("sub.example.", "*.w.example.", NS, RRSIG, NSEC),
        *nsec("*.w.example.", "example.", A, TXT, RRSIG, NSEC),
    ]
    learn(cache, records, None, 0.0)
    assert synthesise(cache, w(name), qtype, ZONE, 1.0) is None


def test_a_negative_answer_needs_the_zones_secure_soa() -> None:
    cache = RRsetCache()
    learn(cache, nsec("example.", "z.example.", NS, SOA, RRSIG, NSEC), None, 0.0)
    assert synthesise(cache, w("b.example."), A, ZONE, 1.0) is None


def test_a_cached_wildcard_rrset_proves_the_wildcard_without_its_own_nsec() -> None:
    # As a wildcard answer brings them: the NSEC covering the name, not the wildcard's.
    cache = RRsetCache()
    records = [
        Record(w("p.example."), A, 1, 600, b"\x7f\x01\x03\x01"),
        Record(w("p.example."), RRSIG, 1, 600, rrsig(A, 1)),
        *nsec("ns1.example.", "example.", A, RRSIG, NSEC),
    ]
    learn(cache, records, None, 0.0)
    assert cache.get(w("*.example."), NSEC, 1.0) is None
    made = synthesise(cache, w("q1-r1.example."), A, ZONE, 1.0)
    assert made is not None
    assert [(r.name, r.rdata) for r in made.answer] == [(w("q1-r1.example."), b"\x7f\x01\x03\x01")]
    assert [r.rtype for r in made.answer_sigs] == [RRSIG]
    assert synthesise(cache, w("q1-r1.example."), TXT, ZONE, 1.0) is None
