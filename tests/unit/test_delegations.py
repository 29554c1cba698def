"""Root hints, the delegation cache and server times: plain code, no sockets."""

from __future__ import annotations

from pathlib import Path

import pytest

from resolver.engine.delegations import UNKNOWN_RTT, Delegations, ServerTimes
from resolver.engine.hints import parse_root_hints, read_root_hints
from resolver.errors import ConfigError
from resolver.rrsets import Rank
from resolver.wire.message import name_to_wire

FIXTURES = Path(__file__).resolve().parent.parent.parent / "fixtures"


def wire(name: str) -> bytes:
    return name_to_wire(name).lower()


def test_the_shipped_hints_name_the_thirteen_root_servers() -> None:
    hints = read_root_hints()
    assert len(hints.servers) == 13
    assert hints.addresses[wire("a.root-servers.net.")] == ("198.41.0.4", "2001:503:ba3e::2:30")


def test_the_fixture_hints_point_at_loopback() -> None:
    hints = read_root_hints(FIXTURES / "root.hints")
    assert hints.servers == (wire("a.root-servers.test."),)
    assert hints.addresses == {wire("a.root-servers.test."): ("127.0.0.2",)}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (". 3600 NS a.example.\na.example. 3600 A 300.1.1.1\n", "hints:2: '300.1.1.1' is not"),
        (". 3600 NS a.example.\na.example. 3600 A ::1\n", "hints:2: ::1 is not an A address"),
        ("example. 3600 NS a.example.\n", "hints:1: an NS record of example."),
        (". 3600 NS a.example\n", "hints:1: 'a.example' is not an absolute name"),
        ("a.example. 3600 A 192.0.2.1\n", "hints: no NS records for the root"),
        (". 3600 NS a.example.\n", "hints: no root server has an address"),
        ("$ORIGIN example.\n", "hints:1: $ORIGIN is not supported"),
        (". NS\n", "hints:1: expected 'name [ttl] [IN] type data'"),
    ],
    ids=[
        "bad-ip",
        "wrong-family",
        "ns-not-root",
        "relative",
        "no-ns",
        "no-address",
        "origin",
        "short",
    ],
)
def test_bad_hints_name_the_line_and_the_reason(text: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_root_hints(text, "hints")
    assert info.value.field == "recursion.root_hints"
    assert reason in str(info.value)


def test_a_missing_hints_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nothere"):
        read_root_hints(tmp_path / "nothere")


def test_comments_ttl_and_class_are_optional() -> None:
    hints = parse_root_hints(
        "; comment\n$TTL 3600\n.\tNS\tA.EXAMPLE. ; trailing\nA.EXAMPLE. IN AAAA 2001:db8::53\n",
        "hints",
    )
    assert hints.addresses == {wire("a.example."): ("2001:db8::53",)}


@pytest.fixture
def delegations() -> Delegations:
    return Delegations(read_root_hints(FIXTURES / "root.hints"), max_zones=3)


def test_the_closest_known_zone_holds_the_name(delegations: Delegations) -> None:
    delegations.learn_zone(wire("com."), (wire("ns1.nic.com."),), 100, 0.0)
    delegations.learn_zone(wire("example.com."), (wire("ns1.example.com."),), 100, 0.0)
    assert delegations.closest(wire("www.example.com."), 1.0).name == wire("example.com.")
    assert delegations.closest(wire("other.com."), 1.0).name == wire("com.")
    assert delegations.closest(wire("example.org."), 1.0).name == b"\x00"
    assert delegations.closest(wire("example.com."), 1.0).name == wire("example.com.")


def test_an_expired_zone_falls_back_to_its_parent(delegations: Delegations) -> None:
    delegations.learn_zone(wire("com."), (wire("ns1.nic.com."),), 100, 0.0)
    delegations.learn_zone(wire("example.com."), (wire("ns1.example.com."),), 10, 0.0)
    assert delegations.closest(wire("www.example.com."), 10.5).name == wire("com.")


def test_the_least_recently_used_zone_goes_at_the_limit(delegations: Delegations) -> None:
    # max_zones=3: room for 12 RRsets (a zone's NS set, its servers' A and AAAA, answers).
    names = [f"z{n}." for n in range(13)]
    for name in names[:12]:
        delegations.learn_zone(wire(name), (wire("ns." + name),), 100, 0.0)
    assert delegations.closest(wire("x.z0."), 1.0).name == wire("z0.")  # used: kept
    delegations.learn_zone(wire(names[12]), (wire("ns.z12."),), 100, 0.0)
    assert delegations.closest(wire("x.z1."), 1.0).name == b"\x00"
    assert delegations.closest(wire("x.z0."), 1.0).name == wire("z0.")
    assert delegations.statistics() == (12, 0)
    assert delegations.rrsets.statistics().evicted == 1


def test_glue_never_replaces_an_address_from_an_answer(delegations: Delegations) -> None:
    ns = wire("ns.example.net.")
    delegations.learn_addresses(ns, ("127.0.0.9",), 300, 0.0, Rank.ANSWER_AA)
    delegations.learn_addresses(ns, ("192.0.2.66",), 300, 1.0, Rank.ADDITIONAL)
    assert delegations.addresses(ns, 2.0) == ("127.0.0.9",)
    # Once the answer's address expires, glue may take its place.
    delegations.learn_addresses(ns, ("127.0.0.10",), 300, 301.0, Rank.ADDITIONAL)
    assert delegations.addresses(ns, 302.0) == ("127.0.0.10",)


def test_an_address_learnt_in_one_zone_serves_every_zone(delegations: Delegations) -> None:
    ns = wire("ns.example.net.")
    delegations.learn_addresses(ns, ("127.0.0.9", "::9"), 300, 0.0, Rank.ADDITIONAL)
    delegations.learn_zone(wire("a.com."), (ns,), 300, 0.0)
    delegations.learn_zone(wire("b.org."), (ns,), 300, 0.0)
    for zone in ("x.a.com.", "x.b.org."):
        (server,) = delegations.closest(wire(zone), 1.0).servers
        assert delegations.addresses(server, 1.0) == ("127.0.0.9", "::9")


def test_the_childs_ns_set_outranks_the_parents_referral(delegations: Delegations) -> None:
    zone = wire("example.com.")
    delegations.learn_zone(zone, (wire("ns1.example.com."),), 86_400, 0.0, Rank.AUTHORITY)
    child = delegations.learn_zone(zone, (wire("ns2.example.com."),), 300, 1.0, Rank.AUTHORITY_AA)
    assert child.expires == 301.0
    again = delegations.learn_zone(zone, (wire("ns1.example.com."),), 86_400, 2.0)
    assert again == child  # the parent's referral does not replace it before it expires
    assert delegations.closest(wire("www.example.com."), 302.0).name == b"\x00"


def test_addresses_expire_and_the_hints_stay(delegations: Delegations) -> None:
    ns = wire("ns1.example.com.")
    assert delegations.addresses(ns, 0.0) is None
    delegations.learn_addresses(ns, ("127.0.0.4",), 60, 0.0)
    assert delegations.addresses(ns, 59.0) == ("127.0.0.4",)
    assert delegations.addresses(ns, 61.0) is None
    assert delegations.addresses(wire("a.root-servers.test."), 1e9) == ("127.0.0.2",)


def test_a_referral_to_the_root_does_not_replace_the_hints(delegations: Delegations) -> None:
    delegations.learn_zone(b"\x00", (wire("evil.example."),), 100, 0.0)
    assert delegations.closest(wire("com."), 1.0).servers == (wire("a.root-servers.test."),)


def test_server_times_prefer_the_fast_and_back_off_the_silent() -> None:
    times = ServerTimes()
    assert times.score("192.0.2.1", 0.0) == UNKNOWN_RTT
    times.succeeded("192.0.2.1", 0.010, 0.0)
    times.succeeded("192.0.2.1", 0.020, 1.0)
    assert times.estimate("192.0.2.1", 1.0) == pytest.approx(0.01125)  # 7/8 old (RFC 6298)
    assert times.timeout("192.0.2.1", 1.0, 1.0) == 0.3  # four times the RTT, at least 0.3 s
    times.failed("192.0.2.2", 1.0, 0.0)
    times.failed("192.0.2.2", 1.0, 0.0)
    assert times.score("192.0.2.2", 0.0) == 4.0
    assert times.timeout("192.0.2.3", 1.0, 0.0) == 1.0  # unknown: the ceiling
    assert times.estimate("192.0.2.1", 1.0 + 901) is None  # forgotten after 15 minutes


def test_a_referral_below_an_answer_that_the_cut_has_no_ns_is_still_followed(
    delegations: Delegations,
) -> None:
    zone = wire("example.com.")
    delegations.rrsets.put(zone, 2, (), 5, Rank.ANSWER, 0.0)  # a NODATA for NS, no SOA
    learnt = delegations.learn_zone(zone, (wire("ns1.example.com."),), 300, 1.0)
    assert learnt.servers == (wire("ns1.example.com."),)


def test_the_cuts_on_the_way_to_a_name_are_the_known_zones_deepest_first(
    delegations: Delegations,
) -> None:
    delegations.learn_zone(wire("com."), (wire("ns1.nic.com."),), 100, 0.0)
    delegations.learn_zone(wire("example.com."), (wire("ns1.example.com."),), 10, 0.0)
    cuts = delegations.cuts(wire("www.example.com."), 1.0)
    assert [cut.name for cut in cuts] == [wire("example.com."), wire("com.")]
    assert cuts[0].servers == (wire("ns1.example.com."),)
    # The root is left out; an expired cut is no longer on the way.
    assert [cut.name for cut in delegations.cuts(wire("www.example.com."), 20.0)] == [wire("com.")]
    assert delegations.cuts(wire("org."), 1.0) == []


def test_rrsets_live_in_the_cache_that_an_engine_made_by_a_reload_takes_over() -> None:
    from resolver.cache import Cache
    from resolver.config import ForwarderConfig, RecursionConfig
    from resolver.engine import Engine

    cache = Cache()
    recursion = RecursionConfig(root_hints=FIXTURES / "root.hints")
    first = Engine(ForwarderConfig(), cache=cache, recursion=recursion)
    second = Engine(ForwarderConfig(), cache=cache, recursion=recursion)
    assert first.delegations is not None
    assert second.delegations is not None
    assert first.delegations.rrsets is cache.rrsets is second.delegations.rrsets
    without = Engine(ForwarderConfig(), recursion=recursion)  # no cache: a store of its own
    assert without.delegations is not None
    assert without.delegations.rrsets is not cache.rrsets
