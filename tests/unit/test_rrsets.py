"""The RRset cache: credibility ranks (RFC 2181 section 5.4.1), expiry, the size bound, the
security status slot and the chain of secure NSEC records by zone; plain code, time passed
in."""

from __future__ import annotations

import pytest

from resolver.rrsets import Rank, RRsetCache, RRsetStatistics, Security, canonical_key
from resolver.wire.message import name_to_wire

A, NS = 1, 2
NAME = name_to_wire("www.example.com.")


def test_a_stored_rrset_is_found_until_it_expires() -> None:
    cache = RRsetCache()
    stored = cache.put(NAME, A, (b"\x7f\x01\x00\x01",), 60, Rank.ANSWER_AA, 100.0)
    assert stored is not None
    found = cache.get(NAME, A, 159.5)
    assert found is not None
    assert (found.rdatas, found.rank, found.remaining(159.5)) == (
        (b"\x7f\x01\x00\x01",),
        Rank.ANSWER_AA,
        0,
    )
    assert cache.get(NAME, A, 160.0) is None
    assert cache.statistics().expired == 1


def test_owner_names_are_kept_in_lowercase() -> None:
    cache = RRsetCache()
    cache.put(name_to_wire("WWW.Example.COM."), A, (b"\x01\x02\x03\x04",), 60, Rank.ANSWER, 0.0)
    assert cache.get(NAME, A, 1.0) is not None


@pytest.mark.parametrize(
    ("first", "second", "replaced"),
    [
        (Rank.ANSWER_AA, Rank.ADDITIONAL, False),
        (Rank.ANSWER, Rank.AUTHORITY, False),
        (Rank.AUTHORITY_AA, Rank.ANSWER, False),
        (Rank.ADDITIONAL, Rank.ANSWER, True),
        (Rank.AUTHORITY, Rank.AUTHORITY_AA, True),
        (Rank.ANSWER, Rank.ANSWER, True),
    ],
    ids=[
        "glue-under-answer",
        "authority-under-answer",
        "answer-under-aa-authority",
        "answer-over-glue",
        "aa-authority-over-referral",
        "same-rank-refreshes",
    ],
)
def test_lower_rank_never_replaces_higher(first: Rank, second: Rank, replaced: bool) -> None:
    cache = RRsetCache()
    cache.put(NAME, A, (b"\x01\x01\x01\x01",), 300, first, 0.0)
    result = cache.put(NAME, A, (b"\x02\x02\x02\x02",), 300, second, 1.0)
    found = cache.get(NAME, A, 2.0)
    assert found is not None
    assert (result is not None) == replaced
    assert found.rdatas == ((b"\x02\x02\x02\x02",) if replaced else (b"\x01\x01\x01\x01",))
    assert cache.statistics().refused == (0 if replaced else 1)


def test_an_expired_rrset_of_higher_rank_gives_way() -> None:
    cache = RRsetCache()
    cache.put(NAME, A, (b"\x01\x01\x01\x01",), 10, Rank.ANSWER_AA, 0.0)
    assert cache.put(NAME, A, (b"\x02\x02\x02\x02",), 10, Rank.ADDITIONAL, 11.0) is not None


def test_min_rank_keeps_glue_from_answers() -> None:
    cache = RRsetCache()
    cache.put(NAME, A, (b"\x01\x01\x01\x01",), 300, Rank.ADDITIONAL, 0.0)
    assert cache.get(NAME, A, 1.0, min_rank=Rank.ANSWER) is None
    assert cache.get(NAME, A, 1.0) is not None


def test_ttls_are_capped() -> None:
    cache = RRsetCache(max_ttl=3600)
    stored = cache.put(NAME, NS, (name_to_wire("ns."),), 172_800, Rank.AUTHORITY, 0.0)
    assert stored is not None
    assert stored.ttl == 3600


def test_the_least_recently_used_goes_at_the_bound() -> None:
    cache = RRsetCache(max_entries=2)
    names = [name_to_wire(f"n{i}.example.") for i in range(3)]
    cache.put(names[0], A, (), 60, Rank.ANSWER, 0.0)
    cache.put(names[1], A, (), 60, Rank.ANSWER, 0.0)
    assert cache.get(names[0], A, 1.0) is not None  # n0 used: n1 is now the oldest
    cache.put(names[2], A, (), 60, Rank.ANSWER, 1.0)
    assert cache.get(names[1], A, 1.0) is None
    assert cache.get(names[0], A, 1.0) is not None
    assert len(cache) == 2
    assert cache.count(A) == 2
    assert cache.statistics().evicted == 1


def test_the_security_status_starts_unchecked_and_can_be_set() -> None:
    cache = RRsetCache()
    cache.put(NAME, A, (b"\x01\x01\x01\x01",), 60, Rank.ANSWER_AA, 0.0)
    found = cache.get(NAME, A, 1.0)
    assert found is not None
    assert found.security is Security.UNCHECKED
    assert cache.set_security(NAME, A, Security.SECURE)
    found = cache.get(NAME, A, 1.0)
    assert found is not None
    assert found.security is Security.SECURE
    assert not cache.set_security(name_to_wire("other."), A, Security.BOGUS)
    cache.remove(NAME, A)
    assert cache.get(NAME, A, 1.0) is None
    assert cache.count(A) == 0


def test_statistics_and_repr_show_the_counts() -> None:
    cache = RRsetCache(max_entries=10)
    cache.put(NAME, A, (), 60, Rank.ANSWER, 0.0)
    cache.get(NAME, A, 1.0)
    cache.get(NAME, NS, 1.0)
    assert cache.statistics() == RRsetStatistics(
        entries=1, hits=1, misses=1, stored=1, refused=0, evicted=0, expired=0
    )
    assert repr(cache) == "<RRsetCache entries=1/10 hits=1 misses=1 refused=0 evicted=0>"


def test_a_cache_holds_at_least_one_rrset() -> None:
    with pytest.raises(ValueError, match="at least one"):
        RRsetCache(max_entries=0)


def test_the_module_exports_the_cache_its_records_and_their_ranks() -> None:
    import resolver.rrsets

    assert sorted(resolver.rrsets.__all__) == [
        "RRset",
        "RRsetCache",
        "RRsetStatistics",
        "Rank",
        "Security",
        "canonical_key",
    ]


NSEC = 47
ZONE = name_to_wire("example.com.")


def nsec(cache: RRsetCache, owner: str, now: float = 0.0, **kwargs: object) -> None:
    options: dict[str, object] = {"security": Security.SECURE, "zone": ZONE, "sigs": (b"s",)}
    options.update(kwargs)
    cache.put(name_to_wire(owner), NSEC, (b"next",), 60, Rank.AUTHORITY_AA, now, **options)  # type: ignore[arg-type]


def covering(cache: RRsetCache, name: str, now: float = 1.0) -> str | None:
    found = cache.covering(ZONE, name_to_wire(name), now)
    return None if found is None else found.name.decode("latin-1")


def test_canonical_keys_sort_names_in_dnssec_order() -> None:
    names = ["z.example.", "a.example.", "yljkjljk.a.example.", "Z.a.example.", "example."]
    names += ["*.z.example.", "\\001.z.example.", "zABC.a.EXAMPLE."]
    ordered = sorted(names, key=lambda n: canonical_key(name_to_wire(n).lower()))
    # RFC 4034 section 6.1's example, but for its label of octet 200
    assert ordered == [
        "example.",
        "a.example.",
        "yljkjljk.a.example.",
        "Z.a.example.",
        "zABC.a.EXAMPLE.",
        "z.example.",
        "\\001.z.example.",
        "*.z.example.",
    ]


def test_the_secure_nsec_before_a_name_in_canonical_order_is_the_covering_one() -> None:
    cache = RRsetCache()
    for owner in ("example.com.", "b.example.com.", "m.example.com."):
        nsec(cache, owner)
    assert covering(cache, "c.example.com.") == "\x01b\x07example\x03com\x00"
    assert covering(cache, "a.b.example.com.") == "\x01b\x07example\x03com\x00"
    assert covering(cache, "z.example.com.") == "\x01m\x07example\x03com\x00"
    assert covering(cache, "a.example.com.") == "\x07example\x03com\x00"
    assert cache.chained(ZONE) == 3


@pytest.mark.parametrize(
    "how",
    ["expired", "insecure", "removed", "unchecked-verdict", "evicted", "no-zone"],
)
def test_an_nsec_no_longer_secure_and_present_leaves_the_chain(how: str) -> None:
    cache = RRsetCache(max_entries=2 if how == "evicted" else 100)
    nsec(cache, "example.com.")
    if how == "no-zone":
        nsec(cache, "b.example.com.", zone=None)
    else:
        nsec(cache, "b.example.com.")
    if how == "expired":
        assert covering(cache, "c.example.com.", now=61.0) is None
    elif how == "insecure":
        nsec(cache, "b.example.com.", security=Security.INSECURE)
    elif how == "removed":
        cache.remove(name_to_wire("b.example.com."), NSEC)
    elif how == "unchecked-verdict":
        cache.set_security(name_to_wire("b.example.com."), NSEC, Security.BOGUS)
    elif how == "evicted":
        cache.put(NAME, A, (b"\x01\x02\x03\x04",), 60, Rank.ANSWER, 0.0)
        cache.put(name_to_wire("x.example.net."), A, (b"\x01\x02\x03\x04",), 60, Rank.ANSWER, 0.0)
    if how != "expired":
        assert covering(cache, "c.example.com.") in (None, "\x07example\x03com\x00")
    assert cache.chained(ZONE) <= 1
