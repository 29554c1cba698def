"""resolver.wire.view and resolver.wire.ttl: the one view of a reply (TTL offsets, minimum,
RFC 2308 negative TTL, OPT span), normalising it, and patching TTLs, checked via dnslib."""

from __future__ import annotations

import struct

import pytest
from dnslib import CNAME, EDNS0, NS, QTYPE, RCODE, RR, SOA, TXT, A, DNSRecord
from hypothesis import given
from hypothesis import strategies as st

from resolver.errors import WireError
from resolver.wire import ttl, view
from resolver.wire.view import ReplyView, normalize


def _soa(name: str = "example.com", ttl_: int = 900, minimum: int = 60) -> RR:
    return RR(
        name,
        QTYPE.SOA,
        rdata=SOA("ns1.example.com", "hostmaster.example.com", (1, 7200, 900, 1209600, minimum)),
        ttl=ttl_,
    )


def _reply(
    qname: str = "www.example.com",
    qtype: str = "A",
    *,
    rcode: int = RCODE.NOERROR,
    answers: tuple[RR, ...] = (),
    authority: tuple[RR, ...] = (),
    additional: tuple[RR, ...] = (),
) -> bytes:
    reply = DNSRecord.question(qname, qtype).reply()
    reply.header.rcode = rcode
    for rr in answers:
        reply.add_answer(rr)
    for rr in authority:
        reply.add_auth(rr)
    for rr in additional:
        reply.add_ar(rr)
    return bytes(reply.pack())


def _a(ttl_: int, name: str = "www.example.com", address: str = "192.0.2.1") -> RR:
    return RR(name, QTYPE.A, rdata=A(address), ttl=ttl_)


def _parsed_ttls(data: bytes) -> list[int]:
    record = DNSRecord.parse(data)
    return [rr.ttl for rr in (*record.rr, *record.auth, *record.ar) if rr.rtype != QTYPE.OPT]


def test_scan_finds_every_ttl_in_all_sections_except_opt() -> None:
    data = _reply(
        answers=(_a(300), _a(200, address="192.0.2.2")),
        authority=(RR("example.com", QTYPE.NS, rdata=NS("ns1.example.com"), ttl=3600),),
        additional=(_a(100, name="ns1.example.com"), EDNS0(flags="do", udp_len=1232)),
    )
    info = view.scan(data)
    assert info.ttls == (300, 200, 3600, 100)
    assert [struct.unpack_from("!I", data, o)[0] for o in info.offsets] == list(info.ttls)
    assert info.min_ttl == 100
    assert (info.rcode, info.negative, info.negative_ttl, info.truncated) == (0, False, None, False)


def test_scan_offsets_are_the_fields_dnslib_reads() -> None:
    data = _reply(answers=(_a(300), _a(301)), additional=(EDNS0(udp_len=4096),))
    info = view.scan(data)
    patched = ttl.patch_ttls(data, info.offsets, ttls=[7, 8])
    assert _parsed_ttls(patched) == [7, 8]
    assert DNSRecord.parse(patched).ar[0].rtype == QTYPE.OPT


@pytest.mark.parametrize(
    ("soa_ttl", "minimum", "expected"),
    [(900, 60, 60), (30, 600, 30), (300, 300, 300)],
    ids=["minimum-lower", "soa-ttl-lower", "equal"],
)
def test_nxdomain_negative_ttl_is_min_of_soa_ttl_and_minimum(
    soa_ttl: int, minimum: int, expected: int
) -> None:
    data = _reply(rcode=RCODE.NXDOMAIN, authority=(_soa(ttl_=soa_ttl, minimum=minimum),))
    info = view.scan(data)
    assert (info.rcode, info.negative, info.negative_ttl) == (RCODE.NXDOMAIN, True, expected)


def test_nodata_without_answers_is_negative() -> None:
    info = view.scan(_reply(qtype="AAAA", authority=(_soa(ttl_=120, minimum=600),)))
    assert (info.rcode, info.negative, info.negative_ttl) == (0, True, 120)


def test_cname_without_the_asked_type_is_nodata() -> None:
    cname = RR("www.example.com", QTYPE.CNAME, rdata=CNAME("web.example.net"), ttl=50)
    info = view.scan(_reply(answers=(cname,), authority=(_soa("example.net"),)))
    assert info.negative
    assert info.negative_ttl == 60
    assert info.min_ttl == 50


@pytest.mark.parametrize(
    ("qtype", "rr"),
    [
        ("CNAME", RR("www.example.com", QTYPE.CNAME, rdata=CNAME("x.example.net"), ttl=5)),
        ("ANY", RR("www.example.com", QTYPE.TXT, rdata=TXT("hi"), ttl=5)),
        ("A", _a(5)),
    ],
    ids=["cname-asked", "any-asked", "a-asked"],
)
def test_answer_of_the_asked_type_is_positive(qtype: str, rr: RR) -> None:
    info = view.scan(_reply(qtype=qtype, answers=(rr,), authority=(_soa(),)))
    assert not info.negative
    assert info.negative_ttl is None


def test_soa_in_answer_section_is_a_positive_answer() -> None:
    info = view.scan(_reply("example.com", "SOA", answers=(_soa(),)))
    assert not info.negative
    assert info.negative_ttl is None


def test_negative_without_soa_has_no_negative_ttl() -> None:
    data = _reply(rcode=RCODE.NXDOMAIN)
    info = view.scan(data)
    assert info == ReplyView(data, len(data), (), (), None, RCODE.NXDOMAIN, True, None, False)


def test_servfail_is_not_negative() -> None:
    info = view.scan(_reply(rcode=RCODE.SERVFAIL))
    assert (info.rcode, info.negative, info.min_ttl) == (RCODE.SERVFAIL, False, None)


def test_extended_rcode_from_opt_is_included() -> None:
    # BADVERS is 16: header rcode 0 with extended rcode 1; it must not pass for NOERROR/NODATA.
    info = view.scan(_reply(additional=(EDNS0(ext_rcode=1),)))
    assert info.rcode == 16
    assert not info.negative


def test_truncated_flag_is_reported() -> None:
    record = DNSRecord.parse(_reply(answers=(_a(60),)))
    record.header.tc = 1
    assert view.scan(bytes(record.pack())).truncated


def test_ttl_with_top_bit_set_counts_as_zero() -> None:
    data = bytearray(_reply(answers=(_a(60),)))
    (offset,) = view.scan(bytes(data)).offsets
    struct.pack_into("!I", data, offset, 0x8000_0001)
    info = view.scan(bytes(data))
    assert info.ttls == (0,)
    assert info.min_ttl == 0


@pytest.mark.parametrize(
    "cut", [5, 20, -3], ids=["inside-header", "inside-question", "inside-record"]
)
def test_cut_off_reply_raises_wire_error(cut: int) -> None:
    data = _reply(answers=(_a(60),))
    with pytest.raises(WireError):
        view.scan(data[:cut])


def test_soa_rdata_too_short_raises_wire_error() -> None:
    data = bytearray(_reply(rcode=RCODE.NXDOMAIN, authority=(_soa(),)))
    # Shrink the SOA's rdata to 10 bytes and drop the rest: a well-framed but impossible SOA.
    info = view.scan(bytes(data))
    rdlength_at = info.offsets[0] + 4
    struct.pack_into("!H", data, rdlength_at, 10)
    with pytest.raises(WireError, match="SOA"):
        view.scan(bytes(data[: rdlength_at + 2 + 10]))


def test_decrement_stops_at_zero() -> None:
    data = _reply(answers=(_a(10), _a(300, address="192.0.2.9")))
    info = view.scan(data)
    assert _parsed_ttls(ttl.patch_ttls(data, info.offsets, 60)) == [0, 240]


def test_decrement_by_zero_or_less_changes_nothing() -> None:
    data = _reply(answers=(_a(10),))
    info = view.scan(data)
    assert ttl.patch_ttls(data, info.offsets, 0) == data
    assert ttl.patch_ttls(data, info.offsets, -5) == data


def test_set_ttls_clamps_to_valid_range() -> None:
    data = _reply(answers=(_a(10), _a(10, address="192.0.2.9")))
    info = view.scan(data)
    patched = ttl.patch_ttls(data, info.offsets, ttls=[-4, 2**40])
    assert ttl.read_ttls(patched, info.offsets) == [0, ttl.MAX_TTL]
    assert _parsed_ttls(ttl.patch_ttls(data, info.offsets, ttls=30)) == [30, 30]


@pytest.mark.parametrize("kwargs", [{}, {"elapsed": 1, "ttls": 3}], ids=["neither", "both"])
def test_patch_needs_exactly_one_of_elapsed_or_ttls(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        ttl.patch_ttls(b"\x00" * 12, (), **kwargs)


def test_offset_outside_the_message_raises_wire_error() -> None:
    with pytest.raises(WireError):
        ttl.patch_ttls(b"\x00" * 12, (10,), 1)
    with pytest.raises(WireError):
        ttl.patch_ttls(b"\x00" * 12, (10,), ttls=1)
    with pytest.raises(WireError):
        ttl.read_ttls(b"\x00" * 12, (9,))


@given(
    ttls=st.lists(st.integers(0, ttl.MAX_TTL), min_size=1, max_size=8),
    elapsed=st.integers(0, 2**32),
)
def test_decrement_matches_max_zero_of_difference(ttls: list[int], elapsed: int) -> None:
    answers = tuple(_a(t, address=f"192.0.2.{i}") for i, t in enumerate(ttls))
    data = _reply(answers=answers)
    patched = ttl.patch_ttls(data, view.scan(data).offsets, elapsed)
    assert _parsed_ttls(patched) == [max(0, t - elapsed) for t in ttls]


def test_the_opt_record_is_found_in_the_same_walk() -> None:
    data = _reply(answers=(_a(60),), additional=(EDNS0(udp_len=1232),))
    info = view.scan(data)
    assert (info.opt_start, info.opt_end) == (len(data) - 11, len(data))
    assert len(info.offsets) == 1  # the OPT's "TTL" holds flags: not a TTL


def test_more_than_one_opt_is_malformed() -> None:
    data = _reply(additional=(EDNS0(), EDNS0()))
    with pytest.raises(WireError, match="more than one OPT"):
        view.scan(data)


def test_normalize_cuts_a_last_opt_sets_ra_clears_aa_and_keeps_the_offsets() -> None:
    record = DNSRecord.parse(_reply(answers=(_a(60),), additional=(EDNS0(udp_len=1232),)))
    record.header.aa = 1
    record.header.ra = 0
    data = bytes(record.pack())
    served = normalize(view.scan(data))
    parsed = DNSRecord.parse(served.message)
    assert (parsed.header.aa, parsed.header.ra, parsed.header.ar) == (0, 1, 0)
    assert [str(rr.rdata) for rr in parsed.rr] == ["192.0.2.1"]
    assert served == view.scan(served.message)  # the view still describes the bytes


def test_normalize_rebuilds_when_records_follow_the_opt() -> None:
    record = DNSRecord.parse(_reply(answers=(_a(60),)))
    record.add_ar(EDNS0(udp_len=1232))
    record.add_ar(RR("ns1.example.com", QTYPE.A, rdata=A("192.0.2.53"), ttl=30))
    served = normalize(view.scan(bytes(record.pack())))
    parsed = DNSRecord.parse(served.message)
    assert [rr.rtype for rr in parsed.ar] == [QTYPE.A]
    assert served == view.scan(served.message)
    assert served.ttls == (60, 30)


def test_normalize_refuses_extended_rcode_bits() -> None:
    data = _reply(additional=(EDNS0(ext_rcode=1),))
    with pytest.raises(WireError, match="extended rcode"):
        normalize(view.scan(data))
