"""EDNS options on raw bytes: keepalive (RFC 7828) and padding (RFC 7830 with RFC 8467's blocks),
and the one-walk form a query takes over a stream."""

from __future__ import annotations

import struct

import pytest
from dnslib import DNSRecord

from resolver.errors import WireError
from resolver.wire.options import (
    OPTION_KEEPALIVE,
    OPTION_PADDING,
    QUERY_BLOCK,
    RESPONSE_BLOCK,
    add_option,
    pad,
    read_keepalive,
    stream_query,
)
from resolver.wire.query import build_query


def options(message: bytes) -> list[tuple[int, bytes]]:
    """The EDNS options of ``message``'s OPT record (the last record of a query we built), read
    here by hand: dnslib drops empty options."""
    assert DNSRecord.parse(message).ar[-1].rtype == 41  # well formed, the OPT last
    pos = 12
    while message[pos]:  # the question's name, uncompressed
        pos += 1 + message[pos]
    rdlength_at = pos + 1 + 4 + 1 + 2 + 2 + 4  # type, class; OPT's root name, type, class, TTL
    end = rdlength_at + 2 + int.from_bytes(message[rdlength_at : rdlength_at + 2], "big")
    assert end == len(message)
    found, pos = [], rdlength_at + 2
    while pos < end:
        code, length = struct.unpack_from("!HH", message, pos)
        found.append((code, message[pos + 4 : pos + 4 + length]))
        pos += 4 + length
    return found


QUERIES = [
    pytest.param(build_query("www.example.com.", 1, qid=7), id="plain"),
    pytest.param(build_query("x." * 60, 28, qid=9, do=True), id="long-name-do"),
    pytest.param(
        build_query("a.example.", 1, qid=1, edns_options=struct.pack("!HH", 10, 8) + bytes(8)),
        id="with-cookie",
    ),
]


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("block", [0, QUERY_BLOCK, RESPONSE_BLOCK], ids=["unpadded", "q", "r"])
def test_stream_query_equals_keepalive_then_padding(query: bytes, block: int) -> None:
    made = stream_query(query, block)
    expected = add_option(query, OPTION_KEEPALIVE)
    if block:
        expected = pad(expected, block)
        assert len(made) % block == 0
    assert made == expected
    assert options(made)[-1 if not block else -2] == (OPTION_KEEPALIVE, b"")
    assert options(made)[: len(options(query))] == options(query)


def test_stream_query_does_not_pad_twice() -> None:
    padded = pad(build_query("www.example.com.", 1, qid=7), QUERY_BLOCK)
    made = stream_query(padded, QUERY_BLOCK)
    assert [code for code, _ in options(made)] == [OPTION_PADDING, OPTION_KEEPALIVE]


@pytest.mark.parametrize(
    "query",
    [
        pytest.param(build_query("www.example.com.", 1, qid=7, edns_size=None), id="no-opt"),
        pytest.param(build_query("www.example.com.", 1, qid=7) + b"\x00", id="opt-not-last"),
    ],
)
def test_stream_query_leaves_a_query_without_a_last_opt_unchanged(query: bytes) -> None:
    assert stream_query(query, QUERY_BLOCK) == query


def test_stream_query_refuses_an_opt_that_would_grow_too_long() -> None:
    query = build_query(
        "a.", 1, qid=1, edns_options=struct.pack("!HH", 65001, 65528) + bytes(65528)
    )
    with pytest.raises(WireError, match="too long"):
        stream_query(query, 0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(b"\x00\x64", 10.0), (b"\x00\x00", 0.0), (b"", None)],
    ids=["ten-seconds", "close-now", "no-timeout"],
)
def test_read_keepalive_reads_the_servers_idle_timeout(
    value: bytes, expected: float | None
) -> None:
    reply = add_option(build_query("a.", 1, qid=1), OPTION_KEEPALIVE, value)
    assert read_keepalive(reply) == expected
