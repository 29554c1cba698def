"""The dnslib edge: parsing, query building, names, mnemonics, OPT rewriting, RFC 8482."""

from __future__ import annotations

import contextlib

import pytest
from dnslib import EDNS0, QTYPE, RR, A, DNSRecord
from hypothesis import given
from hypothesis import strategies as st

import resolver.wire
from resolver.errors import WireError
from resolver.wire import message, raw


def _reply_with_opt(*, ext_rcode: int = 0, opt_last: bool = True) -> bytes:
    record = DNSRecord.question("www.Example.com", "A").reply()
    record.header.id = 77
    record.add_answer(RR("www.Example.com", QTYPE.A, rdata=A("192.0.2.1"), ttl=300))
    glue = RR("ns.example.com", QTYPE.A, rdata=A("192.0.2.53"), ttl=300)
    opt = EDNS0(udp_len=4096, flags="do", ext_rcode=ext_rcode)
    record.add_ar(*([glue, opt] if opt_last else [opt, glue]))
    packed: bytes = record.pack()
    return packed


def test_public_surface_is_pinned() -> None:
    assert set(resolver.wire.__all__) >= set(raw.__all__) | set(message.__all__)
    for name in ("DNSRecord", "DNSHeader", "DNSQuestion", "RR", "QTYPE", "CLASS", "RCODE"):
        assert name in resolver.wire.__all__
    for name in ("OPCODE", "EDNS0", "DNSLabel"):
        assert name in resolver.wire.__all__
    assert all(hasattr(resolver.wire, name) for name in resolver.wire.__all__)


# --- parse --------------------------------------------------------------------------------


def test_parse_returns_dnslib_record() -> None:
    record = message.parse(resolver.wire.build_query("example.com", 1, qid=5))
    assert record.header.id == 5
    assert str(record.q.qname) == "example.com."


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\x00\x01\x02", id="short"),
        pytest.param(
            b"\x00" * 4 + b"\x00\x01" + b"\x00" * 6 + b"\xc0\x0c\x00\x01\x00\x01", id="loop"
        ),
        pytest.param(b"\x00" * 4 + b"\x00\x05" + b"\x00" * 6, id="count-past-end"),
    ],
)
def test_parse_translates_dnslib_errors(data: bytes) -> None:
    with pytest.raises(WireError, match="cannot parse"):
        message.parse(data)


@given(st.binary(max_size=120))
def test_parse_raises_only_wire_error(data: bytes) -> None:
    with contextlib.suppress(WireError):
        message.parse(data)


def test_to_text_is_dig_like() -> None:
    text = message.to_text(resolver.wire.build_query("example.com", 28, qid=1))
    assert ";example.com." in text
    assert "AAAA" in text


# --- build_query --------------------------------------------------------------------------


def test_build_query_with_edns_and_do() -> None:
    data = resolver.wire.build_query("wWw.Example.COM", 28, qid=0x4242, cd=True, do=True)
    header = raw.read_header(data)
    assert (header.id, header.rd, header.cd, header.qr, header.arcount) == (
        0x4242,
        True,
        True,
        False,
        1,
    )
    question = raw.read_question(data)
    assert question.text == "wWw.Example.COM."
    assert (question.qtype, question.qclass) == (28, 1)
    edns = raw.read_query_edns(data, question.end)
    assert edns is not None
    assert (edns.udp_size, edns.do, edns.version) == (1232, True, 0)
    parsed = DNSRecord.parse(data)
    assert parsed.ar[0].edns_do == 1


def test_build_query_without_edns_has_no_opt() -> None:
    data = resolver.wire.build_query("example.com.", 1, 3, qid=1, rd=False, edns_size=None)
    header = raw.read_header(data)
    assert (header.rd, header.arcount) == (False, 0)
    assert raw.read_question(data).qclass == 3


def test_build_query_of_root() -> None:
    data = resolver.wire.build_query(".", raw.TYPE_NS, qid=1)
    assert raw.read_question(data).name == b"\x00"


def test_build_query_refuses_do_without_edns() -> None:
    with pytest.raises(ValueError, match="DO bit"):
        resolver.wire.build_query("example.com", 1, qid=1, do=True, edns_size=None)


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"qid": -1}, id="negative-id"),
        pytest.param({"qid": 0x10000}, id="wide-id"),
        pytest.param({"qid": 1, "edns_size": 70000}, id="wide-edns-size"),
    ],
)
def test_build_query_rejects_out_of_range_fields(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="0-65535"):
        resolver.wire.build_query(
            "example.com", 1, qid=kwargs["qid"], edns_size=kwargs.get("edns_size", 1232)
        )


# --- names --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("example.com", "example.com.", id="adds-dot"),
        pytest.param("Example.COM.", "Example.COM.", id="keeps-case"),
        pytest.param(".", ".", id="root"),
        pytest.param("a" * 63 + ".com", "a" * 63 + ".com.", id="label-63"),
    ],
)
def test_check_name_accepts_valid_names(name: str, expected: str) -> None:
    assert message.check_name(name) == expected


def test_check_name_names_the_long_label() -> None:
    with pytest.raises(WireError, match=r"label 'a{20}…' is 64 bytes, the limit is 63"):
        message.check_name("a" * 64 + ".com")


def test_check_name_measures_utf8_bytes() -> None:
    with pytest.raises(WireError, match="is 64 bytes"):
        message.check_name("é" * 32)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("example..com", id="inner-empty-label"),
        pytest.param(".com", id="leading-dot"),
        pytest.param("com..", id="double-trailing-dot"),
    ],
)
def test_check_name_rejects_empty_labels(name: str) -> None:
    with pytest.raises(WireError, match="empty"):
        message.check_name(name)


def test_check_name_limits_the_wire_length_to_255() -> None:
    # Three 63-byte labels and one 61-byte label: 3 * 64 + 62 + 1 = 255 bytes in wire form.
    fits = ".".join(["a" * 63] * 3 + ["b" * 61])
    assert len(message.name_to_wire(fits)) == 255
    assert message.check_name(fits) == fits + "."
    with pytest.raises(WireError, match="256 bytes in wire form, the limit is 255"):
        message.check_name(fits + "b")


def test_name_to_wire_round_trips_through_read_name() -> None:
    wire = message.name_to_wire("Mixed.Case.Example")
    assert wire == b"\x05Mixed\x04Case\x07Example\x00"
    assert raw.name_to_text(wire) == "Mixed.Case.Example."


# --- mnemonics ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [("a", 1), ("AAAA", 28), ("Mx", 15), ("TYPE65", 65), ("type4000", 4000), ("ANY", 255)],
)
def test_qtype_value_accepts_mnemonics_in_any_case(text: str, value: int) -> None:
    assert message.qtype_value(text) == value


@pytest.mark.parametrize("text", ["", "NOPE", "TYPE", "TYPE70000", "TYPE-1", "1"])
def test_qtype_value_rejects_unknown(text: str) -> None:
    with pytest.raises(WireError):
        message.qtype_value(text)


def test_qtype_name_gives_mnemonic_or_generic_form() -> None:
    assert message.qtype_name(28) == "AAAA"
    assert message.qtype_name(4000) == "TYPE4000"
    with pytest.raises(WireError):
        message.qtype_name(0x10000)


@pytest.mark.parametrize(
    ("text", "value"),
    [("in", 1), ("CH", 3), ("hs", 4), ("CLASS3", 3), ("class42", 42), ("ANY", 255)],
)
def test_qclass_value_accepts_mnemonics_in_any_case(text: str, value: int) -> None:
    assert message.qclass_value(text) == value


def test_qclass_name_and_unknown_classes() -> None:
    assert [message.qclass_name(v) for v in (1, 3, 4, 42)] == ["IN", "CH", "HS", "CLASS42"]
    with pytest.raises(WireError, match="unknown class"):
        message.qclass_value("XX")
    with pytest.raises(WireError):
        message.qclass_name(-1)


def test_rcode_name_covers_extended_rcodes() -> None:
    assert message.rcode_name(raw.NXDOMAIN) == "NXDOMAIN"
    assert message.rcode_name(16) == "BADVERS"
    assert message.rcode_name(3000) == "RCODE3000"
    with pytest.raises(WireError):
        message.rcode_name(4096)


# --- OPT rewriting ------------------------------------------------------------------------


@pytest.mark.parametrize("opt_last", [True, False], ids=["opt-last", "opt-before-glue"])
def test_strip_opt_removes_only_the_opt(opt_last: bool) -> None:
    stripped = message.strip_opt(_reply_with_opt(opt_last=opt_last))
    parsed = DNSRecord.parse(stripped)
    assert [rr.rtype for rr in parsed.ar] == [QTYPE.A]
    assert str(parsed.ar[0].rname) == "ns.example.com."
    assert [str(rr.rdata) for rr in parsed.rr] == ["192.0.2.1"]
    assert parsed.header.id == 77


def test_strip_opt_without_opt_returns_reply_unchanged() -> None:
    data = resolver.wire.build_query("example.com", 1, qid=1, edns_size=None)
    assert message.strip_opt(data) == data


def test_strip_opt_refuses_to_lose_an_extended_rcode() -> None:
    with pytest.raises(WireError, match="extended rcode"):
        message.strip_opt(_reply_with_opt(ext_rcode=1))


@pytest.mark.parametrize("opt_last", [True, False], ids=["opt-last", "opt-before-glue"])
def test_replace_opt_puts_our_opt_last(opt_last: bool) -> None:
    replaced = message.replace_opt(_reply_with_opt(opt_last=opt_last), udp_size=1232, do=False)
    parsed = DNSRecord.parse(replaced)
    assert [rr.rtype for rr in parsed.ar] == [QTYPE.A, QTYPE.OPT]
    assert (parsed.ar[1].rclass, parsed.ar[1].edns_do) == (1232, 0)
    edns = raw.read_query_edns(replaced, raw.read_question(replaced).end)
    assert edns is not None
    assert (edns.udp_size, edns.do) == (1232, False)


def test_replace_opt_adds_an_opt_when_missing_and_round_trips_with_strip() -> None:
    plain = message.strip_opt(_reply_with_opt())
    with_opt = message.replace_opt(plain, udp_size=4096, do=True)
    assert raw.read_header(with_opt).arcount == 2
    assert message.strip_opt(with_opt) == plain


def test_replace_opt_keeps_the_extended_rcode() -> None:
    replaced = message.replace_opt(_reply_with_opt(ext_rcode=1), udp_size=1232, do=True)
    edns = raw.read_query_edns(replaced, raw.read_question(replaced).end)
    assert edns is not None
    assert edns.ext_rcode == 1


def test_replace_opt_rejects_duplicate_opt() -> None:
    record = DNSRecord.question("example.com")
    record.add_ar(EDNS0(udp_len=1232))
    record.add_ar(EDNS0(udp_len=4096))
    with pytest.raises(WireError, match="more than one OPT"):
        message.replace_opt(record.pack(), udp_size=1232, do=False)


# --- RFC 8482 ANY reply -------------------------------------------------------------------


def test_minimal_any_reply_answers_with_hinfo() -> None:
    query = resolver.wire.build_query("ExAmple.com", raw.TYPE_ANY, qid=99, cd=True, edns_size=None)
    reply = message.minimal_any_reply(query)
    header = raw.read_header(reply)
    assert (header.id, header.qr, header.rd, header.ra, header.cd) == (99, True, True, True, True)
    assert (header.rcode, header.ancount, header.arcount) == (raw.NOERROR, 1, 0)
    parsed = DNSRecord.parse(reply)
    answer = parsed.rr[0]
    assert str(answer.rname) == "ExAmple.com."
    assert (answer.rtype, answer.rclass, answer.ttl) == (QTYPE.HINFO, 1, 3600)
    assert answer.rdata.data == b"\x07RFC8482\x00"
    assert raw.read_question(reply).name == raw.read_question(query).name


def test_minimal_any_reply_needs_one_question() -> None:
    with pytest.raises(WireError):
        message.minimal_any_reply(b"\x00\x01" + b"\x00" * 10)


def test_the_common_type_names_are_dnslibs() -> None:
    assert {value: QTYPE.forward[value] for value in message._COMMON_TYPES} == message._COMMON_TYPES


@pytest.mark.parametrize(
    "text",
    [
        "a",
        "AAAA",
        "https",
        "Loc",
        "ZONEMD",
        "TYPE65",
        "type0",
        "CLASS1",
        "www.example.com",
        "localhost",
        "TYPE65536",
        "x-y",
        "IN",
    ],
)
def test_type_mnemonics_read_as_dnslibs_table_says(text: str) -> None:
    upper = text.upper()
    if upper in QTYPE.reverse:
        assert message.qtype_value(text) == QTYPE.reverse[upper]
    elif upper.startswith("TYPE") and upper[4:].isdecimal() and int(upper[4:]) < 65536:
        assert message.qtype_value(text) == int(upper[4:])
    else:
        with pytest.raises(WireError):
            message.qtype_value(text)


def test_type_names_are_dnslibs_for_every_type_it_names() -> None:
    assert all(message.qtype_name(value) == name for value, name in QTYPE.forward.items())
    assert message.qtype_name(65280) == "TYPE65280"
