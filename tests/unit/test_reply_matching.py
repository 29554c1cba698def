"""The one reply matcher (RFC 5452 section 9.1) and the one query builder, which the daemon's
transport, the stub client and +trace share: mismatches told in dig's words; no sockets."""

from __future__ import annotations

import struct

import pytest

from resolver.wire import (
    CASE_DIFFERS,
    FORMERR,
    NOERROR,
    NOTIMP,
    NXDOMAIN,
    REFUSED,
    SERVFAIL,
    build_query,
    make_query,
    name_to_wire,
    read_header,
    read_query_edns,
    read_question,
    reply_mismatch,
)

QID = 4242
QUESTION = name_to_wire("www.example.com.") + struct.pack("!HH", 1, 1)


def reply(
    *,
    qid: int = QID,
    flags: int = 0x8580,
    name: str = "www.example.com.",
    qtype: int = 1,
    qclass: int = 1,
) -> bytes:
    query = build_query(name, qtype, qclass, qid=qid, edns_size=None)
    return struct.pack("!HH", qid, flags) + query[4:]


def questionless(rcode: int, qid: int = QID) -> bytes:
    return struct.pack("!6H", qid, 0x8000 | rcode, 0, 0, 0, 0)


def test_the_matching_reply_is_accepted() -> None:
    assert reply_mismatch(reply(), QID, QUESTION) is None


def test_the_question_matches_whatever_its_case_without_0x20() -> None:
    assert reply_mismatch(reply(name="WwW.Example.COM."), QID, QUESTION) is None


def test_with_0x20_the_name_must_keep_the_querys_case() -> None:
    sent = name_to_wire("wWw.ExAmple.com.") + struct.pack("!HH", 1, 1)
    same = reply(name="wWw.ExAmple.com.")
    other_case = reply(name="www.example.com.")
    assert reply_mismatch(same, QID, sent, case_exact=True) is None
    assert reply_mismatch(other_case, QID, sent, case_exact=True) is CASE_DIFFERS
    assert reply_mismatch(other_case, QID, sent) is None


def test_a_case_difference_in_another_name_is_no_case_mismatch() -> None:
    problem = reply_mismatch(reply(name="www.example.ORG."), QID, QUESTION, case_exact=True)
    assert problem is not None
    assert problem is not CASE_DIFFERS


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param(reply(qid=7), ";; Warning: ID mismatch: expected ID 4242, got 7", id="id"),
        pytest.param(reply(flags=0x0100), ";; Warning: query response not set", id="no-qr"),
        pytest.param(
            reply(flags=0x8000 | 4 << 11),
            ";; Warning: Opcode mismatch: expected QUERY, got NOTIFY",
            id="opcode",
        ),
        pytest.param(
            reply(name="mail.example.com."),
            ";; Question section mismatch: got mail.example.com./A/IN",
            id="name",
        ),
        pytest.param(
            reply(qtype=28), ";; Question section mismatch: got www.example.com./AAAA/IN", id="type"
        ),
        pytest.param(
            reply(qclass=3), ";; Question section mismatch: got www.example.com./A/CH", id="class"
        ),
        pytest.param(
            reply()[:4] + b"\x00\x02" + reply()[6:],
            ";; Question section mismatch: 2 questions",
            id="two-questions",
        ),
        pytest.param(reply()[:20], ";; Got bad packet: label", id="cut-question"),
        pytest.param(b"\x10\x92\x81", ";; Got bad packet: message of 3 bytes", id="short"),
    ],
)
def test_a_mismatch_is_told_in_digs_words(data: bytes, reason: str) -> None:
    problem = reply_mismatch(data, QID, QUESTION)
    assert problem is not None
    assert problem.startswith(reason)


@pytest.mark.parametrize(
    "rcode",
    [
        pytest.param(FORMERR, id="formerr"),
        pytest.param(SERVFAIL, id="servfail"),
        pytest.param(NOTIMP, id="notimp"),
        pytest.param(REFUSED, id="refused"),
    ],
)
def test_an_error_reply_without_a_question_is_accepted(rcode: int) -> None:
    assert reply_mismatch(questionless(rcode), QID, QUESTION) is None
    assert reply_mismatch(questionless(rcode), QID, QUESTION, case_exact=True) is None


@pytest.mark.parametrize(
    "rcode", [pytest.param(NOERROR, id="noerror"), pytest.param(NXDOMAIN, id="nxdomain")]
)
def test_an_answer_without_a_question_is_refused(rcode: int) -> None:
    problem = reply_mismatch(questionless(rcode), QID, QUESTION)
    assert problem is not None
    assert problem.startswith(";; Question section mismatch: no question")


def test_an_error_reply_without_a_question_still_needs_our_id() -> None:
    problem = reply_mismatch(questionless(REFUSED, qid=7), QID, QUESTION)
    assert problem == ";; Warning: ID mismatch: expected ID 4242, got 7"


def test_make_query_returns_the_question_as_sent() -> None:
    query, sent = make_query(
        name_to_wire("www.example.com."), 28, qid=9, rd=False, cd=True, ad=True, do=True
    )
    header = read_header(query)
    assert (header.id, header.rd, header.cd, header.ad, header.qdcount, header.arcount) == (
        9,
        False,
        True,
        True,
        1,
        1,
    )
    question = read_question(query)
    assert query[12 : question.end] == sent
    edns = read_query_edns(query, question.end)
    assert edns is not None
    assert (edns.udp_size, edns.do) == (1232, True)


def test_make_query_randomizes_case_and_the_reply_must_echo_it() -> None:
    name = name_to_wire("abcdefghijklmnopqrstuvwxyz.example.")
    queries = [make_query(name, 1, qid=1, edns_size=None, randomize_case=True) for _ in range(4)]
    assert all(sent[:-4].lower() == name for _, sent in queries)
    assert any(sent[:-4] != name for _, sent in queries)
    query, sent = queries[0]
    echoed = struct.pack("!HH", 1, 0x8180) + query[4:]
    assert reply_mismatch(echoed, 1, sent, case_exact=True) is None


def test_stub_module_exports_the_exchange() -> None:
    import resolver.stub

    assert sorted(resolver.stub.__all__) == [
        "Exchange",
        "ask",
        "exchange",
        "families",
        "server_name",
    ]
