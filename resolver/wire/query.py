"""The one query builder and the one reply matcher: the query we send to a server, and whether
a reply answers it, as RFC 5452 section 9.1 asks.

Used by the daemon's transport, the stub client and ``resolver query +trace`` alike, so that
they build queries the same way and accept the same replies. The source address and port of a
reply and the socket it came to are the caller's to check; everything in the message is
checked here: ID, QR, opcode, and the one question (name, type, class), the name case-exact
when the query's name had its case randomised (0x20).

A reply without a question (QDCOUNT 0) is accepted only when its ID matches and its rcode is
FORMERR, SERVFAIL, NOTIMP or REFUSED: a server that cannot parse or will not serve a query may
answer without echoing the question (dnspython and Unbound accept such error replies too), and
taking it lets the caller move on at once instead of waiting for the deadline. A question-less
NOERROR or NXDOMAIN claims an answer it does not show, and is refused.
"""

from __future__ import annotations

import struct

from resolver.errors import WireError
from resolver.wire.message import name_to_wire, opt_record, qclass_name, qtype_name
from resolver.wire.raw import (
    AD,
    CD,
    CLASS_IN,
    FORMERR,
    NOTIMP,
    RD,
    REFUSED,
    SERVFAIL,
    name_to_text,
    read_question,
)
from resolver.wire.raw import randomize_case as _flip_case

__all__ = [
    "CASE_DIFFERS",
    "QUESTIONLESS_RCODES",
    "build_query",
    "make_query",
    "reply_mismatch",
]

_HEADER = struct.Struct("!6H")
_TYPE_CLASS = struct.Struct("!HH")
_QR_BYTE2 = 0x80  # QR in the first flags byte (message byte 2)
_OPCODE_BYTE2 = 0x78  # the opcode in the first flags byte
_ONE_QUESTION = b"\x00\x01"
_NO_QUESTION = b"\x00\x00"
_OPCODES = {0: "QUERY", 1: "IQUERY", 2: "STATUS", 4: "NOTIFY", 5: "UPDATE"}

# The rcodes a reply without a question section may carry and still be ours.
QUESTIONLESS_RCODES = frozenset({FORMERR, SERVFAIL, NOTIMP, REFUSED})

# What ``reply_mismatch`` says of a reply that matches a case-exact (0x20) query in everything
# but the case of the name's letters; the caller may end the exchange on it (and ask again
# without 0x20) or treat it as any other mismatch.
CASE_DIFFERS = ";; Question section mismatch: the name differs from the query's in case only"


def make_query(
    name: bytes,
    qtype: int,
    qclass: int = CLASS_IN,
    *,
    qid: int,
    rd: bool = True,
    cd: bool = False,
    ad: bool = False,
    edns_size: int | None = 1232,
    do: bool = False,
    edns_options: bytes = b"",
    randomize_case: bool = False,
) -> tuple[bytes, bytes]:
    """A query with one question: ``name`` in wire form (its letters' case flipped at random
    with ``randomize_case``, 0x20), ID ``qid``, the RD, CD and AD flags as given, and unless
    ``edns_size`` is None an OPT record advertising it with the DO bit and ``edns_options``
    (already encoded: code, length, data). Returns the query bytes and the question as sent
    (name, type, class: what :func:`reply_mismatch` compares a reply's question to). Fields
    out of range raise ``struct.error`` or ValueError; :func:`build_query` checks them
    first."""
    if randomize_case:
        name = _flip_case(name)
    question = name + _TYPE_CLASS.pack(qtype, qclass)
    flags = (RD if rd else 0) | (CD if cd else 0) | (AD if ad else 0)
    if edns_size is None:
        return _HEADER.pack(qid, flags, 1, 0, 0, 0) + question, question
    opt = opt_record(edns_size, do, options=edns_options)
    return _HEADER.pack(qid, flags, 1, 0, 0, 1) + question + opt, question


def build_query(
    name: str,
    qtype: int,
    qclass: int = CLASS_IN,
    *,
    qid: int,
    rd: bool = True,
    cd: bool = False,
    do: bool = False,
    edns_size: int | None = 1232,
    ad: bool = False,
    edns_options: bytes = b"",
) -> bytes:
    """:func:`make_query` for a text name (case kept), every field checked: WireError for an
    invalid name, ValueError for an ID, type, class or size out of range or for ``do`` or
    options without EDNS (they live in the OPT record)."""
    if not 0 <= qid <= 0xFFFF:
        raise ValueError(f"message ID {qid} is not in 0-65535")
    if not (0 <= qtype <= 0xFFFF and 0 <= qclass <= 0xFFFF):
        raise ValueError(f"type {qtype} or class {qclass} is not in 0-65535")
    if (do or edns_options) and edns_size is None:
        raise ValueError("the DO bit and EDNS options need EDNS; pass an edns_size")
    query, _ = make_query(
        name_to_wire(name),
        qtype,
        qclass,
        qid=qid,
        rd=rd,
        cd=cd,
        ad=ad,
        edns_size=edns_size,
        do=do,
        edns_options=edns_options,
    )
    return query


def reply_mismatch(
    reply: bytes, qid: int, question: bytes, *, case_exact: bool = False
) -> str | None:
    """None when ``reply`` answers the query with ID ``qid`` and ``question`` (as
    :func:`make_query` returned it); else why not, in dig's words. ``case_exact`` (a 0x20
    query): the reply's name must have the very case of ours, and one that differs only in
    case gets :data:`CASE_DIFFERS`; without it the name is compared without case (RFC 4343).
    Type and class always compare exactly. A reply without a question is accepted only as the
    module says (an error rcode of :data:`QUESTIONLESS_RCODES`). Never raises."""
    if len(reply) < 12:
        size = len(reply)
        return f";; Got bad packet: message of {size} bytes is shorter than the 12-byte header"
    got_id = reply[0] << 8 | reply[1]
    if got_id != qid:
        return f";; Warning: ID mismatch: expected ID {qid}, got {got_id}"
    flags = reply[2]
    if not flags & _QR_BYTE2:
        return ";; Warning: query response not set"
    if flags & _OPCODE_BYTE2:
        opcode = (flags & _OPCODE_BYTE2) >> 3
        got = _OPCODES.get(opcode, f"RESERVED{opcode}")
        return f";; Warning: Opcode mismatch: expected QUERY, got {got}"
    qdcount = reply[4:6]
    if qdcount == _NO_QUESTION:
        if reply[3] & 0x0F in QUESTIONLESS_RCODES:
            return None
        return ";; Question section mismatch: no question, and not an error reply"
    if qdcount != _ONE_QUESTION:
        count = qdcount[0] << 8 | qdcount[1]
        return f";; Question section mismatch: {count} questions"
    got_question = reply[12 : 12 + len(question)]
    if got_question == question:
        return None
    if got_question[-4:] == question[-4:] and got_question[:-4].lower() == question[:-4].lower():
        return CASE_DIFFERS if case_exact else None
    return _question_differs(reply)


def _question_differs(reply: bytes) -> str:
    try:
        got = read_question(reply)
        return (
            f";; Question section mismatch: got {name_to_text(got.name)}"
            f"/{qtype_name(got.qtype)}/{qclass_name(got.qclass)}"
        )
    except WireError as exc:
        return f";; Got bad packet: {exc}"
