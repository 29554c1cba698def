"""Raw-bytes fast paths over DNS messages (RFC 1035 section 4): header, names, question, records.

Stdlib only. Every function here reads untrusted bytes, so every malformation (short packet,
label or pointer out of bounds, compression loop, bad count) raises ``WireError`` and never an
``IndexError``, ``struct.error`` or an endless loop.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from typing import NamedTuple

from resolver.errors import WireError

__all__ = [
    "AA",
    "AD",
    "CD",
    "CLASS_IN",
    "FORMERR",
    "HEADER_SIZE",
    "NOERROR",
    "NOTIMP",
    "NXDOMAIN",
    "OPCODE_QUERY",
    "QR",
    "RA",
    "RD",
    "REFUSED",
    "SERVFAIL",
    "TC",
    "TYPE_A",
    "TYPE_ANY",
    "TYPE_AXFR",
    "TYPE_CNAME",
    "TYPE_IXFR",
    "TYPE_NS",
    "TYPE_OPT",
    "TYPE_SOA",
    "Header",
    "OptSpan",
    "QueryEdns",
    "Question",
    "RecordSpan",
    "Sections",
    "ancestors",
    "as_bytes",
    "error_reply",
    "find_opt",
    "name_to_text",
    "randomize_case",
    "read_header",
    "read_name",
    "read_query_edns",
    "read_question",
    "section_offsets",
    "set_id",
    "skip_name",
    "skip_records",
    "truncated_reply",
    "walk_records",
]

HEADER_SIZE = 12

# Masks on the 16-bit flags word (RFC 1035 4.1.1, RFC 4035 3.2 for AD and CD).
QR = 0x8000
AA = 0x0400
TC = 0x0200
RD = 0x0100
RA = 0x0080
AD = 0x0020
CD = 0x0010
_OPCODE_SHIFT = 11
_OPCODE_MASK = 0x7800
_RCODE_MASK = 0x000F

OPCODE_QUERY = 0

NOERROR = 0
FORMERR = 1
SERVFAIL = 2
NXDOMAIN = 3
NOTIMP = 4
REFUSED = 5

TYPE_A = 1
TYPE_NS = 2
TYPE_CNAME = 5
TYPE_SOA = 6
TYPE_OPT = 41
TYPE_IXFR = 251
TYPE_AXFR = 252
TYPE_ANY = 255

CLASS_IN = 1

_MAX_NAME = 255  # wire length including the root label (RFC 1035 2.3.4)
# Every pointer must point strictly backwards, so a loop is impossible already; the hop limit
# additionally bounds the work one name can cost (a chain of 1-label pointers).
_MAX_HOPS = 127
_DO = 0x8000  # in the low 16 bits of the OPT TTL (RFC 6891 6.1.3)

_HEADER = struct.Struct("!6H")
_U16 = struct.Struct("!H")
_TYPE_CLASS = struct.Struct("!HH")
_RR_FIXED = struct.Struct("!HHIH")  # type, class, ttl, rdlength
_OPT_TTL = struct.Struct("!BBH")  # extended rcode, version, flags


class Header(NamedTuple):
    """The fixed 12-byte message header; ``flags`` is the raw 16-bit flags word."""

    id: int
    flags: int
    qdcount: int
    ancount: int
    nscount: int
    arcount: int

    @property
    def qr(self) -> bool:
        return bool(self.flags & QR)

    @property
    def opcode(self) -> int:
        return (self.flags & _OPCODE_MASK) >> _OPCODE_SHIFT

    @property
    def aa(self) -> bool:
        return bool(self.flags & AA)

    @property
    def tc(self) -> bool:
        return bool(self.flags & TC)

    @property
    def rd(self) -> bool:
        return bool(self.flags & RD)

    @property
    def ra(self) -> bool:
        return bool(self.flags & RA)

    @property
    def ad(self) -> bool:
        return bool(self.flags & AD)

    @property
    def cd(self) -> bool:
        return bool(self.flags & CD)

    @property
    def rcode(self) -> int:
        """The low 4 bits of the rcode; EDNS extends it with the OPT record's high bits."""
        return self.flags & _RCODE_MASK


def read_header(data: bytes | bytearray) -> Header:
    """Return the header of ``data``; raise WireError if it is shorter than 12 bytes."""
    if len(data) < HEADER_SIZE:
        raise WireError(f"message of {len(data)} bytes is shorter than the 12-byte header")
    return Header._make(_HEADER.unpack_from(data))


def as_bytes(data: bytes | bytearray) -> bytes:
    """``data`` itself when it is bytes, else a bytes copy of it.

    The readers here accept a ``bytearray`` (dnslib's ``pack()`` returns one) and work on
    bytes, which the compiled build indexes without a type dispatch per byte.
    """
    return data if isinstance(data, bytes) else bytes(data)


def _label_error(data: bytes, pos: int) -> WireError:
    return WireError(f"label type 0x{data[pos] & 0xC0:02x} at offset {pos} is not supported")


def _pointer_target(data: bytes, pos: int) -> int:
    """The target of the compression pointer at ``pos``; WireError unless it points backwards."""
    if pos + 2 > len(data):
        raise WireError(f"compression pointer at offset {pos} is cut off")
    target = ((data[pos] & 0x3F) << 8) | data[pos + 1]
    if target >= pos:
        raise WireError(f"compression pointer at offset {pos} points forward to {target}")
    return target


def ancestors(name: bytes) -> list[bytes]:
    """``name`` (uncompressed wire form, as ``Question.name``) and each name above it, longest
    first, the root excluded: ``www.example.com.`` gives itself, ``example.com.``, ``com.``.

    A list, not a generator: callers test membership with ``in`` as well as iterate.
    """
    names: list[bytes] = []
    pos = 0
    last = len(name) - 1
    for _ in range(_MAX_NAME // 2 + 1):  # a 255-byte name has at most 127 labels
        if pos >= last:
            break
        names.append(name[pos:])
        pos += name[pos] + 1
    return names


def skip_name(data: bytes | bytearray, offset: int) -> int:
    """Return the offset just after the (possibly compressed) name starting at ``offset``.

    Pointers are checked but not followed. Raises WireError if the name runs past the end of
    ``data``, a pointer does not point backwards, or a label type is reserved.
    """
    return _skip_name(as_bytes(data), offset)


def _skip_name(data: bytes, offset: int) -> int:
    end = len(data)
    pos = offset
    while True:
        if pos >= end:
            raise WireError(f"name at offset {offset} runs past the end of the message")
        length = data[pos]
        if length == 0:
            return pos + 1
        if length >= 0xC0:
            _pointer_target(data, pos)
            return pos + 2
        if length > 63:
            raise _label_error(data, pos)
        pos += 1 + length
        if pos - offset >= _MAX_NAME:
            raise WireError(f"name at offset {offset} is longer than 255 bytes")


def read_name(data: bytes | bytearray, offset: int) -> tuple[bytes, int]:
    """Return the name at ``offset`` in uncompressed wire form and the offset just after it.

    The name keeps its case and ends with the root label ``b"\\x00"``. Pointers are followed;
    each must point strictly backwards. Raises WireError on a name that runs past the end,
    a forward or looping pointer, a reserved label type or a name longer than 255 bytes.
    """
    return _read_name(as_bytes(data), offset)


def _read_name(data: bytes, offset: int) -> tuple[bytes, int]:
    end = len(data)
    pos = offset
    # Labels in place up to the first pointer: a name without one (every query's, as a rule)
    # is one slice of ``data``.
    while True:
        if pos >= end:
            raise WireError(f"name at offset {offset} runs past the end of the message")
        length = data[pos]
        if length == 0:
            return data[offset : pos + 1], pos + 1
        if length >= 0xC0:
            break
        if length > 63:
            raise _label_error(data, pos)
        stop = pos + 1 + length
        if stop > end:
            raise WireError(f"label at offset {pos} runs past the end of the message")
        if stop - offset + 1 > _MAX_NAME:
            raise WireError(f"name at offset {offset} is longer than 255 bytes")
        pos = stop
    parts: list[bytes] = [data[offset:pos]]
    size = pos - offset
    after = -1  # offset after the name in the packet: fixed at the first pointer
    hops = 0
    while True:
        if pos >= end:
            raise WireError(f"name at offset {offset} runs past the end of the message")
        length = data[pos]
        if length == 0:
            parts.append(b"\x00")
            return b"".join(parts), (pos + 1 if after < 0 else after)
        if length >= 0xC0:
            target = _pointer_target(data, pos)
            if after < 0:
                after = pos + 2
            hops += 1
            if hops > _MAX_HOPS:
                raise WireError(f"name at offset {offset} follows too many pointers")
            pos = target
            continue
        if length > 63:
            raise _label_error(data, pos)
        stop = pos + 1 + length
        if stop > end:
            raise WireError(f"label at offset {pos} runs past the end of the message")
        size += 1 + length
        if size + 1 > _MAX_NAME:
            raise WireError(f"name at offset {offset} is longer than 255 bytes")
        parts.append(data[pos:stop])
        pos = stop


# Characters dig escapes with a backslash in names (dns_name_totext); other bytes outside
# printable ASCII, and the space, become \\DDD.
_SPECIAL = frozenset(b'."();@$\\')


def _escape_label(label: bytes) -> str:
    out: list[str] = []
    for byte in label:
        if byte in _SPECIAL:
            out.append("\\" + chr(byte))
        elif 0x21 <= byte <= 0x7E:
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03d}")
    return "".join(out)


def name_to_text(name: bytes) -> str:
    """Dotted text of an uncompressed wire name, with a trailing dot ("." for the root).

    Escaped as dig prints names: ``. " ( ) ; @ $ \\`` inside labels get a backslash, the
    space and bytes outside printable ASCII become ``\\DDD``. The name must be well-formed
    (as returned by ``read_name``); this is not checked.
    """
    labels: list[str] = []
    pos = 0
    while name[pos]:
        stop = pos + 1 + name[pos]
        label = name[pos + 1 : stop]
        text = label.decode("ascii", "replace")
        # The common case (letters, digits, hyphens, underscores) needs no escaping.
        if text.isascii() and text.replace("-", "").replace("_", "").isalnum():
            labels.append(text)
        else:
            labels.append(_escape_label(label))
        pos = stop
    return ".".join(labels) + "." if labels else "."


# Maps each byte of a lowercased name to 0x20 where it is a letter, else to 0: the bits 0x20
# encoding may flip. Length bytes (at most 63) are never letters.
_LETTER_BITS = bytes(0x20 if 0x61 <= byte <= 0x7A else 0 for byte in range(256))


def randomize_case(name: bytes) -> bytes:
    """``name`` (uncompressed wire form) with the case of each letter flipped at random: 0x20
    encoding (draft-vixie-dnsext-dns0x20), whose echo in the reply a forger must guess too."""
    lower = name.lower()
    size = len(lower)
    # Whole-name integer arithmetic instead of a loop over the bytes: about ten times faster.
    # os.urandom is what secrets.token_bytes returns, without importing hmac at start-up.
    flips = int.from_bytes(lower.translate(_LETTER_BITS), "big") & int.from_bytes(
        os.urandom(size), "big"
    )
    return (int.from_bytes(lower, "big") ^ flips).to_bytes(size, "big")


class Question(NamedTuple):
    """A question: ``name`` in uncompressed wire form (case kept), ``end`` its end offset."""

    name: bytes
    qtype: int
    qclass: int
    end: int

    @property
    def text(self) -> str:
        """The name as dotted text with a trailing dot, escaped as dig does."""
        return name_to_text(self.name)

    def key(self) -> bytes:
        """The name lowercased (ASCII only, as RFC 4343 asks): the cache and matching key."""
        # Length bytes are at most 63, below b"A", so lower() only touches label bytes.
        return self.name.lower()


def read_question(data: bytes | bytearray) -> Question:
    """Return the single question of ``data``.

    Raises WireError if the header is short, qdcount is not exactly 1 or the question is
    malformed or cut off.
    """
    return _read_question(as_bytes(data))


def _read_question(data: bytes) -> Question:
    if len(data) < HEADER_SIZE:
        raise WireError(f"message of {len(data)} bytes is shorter than the 12-byte header")
    qdcount = (data[4] << 8) | data[5]
    if qdcount != 1:
        raise WireError(f"expected exactly one question, the message has {qdcount}")
    name, pos = _read_name(data, HEADER_SIZE)
    if pos + 4 > len(data):
        raise WireError("question is cut off before its type and class")
    qtype, qclass = _TYPE_CLASS.unpack_from(data, pos)
    return Question(name, qtype, qclass, pos + 4)


def set_id(data: bytes | bytearray, qid: int) -> bytes:
    """Return ``data`` with its message ID replaced by ``qid``.

    Raises WireError if ``data`` is shorter than a header, ValueError if ``qid`` is not 0-65535.
    """
    if len(data) < HEADER_SIZE:
        raise WireError(f"message of {len(data)} bytes is shorter than the 12-byte header")
    if not 0 <= qid <= 0xFFFF:
        raise ValueError(f"message ID {qid} is not in 0-65535")
    return _U16.pack(qid) + data[2:]


class RecordSpan(NamedTuple):
    """Where one resource record sits in a message, with its fixed fields decoded."""

    name_offset: int
    rtype: int
    rclass: int
    ttl_offset: int
    rdata_offset: int
    rdlength: int

    @property
    def end(self) -> int:
        """The offset just after the record."""
        return self.rdata_offset + self.rdlength


def walk_records(message: bytes | bytearray, offset: int, count: int) -> Iterator[RecordSpan]:
    """Yield the spans of ``count`` consecutive resource records starting at ``offset``.

    Owner names are skipped, not decoded. Raises WireError (when the iteration reaches it) if
    a record is malformed or runs past the end of ``message``.
    """
    data = as_bytes(message)
    end = len(data)
    pos = offset
    for _ in range(count):
        name_offset = pos
        pos = _skip_name(data, pos)
        if pos + 10 > end:
            raise WireError(f"resource record at offset {name_offset} is cut off")
        rtype, rclass, _ttl, rdlength = _RR_FIXED.unpack_from(data, pos)
        rdata = pos + 10
        if rdata + rdlength > end:
            raise WireError(f"rdata of the record at offset {name_offset} runs past the end")
        yield RecordSpan(name_offset, rtype, rclass, pos + 4, rdata, rdlength)
        pos = rdata + rdlength


class Sections(NamedTuple):
    """Start offsets of the answer, authority and additional sections and the message end."""

    answer: int
    authority: int
    additional: int
    end: int


def _skip_questions(data: bytes, count: int) -> int:
    pos = HEADER_SIZE
    for _ in range(count):
        pos = _skip_name(data, pos) + 4
        if pos > len(data):
            raise WireError("question is cut off before its type and class")
    return pos


def skip_records(data: bytes | bytearray, offset: int, count: int) -> int:
    """Return the offset just after ``count`` consecutive resource records from ``offset``.

    Raises WireError if a record is malformed or runs past the end of ``data``.
    """
    return _skip_records(as_bytes(data), offset, count)


def _skip_records(data: bytes, offset: int, count: int) -> int:
    # walk_records without building a span per record: this runs on every relayed reply.
    end = len(data)
    pos = offset
    for _ in range(count):
        start = pos
        pos = _skip_name(data, pos)
        if pos + 10 > end:
            raise WireError(f"resource record at offset {start} is cut off")
        pos += 10 + ((data[pos + 8] << 8) | data[pos + 9])
        if pos > end:
            raise WireError(f"rdata of the record at offset {start} runs past the end")
    return pos


def section_offsets(message: bytes | bytearray) -> Sections:
    """Locate the sections of ``message`` by walking all its counts.

    ``end`` is where the last record ends; trailing bytes after it are ignored. Raises
    WireError if any count promises more than the message holds.
    """
    data = as_bytes(message)
    header = read_header(data)
    answer = _skip_questions(data, header.qdcount)
    authority = _skip_records(data, answer, header.ancount)
    additional = _skip_records(data, authority, header.nscount)
    end = _skip_records(data, additional, header.arcount)
    return Sections(answer, authority, additional, end)


class QueryEdns(NamedTuple):
    """The OPT record of a message (RFC 6891 6.1): ``offset`` is where the OPT record starts.

    ``udp_size`` is as sent; RFC 6891 says to treat values below 512 as 512.
    """

    udp_size: int
    do: bool
    version: int
    ext_rcode: int
    offset: int


class OptSpan(NamedTuple):
    """Where the OPT record sits: ``start`` (its owner name), ``ttl_offset`` (extended rcode,
    version, flags), ``end``, and ``records_end``, where the message's last record ends."""

    start: int
    ttl_offset: int
    end: int
    records_end: int


def find_opt(message: bytes | bytearray, question_end: int | None = None) -> OptSpan | None:
    """Find the OPT record of ``message`` in one walk over its records, or None without one.

    ``question_end`` saves re-reading a question already read. Raises WireError if a record
    is malformed or runs past the end, or there is more than one OPT (RFC 6891 6.1.1).
    """
    data = as_bytes(message)
    if len(data) < HEADER_SIZE:
        raise WireError(f"message of {len(data)} bytes is shorter than the 12-byte header")
    _, _, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data)
    if not arcount and question_end is not None and not ancount | nscount:
        return None  # a query without records: nothing to walk
    pos = _skip_questions(data, qdcount) if question_end is None else question_end
    if ancount or nscount:
        pos = _skip_records(data, pos, ancount + nscount)
    end = len(data)
    opt_start = opt_ttl = opt_end = -1
    # skip_records, noting the OPT on the way: this runs on every query and relayed reply.
    for _ in range(arcount):
        start = pos
        pos = _skip_name(data, pos)
        if pos + 10 > end:
            raise WireError(f"resource record at offset {start} is cut off")
        rtype = (data[pos] << 8) | data[pos + 1]
        ttl_offset = pos + 4
        pos += 10 + ((data[pos + 8] << 8) | data[pos + 9])
        if pos > end:
            raise WireError(f"rdata of the record at offset {start} runs past the end")
        if rtype == TYPE_OPT:
            if opt_start >= 0:
                raise WireError("message has more than one OPT record")
            opt_start, opt_ttl, opt_end = start, ttl_offset, pos
    if opt_start < 0:
        return None
    return OptSpan(opt_start, opt_ttl, opt_end, pos)


def read_query_edns(message: bytes | bytearray, question_end: int) -> QueryEdns | None:
    """Return the OPT record of ``message`` or None when it has none.

    Records of all sections are walked from ``question_end``; the OPT is looked for in the
    additional section. Raises WireError if a record is malformed, the OPT owner is not the
    root, or there is more than one OPT (RFC 6891 6.1.1 asks for FORMERR).
    """
    data = as_bytes(message)
    opt = find_opt(data, question_end)
    if opt is None:
        return None
    start = opt.start
    if data[start] != 0:
        raise WireError("OPT record owner is not the root")
    # Owner (the root, one byte), type, class (the UDP size), then the TTL's three fields.
    return QueryEdns(
        (data[start + 3] << 8) | data[start + 4],
        bool(data[start + 7] & 0x80),
        data[start + 6],
        data[start + 5],
        start,
    )


def error_reply(query: bytes | bytearray, rcode: int) -> bytes:
    """Build a reply carrying ``rcode`` to the raw ``query``, without parsing more than needed.

    The reply has the query's ID, opcode and RD, QR and RA set, and the question copied when
    the query has exactly one well-formed question (otherwise no question). It has no records.
    Raises WireError if ``query`` is shorter than a header (the caller should drop it) and
    ValueError if ``rcode`` does not fit the header's 4 bits.
    """
    if not 0 <= rcode <= _RCODE_MASK:
        raise ValueError(f"rcode {rcode} does not fit in the header; it needs EDNS")
    header = read_header(query)
    flags = QR | RA | (header.flags & (_OPCODE_MASK | RD)) | rcode
    try:
        question = read_question(query)
    except WireError:
        return _HEADER.pack(header.id, flags, 0, 0, 0, 0)
    return _HEADER.pack(header.id, flags, 1, 0, 0, 0) + query[HEADER_SIZE : question.end]


def truncated_reply(message: bytes | bytearray) -> bytes:
    """Return the header and question section of ``reply`` with TC set and no records.

    Meant for answers larger than the client's UDP size (RFC 1035 4.2.1); the caller adds an
    OPT record when the client used EDNS. Raises WireError if the header or questions are
    malformed.
    """
    reply = as_bytes(message)
    header = read_header(reply)
    end = _skip_questions(reply, header.qdcount)
    head = _HEADER.pack(header.id, header.flags | TC, header.qdcount, 0, 0, 0)
    return head + reply[HEADER_SIZE:end]
