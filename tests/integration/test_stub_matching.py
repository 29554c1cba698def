"""The stub client (``resolver query`` and ``+trace``) matches replies with the daemon's one
matcher: an error reply without a question is taken, an answer without one is a stray told in
dig's words. Against a scripted UDP server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from support import upstream_in_thread

from resolver.errors import UpstreamTimeout
from resolver.query import QueryOptions, Question
from resolver.stub import exchange
from resolver.wire import read_header

QUESTION = Question("www.example.com.", 1)


def questionless(rcode: int) -> Callable[[bytes], bytes]:
    def script(query: bytes) -> bytes:
        return query[:2] + bytes((0x80, rcode)) + bytes(8)

    return script


@pytest.mark.parametrize("randomize_case", [False, True], ids=["plain", "0x20"])
@pytest.mark.parametrize(
    "rcode",
    [
        pytest.param(1, id="formerr"),
        pytest.param(2, id="servfail"),
        pytest.param(4, id="notimp"),
        pytest.param(5, id="refused"),
    ],
)
def test_an_error_reply_without_a_question_is_taken(rcode: int, randomize_case: bool) -> None:
    warnings: list[str] = []
    options = QueryOptions(timeout=2.0, tries=1)
    with upstream_in_thread(questionless(rcode)) as server:
        done = exchange(
            server.address, QUESTION, options, warnings.append, randomize_case=randomize_case
        )
    assert (read_header(done.data).rcode, read_header(done.data).qdcount) == (rcode, 0)
    assert warnings == []


@pytest.mark.parametrize("rcode", [pytest.param(0, id="noerror"), pytest.param(3, id="nxdomain")])
def test_an_answer_without_a_question_is_a_stray(rcode: int) -> None:
    warnings: list[str] = []
    options = QueryOptions(timeout=0.3, tries=1)
    with upstream_in_thread(questionless(rcode)) as server, pytest.raises(UpstreamTimeout):
        exchange(server.address, QUESTION, options, warnings.append)
    assert warnings == [";; Question section mismatch: no question, and not an error reply"]
