"""Query triage and reply shaping on raw bytes, without sockets."""

from __future__ import annotations

import struct

import pytest

from resolver.triage import Local, Parsed, fit, for_client, triage
from resolver.wire import RR, DNSRecord, build_query, parse


def allow() -> bool:
    return True


def deny() -> bool:
    return False


def rcode_of(result: Local | Parsed) -> int:
    assert isinstance(result, Local)
    assert result.reply is not None
    return parse(result.reply).header.rcode


@pytest.mark.parametrize(
    ("query", "outcome"),
    [
        (b"\x12\x34\x01", "dropped"),
        (build_query("www.example.com.", 1, qid=1)[:2] + b"\x81\x00" + b"\x00" * 8, "dropped"),
    ],
    ids=["short", "response"],
)
def test_short_datagrams_and_responses_are_dropped(query: bytes, outcome: str) -> None:
    assert triage(query, allow) == Local(None, outcome)


def test_notify_opcode_gets_notimp() -> None:
    query = bytearray(build_query("example.com.", 6, qid=7))
    query[2] |= 4 << 3  # opcode NOTIFY
    assert rcode_of(triage(bytes(query), allow)) == 4


def test_two_questions_get_formerr() -> None:
    query = bytearray(build_query("example.com.", 1, qid=7, edns_size=None))
    struct.pack_into("!H", query, 4, 2)
    assert rcode_of(triage(bytes(query), allow)) == 1


def test_edns_version_one_gets_badvers() -> None:
    query = bytearray(build_query("example.com.", 1, qid=7))
    query[-5] = 1  # the OPT record's version byte
    result = triage(bytes(query), allow)
    assert isinstance(result, Local)
    assert result.reply is not None
    record = DNSRecord.parse(result.reply)
    assert record.ar[0].ttl >> 24 == 1  # extended rcode 1: BADVERS (16)


def test_client_outside_allowed_networks_gets_refused() -> None:
    assert rcode_of(triage(build_query("example.com.", 1, qid=7), deny)) == 5


def _notify() -> bytes:
    query = bytearray(build_query("example.com.", 6, qid=7))
    query[2] |= 4 << 3
    return bytes(query)


def _two_questions() -> bytes:
    query = bytearray(build_query("example.com.", 1, qid=7, edns_size=None))
    struct.pack_into("!H", query, 4, 2)
    return bytes(query)


def _edns_version_one() -> bytes:
    query = bytearray(build_query("example.com.", 1, qid=7))
    query[-5] = 1
    return bytes(query)


@pytest.mark.parametrize(
    "query",
    [
        pytest.param(_notify(), id="notify"),
        pytest.param(_two_questions(), id="two-questions"),
        pytest.param(_edns_version_one(), id="edns-version-1"),
        pytest.param(build_query("example.com.", 255, qid=7), id="any"),
        pytest.param(build_query("example.com.", 252, qid=7), id="axfr"),
        pytest.param(build_query("example.com.", 1, qid=7)[:12] + b"\x05ab", id="junk"),
    ],
)
def test_a_client_outside_allow_gets_refused_before_any_other_reply(query: bytes) -> None:
    result = triage(query, deny)
    assert isinstance(result, Local)
    assert result.outcome == "denied"
    assert result.reply is not None
    reply = parse(result.reply)
    assert (reply.header.rcode, reply.header.id) == (5, 7)
    assert reply.ar == []  # no OPT: nothing is negotiated with it
    assert len(result.reply) <= len(query)


def test_axfr_is_refused_and_any_gets_the_rfc8482_answer() -> None:
    assert rcode_of(triage(build_query("example.com.", 252, qid=7), allow)) == 5
    result = triage(build_query("example.com.", 255, qid=7), allow)
    assert isinstance(result, Local)
    assert result.reply is not None
    assert parse(result.reply).rr[0].rtype == 13  # HINFO "RFC8482"


def test_plain_query_is_parsed_with_do_and_cd() -> None:
    result = triage(build_query("Example.COM.", 28, qid=7, do=True, cd=True), allow)
    assert isinstance(result, Parsed)
    assert (result.question.qtype, result.do, result.cd) == (28, True, True)
    assert result.question.text == "Example.COM."


def test_for_client_sets_id_rd_case_and_our_opt() -> None:
    query = build_query("wWw.example.com.", 1, qid=4242, rd=False)
    parsed = triage(query, allow)
    assert isinstance(parsed, Parsed)
    upstream = DNSRecord.question("www.example.com.")
    upstream.header.id = 1
    upstream.header.qr = 1
    upstream.header.ra = 1
    upstream.add_answer(*RR.fromZone("www.example.com. 60 A 127.1.0.1"))
    reply = DNSRecord.parse(for_client(upstream.pack(), query, parsed))
    assert reply.header.id == 4242
    assert reply.header.rd == 0
    assert str(reply.q.qname) == "wWw.example.com."
    assert reply.ar[0].rtype == 41


def test_for_client_writes_out_a_question_the_query_compressed() -> None:
    # The question's name is a pointer to offset 2, read as the name "\x10." (the flags byte
    # 0x01 is a label length, the qdcount's high byte ends the name), as a fuzzer sent it.
    query = struct.pack("!6H", 0x60, 0x0110, 1, 0, 0, 0) + b"\xc0\x02" + struct.pack("!HH", 8, 1)
    parsed = triage(query, allow)
    assert isinstance(parsed, Parsed)
    assert parsed.question.name == b"\x01\x10\x00"
    engine_reply = struct.pack("!6H", 0, 0x8180, 1, 0, 0, 0) + b"\x01\x10\x00" + query[-4:]
    reply = for_client(engine_reply, query, parsed)
    assert reply[12:] == b"\x01\x10\x00" + query[-4:]  # the name itself, nothing left over
    assert reply[:2] == query[:2]


def test_fit_truncates_past_512_without_edns_but_not_over_tcp() -> None:
    query = build_query("many.example.com.", 1, qid=1, edns_size=None)
    parsed = triage(query, allow)
    assert isinstance(parsed, Parsed)
    big = query[:12] + query[12 : parsed.question.end] + b"\x00" * 600
    cut, truncated = fit(big, parsed.edns, tcp=False)
    assert truncated
    assert len(cut) < 512
    assert parse(cut).header.tc == 1
    assert fit(big, parsed.edns, tcp=True) == (big, False)
