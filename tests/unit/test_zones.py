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
    }


def test_delegations_are_the_ns_owners_below_the_apex() -> None:
    assert zones()["com."].delegations == {
        name_key("example.com."),
        name_key("oob.com."),
        name_key("lame.com."),
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


def test_negative_soa_ttl_is_the_smaller_of_ttl_and_minimum() -> None:
    assert zones()["example.com."].negative_soa().ttl == 300
    assert zones()["example.test."].negative_soa().ttl == 60


GOOD_HEAD = "$ORIGIN example.org.\n@ 60 IN SOA ns1 host 1 2 3 4 60\n@ 60 IN NS ns1\n"


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        (GOOD_HEAD + "www 60 IN A 999.1.1.1\n", "bad.zone:4", "cannot parse"),
        (GOOD_HEAD + "www 60 IN BOGUS x\n", "bad.zone:4", "cannot parse"),
        (GOOD_HEAD + "mx 60 IN MX 10\n", "bad.zone:4", "cannot parse"),
        (GOOD_HEAD + "www 60 IN A (127.1.0.1\n", "bad.zone:4", "never closed"),
        (GOOD_HEAD + "www 60 IN A 127.1.0.1 )\n", "bad.zone:4", "unbalanced"),
        (GOOD_HEAD + 'www 60 IN TXT "open\n', "bad.zone:4", "unterminated"),
        (GOOD_HEAD + "$INCLUDE other.zone\n", "bad.zone:4", "unsupported"),
        ("www 60 IN A 127.1.0.1\n", "bad.zone:1", "no $ORIGIN"),
        ("  60 IN A 127.1.0.1\n", "bad.zone:1", "no previous owner"),
        ("; only a comment\n", "bad.zone", "no records"),
        ("$ORIGIN example.org.\n@ 60 IN NS ns1\n", "bad.zone", "exactly one SOA"),
        (GOOD_HEAD + "@ 60 IN SOA ns2 host 1 2 3 4 60\n", "bad.zone", "exactly one SOA"),
        ("$ORIGIN example.org.\n@ 60 IN SOA ns1 host 1 2 3 4 60\n", "bad.zone", "no NS"),
        (GOOD_HEAD + "www.example.net. 60 IN A 127.1.0.1\n", "bad.zone", "outside"),
        (GOOD_HEAD + "a 60 IN CNAME b\na 60 IN A 127.1.0.1\n", "bad.zone", "CNAME"),
        (GOOD_HEAD + "www 60 CH A 127.1.0.1\n", "bad.zone", "class IN"),
    ],
    ids=[
        "bad-address",
        "unknown-type",
        "missing-rdata",
        "unclosed-paren",
        "extra-paren",
        "open-quote",
        "include",
        "relative-without-origin",
        "blank-first-owner",
        "empty",
        "no-soa",
        "two-soas",
        "no-apex-ns",
        "out-of-zone",
        "cname-and-data",
        "class-ch",
    ],
)
def test_bad_zone_text_raises_config_error_naming_file_and_line(
    text: str, field: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_zone(text, source="bad.zone")
    assert info.value.field == field
    assert reason in info.value.reason


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


def test_any_returns_every_rrset_at_the_name() -> None:
    reply = ask("www.example.com.", "ANY")
    assert {r[1] for r in records(reply.rr)} == {"A", "AAAA"}


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
