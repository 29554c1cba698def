"""What ``resolver query`` prints: a reply decoded once into plain values, shown as dig shows it.

``decode`` turns the raw reply into a :class:`Message` (header, OPT, sections, rdata as
presentation text, names escaped as dig escapes them); ``format_text``, ``format_short`` and
``format_json`` render a :class:`Reply` (the message plus where and how it came) in dig's
layout with the sections a :class:`Display` asks for, dig's ``+short`` and one JSON object.
The rdata of the common types and of the DNSSEC types (RRSIG, DNSKEY, DS, NSEC, NSEC3,
NSEC3PARAM, CDS, CDNSKEY) is presented here from the raw bytes; dnslib presents the rest.
No I/O here.
"""

from __future__ import annotations

import base64
import ipaddress
import struct
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal, NamedTuple

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
    "Display",
    "Message",
    "Opt",
    "QuestionEntry",
    "Record",
    "Reply",
    "decode",
    "format_json",
    "format_short",
    "format_text",
    "record_line",
    "server_text",
]

Transport = Literal["UDP", "TCP", "TLS", "HTTPS"]
Address = tuple[str, int]  # (host, port), as resolver.config has it

_TTL = struct.Struct("!I")
_OPT_TTL = struct.Struct("!BBH")  # extended rcode, version, flags
_DO = 0x8000
_TYPE_TXT = 16
_TYPE_SPF = 99
_TYPE_HINFO = 13
_OPTION_NSID = 3
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
_MULTILINE_STOPS = (24, 24, 24, 32)


class Display(NamedTuple):
    """What to print, as dig's display options say: ``style`` text (dig's layout), short
    (``+short``) or json; in text, which parts (``+[no]comments``, ``+[no]question``,
    ``+[no]answer``, ``+[no]authority``, ``+[no]additional``, ``+[no]stats``); ``multiline``
    for SOA records split over lines with comments, and DNSSEC records' long fields too;
    ``idnout`` to show A-labels as Unicode."""

    style: Literal["text", "short", "json"] = "text"
    comments: bool = True
    question: bool = True
    answer: bool = True
    authority: bool = True
    additional: bool = True
    stats: bool = True
    multiline: bool = False
    idnout: bool = False


class QuestionEntry(NamedTuple):
    name: str
    qclass: str
    qtype: str


class Record(NamedTuple):
    """One resource record in presentation form; ``data`` is the rdata as dig prints it."""

    name: str
    ttl: int
    rclass: str
    rtype: str
    data: str


class Opt(NamedTuple):
    """The OPT pseudo-record: EDNS version, flags (``do``), the sender's UDP payload size and
    its options as (code, data) pairs."""

    version: int
    flags: tuple[str, ...]
    udp: int
    options: tuple[tuple[int, bytes], ...] = ()


class Message(NamedTuple):
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


class Reply(NamedTuple):
    """One reply and how it came: from ``server`` over ``transport`` after ``elapsed`` seconds;
    ``retried_tcp`` when a truncated UDP reply was asked again over TCP."""

    message: Message
    server: Address
    transport: Transport
    elapsed: float
    when: datetime
    retried_tcp: bool = False


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


def _unicode_name(text: str) -> str:
    """dig's ``+idnout``: A-labels shown as Unicode; a name that does not convert stays."""
    if "xn--" not in text.lower():
        return text
    import idna

    try:
        return ".".join(
            idna.decode(label) if label.lower().startswith("xn--") else label
            for label in text.split(".")
        )
    except (idna.IDNAError, UnicodeError):
        return text


class _Reader:
    """Presents names and rdata of one message; names go through ``+idnout`` when asked."""

    def __init__(self, data: bytes, idnout: bool) -> None:
        self.data = data
        self.idnout = idnout

    def name(self, offset: int) -> tuple[str, int]:
        wire, after = read_name(self.data, offset)
        text = name_to_text(wire)
        return (_unicode_name(text) if self.idnout else text), after

    def rdata(self, span: RecordSpan) -> str | None:
        """The rdata as dig prints it, or None for a type presented by dnslib."""
        present = _PRESENTERS.get(span.rtype)
        if present is None:
            return None
        start, end = span.rdata_offset, span.end
        try:
            text, stop = present(self, start, end)
        except (WireError, struct.error, ValueError, IndexError):
            return _generic_text(self.data[start:end])
        return text if stop == end else _generic_text(self.data[start:end])


def _present_a(reader: _Reader, start: int, end: int) -> tuple[str, int]:
    return str(ipaddress.IPv4Address(reader.data[start : start + 4])), start + 4


def _present_aaaa(reader: _Reader, start: int, end: int) -> tuple[str, int]:
    return str(ipaddress.IPv6Address(reader.data[start : start + 16])), start + 16


def _present_name(reader: _Reader, start: int, end: int) -> tuple[str, int]:
    return reader.name(start)


def _present_mx(reader: _Reader, start: int, end: int) -> tuple[str, int]:
    (preference,) = struct.unpack_from("!H", reader.data, start)
    name, stop = reader.name(start + 2)
    return f"{preference} {name}", stop


def _present_srv(reader: _Reader, start: int, end: int) -> tuple[str, int]:
    priority, weight, port = struct.unpack_from("!HHH", reader.data, start)
    name, stop = reader.name(start + 6)
    return f"{priority} {weight} {port} {name}", stop


def _present_soa(reader: _Reader, start: int, end: int) -> tuple[str, int]:
    mname, pos = reader.name(start)
    rname, pos = reader.name(pos)
    numbers = struct.unpack_from("!5I", reader.data, pos)
    return f"{mname} {rname} " + " ".join(map(str, numbers)), pos + 20


def _present_strings(reader: _Reader, start: int, end: int) -> tuple[str, int]:
    return _txt_text(reader.data[start:end]), end


_CHUNK = 56  # dig breaks base64 and hex fields into words of this many characters


def _chunked(text: str) -> str:
    return " ".join(text[i : i + _CHUNK] for i in range(0, len(text), _CHUNK))


def _types_text(bitmap: bytes) -> str:
    """An NSEC or NSEC3 type bitmap (RFC 4034 4.1.2) as type mnemonics."""
    types: list[str] = []
    pos = 0
    while pos < len(bitmap):
        window, length = bitmap[pos], bitmap[pos + 1]
        if not 1 <= length <= 32 or pos + 2 + length > len(bitmap):
            raise ValueError("a malformed type bitmap")
        for index, byte in enumerate(bitmap[pos + 2 : pos + 2 + length]):
            types += [
                qtype_name(window * 256 + index * 8 + bit) for bit in range(8) if byte & 0x80 >> bit
            ]
        pos += 2 + length
    return " ".join(types)


def _sig_time(value: int) -> str:
    return datetime.fromtimestamp(value, UTC).strftime("%Y%m%d%H%M%S")


def _present_rrsig(reader: _Reader, start: int, end: int) -> tuple[str, int]:
    covered, algorithm, labels, ttl, expiration, inception, tag = struct.unpack_from(
        "!HBBIIIH", reader.data, start
    )
    signer, pos = reader.name(start + 18)
    signature = base64.b64encode(reader.data[pos:end]).decode()
    fields = f"{qtype_name(covered)} {algorithm} {labels} {ttl} {_sig_time(expiration)}"
    return f"{fields} {_sig_time(inception)} {tag} {signer} {_chunked(signature)}", end


def _present_dnskey(reader: _Reader, start: int, end: int) -> tuple[str, int]:
    flags, protocol, algorithm = struct.unpack_from("!HBB", reader.data, start)
    key = base64.b64encode(reader.data[start + 4 : end]).decode()
    return f"{flags} {protocol} {algorithm} {_chunked(key)}", end


def _present_ds(reader: _Reader, start: int, end: int) -> tuple[str, int]:
    tag, algorithm, digest_type = struct.unpack_from("!HBB", reader.data, start)
    digest = reader.data[start + 4 : end].hex().upper()
    return f"{tag} {algorithm} {digest_type} {_chunked(digest)}", end


def _present_nsec(reader: _Reader, start: int, end: int) -> tuple[str, int]:
    following, pos = reader.name(start)
    return f"{following} {_types_text(reader.data[pos:end])}".rstrip(), end


def _nsec3_params(reader: _Reader, start: int) -> tuple[str, int]:
    algorithm, flags, iterations, salt_length = struct.unpack_from("!BBHB", reader.data, start)
    salt = reader.data[start + 5 : start + 5 + salt_length].hex().upper() or "-"
    return f"{algorithm} {flags} {iterations} {salt}", start + 5 + salt_length


def _present_nsec3(reader: _Reader, start: int, end: int) -> tuple[str, int]:
    params, pos = _nsec3_params(reader, start)
    length = reader.data[pos]
    following = base64.b32hexencode(reader.data[pos + 1 : pos + 1 + length]).decode()
    types = _types_text(reader.data[pos + 1 + length : end])
    return f"{params} {following} {types}".rstrip(), end


def _present_nsec3param(reader: _Reader, start: int, end: int) -> tuple[str, int]:
    return _nsec3_params(reader, start)


_Presenter = Callable[[_Reader, int, int], tuple[str, int]]
_PRESENTERS: dict[int, _Presenter] = {
    1: _present_a,
    2: _present_name,  # NS
    5: _present_name,  # CNAME
    6: _present_soa,
    12: _present_name,  # PTR
    _TYPE_HINFO: _present_strings,  # two character-strings: RFC 8482's "RFC8482" ""
    15: _present_mx,
    _TYPE_TXT: _present_strings,
    28: _present_aaaa,
    33: _present_srv,
    39: _present_name,  # DNAME
    43: _present_ds,
    46: _present_rrsig,
    47: _present_nsec,
    48: _present_dnskey,
    50: _present_nsec3,
    51: _present_nsec3param,
    59: _present_ds,  # CDS
    60: _present_dnskey,  # CDNSKEY
    _TYPE_SPF: _present_strings,
}


def _rdata_texts(data: bytes) -> list[str] | None:
    """dnslib's presentation of every record's rdata in wire order, or None if it cannot."""
    try:
        record = parse(data)
    except WireError:
        return None
    return [str(rr.rdata) for rr in [*record.rr, *record.auth, *record.ar]]


def _record(reader: _Reader, span: RecordSpan, rdata_text: str | None) -> Record:
    name, _ = reader.name(span.name_offset)
    text = reader.rdata(span)
    if text is None:
        rdata = reader.data[span.rdata_offset : span.end]
        text = rdata_text if rdata_text is not None else _generic_text(rdata)
    (ttl,) = _TTL.unpack_from(reader.data, span.ttl_offset)
    return Record(name, ttl, qclass_name(span.rclass), qtype_name(span.rtype), text)


def _edns_options(rdata: bytes) -> tuple[tuple[int, bytes], ...]:
    options: list[tuple[int, bytes]] = []
    pos = 0
    while pos + 4 <= len(rdata):
        code, size = struct.unpack_from("!HH", rdata, pos)
        options.append((code, rdata[pos + 4 : pos + 4 + size]))
        pos += 4 + size
    return tuple(options)


def _opt(data: bytes, span: RecordSpan) -> tuple[Opt, int]:
    ext_rcode, version, flags = _OPT_TTL.unpack_from(data, span.ttl_offset)
    options = _edns_options(data[span.rdata_offset : span.end])
    return Opt(version, ("do",) if flags & _DO else (), span.rclass, options), ext_rcode


def decode(data: bytes, *, idnout: bool = False) -> Message:
    """Decode a whole reply. Raises WireError if it is malformed or has several OPT records.

    Names are escaped as dig prints them, and with ``idnout`` their A-labels are shown as
    Unicode. rdata of types neither presented here nor by dnslib is shown in the RFC 3597
    generic form, so any well-formed message can be shown.
    """
    header = read_header(data)
    sections = section_offsets(data)
    reader = _Reader(data, idnout)
    pos = HEADER_SIZE
    questions: list[QuestionEntry] = []
    for _ in range(header.qdcount):
        name, pos = reader.name(pos)
        qtype, qclass = struct.unpack_from("!HH", data, pos)
        pos += 4
        questions.append(QuestionEntry(name, qclass_name(qclass), qtype_name(qtype)))
    spans = [
        *walk_records(data, sections.answer, header.ancount),
        *walk_records(data, sections.authority, header.nscount),
        *walk_records(data, sections.additional, header.arcount),
    ]
    texts: list[str | None] = [None] * len(spans)
    # dnslib's full parse costs; pay it only when some type is not presented here.
    if any(span.rtype not in _PRESENTERS and span.rtype != TYPE_OPT for span in spans):
        parsed = _rdata_texts(data)
        if parsed is not None and len(parsed) == len(spans):
            texts = list(parsed)
    opt: Opt | None = None
    ext_rcode = 0
    records: list[Record] = []
    for span, text in zip(spans, texts, strict=True):
        if span.rtype == TYPE_OPT:
            if opt is not None:
                raise WireError("reply has more than one OPT record")
            opt, ext_rcode = _opt(data, span)
        else:
            records.append(_record(reader, span, text))
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


def _indent(column: int, stop: int) -> tuple[str, int]:
    """dig's indent: tabs to reach ``stop`` (at least one column on), then spaces."""
    to = max(stop, column + 1)
    tabs = to // 8 - column // 8
    if tabs > 0:
        column = to // 8 * 8
    return "\t" * max(tabs, 0) + " " * (to - column), to


def _columns(first: str, *rest: str, stops: tuple[int, ...] = _STOPS, lead: str = "") -> str:
    """Fields placed at dig's column stops (tabs of 8, else one space past a stop). ``lead``
    (the question's ``;``) is printed but not counted, as dig does not count it."""
    line = lead + first
    column = len(first)
    for stop, field in zip(stops, rest, strict=False):
        pad, column = _indent(column, stop)
        line += pad + field
        column += len(field)
    return line


def _record_line(record: Record, stops: tuple[int, ...] = _STOPS) -> str:
    fields = (str(record.ttl), record.rclass, record.rtype, record.data)
    return _columns(record.name, *fields, stops=stops)


def record_line(record: Record) -> str:
    """``record`` on one line, in dig's columns (its answer sections' layout)."""
    return _record_line(record)


_SOA_FIELDS = ("serial", "refresh", "retry", "expire", "minimum")
_UNITS = (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))


def _duration(seconds: int) -> str:
    """dig's comment for a time value: ``2 hours``, ``1 week 2 days``."""
    parts = []
    for unit, size in _UNITS:
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {unit}{'s' if count != 1 else ''}")
    return " ".join(parts) or "0 seconds"


_MULTILINE_CHUNK = 44  # dig's +multiline words of base64 and hex
_ALGORITHMS = {
    5: "RSASHA1",
    7: "NSEC3RSASHA1",
    8: "RSASHA256",
    10: "RSASHA512",
    13: "ECDSAP256SHA256",
    14: "ECDSAP384SHA384",
    15: "ED25519",
    16: "ED448",
}
_OPEN_FIELDS = {"DNSKEY": 3, "CDNSKEY": 3, "DS": 3, "CDS": 3, "RRSIG": 4, "NSEC3": 4}


def _key_tag(flags: int, protocol: int, algorithm: int, key: bytes) -> int:
    """RFC 4034 appendix B: the key tag of a DNSKEY."""
    rdata = struct.pack("!HBB", flags, protocol, algorithm) + key
    total = sum(byte << 8 if index % 2 == 0 else byte for index, byte in enumerate(rdata))
    return (total + (total >> 16)) & 0xFFFF


def _dnssec_multiline(record: Record) -> list[str] | None:
    """dig's +multiline layout of DNSSEC rdata: the fixed fields, then the long ones on
    lines of their own between parentheses (None when the rdata is not in the usual form)."""
    count = _OPEN_FIELDS.get(record.rtype)
    fields = record.data.split()
    if count is None or len(fields) <= count:
        return None
    head, rest = fields[:count], fields[count:]
    lead = "\t\t\t\t"
    close = " )"
    if record.rtype == "RRSIG":
        if len(rest) < 5:
            return None
        body = [" ".join(rest[:4]), *_chunks("".join(rest[4:]), _MULTILINE_CHUNK)]
    elif record.rtype == "NSEC3":
        body = [rest[0], " ".join(rest[1:])] if len(rest) > 1 else [rest[0]]
    else:
        body = _chunks("".join(rest), _MULTILINE_CHUNK)
        if record.rtype in ("DNSKEY", "CDNSKEY"):
            flags, protocol, algorithm = (int(f) for f in head)
            tag = _key_tag(flags, protocol, algorithm, base64.b64decode("".join(rest)))
            role = "KSK" if flags & 1 else "ZSK"
            name = _ALGORITHMS.get(algorithm, str(algorithm))
            close = f"\n{lead}) ; {role}; alg = {name} ; key id = {tag}"
    first = Record(record.name, record.ttl, record.rclass, record.rtype, " ".join(head) + " (")
    lines = [_record_line(first, _MULTILINE_STOPS), *(lead + line for line in body)]
    lines[-1] += close
    return lines


def _chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _multiline_lines(record: Record) -> list[str]:
    """``+multiline``: dig's narrower columns, an SOA's numbers on their own lines with
    dig's comments, and DNSSEC records' long fields broken over lines."""
    try:
        dnssec = _dnssec_multiline(record)
    except ValueError:  # not the presentation this module gives: leave it on one line
        dnssec = None
    if dnssec is not None:
        return dnssec
    fields = record.data.split()
    if record.rtype != "SOA" or len(fields) != 7 or not all(f.isdigit() for f in fields[2:]):
        return [_record_line(record, _MULTILINE_STOPS)]
    head = _record_line(
        Record(record.name, record.ttl, record.rclass, record.rtype, f"{fields[0]} {fields[1]} ("),
        _MULTILINE_STOPS,
    )
    lines = [head]
    for index, (label, value) in enumerate(zip(_SOA_FIELDS, fields[2:], strict=True)):
        comment = label if index == 0 else f"{label} ({_duration(int(value))})"
        lines.append(f"\t\t\t\t{value:<10} ; {comment}")
    lines.append("\t\t\t\t)")
    return lines


def _query_ms(reply: Reply) -> float:
    return round(reply.elapsed * 1000, 3)


def _nsid_text(data: bytes) -> str:
    printable = "".join(chr(b) if 0x20 <= b <= 0x7E else "." for b in data)
    return f'; NSID: {" ".join(f"{b:02x}" for b in data)} ("{printable}")'


def _header_lines(m: Message) -> list[str]:
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
        lines += [_nsid_text(data) for code, data in m.opt.options if code == _OPTION_NSID]
    return lines


def format_text(reply: Reply, display: Display | None = None) -> str:
    """The reply as dig prints it (without dig's banner), the parts ``display`` asks for.

    With comments on, a UDP reply retried over TCP is announced first, as dig does.
    """
    show = display or Display()
    m = reply.message
    lines: list[str] = []
    if show.comments:
        if reply.retried_tcp:
            lines.append(";; Truncated, retrying in TCP mode.")
        lines += _header_lines(m)
    if show.question and m.question:
        if show.comments:
            lines.append(";; QUESTION SECTION:")
        stops = _MULTILINE_STOPS[1:3] if show.multiline else _STOPS[1:3]
        lines += [_columns(e.name, e.qclass, e.qtype, stops=stops, lead=";") for e in m.question]
        if show.comments:
            lines.append("")
    for title, records, wanted in (
        ("ANSWER", m.answer, show.answer),
        ("AUTHORITY", m.authority, show.authority),
        ("ADDITIONAL", m.additional, show.additional),
    ):
        if wanted and records:
            if show.comments:
                lines.append(f";; {title} SECTION:")
            for record in records:
                lines += _multiline_lines(record) if show.multiline else [_record_line(record)]
            if show.comments:
                lines.append("")
    if show.stats:
        host = reply.server[0]
        lines += [
            f";; Query time: {int(reply.elapsed * 1000)} msec",
            f";; SERVER: {server_text(reply.server)}({host}) ({reply.transport})",
            f";; WHEN: {reply.when.strftime('%a %b %d %H:%M:%S %Z %Y')}",
            f";; MSG SIZE  rcvd: {m.size}",
            "",
        ]
    return "".join(line + "\n" for line in lines)


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
    import json

    return json.dumps(document) + "\n"
