"""resolver.cache: what is cached for how long, how it is served, eviction, stale and prefetch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from dnslib import AAAA, CNAME, EDNS0, QTYPE, RCODE, RR, SOA, TXT, A, DNSRecord
from hypothesis import given
from hypothesis import strategies as st

from resolver.cache import (
    RENDERED_DATAGRAM,
    RENDERED_PADDED,
    RENDERED_STREAM,
    STALE_RECHECK,
    Cache,
    CacheConfig,
    CacheKey,
    CacheStatistics,
    Freshness,
    Rendered,
)
from resolver.errors import ConfigError, WireError
from resolver.wire.raw import read_question
from resolver.wire.view import scan


class FakeClock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _soa(ttl: int = 900, minimum: int = 60) -> RR:
    rdata = SOA("ns1.example.com", "hostmaster.example.com", (1, 7200, 900, 1209600, minimum))
    return RR("example.com", QTYPE.SOA, rdata=rdata, ttl=ttl)


def _reply(
    qname: str = "www.example.com",
    qtype: str = "A",
    *,
    rcode: int = RCODE.NOERROR,
    answers: tuple[RR, ...] = (),
    authority: tuple[RR, ...] = (),
    tc: bool = False,
) -> bytes:
    reply = DNSRecord.question(qname, qtype).reply()
    reply.header.rcode = rcode
    reply.header.tc = int(tc)
    for rr in answers:
        reply.add_answer(rr)
    for rr in authority:
        reply.add_auth(rr)
    return bytes(reply.pack())


def _a_reply(*ttls: int, qname: str = "www.example.com") -> bytes:
    answers = tuple(
        RR(qname, QTYPE.A, rdata=A(f"192.0.2.{i + 1}"), ttl=t) for i, t in enumerate(ttls)
    )
    return _reply(qname, answers=answers)


def _a_reply_rrs() -> tuple[RR, ...]:
    return (RR("www.example.com", QTYPE.A, rdata=A("192.0.2.1"), ttl=60),)


def _key(qname: str = "www.example.com", qtype: str = "A", *, do: bool = False) -> CacheKey:
    name = read_question(bytes(DNSRecord.question(qname, qtype).pack())).name
    return CacheKey.of(name, getattr(QTYPE, qtype), 1, do=do, cd=False)


def _ttls(data: bytes) -> list[int]:
    record = DNSRecord.parse(data)
    return [rr.ttl for rr in (*record.rr, *record.auth, *record.ar) if rr.rtype != QTYPE.OPT]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cache(clock: FakeClock) -> Cache:
    return Cache(CacheConfig(max_entries=3), clock=clock)


def _serve(cache: Cache, key: CacheKey, query_id: int = 0x1234) -> bytes:
    hit = cache.get(key)
    assert hit is not None
    return cache.serve(hit.entry, query_id, key.name)


def test_served_ttls_drop_by_whole_seconds_elapsed(cache: Cache, clock: FakeClock) -> None:
    cache.put(_key(), scan(_a_reply(300, 100)))
    clock.advance(10.9)
    assert _ttls(_serve(cache, _key())) == [290, 90]
    clock.advance(0.2)
    assert _ttls(_serve(cache, _key())) == [289, 89]


def test_entry_lifetime_is_the_smallest_record_ttl(cache: Cache, clock: FakeClock) -> None:
    entry = cache.put(_key(), scan(_a_reply(300, 100)))
    assert entry is not None
    assert entry.lifetime == 100
    clock.advance(99.5)
    hit = cache.get(_key())
    assert hit is not None
    assert hit.freshness is Freshness.FRESH
    clock.advance(0.5)
    hit = cache.get(_key())
    assert hit is not None
    assert hit.freshness is Freshness.STALE


@pytest.mark.parametrize(
    ("floor", "ceiling", "ttls", "lifetime", "stored"),
    [
        (60, 86400, (10, 300), 60, [60, 300]),
        (0, 200, (100, 300), 100, [100, 200]),
        (0, 50, (100, 300), 50, [50, 50]),
    ],
    ids=["floor-raises", "ceiling-lowers-one", "ceiling-lowers-all"],
)
def test_floor_and_ceiling_clamp_stored_ttls(
    clock: FakeClock,
    floor: int,
    ceiling: int,
    ttls: tuple[int, ...],
    lifetime: int,
    stored: list[int],
) -> None:
    cache = Cache(CacheConfig(ttl_floor=floor, ttl_ceiling=ceiling), clock=clock)
    entry = cache.put(_key(), scan(_a_reply(*ttls)))
    assert entry is not None
    assert entry.lifetime == lifetime
    assert _ttls(_serve(cache, _key())) == stored


def test_nxdomain_cached_for_soa_minimum(cache: Cache, clock: FakeClock) -> None:
    reply = _reply(rcode=RCODE.NXDOMAIN, authority=(_soa(ttl=900, minimum=60),))
    entry = cache.put(_key(), scan(reply))
    assert entry is not None
    assert (entry.negative, entry.lifetime) == (True, 60)
    # The SOA's own TTL is lowered to the negative TTL so no downstream cache keeps it longer.
    assert _ttls(_serve(cache, _key())) == [60]
    clock.advance(59)
    hit = cache.get(_key())
    assert hit is not None
    assert hit.freshness is Freshness.FRESH
    assert DNSRecord.parse(cache.serve(hit.entry, 1, _key().name)).header.rcode == RCODE.NXDOMAIN
    clock.advance(1)
    hit = cache.get(_key())
    assert hit is not None
    assert hit.freshness is Freshness.STALE


def test_nodata_cached_for_soa_ttl_when_lower(cache: Cache) -> None:
    key = _key(qtype="AAAA")
    entry = cache.put(key, scan(_reply(qtype="AAAA", authority=(_soa(ttl=30, minimum=600),))))
    assert entry is not None
    assert (entry.negative, entry.lifetime) == (True, 30)
    served = DNSRecord.parse(_serve(cache, key))
    assert (served.header.rcode, len(served.rr)) == (RCODE.NOERROR, 0)


def test_nodata_and_nxdomain_are_told_apart_by_rcode(cache: Cache) -> None:
    nodata = cache.put(_key(qtype="AAAA"), scan(_reply(qtype="AAAA", authority=(_soa(),))))
    nxdomain = cache.put(_key(), scan(_reply(rcode=RCODE.NXDOMAIN, authority=(_soa(),))))
    assert nodata is not None
    assert nxdomain is not None
    assert DNSRecord.parse(_serve(cache, _key(qtype="AAAA"))).header.rcode == RCODE.NOERROR
    assert DNSRecord.parse(_serve(cache, _key())).header.rcode == RCODE.NXDOMAIN


def test_negative_ttl_capped_by_negative_max(clock: FakeClock) -> None:
    cache = Cache(CacheConfig(negative_ttl_max=100), clock=clock)
    reply = _reply(rcode=RCODE.NXDOMAIN, authority=(_soa(ttl=86400, minimum=86400),))
    entry = cache.put(_key(), scan(reply))
    assert entry is not None
    assert entry.lifetime == 100


def test_negative_ignores_the_floor(clock: FakeClock) -> None:
    cache = Cache(CacheConfig(ttl_floor=600), clock=clock)
    entry = cache.put(_key(), scan(_reply(rcode=RCODE.NXDOMAIN, authority=(_soa(minimum=60),))))
    assert entry is not None
    assert entry.lifetime == 60


def test_negative_without_soa_is_not_cached(cache: Cache) -> None:
    assert cache.put(_key(), scan(_reply(rcode=RCODE.NXDOMAIN))) is None
    assert cache.put(_key(), scan(_reply())) is None
    assert len(cache) == 0


def test_servfail_is_cached_briefly_and_never_served_stale(clock: FakeClock) -> None:
    cache = Cache(CacheConfig(servfail_ttl=5), clock=clock)
    entry = cache.put(_key(), scan(_reply(rcode=RCODE.SERVFAIL)))
    assert entry is not None
    assert (entry.failure, entry.lifetime) == (True, 5)
    clock.advance(4.9)
    hit = cache.get(_key())
    assert hit is not None
    assert (hit.freshness, hit.needs_prefetch) == (Freshness.FRESH, False)
    clock.advance(0.1)
    assert cache.get(_key()) is None
    assert len(cache) == 0


def test_servfail_caching_can_be_disabled(clock: FakeClock) -> None:
    cache = Cache(CacheConfig(servfail_ttl=0), clock=clock)
    assert cache.put(_key(), scan(_reply(rcode=RCODE.SERVFAIL))) is None


def test_servfail_does_not_replace_an_entry_still_servable_stale(
    cache: Cache, clock: FakeClock
) -> None:
    first = cache.put(_key(), scan(_a_reply(60)))
    clock.advance(120)
    assert cache.put(_key(), scan(_reply(rcode=RCODE.SERVFAIL))) is None
    hit = cache.get(_key())
    assert hit is not None
    assert (hit.entry, hit.freshness) == (first, Freshness.STALE)


@pytest.mark.parametrize(
    "rcode", [RCODE.REFUSED, RCODE.FORMERR, RCODE.NOTIMP], ids=["refused", "formerr", "notimp"]
)
def test_other_rcodes_are_not_cached(cache: Cache, rcode: int) -> None:
    assert cache.put(_key(), scan(_reply(rcode=rcode, authority=(_soa(),)))) is None


def test_truncated_reply_is_never_cached(cache: Cache) -> None:
    assert cache.put(_key(), scan(_reply(answers=_a_reply_rrs(), tc=True))) is None
    assert _key() not in cache
    assert cache.statistics().inserts == 0


def test_zero_ttl_answer_is_not_cached(cache: Cache) -> None:
    assert cache.put(_key(), scan(_a_reply(0))) is None


def test_lru_evicts_least_recently_used(cache: Cache) -> None:
    keys = [_key(f"n{i}.example.com") for i in range(4)]
    for i in range(3):
        cache.put(keys[i], scan(_a_reply(60, qname=f"n{i}.example.com")))
    assert cache.get(keys[0]) is not None  # now keys[1] is the least recently used
    cache.put(keys[3], scan(_a_reply(60, qname="n3.example.com")))
    assert [key in cache for key in keys] == [True, False, True, True]
    assert cache.statistics().evictions == 1


def test_replacing_an_entry_makes_it_most_recent(cache: Cache) -> None:
    keys = [_key(f"n{i}.example.com") for i in range(4)]
    for i in range(3):
        cache.put(keys[i], scan(_a_reply(60, qname=f"n{i}.example.com")))
    cache.put(keys[0], scan(_a_reply(60, qname="n0.example.com")))
    cache.put(keys[3], scan(_a_reply(60, qname="n3.example.com")))
    assert [key in cache for key in keys] == [True, False, True, True]


def test_key_is_case_insensitive_and_client_case_is_restored(cache: Cache) -> None:
    cache.put(_key("wWw.ExAmple.com"), scan(_a_reply(60, qname="wWw.ExAmple.com")))
    client = _key("WWW.EXAMPLE.COM")
    assert client == _key("www.example.com")
    hit = cache.get(client)
    assert hit is not None
    client_name = read_question(bytes(DNSRecord.question("WWW.example.COM").pack())).name
    served = DNSRecord.parse(cache.serve(hit.entry, 7, client_name))
    assert str(served.q.qname) == "WWW.example.COM."
    assert served.header.id == 7


def test_serving_patches_the_id_and_keeps_the_stored_reply(cache: Cache) -> None:
    reply = _a_reply(60)
    entry = cache.put(_key(), scan(reply))
    assert entry is not None
    assert DNSRecord.parse(_serve(cache, _key(), query_id=0xBEEF)).header.id == 0xBEEF
    assert entry.reply == reply


def test_serve_rejects_an_id_out_of_range(cache: Cache) -> None:
    entry = cache.put(_key(), scan(_a_reply(60)))
    assert entry is not None
    with pytest.raises(ValueError, match="0-65535"):
        cache.serve(entry, 0x10000, _key().name)


@pytest.mark.parametrize(
    ("do", "cd"), [(True, False), (False, True), (True, True)], ids=["do", "cd", "do-cd"]
)
def test_do_and_cd_bits_are_part_of_the_key(cache: Cache, do: bool, cd: bool) -> None:
    cache.put(_key(), scan(_a_reply(60)))
    other = CacheKey.of(_key().name, QTYPE.A, 1, do=do, cd=cd)
    assert cache.get(other) is None
    assert cache.get(_key()) is not None


def test_stale_entry_served_with_ttl_30_until_stale_max(clock: FakeClock) -> None:
    cache = Cache(CacheConfig(stale_max=3600), clock=clock)
    cache.put(_key(), scan(_reply(answers=_a_reply_rrs(), authority=(_soa(ttl=7200),))))
    clock.advance(60)
    hit = cache.get(_key())
    assert hit is not None
    assert (hit.freshness, hit.needs_prefetch) == (Freshness.STALE, False)
    assert _ttls(cache.serve(hit.entry, 1, _key().name)) == [30, 30]
    clock.advance(3599.9)
    hit = cache.get(_key())
    assert hit is not None
    assert hit.freshness is Freshness.STALE
    clock.advance(0.1)
    assert cache.get(_key()) is None
    assert cache.statistics() == CacheStatistics(
        entries=0, hits=0, misses=1, stale_hits=2, evictions=0, expired=1, inserts=1
    )


def test_stale_serving_can_be_disabled(clock: FakeClock) -> None:
    cache = Cache(CacheConfig(stale_max=0), clock=clock)
    cache.put(_key(), scan(_a_reply(60)))
    clock.advance(60)
    assert cache.get(_key()) is None


def test_prefetch_requested_once_in_last_tenth(cache: Cache, clock: FakeClock) -> None:
    cache.put(_key(), scan(_a_reply(100)))
    clock.advance(89)
    hit = cache.get(_key())
    assert hit is not None
    assert not hit.needs_prefetch
    clock.advance(1)
    flags = []
    for _ in range(3):
        hit = cache.get(_key())
        assert hit is not None
        flags.append(hit.needs_prefetch)
    assert flags == [True, False, False]


@pytest.mark.parametrize(
    ("fraction", "age", "until"),
    [
        (0.1, 10.3, 1011.0),  # the end of the current whole second of age
        (0.1, 85.5, 1086.0),
        (0.1, 89.5, 1090.0),  # the start of the prefetch window comes first
        (0.1, 95.2, 1095.2),  # inside the window: now, the bytes are not to be reused
        (0.0, 99.5, 1100.0),  # no prefetch: the expiry
    ],
    ids=["second", "second-late", "window-start", "in-window", "expiry"],
)
def test_fresh_hit_says_until_when_its_served_bytes_stay_the_same(
    clock: FakeClock, fraction: float, age: float, until: float
) -> None:
    cache = Cache(CacheConfig(max_entries=3, prefetch_fraction=fraction), clock=clock)
    cache.put(_key(), scan(_a_reply(100)))
    clock.advance(age)
    first, second = cache.get(_key()), cache.get(_key())
    assert first is not None
    assert second is not None
    assert first.freshness is second.freshness is Freshness.FRESH
    assert first.until == 0.0  # the first hit in its second: no repeat expected
    assert second.until == pytest.approx(until)


def test_only_a_second_hit_within_the_same_second_of_age_is_worth_rendering(
    cache: Cache, clock: FakeClock
) -> None:
    cache.put(_key(), scan(_a_reply(100)))
    untils = []
    for step in (10.2, 0.3, 0.6, 0.1, 16.0, 1.0):  # ages 10.2, 10.5, 11.1, 11.2, 27.2, 28.2
        clock.advance(step)
        hit = cache.get(_key())
        assert hit is not None
        untils.append(hit.until)
    # The hit 16 seconds after the last one, in the same second modulo 16, counts as a second.
    assert untils == [0.0, 1011.0, 0.0, 1012.0, 1028.0, 0.0]


def test_a_stale_hit_is_never_reused(clock: FakeClock) -> None:
    cache = Cache(CacheConfig(max_entries=3, stale_max=60), clock=clock)
    cache.put(_key(), scan(_a_reply(100)))
    clock.advance(101)
    hit = cache.get(_key())
    assert hit is not None
    assert (hit.freshness, hit.until) == (Freshness.STALE, 0.0)


def test_replacing_an_entry_resets_its_prefetch_flag(cache: Cache, clock: FakeClock) -> None:
    cache.put(_key(), scan(_a_reply(100)))
    clock.advance(95)
    hit = cache.get(_key())
    assert hit is not None
    assert hit.needs_prefetch
    cache.put(_key(), scan(_a_reply(100)))
    clock.advance(95)
    hit = cache.get(_key())
    assert hit is not None
    assert hit.needs_prefetch


def test_put_rejects_a_reply_whose_question_cannot_be_the_keys(cache: Cache) -> None:
    # The question itself was compared where the reply was matched; the cache checks only
    # what costs nothing: one question, of the key's length.
    with pytest.raises(WireError, match="question"):
        cache.put(_key("other.example.com"), scan(_a_reply(60)))


def test_put_rejects_malformed_reply(cache: Cache) -> None:
    with pytest.raises(WireError):
        cache.put(_key(), scan(_a_reply(60)[:-3]))


def test_statistics_and_repr_count_live(cache: Cache) -> None:
    assert cache.get(_key()) is None
    cache.put(_key(), scan(_a_reply(60)))
    assert cache.get(_key()) is not None
    assert cache.statistics() == CacheStatistics(
        entries=1, hits=1, misses=1, stale_hits=0, evictions=0, expired=0, inserts=1
    )
    assert repr(cache) == (
        "<Cache entries=1/3 hits=1 misses=1 stale_hits=0 evictions=0 expired=0 inserts=1>"
    )


def test_remove_and_clear(cache: Cache) -> None:
    cache.put(_key(), scan(_a_reply(60)))
    assert cache.remove(_key())
    assert not cache.remove(_key())
    cache.put(_key(), scan(_a_reply(60)))
    cache.clear()
    assert len(cache) == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_entries", 0),
        ("ttl_floor", -1),
        ("ttl_floor", 100_000),
        ("ttl_ceiling", 0),
        ("negative_ttl_max", -1),
        ("servfail_ttl", 31),
        ("stale_max", -1),
        ("stale_ttl", 0),
        ("prefetch_fraction", 1.0),
        ("prefetch_fraction", True),
        ("max_entries", "10"),
    ],
    ids=[
        "no-entries",
        "negative-floor",
        "floor-above-ceiling",
        "zero-ceiling",
        "negative-negative-max",
        "servfail-over-30",
        "negative-stale-max",
        "zero-stale-ttl",
        "prefetch-whole-lifetime",
        "prefetch-bool",
        "entries-string",
    ],
)
def test_config_validation_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        CacheConfig(**{field: value})  # type: ignore[arg-type]
    assert info.value.field == f"cache.{field}"


_RDATA = st.one_of(
    st.builds(lambda i: (QTYPE.A, A(f"192.0.2.{i}")), st.integers(0, 255)),
    st.builds(lambda i: (QTYPE.AAAA, AAAA(f"2001:db8::{i:x}")), st.integers(0, 0xFFFF)),
    st.builds(lambda t: (QTYPE.TXT, TXT(t)), st.text("abc xyz", max_size=40)),
    st.builds(lambda n: (QTYPE.CNAME, CNAME(f"{n}.example.net")), st.sampled_from("ab")),
)


@given(
    records=st.lists(st.tuples(_RDATA, st.integers(1, 2**31 - 1)), min_size=1, max_size=6),
    case_mask=st.integers(0, 2**15 - 1),
    elapsed=st.floats(0, 200_000, allow_nan=False),
    query_id=st.integers(0, 0xFFFF),
    edns=st.booleans(),
)
def test_served_reply_always_parses(
    records: list[tuple[tuple[int, object], int]],
    case_mask: int,
    elapsed: float,
    query_id: int,
    edns: bool,
) -> None:
    clock = FakeClock()
    cache = Cache(CacheConfig(), clock=clock)
    reply = DNSRecord.question("www.example.com", "A").reply()
    for (rtype, rdata), ttl in records:
        reply.add_answer(RR("www.example.com", rtype, rdata=rdata, ttl=ttl))
    if edns:
        reply.add_ar(EDNS0(udp_len=1232))
    stored = bytes(reply.pack())
    entry = cache.put(_key(), scan(stored))
    if entry is None:
        return  # NODATA without SOA: CNAME/TXT only answers to an A question
    client = "".join(
        c.upper() if case_mask >> i & 1 else c for i, c in enumerate("www.example.com")
    )
    client_name = read_question(bytes(DNSRecord.question(client).pack())).name
    clock.advance(elapsed)
    served = DNSRecord.parse(cache.serve(entry, query_id, client_name))
    assert served.header.id == query_id
    assert str(served.q.qname) == client + "."
    assert [str(rr.rdata) for rr in served.rr] == [str(rr.rdata) for rr in reply.rr]
    if elapsed < entry.lifetime:
        expected = [max(0, min(86400, ttl) - int(elapsed)) for _, ttl in records]
    else:
        expected = [30] * len(records)
    assert [rr.ttl for rr in served.rr] == expected


# --------------------------------------------------------------- one home: failures, holds, repeats


def test_a_failed_resolution_is_remembered_with_its_ede_for_the_servfail_ttl(
    clock: FakeClock,
) -> None:
    cache = Cache(CacheConfig(servfail_ttl=5), clock=clock)
    entry = cache.fail(_key(), 22)
    assert entry is not None
    assert (entry.failure, entry.reply, entry.ede, entry.lifetime) == (True, None, 22, 5)
    clock.advance(4.9)
    hit = cache.get(_key())
    assert hit is not None
    assert (hit.entry, hit.freshness) == (entry, Freshness.FRESH)
    clock.advance(0.1)
    assert cache.get(_key()) is None  # never served stale
    assert cache.statistics().failures == 1


def test_a_failure_without_an_ede_keeps_none(cache: Cache) -> None:
    entry = cache.fail(_key(), None)
    assert entry is not None
    assert entry.ede is None


def test_a_failure_is_not_stored_over_an_answer_still_servable(
    cache: Cache, clock: FakeClock
) -> None:
    answer = cache.put(_key(), scan(_a_reply(60)))
    clock.advance(61)  # expired, still servable stale
    assert cache.fail(_key(), 22) is None
    hit = cache.get(_key())
    assert hit is not None
    assert (hit.entry, hit.freshness) == (answer, Freshness.STALE)


def test_failures_are_not_remembered_when_servfail_ttl_is_zero(clock: FakeClock) -> None:
    cache = Cache(CacheConfig(servfail_ttl=0), clock=clock)
    assert cache.fail(_key(), 22) is None
    assert cache.get(_key()) is None


def test_a_held_stale_answer_is_reported_held_until_the_recheck(
    cache: Cache, clock: FakeClock
) -> None:
    answer = cache.put(_key(), scan(_a_reply(60)))
    clock.advance(61)
    assert cache.hold(_key()) is answer
    for _ in range(2):
        hit = cache.get(_key())
        assert hit is not None
        assert (hit.entry, hit.freshness) == (answer, Freshness.HELD)
        clock.advance(STALE_RECHECK / 2 - 0.01)
    clock.advance(0.05)
    hit = cache.get(_key())
    assert hit is not None
    assert hit.freshness is Freshness.STALE  # time to ask again
    assert cache.statistics().holds == 1


def test_only_an_expired_servable_answer_can_be_held(cache: Cache, clock: FakeClock) -> None:
    assert cache.hold(_key()) is None  # nothing stored
    cache.put(_key(), scan(_a_reply(60)))
    assert cache.hold(_key()) is None  # still fresh: a failed prefetch holds nothing
    cache.fail(CacheKey.of(b"\x01x\x00", 1, 1, do=False, cd=False), 22)
    assert cache.hold(CacheKey.of(b"\x01x\x00", 1, 1, do=False, cd=False)) is None


def test_a_new_answer_ends_the_hold(cache: Cache, clock: FakeClock) -> None:
    cache.put(_key(), scan(_a_reply(60)))
    clock.advance(61)
    cache.hold(_key())
    cache.put(_key(), scan(_a_reply(60)))
    hit = cache.get(_key())
    assert hit is not None
    assert hit.freshness is Freshness.FRESH


def test_a_rendered_reply_answers_exact_repeats_until_its_moment(
    cache: Cache, clock: FakeClock
) -> None:
    rendered = Rendered(b"reply", clock.now + 1.0, b"\x03www\x00", 1, 7)
    cache.render(b"query", rendered)
    assert cache.repeat(b"query", clock.now) is rendered
    assert cache.repeat(b"other", clock.now) is None
    assert cache.repeat(b"query", clock.now + 1.0) is None  # its moment has passed
    assert cache.repeat(b"query", clock.now) is None  # and it is gone
    stats = cache.statistics()
    assert (stats.repeats, stats.rendered) == (1, 0)


def test_clear_drops_rendered_replies_too(cache: Cache, clock: FakeClock) -> None:
    cache.render(b"query", Rendered(b"reply", clock.now + 1.0, b"\x00", 1, 0))
    cache.clear()
    assert cache.repeat(b"query", clock.now) is None


KINDS = [
    pytest.param(RENDERED_DATAGRAM, id="datagram"),
    pytest.param(RENDERED_STREAM, id="stream"),
    pytest.param(RENDERED_PADDED, id="padded"),
]


@pytest.mark.parametrize("kind", KINDS)
def test_a_rendered_reply_repeats_only_for_its_own_kind(
    cache: Cache, clock: FakeClock, kind: int
) -> None:
    rendered = Rendered(b"reply", clock.now + 1.0, b"\x03www\x00", 1, 7)
    cache.render(b"query", rendered, kind)
    others = [k for k in (RENDERED_DATAGRAM, RENDERED_STREAM, RENDERED_PADDED) if k != kind]
    assert [cache.repeat(b"query", clock.now, other) for other in others] == [None, None]
    assert cache.repeat(b"query", clock.now, kind) is rendered
    assert cache.statistics().repeats == 1


def test_the_same_query_keeps_one_rendered_reply_per_kind(cache: Cache, clock: FakeClock) -> None:
    replies = {}
    for kind in (RENDERED_DATAGRAM, RENDERED_STREAM, RENDERED_PADDED):
        replies[kind] = Rendered(bytes([kind]), clock.now + 1.0, b"\x00", 1, 0)
        cache.render(b"query", replies[kind], kind)
    assert cache.statistics().rendered == 3
    for kind, rendered in replies.items():
        assert cache.repeat(b"query", clock.now, kind) is rendered


@pytest.mark.parametrize("kind", KINDS)
def test_reconfigure_and_clear_drop_rendered_replies_of_every_kind(
    cache: Cache, clock: FakeClock, kind: int
) -> None:
    cache.render(b"query", Rendered(b"reply", clock.now + 1.0, b"\x00", 1, 0), kind)
    cache.reconfigure(CacheConfig(max_entries=3))
    assert cache.repeat(b"query", clock.now, kind) is None
    cache.render(b"query", Rendered(b"reply", clock.now + 1.0, b"\x00", 1, 0), kind)
    cache.clear()
    assert cache.repeat(b"query", clock.now, kind) is None
    assert cache.statistics().rendered == 0


def test_rendered_replies_of_a_kind_are_dropped_at_the_count_bound(
    cache: Cache, clock: FakeClock
) -> None:
    rendered = Rendered(b"r", clock.now + 1.0, b"\x00", 1, 0)
    for i in range(10_000):
        cache.render(i.to_bytes(4, "big"), rendered, RENDERED_STREAM)
    cache.render(b"other", rendered, RENDERED_DATAGRAM)
    assert cache.statistics().rendered == 10_001
    cache.render(b"last", rendered, RENDERED_STREAM)
    assert cache.statistics().rendered == 2  # the stream's were all dropped, UDP's kept
    assert cache.repeat(b"other", clock.now) is not None


def test_rendered_stream_replies_are_dropped_at_the_byte_bound(
    cache: Cache, clock: FakeClock
) -> None:
    # Replies as big as a stream carries: 258 of them (and their 4-byte queries) are 16 MiB.
    whole = Rendered(bytes(65_000), clock.now + 1.0, b"\x00", 1, 0)
    for i in range(258):
        cache.render(i.to_bytes(4, "big"), whole, RENDERED_PADDED)
    assert cache.statistics().rendered == 258
    cache.render(b"more", whole, RENDERED_PADDED)
    assert cache.statistics().rendered == 1
    assert cache.repeat(b"more", clock.now, RENDERED_PADDED) is not None


# --------------------------------------------------------------- the cache file


def test_saved_answers_are_restored_aged_by_the_wall_clock(
    cache: Cache, clock: FakeClock, tmp_path: Path
) -> None:
    cache.put(_key(), scan(_a_reply(300)))
    other = _key(qtype="AAAA", do=True)
    cache.put(other, scan(_reply(qtype="AAAA", rcode=RCODE.NXDOMAIN, authority=(_soa(),))))
    clock.advance(10)
    path = tmp_path / "cache.bin"
    assert cache.save(path, wall_now=5_000.0) == 2
    fresh_clock = FakeClock(7.0)  # a new process: another monotonic origin
    restored = Cache(CacheConfig(), clock=fresh_clock)
    assert restored.restore(path, wall_now=5_100.0) == 2  # 100 s later
    hit = restored.get(_key())
    assert hit is not None
    served = DNSRecord.parse(restored.serve(hit.entry, 1, _key().name))
    assert served.rr[0].ttl == 300 - 10 - 100
    negative = restored.get(other)
    assert negative is not None
    assert negative.entry.negative


def test_an_answer_keeps_the_extended_error_it_was_stored_with(
    cache: Cache, tmp_path: Path
) -> None:
    # An answer proven insecure by too many NSEC3 iterations carries EDE 27 (RFC 9276 3.2)
    # every time it is served, from the cache and after a restart from the cache file.
    cache.put(_key(), scan(_a_reply(300)), ede=27)
    cache.put(_key("plain.example.com"), scan(_a_reply(300, qname="plain.example.com")))
    hit = cache.get(_key())
    assert hit is not None
    assert hit.entry.ede == 27
    plain = cache.get(_key("plain.example.com"))
    assert plain is not None
    assert plain.entry.ede is None
    path = tmp_path / "cache.bin"
    assert cache.save(path) == 2
    restored = Cache(CacheConfig(), clock=FakeClock())
    assert restored.restore(path) == 2
    again = restored.get(_key())
    assert again is not None
    assert again.entry.ede == 27
    plain = restored.get(_key("plain.example.com"))
    assert plain is not None
    assert plain.entry.ede is None


def test_answers_past_their_stale_window_are_not_restored(clock: FakeClock, tmp_path: Path) -> None:
    cache = Cache(CacheConfig(stale_max=50), clock=clock)
    cache.put(_key(), scan(_a_reply(60)))
    path = tmp_path / "cache.bin"
    cache.save(path, wall_now=1_000.0)
    restored = Cache(CacheConfig(stale_max=50), clock=FakeClock())
    assert restored.restore(path, wall_now=1_000.0 + 60 + 50) == 0
    assert len(restored) == 0


def test_failures_are_not_saved(cache: Cache, tmp_path: Path) -> None:
    cache.fail(_key(), 22)
    assert cache.save(tmp_path / "cache.bin") == 0


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: b"something else\n" + data, id="foreign"),
        pytest.param(lambda data: data[:-3], id="cut-off"),
        pytest.param(lambda data: data[:-6] + b"\x00\x09" + data[-4:], id="damaged-reply"),
    ],
)
def test_a_damaged_cache_file_raises_and_keeps_nothing(
    cache: Cache, tmp_path: Path, damage: Callable[[bytes], bytes]
) -> None:
    cache.put(_key(), scan(_a_reply(300)))
    cache.put(_key("other.example.com"), scan(_a_reply(300, qname="other.example.com")))
    path = tmp_path / "cache.bin"
    cache.save(path)
    path.write_bytes(damage(path.read_bytes()))
    restored = Cache(CacheConfig(), clock=FakeClock())
    with pytest.raises(WireError):
        restored.restore(path)
    assert len(restored) == 0
