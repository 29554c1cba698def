"""The response policy without sockets: each list format, each RPZ trigger and action, the
precedence rules, client groups, answer checks (CNAME chains, response IPs), loading and
reloading files."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from resolver.config import ListConfig, PolicyConfig, RpzConfig
from resolver.engine.policy import (
    BELOW,
    EDE_BLOCKED,
    EDE_CENSORED,
    EDE_FILTERED,
    ITSELF,
    Client,
    Hit,
    NameServers,
    Policy,
    ServerPath,
    respond,
    splice,
)
from resolver.errors import ConfigError
from resolver.policy import PolicyLoader
from resolver.policy.lists import read_list
from resolver.policy.rpz import read_rpz
from resolver.wire.message import name_to_wire
from resolver.wire.records import Record, build_reply, read_message

A, CNAME, TXT, AAAA = 1, 5, 16, 28
LOCAL_CLIENT = Client("127.0.0.1", False)

RPZ_HEAD = """$ORIGIN rpz.test.
$TTL 300
@ SOA localhost. root.localhost. 1 3600 600 86400 60
  NS localhost.
"""


def wire(name: str) -> bytes:
    return name_to_wire(name if name.endswith(".") else name + ".").lower()


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def policy_of(
    tmp_path: Path,
    *,
    zones: tuple[str, ...] = (),
    lists: tuple[tuple[str, str], ...] = (),
    **settings: object,
) -> Policy:
    """A Policy of RPZ zone texts and (format, text) lists, in order."""
    rpz = tuple(
        RpzConfig(file=write(tmp_path, f"z{index}.rpz", RPZ_HEAD + text), name=f"z{index}")
        for index, text in enumerate(zones)
    )
    blocklists = tuple(
        ListConfig(file=write(tmp_path, f"l{index}.txt", text), format=fmt, name=f"l{index}")
        for index, (fmt, text) in enumerate(lists)
    )
    policy, _report = PolicyLoader().load(PolicyConfig(rpz=rpz, lists=blocklists, **settings))  # type: ignore[arg-type]
    assert policy is not None
    return policy


def before(policy: Policy, name: str, client: Client | None = LOCAL_CLIENT) -> Hit | None:
    return policy.before(wire(name), client)


def answer(name: str, *records: tuple[str, int, bytes], qtype: int = A) -> bytes:
    """An upstream's answer to ``name`` holding ``records`` (owner, type, rdata)."""
    return build_reply(
        wire(name),
        qtype,
        1,
        0,
        [Record(wire(owner), rtype, 1, 300, rdata) for owner, rtype, rdata in records],
    )


def ipv4(text: str) -> bytes:
    return bytes(int(part) for part in text.split("."))


# ----------------------------------------------------------------- list formats


def test_hosts_lines_block_the_name_only_and_skip_the_preamble(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "hosts",
        "# a header\n127.0.0.1 localhost\n127.0.0.1 localhost.localdomain\n"
        "255.255.255.255 broadcasthost\n::1 ip6-localhost ip6-loopback\nfe00::0 ip6-localnet\n"
        "0.0.0.0 0.0.0.0\n0.0.0.0 ads.example.com tracker.example.com # two names\n"
        "0.0.0.0 Upper.Example.COM\n",
    )
    content = read_list(path, "hosts")
    assert content.names == dict.fromkeys(
        (b"ads.example.com", b"tracker.example.com", b"upper.example.com"), ITSELF
    )
    assert content.bad == 0
    policy = policy_of(tmp_path, lists=(("hosts", path.read_text()),))
    assert before(policy, "ads.example.com") is not None
    assert before(policy, "www.ads.example.com") is None
    assert before(policy, "localhost") is None


def test_bad_lines_are_counted_and_named_by_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts", "0.0.0.0 good.example\nnot-an-address\n0.0.0.0 bad..name\n")
    content = read_list(path, "hosts")
    assert content.names == {b"good.example": ITSELF}
    assert content.bad == 2
    assert content.bad_lines[0].startswith(f"{path}:2: ")
    assert content.bad_lines[1].startswith(f"{path}:3: ")


def test_windows_line_ends_and_a_byte_order_mark_are_read(tmp_path: Path) -> None:
    path = tmp_path / "crlf"
    path.write_bytes(b"\xef\xbb\xbfads.example\r\n*.below.example\r\n")
    content = read_list(path, "domains")
    assert content.bad == 0
    assert content.names == {b"ads.example": ITSELF | BELOW, b"below.example": BELOW}


def test_many_bad_lines_name_only_the_first_few(tmp_path: Path) -> None:
    path = write(tmp_path, "domains", "".join(f"bad name {n}\n" for n in range(50)))
    content = read_list(path, "domains")
    assert content.bad == 50
    assert len(content.bad_lines) == 5


@pytest.mark.parametrize(
    ("name", "blocked"),
    [
        ("ads.example.com", True),
        ("www.ads.example.com", True),
        ("a.b.ads.example.com", True),
        ("example.com", False),
        ("bads.example.com", False),
        ("below.example.net", False),
        ("x.below.example.net", True),
    ],
    ids=[
        "name",
        "subdomain",
        "deep-subdomain",
        "parent",
        "similar-suffix",
        "star-apex",
        "star-below",
    ],
)
def test_a_domain_list_blocks_names_and_their_subdomains(
    tmp_path: Path, name: str, blocked: bool
) -> None:
    policy = policy_of(tmp_path, lists=(("domains", "ads.example.com\n*.below.example.net\n"),))
    assert (before(policy, name) is not None) is blocked


@pytest.mark.parametrize(
    ("name", "blocked"),
    [
        ("ads.example.org", True),
        ("www.ads.example.org", True),
        ("ok.ads.example.org", False),
        ("x.ok.ads.example.org", False),
        ("plain.example.org", True),
        ("cosmetic.example", False),
        ("modifier.example", False),
        ("path.example", False),
    ],
    ids=[
        "rule",
        "subdomain",
        "exception",
        "below-exception",
        "plain-line",
        "cosmetic",
        "modifier",
        "path",
    ],
)
def test_adblock_rules_block_subdomains_and_exceptions_win(
    tmp_path: Path, name: str, blocked: bool
) -> None:
    rules = (
        "[Adblock Plus 2.0]\n! comment\n||ads.example.org^\n@@||ok.ads.example.org^\n"
        "plain.example.org\ncosmetic.example##.banner\n||modifier.example^$third-party\n"
        "||path.example/ads.js\n/ads[0-9]+/\n||wild*.example^\n"
    )
    policy = policy_of(tmp_path, lists=(("adblock", rules),))
    assert (before(policy, name) is not None) is blocked


def test_adblock_rules_not_about_names_are_counted_as_skipped(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "ab",
        "||a.example^\nx.example##.ad\n||b.example^$important\n/re/\n||c*.example^\n",
    )
    content = read_list(path, "adblock")
    assert content.skipped == 4
    assert content.bad == 0


def test_an_exception_in_one_list_wins_over_a_block_in_another(tmp_path: Path) -> None:
    policy = policy_of(
        tmp_path,
        lists=(("domains", "example.com\n"), ("adblock", "@@||www.example.com^\n")),
    )
    assert before(policy, "ads.example.com") is not None
    assert before(policy, "www.example.com") is None
    assert before(policy, "img.www.example.com") is None


def test_an_allowlist_wins_over_every_list(tmp_path: Path) -> None:
    block = write(tmp_path, "block", "example.com\n")
    allow = write(tmp_path, "allow", "good.example.com\n")
    config = PolicyConfig(
        lists=(
            ListConfig(file=block, format="domains"),
            ListConfig(file=allow, format="domains", allow=True),
        )
    )
    policy, _ = PolicyLoader().load(config)
    assert policy is not None
    assert before(policy, "bad.example.com") is not None
    assert before(policy, "good.example.com") is None


@pytest.mark.parametrize(
    ("action", "qtype", "rcode", "answers"),
    [
        ("nxdomain", A, 3, []),
        ("nodata", A, 0, []),
        ("null", A, 0, [bytes(4)]),
        ("null", AAAA, 0, [bytes(16)]),
        ("null", TXT, 0, []),
        ("refused", A, 5, []),
    ],
    ids=["nxdomain", "nodata", "null-a", "null-aaaa", "null-other", "refused"],
)
def test_each_list_action_answers_as_named(
    tmp_path: Path, action: str, qtype: int, rcode: int, answers: list[bytes]
) -> None:
    path = write(tmp_path, "l", "ads.example.com\n")
    policy, _ = PolicyLoader().load(
        PolicyConfig(lists=(ListConfig(file=path, format="domains", action=action),), ttl=42)  # type: ignore[arg-type]
    )
    assert policy is not None
    hit = before(policy, "ads.example.com")
    assert hit is not None
    assert hit.ede == EDE_BLOCKED
    assert hit.kind == "list"
    response = respond(hit, name_to_wire("Ads.Example.com."), qtype, LOCAL_CLIENT)
    assert response.reply is not None
    message = read_message(response.reply)
    assert message.rcode == rcode
    assert [record.rdata for record in message.answer] == answers
    assert all(record.ttl == 42 for record in message.answer)
    assert message.question is not None
    assert message.question.name == b"\x03Ads\x07Example\x03com\x00"


def test_censored_lists_carry_ede_16(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, lists=(("domains", "ads.example.com\n"),), censored=True)
    hit = before(policy, "ads.example.com")
    assert hit is not None
    assert hit.ede == EDE_CENSORED


# ----------------------------------------------------------------- RPZ triggers and actions

ZONE = """
nx.example.com CNAME .
nodata.example.com CNAME *.
pass.example.com CNAME rpz-passthru.
self.example.com CNAME self.example.com.
drop.example.com CNAME rpz-drop.
tcp.example.com CNAME rpz-tcp-only.
local.example.com A 192.0.2.1
local.example.com A 192.0.2.2
local.example.com TXT "hello"
rewrite.example.com CNAME target.example.net.
*.wild.example.com CNAME .
exact.wild.example.com A 192.0.2.9
*.garden.example.com CNAME *.walled.example.net.
32.1.2.0.192.rpz-ip CNAME .
24.0.3.0.192.rpz-ip A 192.0.2.77
128.1.zz.db8.2001.rpz-ip CNAME *.
32.10.0.0.10.rpz-client-ip CNAME rpz-drop.
"""


def test_an_rpz_zone_reads_every_trigger_and_counts_bad_ones(tmp_path: Path) -> None:
    zone = read_rpz(write(tmp_path, "rpz.zone", RPZ_HEAD + ZONE + "1.2.3.rpz-nsip CNAME .\n"))
    assert len(zone.names) == 9
    assert set(zone.wildcards) == {b"wild.example.com", b"garden.example.com"}
    assert [str(network) for network, _ in zone.ips] == [
        "192.0.2.1/32",
        "192.0.3.0/24",
        "2001:db8::1/128",
    ]
    assert [str(network) for network, _ in zone.client_ips] == ["10.0.0.10/32"]
    assert zone.bad == 1
    assert "1.2.3.rpz-nsip is not an address trigger" in zone.bad_lines[0]
    assert zone.bad_lines[0].startswith(f"{tmp_path / 'rpz.zone'}:")


def test_an_rpz_zone_without_origin_takes_its_file_name(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "blocked.rpz.zone",
        "@ 300 SOA localhost. root.localhost. 1 3600 600 86400 60\nbad.example 300 CNAME .\n",
    )
    zone = read_rpz(path)
    assert zone.apex == "blocked.rpz."
    assert set(zone.names) == {b"bad.example"}


def test_an_rpz_file_that_is_no_master_file_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "broken.zone", RPZ_HEAD + "ok.example CNAME .\nbad.example BOGUS x\n")
    with pytest.raises(ConfigError, match=r"broken.zone:6"):
        read_rpz(path)


@pytest.mark.parametrize(
    ("name", "qtype", "rcode", "answers"),
    [
        ("nx.example.com", A, 3, []),
        ("nodata.example.com", A, 0, []),
        ("local.example.com", A, 0, [ipv4("192.0.2.1"), ipv4("192.0.2.2")]),
        ("local.example.com", TXT, 0, [b"\x05hello"]),
        ("local.example.com", AAAA, 0, []),
        ("x.wild.example.com", A, 3, []),
        ("a.b.wild.example.com", A, 3, []),
        ("exact.wild.example.com", A, 0, [ipv4("192.0.2.9")]),
    ],
    ids=[
        "nxdomain",
        "nodata",
        "local-a",
        "local-txt",
        "local-missing-type",
        "wildcard",
        "deep-wildcard",
        "exact-beats-wildcard",
    ],
)
def test_each_rpz_action_answers_as_the_draft_says(
    tmp_path: Path, name: str, qtype: int, rcode: int, answers: list[bytes]
) -> None:
    policy = policy_of(tmp_path, zones=(ZONE,))
    hit = before(policy, name)
    assert hit is not None
    assert hit.kind == "rpz"
    assert hit.ede == EDE_FILTERED
    response = respond(hit, wire(name), qtype, LOCAL_CLIENT)
    assert response.reply is not None
    assert response.follow is None
    message = read_message(response.reply)
    assert message.rcode == rcode
    assert [record.rdata for record in message.answer] == answers


def test_the_wildcard_does_not_match_its_own_apex(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, zones=(ZONE,))
    assert before(policy, "wild.example.com") is None


@pytest.mark.parametrize(
    "name", ["pass.example.com", "self.example.com"], ids=["passthru", "old-style"]
)
def test_passthru_lets_the_answer_through(tmp_path: Path, name: str) -> None:
    policy = policy_of(tmp_path, zones=(ZONE,), lists=(("domains", "example.com\n"),))
    hit = before(policy, name)
    assert hit is not None
    assert hit.rule.action == "passthru"
    assert respond(hit, wire(name), A, LOCAL_CLIENT).passthru


def test_drop_sends_nothing(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, zones=(ZONE,))
    hit = before(policy, "drop.example.com")
    assert hit is not None
    response = respond(hit, wire("drop.example.com"), A, LOCAL_CLIENT)
    assert response.drop
    assert response.reply is None


def test_tcp_only_truncates_over_udp_and_passes_over_tcp(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, zones=(ZONE,))
    hit = before(policy, "tcp.example.com")
    assert hit is not None
    udp = respond(hit, wire("tcp.example.com"), A, Client("127.0.0.1", False))
    assert udp.reply is not None
    assert udp.reply[2] & 0x02
    assert read_message(udp.reply).answer == ()
    assert respond(hit, wire("tcp.example.com"), A, Client("127.0.0.1", True)).passthru


def test_a_cname_rewrite_answers_the_cname_and_follows_it(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, zones=(ZONE,))
    hit = before(policy, "rewrite.example.com")
    assert hit is not None
    response = respond(hit, wire("rewrite.example.com"), A, LOCAL_CLIENT)
    assert response.follow == wire("target.example.net")
    assert response.reply is not None
    target = answer("target.example.net", ("target.example.net", A, ipv4("192.0.2.5")))
    whole = read_message(splice(response.reply, target))
    assert [(r.name, r.rtype, r.rdata) for r in whole.answer] == [
        (wire("rewrite.example.com"), CNAME, wire("target.example.net")),
        (wire("target.example.net"), A, ipv4("192.0.2.5")),
    ]


def test_a_wildcard_cname_rewrite_puts_the_name_in_place_of_the_star(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, zones=(ZONE,))
    hit = before(policy, "x.garden.example.com")
    assert hit is not None
    response = respond(hit, wire("x.garden.example.com"), A, LOCAL_CLIENT)
    assert response.follow == wire("x.garden.example.com.walled.example.net")


def test_a_client_ip_trigger_matches_the_client_only(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, zones=(ZONE,))
    hit = before(policy, "anything.example", Client("10.0.0.10", False))
    assert hit is not None
    assert hit.rule.action == "drop"
    assert before(policy, "anything.example", Client("10.0.0.11", False)) is None
    assert before(policy, "anything.example", Client("::ffff:10.0.0.10", False)) is not None
    assert not policy_of(tmp_path, lists=(("domains", "x.example\n"),)).client_dependent
    assert policy.client_dependent


@pytest.mark.parametrize(
    ("override", "action"),
    [("given", "nxdomain"), ("nodata", "nodata"), ("passthru", "passthru"), ("drop", "drop")],
    ids=["given", "nodata", "passthru", "drop"],
)
def test_a_zone_action_override_replaces_every_rule(
    tmp_path: Path, override: str, action: str
) -> None:
    path = write(tmp_path, "o.rpz", RPZ_HEAD + ZONE)
    policy, _ = PolicyLoader().load(PolicyConfig(rpz=(RpzConfig(file=path, action=override),)))
    assert policy is not None
    hit = before(policy, "nx.example.com")
    assert hit is not None
    assert hit.rule.action == action


def test_a_cname_override_rewrites_every_rule(tmp_path: Path) -> None:
    path = write(tmp_path, "o.rpz", RPZ_HEAD + ZONE)
    config = PolicyConfig(rpz=(RpzConfig(file=path, action="cname walled.example.net"),))
    policy, _ = PolicyLoader().load(config)
    assert policy is not None
    hit = before(policy, "local.example.com")
    assert hit is not None
    assert respond(hit, wire("local.example.com"), A, LOCAL_CLIENT).follow == wire(
        "walled.example.net"
    )


# ----------------------------------------------------------------- precedence


def test_zones_apply_in_order(tmp_path: Path) -> None:
    policy = policy_of(
        tmp_path,
        zones=("x.example CNAME rpz-passthru.\n", "x.example CNAME .\ny.example CNAME .\n"),
    )
    first = before(policy, "x.example")
    assert first is not None
    assert first.rule.action == "passthru"
    assert first.source == "z0"
    second = before(policy, "y.example")
    assert second is not None
    assert second.source == "z1"


def test_a_zone_decides_before_the_lists(tmp_path: Path) -> None:
    policy = policy_of(
        tmp_path, zones=("x.example CNAME rpz-passthru.\n",), lists=(("domains", "x.example\n"),)
    )
    hit = before(policy, "x.example")
    assert hit is not None
    assert hit.rule.action == "passthru"


def test_the_first_list_that_blocks_decides(tmp_path: Path) -> None:
    policy = policy_of(
        tmp_path, lists=(("domains", "x.example\n"), ("hosts", "0.0.0.0 x.example\n"))
    )
    hit = before(policy, "x.example")
    assert hit is not None
    assert hit.source == "l0"


def test_client_ip_triggers_come_before_qname_triggers_in_a_zone(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, zones=(ZONE,))
    hit = before(policy, "nx.example.com", Client("10.0.0.10", False))
    assert hit is not None
    assert hit.rule.action == "drop"


def test_a_qname_trigger_wins_over_a_response_ip_trigger(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, zones=(ZONE,))
    assert before(policy, "local.example.com") is not None  # decided before any answer


# ----------------------------------------------------------------- answers


def test_a_response_ip_trigger_matches_addresses_in_the_answer(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, zones=(ZONE,))
    blocked = answer("x.example", ("x.example", A, ipv4("192.0.2.1")))
    hit = policy.after(blocked, wire("x.example"), LOCAL_CLIENT)
    assert hit is not None
    assert hit.rule.action == "nxdomain"
    in_network = answer("y.example", ("y.example", A, ipv4("192.0.3.200")))
    local = policy.after(in_network, wire("y.example"), LOCAL_CLIENT)
    assert local is not None
    assert local.rule.records == ((A, 300, ipv4("192.0.2.77")),)
    v6 = answer(
        "z.example", ("z.example", AAAA, bytes.fromhex("20010db8" + "0" * 20 + "0001")), qtype=AAAA
    )
    assert policy.after(v6, wire("z.example"), LOCAL_CLIENT) is not None
    fine = answer("w.example", ("w.example", A, ipv4("192.0.2.2")))
    assert policy.after(fine, wire("w.example"), LOCAL_CLIENT) is None


def test_the_longest_response_ip_network_wins(tmp_path: Path) -> None:
    policy = policy_of(
        tmp_path, zones=("8.0.0.0.10.rpz-ip CNAME .\n32.1.0.0.10.rpz-ip CNAME *.\n",)
    )
    hit = policy.after(
        answer("x.example", ("x.example", A, ipv4("10.0.0.1"))), wire("x.example"), None
    )
    assert hit is not None
    assert hit.rule.action == "nodata"
    hit = policy.after(
        answer("x.example", ("x.example", A, ipv4("10.9.0.1"))), wire("x.example"), None
    )
    assert hit is not None
    assert hit.rule.action == "nxdomain"


def test_a_cname_chain_through_a_listed_name_is_blocked(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, lists=(("domains", "tracker.example\n"),))
    chain = answer(
        "www.shop.example",
        ("www.shop.example", CNAME, wire("cdn.tracker.example")),
        ("cdn.tracker.example", A, ipv4("192.0.2.3")),
    )
    hit = policy.after(chain, wire("www.shop.example"), LOCAL_CLIENT)
    assert hit is not None
    assert hit.source == "l0"
    assert hit.name == wire("cdn.tracker.example")
    response = respond(hit, wire("www.shop.example"), A, LOCAL_CLIENT)
    assert response.reply is not None
    assert read_message(response.reply).rcode == 3
    assert read_message(response.reply).answer == ()  # the question blocked as a whole


def test_a_null_list_answers_a_blocked_chain_with_the_questions_own_name(tmp_path: Path) -> None:
    path = write(tmp_path, "l", "tracker.example\n")
    policy, _ = PolicyLoader().load(
        PolicyConfig(lists=(ListConfig(file=path, format="domains", action="null"),))
    )
    assert policy is not None
    chain = answer(
        "www.shop.example",
        ("www.shop.example", CNAME, wire("cdn.tracker.example")),
        ("cdn.tracker.example", A, ipv4("192.0.2.3")),
    )
    hit = policy.after(chain, wire("www.shop.example"), LOCAL_CLIENT)
    assert hit is not None
    response = respond(hit, wire("www.shop.example"), A, LOCAL_CLIENT)
    assert response.reply is not None
    records = read_message(response.reply).answer
    assert [(r.name, r.rtype, r.rdata) for r in records] == [
        (wire("www.shop.example"), A, bytes(4))
    ]


def test_a_cname_chain_is_checked_link_by_link(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, zones=("b.example CNAME *.\nc.example CNAME .\n",))
    chain = answer(
        "a.example",
        ("a.example", CNAME, wire("b.example")),
        ("b.example", CNAME, wire("c.example")),
        ("c.example", A, ipv4("192.0.2.3")),
    )
    hit = policy.after(chain, wire("a.example"), LOCAL_CLIENT)
    assert hit is not None
    assert hit.name == wire("b.example")
    assert hit.rule.action == "nodata"
    response = respond(hit, wire("a.example"), A, LOCAL_CLIENT)
    assert response.reply is not None
    message = read_message(response.reply)
    assert message.rcode == 0
    assert [(r.name, r.rdata) for r in message.answer] == [(wire("a.example"), wire("b.example"))]


def test_an_answer_without_chain_or_addresses_costs_no_check(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, lists=(("domains", "x.example\n"),))
    reply = answer("a.example", ("a.example", TXT, b"\x02hi"), qtype=TXT)
    assert policy.after(reply, wire("a.example"), LOCAL_CLIENT) is None
    empty = struct.pack("!6H", 0, 0x8180, 1, 0, 0, 0) + wire("a.example") + b"\x00\x01\x00\x01"
    assert policy.after(empty, wire("a.example"), LOCAL_CLIENT) is None


# ----------------------------------------------------------------- name server triggers

NS_ZONE = """
ns1.bad-dns.example.rpz-nsdname CNAME .
*.evil-dns.example.rpz-nsdname CNAME *.
ok.evil-dns.example.rpz-nsdname CNAME rpz-passthru.
32.53.2.0.192.rpz-nsip A 192.0.2.99
24.0.113.51.198.rpz-nsip CNAME rpz-drop.
"""


def path_of(cuts: dict[str, tuple[tuple[str, ...], tuple[str, ...]]]) -> ServerPath:
    """A ``ServerPath`` over the zone cuts ``cuts`` (zone: (name servers, addresses)), as
    the recursive driver hands it: the cuts holding a name, the deepest first."""
    known = [
        NameServers(wire(zone), tuple(wire(server) for server in servers), addresses)
        for zone, (servers, addresses) in cuts.items()
    ]

    def path(name: bytes) -> list[NameServers]:
        held = [cut for cut in known if name.endswith(cut.zone)]  # labels' lengths align it
        return sorted(held, key=lambda cut: -len(cut.zone))

    return path


def nxdomain(name: str) -> bytes:
    return build_reply(wire(name), A, 1, 3, [])


def test_an_rpz_zone_reads_name_server_triggers(tmp_path: Path) -> None:
    zone = read_rpz(write(tmp_path, "rpz.zone", RPZ_HEAD + NS_ZONE))
    assert set(zone.nsdnames) == {b"ns1.bad-dns.example", b"ok.evil-dns.example"}
    assert set(zone.nsdname_wildcards) == {b"evil-dns.example"}
    assert [str(network) for network, _ in zone.nsips] == ["192.0.2.53/32", "198.51.113.0/24"]
    assert zone.bad == 0
    assert zone.rules() == 5


@pytest.mark.parametrize(
    ("servers", "addresses", "action"),
    [
        (("ns1.bad-dns.example",), (), "nxdomain"),
        (("a.evil-dns.example",), (), "nodata"),
        (("x.y.evil-dns.example",), (), "nodata"),
        (("ok.evil-dns.example",), (), "passthru"),
        (("ns.fine.example",), ("192.0.2.53",), "local"),
        (("ns.fine.example",), ("198.51.113.7", "192.0.2.1"), "drop"),
        (("ns.fine.example", "evil-dns.example"), ("192.0.2.1",), None),
    ],
    ids=["nsdname", "wildcard", "deep-wildcard", "passthru", "nsip", "nsip-network", "none"],
)
def test_a_name_server_of_the_answers_zone_triggers(
    tmp_path: Path, servers: tuple[str, ...], addresses: tuple[str, ...], action: str | None
) -> None:
    policy = policy_of(tmp_path, zones=(NS_ZONE,))
    assert policy.servers_checked
    path = path_of({"shop.example": (servers, addresses)})
    reply = answer("www.shop.example", ("www.shop.example", A, ipv4("192.0.2.1")))
    hit = policy.after(reply, wire("www.shop.example"), LOCAL_CLIENT, path)
    assert (None if hit is None else hit.rule.action) == action
    if hit is not None:
        assert hit.name == wire("www.shop.example")
        assert hit.source == "z0"


def test_name_server_triggers_apply_to_negative_answers_too(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, zones=(NS_ZONE,))
    path = path_of({"shop.example": (("ns1.bad-dns.example",), ())})
    hit = policy.after(nxdomain("gone.shop.example"), wire("gone.shop.example"), None, path)
    assert hit is not None
    assert hit.rule.action == "nxdomain"


def test_a_zone_above_the_answers_zone_triggers(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, zones=(NS_ZONE,))
    path = path_of(
        {
            "example": (("ns1.bad-dns.example",), ()),
            "shop.example": (("ns.fine.example",), ("192.0.2.1",)),
        }
    )
    hit = policy.after(nxdomain("www.shop.example"), wire("www.shop.example"), None, path)
    assert hit is not None
    assert hit.rule.text == "ns1.bad-dns.example.rpz-nsdname CNAME ."


def test_the_zone_of_a_cname_target_triggers(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, zones=(NS_ZONE,))
    path = path_of(
        {
            "shop.example": (("ns.fine.example",), ()),
            "cdn.example": (("ns1.bad-dns.example",), ()),
        }
    )
    chain = answer(
        "www.shop.example",
        ("www.shop.example", CNAME, wire("edge.cdn.example")),
        ("edge.cdn.example", A, ipv4("192.0.2.3")),
    )
    hit = policy.after(chain, wire("www.shop.example"), None, path)
    assert hit is not None
    assert hit.rule.action == "nxdomain"
    alone = answer("www.shop.example", ("www.shop.example", A, ipv4("192.0.2.3")))
    assert policy.after(alone, wire("www.shop.example"), None, path) is None


def test_name_server_triggers_never_match_without_a_path(tmp_path: Path) -> None:
    """Forwarding mode: the upstream followed the delegations, the resolver knows none."""
    policy = policy_of(tmp_path, zones=(NS_ZONE,))
    reply = answer("www.shop.example", ("www.shop.example", A, ipv4("192.0.2.1")))
    assert policy.after(reply, wire("www.shop.example"), LOCAL_CLIENT) is None
    assert policy.after(nxdomain("x.shop.example"), wire("x.shop.example"), None) is None


NSDNAME_DROP = "ns.bad.example.rpz-nsdname CNAME rpz-drop.\n"
NSIP_TCP = "32.53.2.0.192.rpz-nsip CNAME rpz-tcp-only.\n"


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        (
            "b.example CNAME *.\n32.1.2.0.192.rpz-ip CNAME .\n" + NSDNAME_DROP + NSIP_TCP,
            "nodata",
        ),
        (
            "32.1.2.0.192.rpz-ip CNAME .\n" + NSDNAME_DROP + NSIP_TCP,
            "nxdomain",
        ),
        (
            NSDNAME_DROP + NSIP_TCP,
            "drop",
        ),
        (NSIP_TCP, "tcp-only"),
    ],
    ids=["qname-first", "then-ip", "then-nsdname", "then-nsip"],
)
def test_within_a_zone_qname_then_ip_then_nsdname_then_nsip(
    tmp_path: Path, rules: str, expected: str
) -> None:
    policy = policy_of(tmp_path, zones=(rules,))
    path = path_of({"example": (("ns.bad.example",), ("192.0.2.53",))})
    chain = answer(
        "a.example",
        ("a.example", CNAME, wire("b.example")),
        ("b.example", A, ipv4("192.0.2.1")),
    )
    hit = policy.after(chain, wire("a.example"), None, path)
    assert hit is not None
    assert hit.rule.action == expected


def test_an_earlier_zones_name_server_trigger_wins_over_a_later_zones_answer_triggers(
    tmp_path: Path,
) -> None:
    policy = policy_of(
        tmp_path,
        zones=(
            "ns.bad.example.rpz-nsdname CNAME rpz-drop.\n",
            "b.example CNAME *.\n32.1.2.0.192.rpz-ip CNAME .\n",
        ),
    )
    path = path_of({"example": (("ns.bad.example",), ())})
    chain = answer(
        "a.example",
        ("a.example", CNAME, wire("b.example")),
        ("b.example", A, ipv4("192.0.2.1")),
    )
    hit = policy.after(chain, wire("a.example"), None, path)
    assert hit is not None
    assert (hit.source, hit.rule.action) == ("z0", "drop")
    assert policy.after(chain, wire("a.example"), None) is not None  # z1 without a path


# ----------------------------------------------------------------- client groups


def test_a_list_for_some_clients_applies_to_them_only(tmp_path: Path) -> None:
    path = write(tmp_path, "kids", "games.example\n")
    config = PolicyConfig(
        lists=(ListConfig(file=path, format="domains", clients=("10.0.0.0/24", "fd00::/8")),)
    )
    policy, _ = PolicyLoader().load(config)
    assert policy is not None
    assert policy.client_dependent
    assert before(policy, "games.example", Client("10.0.0.7", False)) is not None
    assert before(policy, "games.example", Client("fd00::7", True)) is not None
    assert before(policy, "games.example", Client("10.0.1.7", False)) is None
    assert before(policy, "games.example", None) is None


def test_a_zone_for_some_clients_applies_to_them_only(tmp_path: Path) -> None:
    path = write(tmp_path, "z.rpz", RPZ_HEAD + "x.example CNAME .\n")
    config = PolicyConfig(rpz=(RpzConfig(file=path, clients=("192.168.1.0/24",)),))
    policy, _ = PolicyLoader().load(config)
    assert policy is not None
    assert before(policy, "x.example", Client("192.168.1.9", False)) is not None
    assert before(policy, "x.example", Client("192.168.2.9", False)) is None


# ----------------------------------------------------------------- loading


def test_a_loader_reads_only_changed_files_and_tells_a_change(tmp_path: Path) -> None:
    one = write(tmp_path, "one", "a.example\n")
    two = write(tmp_path, "two", "b.example\n")
    config = PolicyConfig(
        lists=(ListConfig(file=one, format="domains"), ListConfig(file=two, format="domains"))
    )
    loader = PolicyLoader()
    first, report = loader.load(config)
    assert len(report.lines) == 2
    assert not loader.changed(config)
    two.write_text("c.example\n")
    stat = two.stat()
    os.utime(two, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert loader.changed(config)
    second, report = loader.load(config)
    assert [line.split(":")[0] for line in report.lines] == [str(two)]
    assert second is not None
    assert first is not None
    assert before(second, "c.example") is not None
    assert before(second, "b.example") is None
    assert before(first, "b.example") is not None  # the running policy is untouched


def test_a_missing_file_names_its_field(tmp_path: Path) -> None:
    config = PolicyConfig(
        lists=(ListConfig(file=tmp_path / "nothere", format="hosts"),),
    )
    with pytest.raises(ConfigError, match=r"policy\.lists\[0\]\.file: .*nothere"):
        PolicyLoader().load(config)


def test_no_lists_and_no_zones_make_no_policy() -> None:
    assert PolicyLoader().load(PolicyConfig())[0] is None


def test_the_path_for_any_client_decides_as_the_path_that_reads_the_client(
    tmp_path: Path,
) -> None:
    zone = "*.wild.example CNAME .\nexact.wild.example CNAME *.\nx.example A 192.0.2.1\n"
    lists = (("adblock", "||ads.example^\n@@||ok.ads.example^\n"), ("hosts", "0.0.0.0 h.example\n"))
    (tmp_path / "a").mkdir()
    anyone = policy_of(tmp_path / "a", zones=(zone,), lists=lists)
    (tmp_path / "b").mkdir()
    scoped_path = write(tmp_path / "b", "scoped", "unrelated.example\n")
    rpz = RpzConfig(file=write(tmp_path / "b", "z.rpz", RPZ_HEAD + zone))
    blocklists = tuple(
        ListConfig(file=write(tmp_path / "b", f"l{i}", text), format=fmt)  # type: ignore[arg-type]
        for i, (fmt, text) in enumerate(lists)
    )
    scoped = ListConfig(file=scoped_path, format="domains", clients=("10.9.9.0/24",))
    reading, _ = PolicyLoader().load(PolicyConfig(rpz=(rpz,), lists=(*blocklists, scoped)))
    assert reading is not None
    assert not anyone.client_dependent
    assert reading.client_dependent
    for name in (
        "a.wild.example", "b.a.wild.example", "wild.example", "exact.wild.example",
        "x.example", "y.x.example", "ads.example", "s.ads.example", "ok.ads.example",
        "h.example", "s.h.example", "other.example",
    ):  # fmt: skip
        one, other = before(anyone, name), before(reading, name)
        assert (one is None) == (other is None), name
        if one is not None and other is not None:
            assert (one.rule.action, one.rule.text) == (other.rule.action, other.rule.text), name
