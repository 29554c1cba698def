"""The stub client's reply matching (RFC 5452 section 9.1), told in dig's words: no sockets."""

from __future__ import annotations

import struct

import pytest

from resolver.query import Question
from resolver.stub import match_reply
from resolver.wire import build_query

QID = 4242
QUESTION = Question("www.example.com.", 1)


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


def test_the_matching_reply_is_accepted() -> None:
    assert match_reply(reply(), QID, QUESTION) is None


def test_the_question_matches_whatever_its_case() -> None:
    assert match_reply(reply(name="WwW.Example.COM."), QID, QUESTION) is None


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
        pytest.param(b"\x10\x92\x81", ";; Got bad packet: message of 3 bytes", id="short"),
    ],
)
def test_a_mismatch_is_told_in_digs_words(data: bytes, reason: str) -> None:
    problem = match_reply(data, QID, QUESTION)
    assert problem is not None
    assert problem.startswith(reason)


def test_a_reply_without_a_question_counts_only_with_an_error_rcode() -> None:
    formerr = struct.pack("!6H", QID, 0x8001, 0, 0, 0, 0)
    noerror = struct.pack("!6H", QID, 0x8000, 0, 0, 0, 0)
    assert match_reply(formerr, QID, QUESTION) is None
    assert match_reply(noerror, QID, QUESTION) is not None


def test_stub_module_exports_the_exchange_and_the_matching() -> None:
    import resolver.stub

    assert sorted(resolver.stub.__all__) == [
        "Exchange",
        "ask",
        "exchange",
        "families",
        "match_reply",
        "server_name",
    ]
