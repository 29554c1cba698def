"""Zone-file parsing and the authoritative answering logic, without sockets."""

from __future__ import annotations

import functools
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resolver.authority import EDNS_UDP_SIZE, Responder, Zone, load_zone, name_key, parse_zone
from resolver.errors import ConfigError
from resolver.wire import (
    CLASS,
    EDNS0,
    FORMERR,
    NOERROR,
    NOTIMP,
    NXDOMAIN,
    QTYPE,
    REFUSED,
    DNSQuestion,
    DNSRecord,
    read_header,
)

ZONES_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "zones"


@functools.cache
def zones() -> dict[str, Zone]:
    loaded = [load_zone(path) for path in sorted(ZONES_DIR.glob("*.zone"))]
    return {zone.origin: zone for zone in loaded}


def responder(*origins: str) -> Responder:
    """A responder for the named fixture zones, or for all of them."""
    return Responder([zones()[o] for o in origins] if origins else zones().values())


def query(
    name: str,
    qtype: str = "A",
    *,
    edns: int | None = None,
    version: int = 0,
    qclass: str = "IN",
    qid: int = 4242,
) -> bytes:
    message = DNSRecord.question(name, qtype, qclass)
    message.header.id = qid
    if edns is not None:
        message.add_ar(EDNS0(udp_len=edns, version=version))
    return bytes(message.pack())


def ask(
    name: str,
    qtype: str = "A",
    *,
    served: tuple[str, ...] = (),
    max_udp: int | None = None,
    **kwargs: Any,
) -> Any:
    reply = responder(*served).answer(query(name, qtype, **kwargs), max_udp=max_udp)
    assert reply is not None
    return DNSRecord.parse(reply)


def records(section: list[Any], rtype: str | None = None) -> list[tuple[str, str, int, str]]:
    """(owner, type, ttl, rdata) for each record, OPT left out."""
    return [
        (str(rr.rname), QTYPE.get(rr.rtype), rr.ttl, str(rr.rdata))
        for rr in section
        if rr.rtype != QTYPE.OPT and (rtype is None or QTYPE.get(rr.rtype) == rtype)
    ]


def opt(reply: Any) -> Any | None:
    found = [rr for rr in reply.ar if rr.rtype == QTYPE.OPT]
    return found[0] if found else None


# --- loading -----------------------------------------------------------------------------


def test_every_fixture_zone_loads_with_its_origin() -> None:
    assert set(zones()) == {
        ".",
        "com.",
        "test.",
        "example.com.",
        "sub.example.com.",
        "example.test.",
        "wild.test.",
        "half.test.",
        "oob.com.",
        "sib.com.",
        "org.",
    }


def test_delegations_are_the_ns_owners_below_the_apex() -> None:
    assert zones()["com."].delegations == {
        name_key("example.com."),
        name_key("oob.com."),
        name_key("lame.com."),
        name_key("sib.com."),
    }
    assert zones()["example.com."].delegations == {name_key("sub.example.com.")}
    assert zones()["example.test."].delegations == frozenset()


def test_glue_is_kept_for_referrals() -> None:
    assert [str(rr.rdata) for rr in zones()["com."].addresses(name_key("ns.lame.com."))] == [
        "127.0.0.254"
    ]


def test_root_hints_match_the_root_zone(fixtures_dir: Path) -> None:
    hints = (fixtures_dir / "root.hints").read_text()
    root = zones()["."]
    assert "A.ROOT-SERVERS.TEST." in hints
    assert "127.0.0.2" in hints
    ns = root.rrset(root.apex, QTYPE.NS)
    assert [str(rr.rdata) for rr in ns] == ["a.root-servers.test."]


def test_origin_comes_from_the_soa_owner_without_origin_directive() -> None:
    zone = parse_zone(
        "example.org. 600 IN SOA ns1 host 1 2 3 4 120\n"
        "             600 IN NS ns1\n"
        "ns1          IN A 127.1.9.1\n"
    )
    assert zone.origin == "example.org."
    ns = zone.rrset(name_key("example.org."), QTYPE.NS)
    assert [str(rr.rdata) for rr in ns] == ["ns1.example.org."]
    (a,) = zone.rrset(name_key("ns1.example.org."), QTYPE.A)
    assert a.ttl == 3600  # no $TTL: the default


def test_ttl_directive_and_blank_owner_continue_the_previous_record() -> None:
    zone = parse_zone(
        "$ORIGIN example.org.\n$TTL 1h\n"
        "@ IN SOA ns1 host ( 1 2 3\n 4 120 ) ; a comment with ( in it\n"
        "  IN NS ns1\n"
        'txt IN TXT "a ; not a comment" "(x"\n'
    )
    assert zone.soa.ttl == 3600
    (txt,) = zone.rrset(name_key("txt.example.org."), QTYPE.TXT)
    assert [bytes(d) for d in txt.rdata.data] == [b"a ; not a comment", b"(x"]


HAND_WRITTEN = r"""$ORIGIN example.org.
$TTL 1h
@       IN  SOA ns1 hostmaster ( 7 ; serial
                2h 30m 2w 5m )
        IN  NS  ns1
ns1         A   127.1.9.1
www         CNAME @
@           MX  10 @
_xmpp._tcp  SRV 5 0 5222 xmpp
xmpp        A   127.1.9.2
txt         TXT "dec\065imal" semi\;colon "\"quoted\""
web     1d  IN  A   127.1.9.3
cls     IN  300 A   127.1.9.4
typed   CLASS1 TYPE1 127.1.9.5
generic     A   \# 4 7f010906
opaque      TYPE65280 \# 3 abcdef
mapped      AAAA ::ffff:127.1.9.7
hinfo       HINFO "PC" "Linux"
rp          RP  admin.example.org. txt
kx          KX  10 xmpp
alias       DNAME other.example.
odd\.dot    A   127.1.9.8
"""


def _rdata(zone: Zone, name: str, rtype: int) -> list[str]:
    return [str(rr.rdata) for rr in zone.rrset(name_key(name), rtype)]


def _opaque(zone: Zone, name: str, rtype: int) -> list[bytes]:
    return [bytes(rr.rdata.data) for rr in zone.rrset(name_key(name), rtype)]


def test_at_and_relative_names_in_rdata_take_the_origin() -> None:
    zone = parse_zone(HAND_WRITTEN)
    assert _rdata(zone, "www.example.org.", QTYPE.CNAME) == ["example.org."]
    assert _rdata(zone, "example.org.", QTYPE.MX) == ["10 example.org."]
    assert _rdata(zone, "example.org.", QTYPE.NS) == ["ns1.example.org."]
    assert str(zone.soa.rdata).startswith("ns1.example.org. hostmaster.example.org. 7 ")
    srv = _opaque(zone, "_xmpp._tcp.example.org.", QTYPE.SRV)
    assert srv == [b"\x00\x05\x00\x00\x14\x66\x04xmpp\x07example\x03org\x00"]
    assert _opaque(zone, "kx.example.org.", 36) == [b"\x00\x0a\x04xmpp\x07example\x03org\x00"]


def test_escapes_in_strings_are_decimal_and_keep_the_rest_of_the_word() -> None:
    zone = parse_zone(HAND_WRITTEN)
    (txt,) = zone.rrset(name_key("txt.example.org."), QTYPE.TXT)
    assert [bytes(d) for d in txt.rdata.data] == [b"decAimal", b"semi;colon", b'"quoted"']
    assert zone.exists((b"odd.dot", b"example", b"org"))


def test_ttl_units_and_class_before_ttl_are_read() -> None:
    zone = parse_zone(HAND_WRITTEN)
    assert zone.soa.rdata.times == (7, 7200, 1800, 1209600, 300)
    assert [rr.ttl for rr in zone.rrset(name_key("web.example.org."), QTYPE.A)] == [86400]
    assert [rr.ttl for rr in zone.rrset(name_key("cls.example.org."), QTYPE.A)] == [300]
    assert [rr.ttl for rr in zone.rrset(name_key("xmpp.example.org."), QTYPE.A)] == [3600]


def test_generic_forms_and_less_common_types_are_read() -> None:
    zone = parse_zone(HAND_WRITTEN)
    assert _rdata(zone, "typed.example.org.", QTYPE.A) == ["127.1.9.5"]
    assert _rdata(zone, "generic.example.org.", QTYPE.A) == ["127.1.9.6"]
    assert _opaque(zone, "opaque.example.org.", 65280) == [b"\xab\xcd\xef"]
    assert _rdata(zone, "mapped.example.org.", QTYPE.AAAA) == ["::ffff:7f01:907"]
    assert _opaque(zone, "hinfo.example.org.", QTYPE.HINFO) == [b"\x02PC\x05Linux"]
    rp = b"\x05admin\x07example\x03org\x00\x03txt\x07example\x03org\x00"
    assert _opaque(zone, "rp.example.org.", QTYPE.RP) == [rp]
    assert _opaque(zone, "alias.example.org.", 39) == [b"\x05other\x07example\x00"]
    assert zone.dnames == {name_key("alias.example.org."): (b"other", b"example")}


def test_include_reads_a_file_beside_the_zone_with_its_own_origin(tmp_path: Path) -> None:
    (tmp_path / "hosts.inc").write_text("www A 127.1.9.9\n@ TXT included\n")
    main = tmp_path / "main.zone"
    main.write_text(
        "$ORIGIN example.org.\n@ SOA ns1 host 1 2 3 4 5\n@ NS ns1\n"
        "$INCLUDE hosts.inc lan.example.org.\n"
        "after A 127.1.9.10\n"
    )
    zone = load_zone(main)
    assert _rdata(zone, "www.lan.example.org.", QTYPE.A) == ["127.1.9.9"]
    assert zone.rrset(name_key("lan.example.org."), QTYPE.TXT)
    # The including file's origin is back after the $INCLUDE (RFC 1035 5.1).
    assert _rdata(zone, "after.example.org.", QTYPE.A) == ["127.1.9.10"]


def test_an_error_in_an_included_file_names_that_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "bad.inc").write_text("; fine\nwww A 127.1.9.999\n")
    main = tmp_path / "main.zone"
    main.write_text("$ORIGIN example.org.\n@ SOA ns1 host 1 2 3 4 5\n$INCLUDE bad.inc\n")
    with pytest.raises(ConfigError) as info:
        load_zone(main)
    assert info.value.field == f"{tmp_path / 'bad.inc'}:2"


def test_an_include_loop_is_refused(tmp_path: Path) -> None:
    (tmp_path / "self.zone").write_text("$ORIGIN example.org.\n$INCLUDE self.zone\n")
    with pytest.raises(ConfigError, match="nested deeper"):
        load_zone(tmp_path / "self.zone")


def test_generate_makes_one_record_per_step() -> None:
    zone = parse_zone(
        GOOD_HEAD
        + "$GENERATE 1-5/2 host-$ A 127.1.8.$\n"
        + "$GENERATE 10-11 ${0,3,d}.rev PTR h${-9}\n"
        + "$GENERATE 26-26 \\$x${0,2,x} TXT n\n"
    )
    hosts = [f"host-{n}.example.org." for n in (1, 3, 5)]
    assert [_rdata(zone, host, QTYPE.A) for host in hosts] == [
        ["127.1.8.1"],
        ["127.1.8.3"],
        ["127.1.8.5"],
    ]
    assert _rdata(zone, "010.rev.example.org.", QTYPE.PTR) == ["h1.example.org."]
    assert _rdata(zone, "011.rev.example.org.", QTYPE.PTR) == ["h2.example.org."]
    assert zone.rrset(name_key("$x1a.example.org."), QTYPE.TXT)


def test_records_of_one_rrset_take_the_first_ttl() -> None:
    zone = parse_zone(GOOD_HEAD + "a 60 A 127.1.0.1\na 120 A 127.1.0.2\n")
    assert [rr.ttl for rr in zone.rrset(name_key("a.example.org."), QTYPE.A)] == [60, 60]


def test_negative_soa_ttl_is_the_smaller_of_ttl_and_minimum() -> None:
    assert zones()["example.com."].negative_soa().ttl == 300
    assert zones()["example.test."].negative_soa().ttl == 60


GOOD_HEAD = "$ORIGIN example.org.\n@ 60 IN SOA ns1 host 1 2 3 4 60\n@ 60 IN NS ns1\n"


BAD_ZONES = {
    "bad-address": (GOOD_HEAD + "www 60 IN A 999.1.1.1\n", 4, "bad A data"),
    "unknown-type": (GOOD_HEAD + "www 60 IN BOGUS x\n", 4, "unknown type 'BOGUS'"),
    "missing-rdata": (GOOD_HEAD + "mx 60 IN MX 10\n", 4, "the MX data is incomplete"),
    "unclosed-paren": (GOOD_HEAD + "www 60 IN A (127.1.0.1\n", 4, "unbalanced parentheses"),
    "open-quote": (GOOD_HEAD + 'www 60 IN TXT "open\n', 4, "quoted string"),
    "missing-include": (GOOD_HEAD + "$INCLUDE nowhere.zone\n", 4, "cannot read the included"),
    "unknown-directive": (GOOD_HEAD + "$BOGUS 1\n", 4, "unknown directive $BOGUS"),
    "relative-without-origin": ("www 60 IN A 127.1.0.1\n", 1, "needs an $ORIGIN"),
    "blank-first-owner": ("  60 IN A 127.1.0.1\n", 1, "the first record has no owner"),
    "no-soa": ("$ORIGIN example.org.\n@ 60 IN NS ns1\n", 2, "no SOA"),
    "two-soas": (GOOD_HEAD + "@ 60 IN SOA ns2 host 1 2 3 4 60\n", 4, "a second SOA"),
    "no-apex-ns": ("$ORIGIN example.org.\n@ 60 IN SOA ns1 host 1 2 3 4 60\n", 2, "no NS"),
    "out-of-zone": (GOOD_HEAD + "www.example.net. 60 IN A 127.1.0.1\n", 4, "outside the zone"),
    "cname-and-data": (GOOD_HEAD + "a CNAME b\na A 127.1.0.1\n", 5, "CNAME and other data"),
    "data-and-cname": (GOOD_HEAD + "a A 127.1.0.1\na CNAME b\n", 5, "CNAME and other data"),
    "two-cnames": (GOOD_HEAD + "a CNAME b\na CNAME c\n", 5, "more than one CNAME"),
    "cname-and-dname": (GOOD_HEAD + "a CNAME b\na DNAME c\n", 5, "both a CNAME and a DNAME"),
    "below-dname": (GOOD_HEAD + "d DNAME x\nq.d A 127.1.0.1\n", 5, "below the DNAME"),
    "class-ch": (GOOD_HEAD + "www 60 CH A 127.1.0.1\n", 4, "only IN"),
    "trailing-junk": (GOOD_HEAD + "www A 127.1.0.1 junk\n", 4, "unexpected text after"),
    "generic-length": (GOOD_HEAD + "www A \\# 5 7f010001\n", 4, "length after \\#"),
    "duplicate": (GOOD_HEAD + "a A 127.1.0.1\nb A 1.1.1.1\na A 127.1.0.1\n", 6, "repeats"),
    "duplicate-in-other-case": (GOOD_HEAD + "a NS x\nA NS X\n", 5, "bad.zone:4"),
    "ttl-too-large": (GOOD_HEAD + "a 2147483648 A 127.1.0.1\n", 4, "above 2147483647"),
    "default-ttl-too-large": (GOOD_HEAD + "$TTL 3000000000\n", 4, "above 2147483647"),
    "ttl-not-a-ttl": (GOOD_HEAD + "$TTL 1x\n", 4, "not a TTL"),
    "class-any": (GOOD_HEAD + "a ANY 127.1.0.1\n", 4, "class ANY is not served"),
    "axfr-type": (GOOD_HEAD + "a AXFR x\n", 4, "a query type"),
    "owner-not-utf8": (GOOD_HEAD + "\\200x A 127.1.0.1\n", 4, "not UTF-8"),
    "target-not-utf8": (GOOD_HEAD + "x CNAME \\200y\n", 4, "not UTF-8"),
    "long-label": (GOOD_HEAD + "a" * 64 + " A 127.1.0.1\n", 4, "longer than 63"),
    "soa-bad-field-late": (
        "$ORIGIN example.org.\n@ SOA ns1 host (\n 1 ; serial\n 2\n 3\n x4\n 5 )\n",
        6,
        "not a number of seconds",
    ),
    "soa-too-short": ("$ORIGIN example.org.\n@ SOA ns1 host (\n 1\n 2 )\n", 4, "incomplete"),
    "generate-range": (GOOD_HEAD + "$GENERATE 5-1 h$ A 127.1.0.$\n", 4, "range"),
    "generate-bad-data": (GOOD_HEAD + "$GENERATE 250-260 h$ A 127.1.0.$\n", 4, "at 256"),
}


@pytest.mark.parametrize(("text", "line", "reason"), BAD_ZONES.values(), ids=BAD_ZONES.keys())
def test_bad_zone_text_raises_config_error_naming_file_and_line(
    text: str, line: int, reason: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_zone(text, source="bad.zone")
    assert info.value.field == f"bad.zone:{line}"
    assert reason in info.value.reason
    # Our words, never a library's internals.
    assert "Traceback" not in str(info.value)
    assert "index out of range" not in str(info.value)


FUZZ_WORDS = [
    *'abc019 \t\n;()"\\$@.*#',
    *("A", "TXT", "MX", "SOA", "IN", "CH", "TYPE65", "\\#", "$TTL", "$ORIGIN", "$INCLUDE"),
    *("$GENERATE", "1-3", "${1,2,x}", "DNAME", "CNAME", "NS", "SRV", "1d", "4294967296"),
    *("::1", "1.2.3.4", "CLASS1", "\\065", "\\999", "ANY"),
]


@given(st.lists(st.sampled_from(FUZZ_WORDS), max_size=12))
def test_any_text_either_loads_or_raises_config_error_naming_a_line(words: list[str]) -> None:
    problem: ConfigError | None = None
    try:
        parse_zone(GOOD_HEAD + " ".join(words) + "\n", source="fuzz.zone")
    except ConfigError as exc:
        problem = exc
    if problem is not None:
        assert problem.field.startswith("fuzz.zone:")
        assert problem.reason


def test_an_empty_zone_file_is_refused_naming_the_file() -> None:
    with pytest.raises(ConfigError) as info:
        parse_zone("; only a comment\n", source="bad.zone")
    assert info.value.field == "bad.zone"
    assert "no records" in info.value.reason


def test_load_zone_names_the_file_it_cannot_read(tmp_path: Path) -> None:
    missing = tmp_path / "missing.zone"
    with pytest.raises(ConfigError) as info:
        load_zone(missing)
    assert info.value.field == str(missing)


def test_load_zone_names_the_file_and_line_of_a_bad_record(tmp_path: Path) -> None:
    path = tmp_path / "broken.zone"
    path.write_text(GOOD_HEAD + "\n\nwww 60 IN AAAA not-an-address\n")
    with pytest.raises(ConfigError) as info:
        load_zone(path)
    assert info.value.field == f"{path}:6"


def test_a_zone_loaded_twice_is_refused() -> None:
    with pytest.raises(ConfigError, match="loaded twice"):
        Responder([zones()["com."], zones()["com."]])


# --- positive answers --------------------------------------------------------------------


def test_answer_is_authoritative_and_echoes_id_rd_and_question_case() -> None:
    reply = ask("WwW.Example.COM", qid=777)
    assert reply.header.id == 777
    assert (reply.header.qr, reply.header.aa, reply.header.rd, reply.header.ra) == (1, 1, 1, 0)
    assert reply.header.rcode == NOERROR
    assert str(reply.q.qname) == "WwW.Example.COM."
    assert records(reply.rr) == [("www.example.com.", "A", 300, "127.1.0.1")]
    assert reply.auth == []


@pytest.mark.parametrize(
    ("name", "qtype", "expected"),
    [
        ("www.example.com.", "AAAA", [("www.example.com.", "AAAA", 300, "2001:db8::1")]),
        ("short.example.com.", "A", [("short.example.com.", "A", 60, "127.1.0.2")]),
        ("zero.example.com.", "A", [("zero.example.com.", "A", 0, "127.1.0.3")]),
        (
            "example.com.",
            "MX",
            [
                ("example.com.", "MX", 3600, "10 mail.example.com."),
                ("example.com.", "MX", 3600, "20 mail2.example.test."),
            ],
        ),
        ("example.com.", "TXT", [("example.com.", "TXT", 300, '"v=spf1 -all"')]),
        (
            "_sip._udp.example.com.",
            "SRV",
            [("_sip._udp.example.com.", "SRV", 3600, "10 5 5060 sip.example.com.")],
        ),
        ("www.example.test.", "AAAA", [("www.example.test.", "AAAA", 300, "2001:db8:1::1")]),
        ("www.oob.com.", "A", [("www.oob.com.", "A", 300, "127.1.4.1")]),
        ("www.half.test.", "A", [("www.half.test.", "A", 300, "127.1.5.1")]),
    ],
    ids=["aaaa", "ttl-60", "ttl-0", "mx", "txt", "srv", "aaaa-test", "oob-zone", "half-zone"],
)
def test_record_types_are_answered(name: str, qtype: str, expected: list[Any]) -> None:
    reply = ask(name, qtype)
    assert reply.header.aa == 1
    assert records(reply.rr) == expected


def test_soa_query_answers_the_soa_with_its_own_ttl() -> None:
    reply = ask("example.com.", "SOA")
    assert records(reply.rr)[0][:3] == ("example.com.", "SOA", 3600)


def test_ns_query_at_apex_adds_the_in_zone_addresses() -> None:
    reply = ask("example.com.", "NS")
    assert records(reply.rr) == [("example.com.", "NS", 3600, "ns1.example.com.")]
    assert records(reply.ar) == [("ns1.example.com.", "A", 3600, "127.0.0.4")]


def test_any_returns_one_rrset_preferring_addresses_in_file_order() -> None:
    # RFC 8482 4.1, choosing as NSD does: www has A before AAAA in the file.
    reply = ask("www.example.com.", "ANY")
    assert records(reply.rr) == [("www.example.com.", "A", 300, "127.1.0.1")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("n TXT t\nn MX 1 x\nn A 127.1.0.1\n", "MX"),
        ("n AAAA ::1\nn TXT t\nn A 127.1.0.1\n", "AAAA"),
        ("n TXT t\nn HINFO a b\n", "HINFO"),
        ("n NSEC x A\nn TXT t\n", "TXT"),
    ],
    ids=["first-preferred", "aaaa-first", "last-other", "nsec-avoided"],
)
def test_any_chooses_the_rrset_nsd_would(text: str, expected: str) -> None:
    zone = parse_zone(GOOD_HEAD + text)
    reply = Responder([zone]).answer(query("n.example.org.", "ANY"), max_udp=None)
    assert reply is not None
    assert {QTYPE.get(rr.rtype) for rr in DNSRecord.parse(reply).rr} == {expected}


ANSWERING = r"""$ORIGIN example.org.
$TTL 300
@           SOA     ns1 host 1 2 3 4 60
            NS      ns1
ns1         A       127.1.9.1
deleg       NS      ns.deleg
deleg       DS      1 8 1 {sha1}
ns.deleg    A       127.1.9.2
nods        NS      ns.deleg
child       NS      ns1.child
child       DS      2 13 1 {sha1}
dn          DNAME   target
target      A       127.1.9.3
t.target    A       127.1.9.4
away        DNAME   example.net.
long        DNAME   {long}
"""
LONG_TARGET = ".".join(["x" * 60] * 4) + "."
CHILD = "$ORIGIN child.example.org.\n@ SOA ns1 host 1 2 3 4 60\n@ NS ns1\nns1 A 127.1.9.5\n"


def answering(*, with_child: bool = False) -> Responder:
    zones = [parse_zone(ANSWERING.format(long=LONG_TARGET, sha1="ab" * 20))]
    if with_child:
        zones.append(parse_zone(CHILD))
    return Responder(zones)


def answer(served: Responder, name: str, qtype: str) -> Any:
    reply = served.answer(query(name, qtype), max_udp=None)
    assert reply is not None
    return DNSRecord.parse(reply)


def test_ds_at_a_cut_is_answered_by_the_parent() -> None:
    reply = answer(answering(), "deleg.example.org.", "DS")
    assert (reply.header.rcode, reply.header.aa) == (NOERROR, 1)
    assert [QTYPE.get(rr.rtype) for rr in reply.rr] == ["DS"]
    assert reply.auth == []


def test_ds_missing_at_a_cut_is_nodata_from_the_parent() -> None:
    reply = answer(answering(), "nods.example.org.", "DS")
    assert (reply.header.rcode, reply.header.aa, reply.rr) == (NOERROR, 1, [])
    assert records(reply.auth, "SOA")[0][0] == "example.org."


def test_other_types_at_a_cut_still_get_a_referral() -> None:
    reply = answer(answering(), "deleg.example.org.", "A")
    assert (reply.header.aa, reply.rr) == (0, [])
    assert [QTYPE.get(rr.rtype) for rr in reply.auth] == ["NS"]


def test_ds_at_a_served_child_apex_comes_from_the_served_parent() -> None:
    reply = answer(answering(with_child=True), "child.example.org.", "DS")
    assert [(str(rr.rname), QTYPE.get(rr.rtype)) for rr in reply.rr] == [
        ("child.example.org.", "DS")
    ]
    # Every other type at the child apex comes from the child.
    soa = answer(answering(with_child=True), "child.example.org.", "SOA")
    assert records(soa.rr)[0][0] == "child.example.org."


def test_dname_synthesizes_a_cname_and_follows_it_in_the_zone() -> None:
    reply = answer(answering(), "t.dn.example.org.", "A")
    assert reply.header.rcode == NOERROR
    assert records(reply.rr) == [
        ("dn.example.org.", "DNAME", 300, r"\# 20 06746172676574076578616D706C65036F726700"),
        ("t.dn.example.org.", "CNAME", 300, "t.target.example.org."),
        ("t.target.example.org.", "A", 300, "127.1.9.4"),
    ]


def test_dname_to_a_missing_name_ends_in_nxdomain_with_the_soa() -> None:
    reply = answer(answering(), "a.b.dn.example.org.", "A")
    assert reply.header.rcode == NXDOMAIN
    assert [QTYPE.get(rr.rtype) for rr in reply.rr] == ["DNAME", "CNAME"]
    assert str(reply.rr[1].rdata) == "a.b.target.example.org."
    assert records(reply.auth, "SOA")


def test_dname_out_of_every_zone_stops_at_the_cname() -> None:
    reply = answer(answering(), "www.away.example.org.", "A")
    assert (reply.header.rcode, reply.header.aa) == (NOERROR, 1)
    assert str(reply.rr[-1].rdata) == "www.example.net."
    assert reply.auth == []


def test_dname_owner_itself_is_not_rewritten() -> None:
    reply = answer(answering(), "dn.example.org.", "A")
    assert (reply.header.rcode, reply.rr) == (NOERROR, [])
    assert records(reply.auth, "SOA")


def test_dname_making_a_name_too_long_is_yxdomain() -> None:
    reply = answer(answering(), ("y" * 30 + ".") * 2 + "long.example.org.", "A")
    assert reply.header.rcode == 6  # YXDOMAIN (RFC 6672 2.2)
    assert [QTYPE.get(rr.rtype) for rr in reply.rr] == ["DNAME"]


def test_closest_enclosing_zone_answers_below_a_cut_it_also_serves() -> None:
    reply = ask("www.sub.example.com.", served=("example.com.", "sub.example.com."))
    assert reply.header.aa == 1
    assert records(reply.rr) == [("www.sub.example.com.", "A", 300, "127.1.2.1")]


# --- negative answers --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "qtype", "rcode", "soa_owner", "ttl"),
    [
        ("nonexistent.example.com.", "A", NXDOMAIN, "example.com.", 300),
        ("deep.nonexistent.example.com.", "A", NXDOMAIN, "example.com.", 300),
        ("www.example.com.", "MX", NOERROR, "example.com.", 300),
        ("txtonly.example.com.", "A", NOERROR, "example.com.", 300),
        ("ent.example.com.", "A", NOERROR, "example.com.", 300),
        ("x.ent.example.com.", "A", NXDOMAIN, "example.com.", 300),
        ("nope.example.test.", "A", NXDOMAIN, "example.test.", 60),
        ("www.example.test.", "TXT", NOERROR, "example.test.", 60),
        ("nowhere.invalid.", "A", NXDOMAIN, ".", 300),
    ],
    ids=[
        "nxdomain",
        "nxdomain-deep",
        "nodata",
        "nodata-txt-only",
        "nodata-empty-non-terminal",
        "nxdomain-below-ent",
        "nxdomain-soa-ttl-below-minimum",
        "nodata-soa-ttl-below-minimum",
        "root-nxdomain",
    ],
)
def test_negative_answers_carry_the_soa_with_the_negative_ttl(
    name: str, qtype: str, rcode: int, soa_owner: str, ttl: int
) -> None:
    reply = ask(name, qtype)
    assert reply.header.rcode == rcode
    assert reply.header.aa == 1
    assert reply.rr == []
    (soa,) = records(reply.auth)
    assert soa[:3] == (soa_owner, "SOA", ttl)


# --- CNAMEs ------------------------------------------------------------------------------


def test_cname_inside_the_zone_is_followed() -> None:
    reply = ask("alias.example.com.")
    assert records(reply.rr) == [
        ("alias.example.com.", "CNAME", 300, "www.example.com."),
        ("www.example.com.", "A", 300, "127.1.0.1"),
    ]


def test_cname_chain_is_returned_in_order() -> None:
    reply = ask("chain1.example.com.", "AAAA")
    assert [r[0] for r in records(reply.rr)] == [
        "chain1.example.com.",
        "chain2.example.com.",
        "chain3.example.com.",
        "www.example.com.",
    ]
    assert records(reply.rr)[-1][1:] == ("AAAA", 300, "2001:db8::1")


def test_cname_across_served_zones_is_followed() -> None:
    reply = ask("cross.example.com.")
    assert records(reply.rr) == [
        ("cross.example.com.", "CNAME", 300, "www.example.test."),
        ("www.example.test.", "A", 300, "127.1.1.1"),
    ]
    assert reply.header.aa == 1


def test_cname_to_a_zone_not_served_stops_with_the_cname() -> None:
    reply = ask("cross.example.com.", served=("example.com.",))
    assert reply.header.rcode == NOERROR
    assert records(reply.rr) == [("cross.example.com.", "CNAME", 300, "www.example.test.")]
    assert reply.auth == []


def test_cname_into_a_delegation_stops_before_the_referral() -> None:
    reply = ask("cross-sub.example.com.", served=("example.com.",))
    assert records(reply.rr) == [("cross-sub.example.com.", "CNAME", 300, "www.sub.example.com.")]
    assert reply.auth == []
    assert reply.header.aa == 1


def test_dangling_cname_is_nxdomain_with_the_cname_and_soa() -> None:
    reply = ask("dangling.example.com.")
    assert reply.header.rcode == NXDOMAIN
    assert records(reply.rr) == [("dangling.example.com.", "CNAME", 300, "nothere.example.com.")]
    assert records(reply.auth)[0][:2] == ("example.com.", "SOA")


def test_cname_to_nodata_ends_with_the_soa_of_the_target_zone() -> None:
    reply = ask("back.example.test.", "MX")
    assert reply.header.rcode == NOERROR
    assert [r[1] for r in records(reply.rr)] == ["CNAME"]
    assert records(reply.auth)[0][:2] == ("example.com.", "SOA")


def test_cname_loop_terminates_with_the_loop() -> None:
    reply = ask("loop1.example.com.")
    assert [r[0] for r in records(reply.rr)] == ["loop1.example.com.", "loop2.example.com."]


def test_cname_query_returns_the_cname_without_following_it() -> None:
    reply = ask("alias.example.com.", "CNAME")
    assert records(reply.rr) == [("alias.example.com.", "CNAME", 300, "www.example.com.")]


# --- wildcards ---------------------------------------------------------------------------


def test_wildcard_synthesizes_the_answer_with_the_query_name() -> None:
    reply = ask("Anything.wild.test.")
    assert reply.header.aa == 1
    assert records(reply.rr) == [("Anything.wild.test.", "A", 300, "127.1.3.1")]


def test_wildcard_matches_several_labels_down() -> None:
    reply = ask("a.b.c.wild.test.", "TXT")
    assert records(reply.rr) == [("a.b.c.wild.test.", "TXT", 300, '"wildcard"')]


def test_explicit_name_beats_the_wildcard() -> None:
    assert records(ask("host.wild.test.").rr) == [("host.wild.test.", "A", 300, "127.1.3.2")]


def test_explicit_name_without_the_type_is_nodata_not_wildcard() -> None:
    reply = ask("host.wild.test.", "TXT")
    assert (reply.header.rcode, reply.rr) == (NOERROR, [])


def test_wildcard_without_the_type_is_nodata() -> None:
    reply = ask("anything.wild.test.", "MX")
    assert (reply.header.rcode, reply.rr) == (NOERROR, [])
    assert records(reply.auth)[0][:2] == ("wild.test.", "SOA")


def test_empty_non_terminal_blocks_the_wildcard() -> None:
    reply = ask("b.wild.test.")
    assert (reply.header.rcode, reply.rr) == (NOERROR, [])


def test_below_an_empty_non_terminal_without_its_own_wildcard_is_nxdomain() -> None:
    reply = ask("x.b.wild.test.")
    assert reply.header.rcode == NXDOMAIN


def test_wildcard_cname_is_synthesized_and_followed_across_zones() -> None:
    reply = ask("foo.alias.wild.test.")
    assert records(reply.rr) == [
        ("foo.alias.wild.test.", "CNAME", 300, "www.example.test."),
        ("www.example.test.", "A", 300, "127.1.1.1"),
    ]


def test_literal_asterisk_name_answers_the_wildcard_records() -> None:
    assert records(ask("*.wild.test.").rr) == [("*.wild.test.", "A", 300, "127.1.3.1")]


# --- referrals ---------------------------------------------------------------------------


def test_root_refers_to_com_with_glue() -> None:
    reply = ask("www.example.com.", served=(".",))
    assert (reply.header.aa, reply.header.rcode, reply.rr) == (0, NOERROR, [])
    assert records(reply.auth) == [("com.", "NS", 172800, "ns1.nic.com.")]
    assert records(reply.ar) == [("ns1.nic.com.", "A", 172800, "127.0.0.3")]


def test_tld_refers_to_the_leaf_with_in_bailiwick_glue() -> None:
    reply = ask("www.example.com.", served=("com.",))
    assert reply.header.aa == 0
    assert records(reply.auth) == [("example.com.", "NS", 86400, "ns1.example.com.")]
    assert records(reply.ar) == [("ns1.example.com.", "A", 86400, "127.0.0.4")]


def test_sub_delegation_refers_with_glue() -> None:
    reply = ask("www.sub.example.com.", served=("example.com.",))
    assert reply.header.aa == 0
    assert records(reply.auth) == [("sub.example.com.", "NS", 3600, "ns1.sub.example.com.")]
    assert records(reply.ar) == [("ns1.sub.example.com.", "A", 3600, "127.0.0.6")]


def test_out_of_bailiwick_ns_is_referred_without_glue() -> None:
    reply = ask("www.oob.com.", served=("com.",))
    assert records(reply.auth) == [("oob.com.", "NS", 86400, "ns.example.test.")]
    assert reply.ar == []


def test_lame_delegation_glue_points_at_the_dead_address() -> None:
    reply = ask("www.lame.com.", served=("com.",))
    assert records(reply.auth) == [("lame.com.", "NS", 86400, "ns.lame.com.")]
    assert records(reply.ar) == [("ns.lame.com.", "A", 86400, "127.0.0.254")]


def test_half_lame_delegation_has_a_dead_and_a_live_server() -> None:
    reply = ask("www.half.test.", served=("test.",))
    assert [r[3] for r in records(reply.ar)] == ["127.0.0.254", "127.0.0.5"]


def test_query_at_the_cut_itself_is_a_referral() -> None:
    reply = ask("example.com.", "NS", served=("com.",))
    assert (reply.header.aa, reply.rr) == (0, [])
    assert records(reply.auth) == [("example.com.", "NS", 86400, "ns1.example.com.")]


def test_glue_below_a_cut_is_not_answered_authoritatively() -> None:
    reply = ask("ns1.example.com.", served=("com.",))
    assert (reply.header.aa, reply.rr) == (0, [])
    assert records(reply.auth)[0][:2] == ("example.com.", "NS")


# --- rcodes ------------------------------------------------------------------------------


def test_name_outside_every_zone_is_refused() -> None:
    reply = ask("www.example.test.", served=("example.com.",))
    assert reply.header.rcode == REFUSED
    assert (reply.rr, reply.auth) == ([], [])


@pytest.mark.parametrize(
    ("qtype", "qclass"),
    [("A", "CH"), ("AXFR", "IN"), ("IXFR", "IN")],
    ids=["chaos", "axfr", "ixfr"],
)
def test_other_classes_and_zone_transfers_are_refused(qtype: str, qclass: str) -> None:
    reply = ask("example.com.", qtype, qclass=qclass)
    assert reply.header.rcode == REFUSED


def _header(qid: int, flags: int, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!6H", qid, flags, qd, an, ns, ar)


@pytest.mark.parametrize(
    "message",
    [
        _header(9, 0x0100) + b"\x07exam",
        _header(9, 0x0100) + b"\xc0\x0c\x00\x01\x00\x01",
        _header(9, 0x0100, qd=2) + query("www.example.com.")[12:] * 2,
        _header(9, 0x0100, qd=0),
        _header(9, 0x0100, ar=1) + query("www.example.com.")[12:],
    ],
    ids=["cut-name", "pointer-loop", "two-questions", "no-question", "missing-record"],
)
def test_garbage_with_a_header_gets_formerr_with_the_id(message: bytes) -> None:
    reply = responder().answer(message, max_udp=EDNS_UDP_SIZE)
    assert reply is not None
    header = read_header(reply)
    assert (header.id, header.qr, header.rcode, header.ra) == (9, True, FORMERR, False)


def test_two_opt_records_are_formerr() -> None:
    message = DNSRecord.parse(query("www.example.com.", edns=1232))
    message.add_ar(EDNS0(udp_len=1232))
    reply = DNSRecord.parse(responder().answer(bytes(message.pack()), max_udp=None))
    assert reply.header.rcode == FORMERR


@pytest.mark.parametrize("opcode", [1, 2, 4, 5], ids=["iquery", "status", "notify", "update"])
def test_other_opcodes_get_notimp(opcode: int) -> None:
    message = DNSRecord.parse(query("example.com.", "SOA"))
    message.header.opcode = opcode
    reply = DNSRecord.parse(responder().answer(bytes(message.pack()), max_udp=None))
    assert (reply.header.rcode, reply.header.opcode, reply.header.id) == (NOTIMP, opcode, 4242)


@pytest.mark.parametrize(
    "message",
    [b"", b"\x00\x01\x02", _header(1, 0x0100)[:11], DNSRecord.question("a.").reply().pack()],
    ids=["empty", "three-bytes", "eleven-bytes", "a-response"],
)
def test_no_reply_for_short_messages_and_responses(message: bytes) -> None:
    assert responder().answer(bytes(message), max_udp=EDNS_UDP_SIZE) is None


@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_raise_and_replies_match_the_id(data: bytes) -> None:
    reply = responder().answer(data, max_udp=EDNS_UDP_SIZE)
    if reply is None:
        return
    assert reply[:2] == data[:2]
    assert reply[2] & 0x80  # QR
    assert len(reply) <= EDNS_UDP_SIZE


# --- EDNS and truncation -----------------------------------------------------------------


def test_edns_query_gets_an_opt_advertising_1232() -> None:
    reply = ask("www.example.com.", edns=4096)
    record = opt(reply)
    assert record is not None
    assert record.rclass == EDNS_UDP_SIZE


def test_query_without_edns_gets_no_opt() -> None:
    assert opt(ask("www.example.com.")) is None


def test_unknown_edns_version_gets_badvers() -> None:
    reply = ask("www.example.com.", edns=1232, version=1)
    record = opt(reply)
    assert record is not None
    assert (reply.header.rcode, record.ttl >> 24, reply.rr) == (0, 1, [])


def test_800_byte_answer_is_truncated_at_512_without_edns() -> None:
    reply = ask("many.example.com.", max_udp=EDNS_UDP_SIZE)
    assert (reply.header.tc, reply.header.aa, reply.rr, reply.auth, reply.ar) == (1, 1, [], [], [])
    assert str(reply.q.qname) == "many.example.com."


def test_800_byte_answer_fits_edns_1232() -> None:
    wire = responder().answer(query("many.example.com.", edns=1232), max_udp=EDNS_UDP_SIZE)
    assert wire is not None
    assert 700 < len(wire) <= 1232
    reply = DNSRecord.parse(wire)
    assert (reply.header.tc, len(reply.rr)) == (0, 48)


@pytest.mark.parametrize("size", [0, 100, 511, 512], ids=["0", "100", "511", "512"])
def test_edns_sizes_up_to_512_truncate_at_512_and_keep_the_opt(size: int) -> None:
    reply = ask("many.example.com.", edns=size, max_udp=EDNS_UDP_SIZE)
    assert (reply.header.tc, reply.rr) == (1, [])
    assert opt(reply) is not None


def test_edns_size_between_512_and_the_answer_truncates() -> None:
    reply = ask("many.example.com.", edns=700, max_udp=EDNS_UDP_SIZE)
    assert reply.header.tc == 1


def test_2k_answer_is_truncated_over_udp_even_for_a_large_edns_size() -> None:
    reply = ask("big.example.com.", "TXT", edns=4096, max_udp=EDNS_UDP_SIZE)
    assert (reply.header.tc, reply.rr) == (1, [])


def test_2k_answer_is_whole_over_tcp() -> None:
    wire = responder().answer(query("big.example.com.", "TXT"), max_udp=None)
    assert wire is not None
    assert 1800 < len(wire) < 2500
    reply = DNSRecord.parse(wire)
    assert (reply.header.tc, len(reply.rr)) == (0, 8)


def test_small_answers_are_never_truncated_over_udp() -> None:
    assert ask("www.example.com.", max_udp=EDNS_UDP_SIZE).header.tc == 0


def test_max_udp_zero_truncates_every_answer() -> None:
    reply = ask("www.example.com.", max_udp=0)
    assert (reply.header.tc, reply.rr) == (1, [])


def test_question_is_rebuilt_identically() -> None:
    message = query("MiXeD.example.com.", "TXT")
    reply = responder().answer(message, max_udp=None)
    assert reply is not None
    assert reply[12 : 12 + len(message) - 12] == message[12:]
    assert DNSRecord.parse(reply).q == DNSQuestion("MiXeD.example.com.", QTYPE.TXT, CLASS.IN)
