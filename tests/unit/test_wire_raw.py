"""The raw-bytes fast paths, checked against dnslib's parse and fuzzed with random bytes."""

from __future__ import annotations

import contextlib
import struct

import pytest
from dnslib import AAAA, CNAME, EDNS0, QTYPE, RCODE, RR, TXT, A, DNSRecord
from hypothesis import given
from hypothesis import strategies as st

from resolver.errors import WireError
from resolver.wire import raw


def _query(name: str = "ExAmple.COM", qtype: str = "A", *, do: bool = False) -> bytes:
    record = DNSRecord.question(name, qtype)
    record.header.id = 0x1234
    if do:
        record.add_ar(EDNS0(udp_len=4096, flags="do"))
    packed: bytes = record.pack()
    return packed


def _reply() -> bytes:
    """A reply whose records compress against the question and each other."""
    record = DNSRecord.question("www.Example.com", "A").reply()
    record.add_answer(RR("www.Example.com", QTYPE.CNAME, rdata=CNAME("web.example.com"), ttl=60))
    record.add_answer(RR("web.example.com", QTYPE.A, rdata=A("192.0.2.1"), ttl=300))
    record.add_auth(RR("example.com", QTYPE.TXT, rdata=TXT("hello"), ttl=10))
    record.add_ar(RR("web.example.com", QTYPE.AAAA, rdata=AAAA("2001:db8::1"), ttl=20))
    packed: bytes = record.pack()
    return packed


def _header(qdcount: int = 1, ancount: int = 0, nscount: int = 0, arcount: int = 0) -> bytes:
    return struct.pack("!6H", 0xBEEF, 0x0100, qdcount, ancount, nscount, arcount)


# --- header -------------------------------------------------------------------------------


def test_read_header_decodes_flags_like_dnslib() -> None:
    reply = DNSRecord.question("example.com").reply()
    reply.header.rcode = RCODE.NXDOMAIN
    reply.header.ad = 1
    reply.header.cd = 1
    reply.header.tc = 1
    header = raw.read_header(reply.pack())
    assert header.id == reply.header.id
    assert (header.qr, header.aa, header.tc, header.rd, header.ra) == (True, True, True, True, True)
    assert (header.ad, header.cd) == (True, True)
    assert header.opcode == raw.OPCODE_QUERY
    assert header.rcode == raw.NXDOMAIN
    assert (header.qdcount, header.ancount, header.nscount, header.arcount) == (1, 0, 0, 0)


def test_read_header_reads_opcode_bits() -> None:
    header = raw.read_header(struct.pack("!6H", 1, 4 << 11, 0, 0, 0, 0))
    assert header.opcode == 4
    assert not header.qr


def test_read_header_rejects_short_message() -> None:
    with pytest.raises(WireError, match="shorter than the 12-byte header"):
        raw.read_header(b"\x00" * 11)


# --- names --------------------------------------------------------------------------------


def test_read_name_follows_compression_and_keeps_case() -> None:
    data = _reply()
    parsed = DNSRecord.parse(data)
    question = raw.read_question(data)
    spans = list(raw.walk_records(data, question.end, 2))
    name, end = raw.read_name(data, spans[1].name_offset)
    assert name == b"\x03web\x07example\x03com\x00"
    # dnslib compresses the owner to one pointer into the CNAME's rdata.
    assert data[spans[1].name_offset] >= 0xC0
    assert end == spans[1].name_offset + 2
    assert raw.name_to_text(name) == str(parsed.rr[1].rname)
    assert raw.read_name(data, spans[0].name_offset)[0] == b"\x03www\x07Example\x03com\x00"


@pytest.mark.parametrize(
    ("tail", "name"),
    [
        (b"\x03Www\x00", b"\x03Www\x00"),
        (b"\x03Www\xc0\x0c", b"\x03Www\x07Example\x03com\x00"),
        (b"\xc0\x0c", b"\x07Example\x03com\x00"),
    ],
    ids=["labels-only", "labels-then-pointer", "pointer-only"],
)
def test_read_name_joins_labels_in_place_with_what_a_pointer_adds(tail: bytes, name: bytes) -> None:
    data = _header() + b"\x07Example\x03com\x00" + tail
    assert raw.read_name(data, 25) == (name, len(data))


def test_skip_name_and_read_name_agree_on_end() -> None:
    data = _reply()
    for span in raw.walk_records(data, raw.read_question(data).end, 2):
        assert raw.skip_name(data, span.name_offset) == raw.read_name(data, span.name_offset)[1]


def test_compression_loop_raises_wire_error() -> None:
    # A pointer to itself, then two pointers pointing at each other.
    self_loop = _header() + b"\xc0\x0c\x00\x01\x00\x01"
    pair = _header() + b"\x01a\xc0\x10" + b"\xc0\x0c"
    for data in (self_loop, pair):
        with pytest.raises(WireError):
            raw.read_name(data, 12)
    with pytest.raises(WireError, match="points forward"):
        raw.read_name(pair, 16)


def test_pointer_past_end_raises_wire_error() -> None:
    data = _header() + b"\x01a\xc0\xff"
    with pytest.raises(WireError, match="points forward"):
        raw.read_name(data, 12)
    with pytest.raises(WireError, match="points forward"):
        raw.skip_name(data, 12)


def test_pointer_cut_off_raises_wire_error() -> None:
    with pytest.raises(WireError, match="cut off"):
        raw.skip_name(_header() + b"\x01a\xc0", 12)


def test_label_past_end_raises_wire_error() -> None:
    data = _header() + b"\x05ab"
    with pytest.raises(WireError):
        raw.read_name(data, 12)
    with pytest.raises(WireError):
        raw.skip_name(data, 12)


@pytest.mark.parametrize("first", [0x40, 0x80, 0xBF], ids=["extended-0x40", "0x80", "0xbf"])
def test_reserved_label_types_raise_wire_error(first: int) -> None:
    data = _header() + bytes((first,)) + b"a" * 80 + b"\x00"
    with pytest.raises(WireError, match="label type"):
        raw.read_name(data, 12)
    with pytest.raises(WireError, match="label type"):
        raw.skip_name(data, 12)


def test_label_of_63_bytes_is_read() -> None:
    label = b"a" * 63
    data = _header() + b"\x3f" + label + b"\x00"
    assert raw.read_name(data, 12) == (b"\x3f" + label + b"\x00", len(data))


def test_name_of_255_bytes_is_read_and_256_is_rejected() -> None:
    # 4 labels of 63 bytes: 4 * 64 + 1 = 257 bytes; trim the last label to reach 255 or 256.
    for last, ok in ((61, True), (62, False)):
        name = (b"\x3f" + b"a" * 63) * 3 + bytes((last,)) + b"b" * last + b"\x00"
        assert len(name) == (255 if ok else 256)
        data = _header() + name
        if ok:
            assert raw.read_name(data, 12) == (name, len(data))
            assert raw.skip_name(data, 12) == len(data)
        else:
            with pytest.raises(WireError, match="longer than 255"):
                raw.read_name(data, 12)
            with pytest.raises(WireError, match="longer than 255"):
                raw.skip_name(data, 12)


def test_name_over_255_bytes_through_pointers_is_rejected() -> None:
    # Each name adds one label in front of the previous one: the last expands past 255 bytes.
    data = bytearray(_header() + b"\x3f" + b"a" * 63 + b"\x00")
    previous = 12
    for _ in range(4):
        start = len(data)
        data += b"\x3f" + b"b" * 63 + struct.pack("!H", 0xC000 | previous)
        previous = start
    with pytest.raises(WireError, match="longer than 255"):
        raw.read_name(bytes(data), previous)


def test_name_to_text_escapes_like_dig() -> None:
    assert raw.name_to_text(b"\x00") == "."
    assert raw.name_to_text(b"\x03a.b\x02\\c\x00") == "a\\.b.\\\\c."
    assert raw.name_to_text(b"\x04a b\xff\x00") == "a\\032b\\255."


# --- question -----------------------------------------------------------------------------


def test_read_question_keeps_0x20_case() -> None:
    data = _query("wWw.ExAmple.COM", "AAAA")
    question = raw.read_question(data)
    assert question.name == b"\x03wWw\x07ExAmple\x03COM\x00"
    assert question.text == "wWw.ExAmple.COM."
    assert question.key() == b"\x03www\x07example\x03com\x00"
    assert (question.qtype, question.qclass, question.end) == (28, raw.CLASS_IN, len(data))


def test_randomize_case_flips_only_the_case_of_letters() -> None:
    name = b"\x03www\x07ex-4_pl\x03com\x00"
    drawn = {raw.randomize_case(name) for _ in range(64)}
    # bytes.lower() maps A-Z only: digits, hyphens and length bytes must be as they were.
    assert all(d.lower() == name for d in drawn)
    assert len(drawn) > 1  # 2**11 spellings: 64 draws all equal would be a broken source


def test_question_key_lowercases_ascii_only() -> None:
    question = raw.Question(b"\x02A\xc4\x00", 1, 1, 0)
    assert question.key() == b"\x02a\xc4\x00"


def test_read_question_of_root() -> None:
    data = _query(".", "NS")
    question = raw.read_question(data)
    assert (question.name, question.text, question.qtype) == (b"\x00", ".", raw.TYPE_NS)


@pytest.mark.parametrize("qdcount", [0, 2], ids=["no-question", "two-questions"])
def test_read_question_requires_exactly_one_question(qdcount: int) -> None:
    record = DNSRecord.question("example.com")
    if qdcount == 2:
        record.add_question(record.questions[0])
    else:
        record.questions = []
    with pytest.raises(WireError, match="exactly one question"):
        raw.read_question(record.pack())


def test_read_question_rejects_cut_off_type() -> None:
    with pytest.raises(WireError, match="cut off"):
        raw.read_question(_query()[:-2])


# --- set_id -------------------------------------------------------------------------------


def test_set_id_changes_only_the_id() -> None:
    data = _query()
    changed = raw.set_id(data, 0xABCD)
    assert raw.read_header(changed).id == 0xABCD
    assert changed[2:] == data[2:]


def test_set_id_rejects_short_message_and_bad_id() -> None:
    with pytest.raises(WireError):
        raw.set_id(b"\x00\x01", 1)
    with pytest.raises(ValueError, match="0-65535"):
        raw.set_id(_query(), 0x10000)


# --- records and sections -----------------------------------------------------------------


def test_walk_records_matches_dnslib() -> None:
    data = _reply()
    parsed = DNSRecord.parse(data)
    sections = raw.section_offsets(data)
    header = raw.read_header(data)
    spans = list(raw.walk_records(data, sections.answer, header.ancount + header.nscount + 1))
    expected = [*parsed.rr, *parsed.auth, *parsed.ar]
    assert [s.rtype for s in spans] == [rr.rtype for rr in expected]
    assert [s.rclass for s in spans] == [rr.rclass for rr in expected]
    ttls = [struct.unpack_from("!I", data, s.ttl_offset)[0] for s in spans]
    assert ttls == [rr.ttl for rr in expected]
    assert data[spans[1].rdata_offset : spans[1].end] == bytes([192, 0, 2, 1])
    assert (sections.authority, sections.additional, sections.end) == (
        spans[2].name_offset,
        spans[3].name_offset,
        len(data),
    )


def test_walk_records_rejects_count_past_end() -> None:
    data = _reply()
    with pytest.raises(WireError):
        list(raw.walk_records(data, raw.read_question(data).end, 10))


def test_walk_records_rejects_rdata_past_end() -> None:
    with pytest.raises(WireError, match="rdata"):
        list(raw.walk_records(_reply()[:-1], raw.section_offsets(_reply()).additional, 1))


def test_section_offsets_rejects_bad_counts() -> None:
    data = bytearray(_reply())
    data[7] += 1  # one more answer than present
    with pytest.raises(WireError):
        raw.section_offsets(bytes(data))


# --- EDNS ---------------------------------------------------------------------------------


def test_read_query_edns_reads_do_and_size() -> None:
    data = _query(do=True)
    edns = raw.read_query_edns(data, raw.read_question(data).end)
    assert edns is not None
    assert (edns.udp_size, edns.do, edns.version, edns.ext_rcode) == (4096, True, 0, 0)
    assert edns.offset == raw.read_question(data).end


def test_read_query_edns_without_do_or_opt() -> None:
    record = DNSRecord.question("example.com")
    record.add_ar(EDNS0(udp_len=512, version=1))
    data = record.pack()
    edns = raw.read_query_edns(data, raw.read_question(data).end)
    assert edns is not None
    assert (edns.udp_size, edns.do, edns.version) == (512, False, 1)
    plain = _query()
    assert raw.read_query_edns(plain, raw.read_question(plain).end) is None


def test_read_query_edns_rejects_duplicate_opt() -> None:
    record = DNSRecord.question("example.com")
    record.add_ar(EDNS0(udp_len=1232))
    record.add_ar(EDNS0(udp_len=4096))
    data = record.pack()
    with pytest.raises(WireError, match="more than one OPT"):
        raw.read_query_edns(data, raw.read_question(data).end)


def test_read_query_edns_rejects_non_root_owner() -> None:
    record = DNSRecord.question("example.com")
    record.add_ar(EDNS0("example.com", udp_len=1232))
    data = record.pack()
    with pytest.raises(WireError, match="owner"):
        raw.read_query_edns(data, raw.read_question(data).end)


# --- error and truncated replies ----------------------------------------------------------


def test_error_reply_copies_id_opcode_rd_and_question() -> None:
    query = DNSRecord.question("ExAmple.com", "MX")
    query.header.id = 4321
    query.header.rd = 1
    query.add_ar(EDNS0(udp_len=1232))
    reply = DNSRecord.parse(raw.error_reply(query.pack(), raw.SERVFAIL))
    assert reply.header.id == 4321
    assert (reply.header.qr, reply.header.rd, reply.header.ra, reply.header.aa) == (1, 1, 1, 0)
    assert reply.header.rcode == RCODE.SERVFAIL
    assert reply.header.opcode == 0
    assert [str(q.qname) for q in reply.questions] == ["ExAmple.com."]
    assert reply.questions[0].qtype == QTYPE.MX
    assert (reply.rr, reply.auth, reply.ar) == ([], [], [])


def test_error_reply_keeps_opcode_and_clear_rd() -> None:
    query = struct.pack("!6H", 9, 5 << 11, 1, 0, 0, 0) + b"\x00\x00\x06\x00\x01"
    header = raw.read_header(raw.error_reply(query, raw.NOTIMP))
    assert (header.opcode, header.rd, header.qr, header.rcode) == (5, False, True, raw.NOTIMP)


@pytest.mark.parametrize(
    "query",
    [
        pytest.param(_header(qdcount=0), id="no-question"),
        pytest.param(_header(qdcount=2) + b"\x00\x00\x01\x00\x01" * 2, id="two-questions"),
        pytest.param(_header() + b"\x05ab", id="cut-off-question"),
    ],
)
def test_error_reply_drops_unparsable_question(query: bytes) -> None:
    reply = raw.error_reply(query, raw.FORMERR)
    header = raw.read_header(reply)
    assert len(reply) == raw.HEADER_SIZE
    assert (header.id, header.qdcount, header.rcode, header.qr) == (0xBEEF, 0, raw.FORMERR, True)


def test_error_reply_rejects_short_query_and_wide_rcode() -> None:
    with pytest.raises(WireError):
        raw.error_reply(b"\x12\x34", raw.FORMERR)
    with pytest.raises(ValueError, match="EDNS"):
        raw.error_reply(_query(), 16)


def test_truncated_reply_keeps_header_and_question_only() -> None:
    data = _reply()
    truncated = raw.truncated_reply(data)
    parsed = DNSRecord.parse(truncated)
    assert parsed.header.tc == 1
    assert parsed.header.id == DNSRecord.parse(data).header.id
    assert (parsed.header.a, parsed.header.auth, parsed.header.ar) == (0, 0, 0)
    assert truncated[12:] == data[12 : raw.read_question(data).end]


# --- fuzzing: random bytes may only ever raise WireError ----------------------------------

_REPLY_HEAD = _reply()[:40]
_packets = st.one_of(
    st.binary(max_size=80),
    st.builds(lambda head, body: head + body, st.binary(min_size=12, max_size=12), st.binary()),
    st.builds(lambda body: _REPLY_HEAD + body, st.binary(max_size=60)),
)


@given(_packets)
def test_raw_readers_raise_only_wire_error(data: bytes) -> None:
    for call in (
        lambda: raw.read_header(data),
        lambda: raw.read_question(data),
        lambda: raw.section_offsets(data),
        lambda: raw.truncated_reply(data),
        lambda: raw.error_reply(data, raw.FORMERR),
    ):
        with contextlib.suppress(WireError):
            call()


@given(_packets, st.integers(min_value=0, max_value=100), st.integers(min_value=0, max_value=8))
def test_name_and_record_walkers_raise_only_wire_error(
    data: bytes, offset: int, count: int
) -> None:
    try:
        end = raw.skip_name(data, offset)
        name, after = raw.read_name(data, offset)
        assert end == after
        assert len(name) <= 255
    except WireError:
        pass
    try:
        for span in raw.walk_records(data, offset, count):
            assert span.end <= len(data)
    except WireError:
        pass
    with contextlib.suppress(WireError):
        raw.read_query_edns(data, offset)


@given(_packets)
def test_error_reply_is_parsable_by_dnslib(data: bytes) -> None:
    try:
        reply = raw.error_reply(data, raw.FORMERR)
    except WireError:
        return
    try:
        question = raw.read_question(data)
    except WireError:
        assert raw.read_header(reply).qdcount == 0
        return
    assert raw.read_question(reply).name == question.name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            b"\x03www\x07example\x03com\x00",
            [b"\x03www\x07example\x03com\x00", b"\x07example\x03com\x00", b"\x03com\x00"],
        ),
        (b"\x03com\x00", [b"\x03com\x00"]),
        (b"\x00", []),
    ],
    ids=["three-labels", "one-label", "root"],
)
def test_ancestors_are_the_name_and_each_name_above_it_without_the_root(
    name: bytes, expected: list[bytes]
) -> None:
    assert list(raw.ancestors(name)) == expected


def test_ancestors_of_the_longest_name_stop() -> None:
    name = b"\x01a" * 127 + b"\x00"
    assert len(list(raw.ancestors(name))) == 127
