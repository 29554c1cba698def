"""What ``resolver query`` prints: a reply decoded once into plain values, shown as dig shows it.

``decode`` turns the raw reply into a :class:`Message` (header, OPT, sections, rdata as
presentation text); ``format_text``, ``format_short`` and ``format_json`` render a
:class:`Reply` (the message plus where and how it came) in dig's layout, dig's ``+short`` and
one JSON object. No I/O here.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from resolver.config import Address
from resolver.errors import WireError
from resolver.wire import (
    HEADER_SIZE,
    TYPE_OPT,
    RecordSpan,
    name_to_text,
    parse,
    qclass_name,
    qtype_name,
    rcode_name,
    read_header,
    read_name,
    section_offsets,
    walk_records,
)

__all__ = [
    "Message",
    "Opt",
    "QuestionEntry",
    "Record",
    "Reply",
    "decode",
    "format_json",
    "format_short",
    "format_text",
    "server_text",
]

Transport = Literal["UDP", "TCP"]

_TTL = struct.Struct("!I")
_OPT_TTL = struct.Struct("!BBH")  # extended rcode, version, flags
_DO = 0x8000
_TYPE_TXT = 16
_TYPE_SPF = 99
# Header flag bits in dig's order (opcode and rcode excluded).
_FLAGS = (
    ("qr", 0x8000),
    ("aa", 0x0400),
    ("tc", 0x0200),
    ("rd", 0x0100),
    ("ra", 0x0080),
    ("ad", 0x0020),
    ("cd", 0x0010),
)
_OPCODES = {0: "QUERY", 1: "IQUERY", 2: "STATUS", 4: "NOTIFY", 5: "UPDATE", 6: "DSO"}
# dig's column stops: TTL, class, type and rdata start at these columns.
_STOPS = (24, 32, 40, 48)


@dataclass(frozen=True, slots=True)
class QuestionEntry:
    name: str
    qclass: str
    qtype: str


@dataclass(frozen=True, slots=True)
class Record:
    """One resource record in presentation form; ``data`` is the rdata as dig prints it."""

    name: str
    ttl: int
    rclass: str
    rtype: str
    data: str


@dataclass(frozen=True, slots=True)
class Opt:
    """The OPT pseudo-record: EDNS version, flags (``do``), the sender's UDP payload size."""

    version: int
    flags: tuple[str, ...]
    udp: int


@dataclass(frozen=True, slots=True)
class Message:
    """A decoded reply. ``status`` includes the OPT's extended rcode bits; ``counts`` are the
    header's (QUERY, ANSWER, AUTHORITY, ADDITIONAL; the OPT counts as additional, as in dig),
    while ``additional`` lists the records other than the OPT."""

    id: int
    opcode: str
    status: str
    flags: tuple[str, ...]
    counts: tuple[int, int, int, int]
    opt: Opt | None
    question: tuple[QuestionEntry, ...]
    answer: tuple[Record, ...]
    authority: tuple[Record, ...]
    additional: tuple[Record, ...]
    size: int


@dataclass(frozen=True, slots=True)
class Reply:
    """One reply and how it came: from ``server`` over ``transport`` after ``elapsed`` seconds."""

    message: Message
    server: Address
    transport: Transport
    elapsed: float
    when: datetime


def _escape_string(raw: bytes) -> str:
    """A character-string as dig prints it: quoted, ``"`` and ``\\`` escaped, others \\DDD."""
    out: list[str] = []
    for byte in raw:
        if byte in b'"\\':
            out.append("\\" + chr(byte))
        elif 0x20 <= byte <= 0x7E:
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def _txt_text(rdata: bytes) -> str:
    strings: list[str] = []
    pos = 0
    while pos < len(rdata):
        end = pos + 1 + rdata[pos]
        if end > len(rdata):
            raise WireError("TXT character-string runs past its rdata")
        strings.append(_escape_string(rdata[pos + 1 : end]))
        pos = end
    return " ".join(strings)


def _generic_text(rdata: bytes) -> str:
    """RFC 3597 section 5: ``\\# length hex``."""
    return f"\\# {len(rdata)} {rdata.hex()}" if rdata else "\\# 0"


def _rdata_texts(data: bytes) -> list[str] | None:
    """dnslib's presentation of every record's rdata in wire order, or None if it cannot."""
    try:
        record = parse(data)
    except WireError:
        return None
    return [str(rr.rdata) for rr in [*record.rr, *record.auth, *record.ar]]


def _record(data: bytes, span: RecordSpan, rdata_text: str | None) -> Record:
    name, _ = read_name(data, span.name_offset)
    rdata = data[span.rdata_offset : span.rdata_offset + span.rdlength]
    if span.rtype in (_TYPE_TXT, _TYPE_SPF):
        text = _txt_text(rdata)
    else:
        text = rdata_text if rdata_text is not None else _generic_text(rdata)
    (ttl,) = _TTL.unpack_from(data, span.ttl_offset)
    return Record(name_to_text(name), ttl, qclass_name(span.rclass), qtype_name(span.rtype), text)


def _opt(data: bytes, span: RecordSpan) -> tuple[Opt, int]:
    ext_rcode, version, flags = _OPT_TTL.unpack_from(data, span.ttl_offset)
    return Opt(version, ("do",) if flags & _DO else (), span.rclass), ext_rcode


def decode(data: bytes) -> Message:
    """Decode a whole reply. Raises WireError if it is malformed or has several OPT records.

    rdata of types dnslib cannot present (or when dnslib rejects the message) is shown in the
    RFC 3597 generic form, so any well-formed message can be shown.
    """
    header = read_header(data)
    sections = section_offsets(data)
    pos = HEADER_SIZE
    questions: list[QuestionEntry] = []
    for _ in range(header.qdcount):
        name, pos = read_name(data, pos)
        qtype, qclass = struct.unpack_from("!HH", data, pos)
        pos += 4
        questions.append(QuestionEntry(name_to_text(name), qclass_name(qclass), qtype_name(qtype)))
    spans = [
        *walk_records(data, sections.answer, header.ancount),
        *walk_records(data, sections.authority, header.nscount),
        *walk_records(data, sections.additional, header.arcount),
    ]
    texts: list[str | None] = list(_rdata_texts(data) or [])
    if len(texts) != len(spans):
        texts = [None] * len(spans)
    opt: Opt | None = None
    ext_rcode = 0
    records: list[Record] = []
    for span, text in zip(spans, texts, strict=True):
        if span.rtype == TYPE_OPT:
            if opt is not None:
                raise WireError("reply has more than one OPT record")
            opt, ext_rcode = _opt(data, span)
        else:
            records.append(_record(data, span, text))
    answer_end = header.ancount
    authority_end = answer_end + header.nscount
    return Message(
        id=header.id,
        opcode=_OPCODES.get(header.opcode, f"RESERVED{header.opcode}"),
        status=rcode_name((ext_rcode << 4) | header.rcode),
        flags=tuple(name for name, bit in _FLAGS if header.flags & bit),
        counts=(header.qdcount, header.ancount, header.nscount, header.arcount),
        opt=opt,
        question=tuple(questions),
        answer=tuple(records[:answer_end]),
        authority=tuple(records[answer_end:authority_end]),
        additional=tuple(records[authority_end:]),
        size=len(data),
    )


def server_text(address: Address) -> str:
    """``addr#port`` as dig writes a server."""
    return f"{address[0]}#{address[1]}"


def _columns(first: str, *rest: str) -> str:
    """Fields separated by tabs, padded with more tabs to dig's column stops where they fit."""
    line = first
    for stop, field in zip(_STOPS, rest, strict=False):
        line += "\t"
        while len(line.expandtabs()) < stop:
            line += "\t"
        line += field
    return line


def _record_line(record: Record) -> str:
    return _columns(record.name, str(record.ttl), record.rclass, record.rtype, record.data)


def _query_ms(reply: Reply) -> float:
    return round(reply.elapsed * 1000, 3)


def format_text(reply: Reply) -> str:
    """The reply as dig prints it (without dig's banner), ending in a newline."""
    m = reply.message
    q, an, ns, ar = m.counts
    lines = [
        f";; ->>HEADER<<- opcode: {m.opcode}, status: {m.status}, id: {m.id}",
        f";; flags: {' '.join(m.flags)}; QUERY: {q}, ANSWER: {an}, AUTHORITY: {ns}, "
        f"ADDITIONAL: {ar}",
    ]
    if "rd" in m.flags and "ra" not in m.flags:
        lines.append(";; WARNING: recursion requested but not available")
    lines.append("")
    if m.opt is not None:
        lines += [
            ";; OPT PSEUDOSECTION:",
            f"; EDNS: version: {m.opt.version}, flags:{''.join(' ' + f for f in m.opt.flags)};"
            f" udp: {m.opt.udp}",
        ]
    if m.question:
        lines.append(";; QUESTION SECTION:")
        lines += [_columns(";" + e.name, "", e.qclass, e.qtype) for e in m.question]
        lines.append("")
    for title, records in (
        ("ANSWER", m.answer),
        ("AUTHORITY", m.authority),
        ("ADDITIONAL", m.additional),
    ):
        if records:
            lines.append(f";; {title} SECTION:")
            lines += [_record_line(r) for r in records]
            lines.append("")
    host = reply.server[0]
    lines += [
        f";; Query time: {int(reply.elapsed * 1000)} msec",
        f";; SERVER: {server_text(reply.server)}({host}) ({reply.transport})",
        f";; WHEN: {reply.when.strftime('%a %b %d %H:%M:%S %Z %Y')}",
        f";; MSG SIZE  rcvd: {m.size}",
        "",
    ]
    return "\n".join(lines) + "\n"


def format_short(reply: Reply) -> str:
    """dig +short: the answer section's rdata, one per line (nothing for an empty answer)."""
    return "".join(record.data + "\n" for record in reply.message.answer)


def _records_json(records: tuple[Record, ...]) -> list[dict[str, object]]:
    return [
        {"name": r.name, "ttl": r.ttl, "class": r.rclass, "type": r.rtype, "data": r.data}
        for r in records
    ]


def format_json(reply: Reply) -> str:
    """One JSON object on one line (with a newline): what ``format_text`` shows, as data."""
    m = reply.message
    opt = None
    if m.opt is not None:
        opt = {"version": m.opt.version, "flags": list(m.opt.flags), "udp": m.opt.udp}
    document = {
        "id": m.id,
        "opcode": m.opcode,
        "status": m.status,
        "flags": list(m.flags),
        "counts": dict(zip(("query", "answer", "authority", "additional"), m.counts, strict=True)),
        "opt": opt,
        "question": [{"name": e.name, "class": e.qclass, "type": e.qtype} for e in m.question],
        "answer": _records_json(m.answer),
        "authority": _records_json(m.authority),
        "additional": _records_json(m.additional),
        "query_time_ms": _query_ms(reply),
        "server": server_text(reply.server),
        "transport": reply.transport,
        "when": reply.when.isoformat(timespec="seconds"),
        "size": m.size,
    }
    return json.dumps(document) + "\n"
