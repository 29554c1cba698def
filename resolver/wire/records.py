"""Whole messages as records, for the iteration of recursive mode: read every section of a
server's reply into self-contained records, and write a reply of our own from records.

A ``Record``'s rdata is self-contained: the names inside it are decompressed for the types
whose rdata RFC 3597 section 4 lets a server compress (those of RFC 1035 and a few after it),
so a record can be compared, stored and written into another message as it is. Stdlib only;
every malformation raises WireError.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import NamedTuple

from resolver.errors import WireError
from resolver.wire.raw import HEADER_SIZE, QR, Question, read_header, read_name, skip_records

__all__ = ["Message", "Record", "build_reply", "read_message", "target_name"]

_RR_FIXED = struct.Struct("!HHIH")
_HEADER = struct.Struct("!6H")
_TYPE_CLASS = struct.Struct("!HH")
_NAME = -1  # in a layout: a (possibly compressed) domain name

# The rdata layouts of the types whose names may be compressed: fixed byte counts and names.
_LAYOUTS: dict[int, tuple[int, ...]] = {
    2: (_NAME,),  # NS
    3: (_NAME,),  # MD
    4: (_NAME,),  # MF
    5: (_NAME,),  # CNAME
    6: (_NAME, _NAME, 20),  # SOA
    7: (_NAME,),  # MB
    8: (_NAME,),  # MG
    9: (_NAME,),  # MR
    12: (_NAME,),  # PTR
    14: (_NAME, _NAME),  # MINFO
    15: (2, _NAME),  # MX
    17: (_NAME, _NAME),  # RP
    18: (2, _NAME),  # AFSDB
    21: (2, _NAME),  # RT
    26: (2, _NAME, _NAME),  # PX
    33: (6, _NAME),  # SRV
    36: (2, _NAME),  # KX
    39: (_NAME,),  # DNAME
}
# The types whose rdata is one name: the target of a referral, an alias or a pointer.
_ONE_NAME = frozenset({2, 5, 12, 39})


class Record(NamedTuple):
    """One resource record; ``name`` in uncompressed wire form with its case, ``rdata``
    self-contained (see the module)."""

    name: bytes
    rtype: int
    rclass: int
    ttl: int
    rdata: bytes


class Message:
    """A message read whole: the header's ID and flags word, its question (None when it has
    none) and its three record sections. The answer is read at once; the authority and
    additional sections, whose structure is checked at once, are read when first asked for
    (a reply that answers needs neither), and may raise WireError then."""

    __slots__ = (
        "_additional",
        "_authority",
        "_data",
        "_offsets",
        "answer",
        "flags",
        "qid",
        "question",
    )

    def __init__(
        self,
        qid: int,
        flags: int,
        question: Question | None,
        answer: tuple[Record, ...],
        data: bytes,
        offsets: tuple[int, int, int, int],
    ) -> None:
        self.qid = qid
        self.flags = flags
        self.question = question
        self.answer = answer
        self._data = data
        self._offsets = offsets  # authority start and count, additional start and count
        self._authority: tuple[Record, ...] | None = None
        self._additional: tuple[Record, ...] | None = None

    @property
    def rcode(self) -> int:
        return self.flags & 0x000F

    @property
    def authority(self) -> tuple[Record, ...]:
        if self._authority is None:
            self._authority = _section(self._data, self._offsets[0], self._offsets[1])[0]
        return self._authority

    @property
    def additional(self) -> tuple[Record, ...]:
        if self._additional is None:
            self._additional = _section(self._data, self._offsets[2], self._offsets[3])[0]
        return self._additional


def target_name(record: Record) -> bytes:
    """The name an NS, CNAME, PTR or DNAME record's rdata holds. Raises WireError for
    another type or rdata that is not exactly one name."""
    if record.rtype not in _ONE_NAME:
        raise WireError(f"type {record.rtype} rdata is not one name")
    return record.rdata


def _rdata(data: bytes, start: int, length: int, rtype: int) -> bytes:
    end = start + length
    layout = _LAYOUTS.get(rtype)
    if layout is None:
        return data[start:end]
    parts: list[bytes] = []
    pos = start
    for item in layout:
        if item == _NAME:
            if pos >= end:
                raise WireError(f"type {rtype} rdata at offset {start} is cut off")
            name, pos = read_name(data, pos)
            parts.append(name)
        else:
            parts.append(data[pos : pos + item])
            pos += item
    if pos != end:
        raise WireError(f"type {rtype} rdata at offset {start} is not {length} bytes long")
    return b"".join(parts)


def _section(data: bytes, pos: int, count: int) -> tuple[tuple[Record, ...], int]:
    records: list[Record] = []
    end = len(data)
    for _ in range(count):
        name, pos = read_name(data, pos)
        if pos + 10 > end:
            raise WireError(f"resource record at offset {pos} is cut off")
        rtype, rclass, ttl, length = _RR_FIXED.unpack_from(data, pos)
        pos += 10
        if pos + length > end:
            raise WireError(f"rdata at offset {pos} runs past the end of the message")
        records.append(Record(name, rtype, rclass, ttl, _rdata(data, pos, length, rtype)))
        pos += length
    return tuple(records), pos


def read_message(data: bytes, question_end: int | None = None) -> Message:
    """The sections of ``data`` (see Message). Raises WireError on a malformed header,
    question, answer or section structure, or a message with more than one question.
    ``question_end``: where the one question is known to end (a reply whose question was
    matched to ours already); it is then not read, and ``question`` is None."""
    header = read_header(data)
    if header.qdcount > 1:
        raise WireError(f"expected at most one question, the message has {header.qdcount}")
    question: Question | None = None
    pos = HEADER_SIZE
    if question_end is not None and header.qdcount:
        pos = question_end
    elif header.qdcount:
        name, pos = read_name(data, pos)
        if pos + 4 > len(data):
            raise WireError("question is cut off before its type and class")
        qtype, qclass = _TYPE_CLASS.unpack_from(data, pos)
        pos += 4
        question = Question(name, qtype, qclass, pos)
    answer, authority = _section(data, pos, header.ancount)
    additional = skip_records(data, authority, header.nscount)
    skip_records(data, additional, header.arcount)
    offsets = (authority, header.nscount, additional, header.arcount)
    return Message(header.id, header.flags, question, answer, data, offsets)


def build_reply(
    name: bytes,
    qtype: int,
    qclass: int,
    rcode: int,
    answer: Iterable[Record],
    authority: Iterable[Record] = (),
    *,
    flags: int = QR,
) -> bytes:
    """A reply (ID 0) to the question ``name qtype qclass`` holding ``answer`` and
    ``authority`` and no additional records. Owner names equal to the question's (ignoring
    case) are written as a pointer to it; the rest uncompressed."""
    lowered = name.lower()
    answers = list(answer)
    authorities = list(authority)
    out = [
        _HEADER.pack(0, (flags & ~0x000F) | rcode, 1, len(answers), len(authorities), 0),
        name,
        _TYPE_CLASS.pack(qtype, qclass),
    ]
    for record in (*answers, *authorities):
        owner = b"\xc0\x0c" if record.name.lower() == lowered else record.name
        out.append(owner)
        out.append(_RR_FIXED.pack(record.rtype, record.rclass, record.ttl, len(record.rdata)))
        out.append(record.rdata)
    return b"".join(out)
