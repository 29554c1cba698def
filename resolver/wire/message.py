"""The dnslib edge: full parses, fresh queries, names, mnemonics and OPT rewriting.

These are the slow paths (CLI, recursion, error handling). dnslib's exceptions are translated
here, once, into ``WireError``. OPT rewriting and the RFC 8482 reply work on raw bytes because a
forwarder runs them on every reply.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from resolver.errors import WireError
from resolver.wire.raw import (
    CD,
    HEADER_SIZE,
    NOERROR,
    QR,
    RA,
    RD,
    TYPE_OPT,
    as_bytes,
    find_opt,
    read_header,
    read_question,
    section_offsets,
)

if TYPE_CHECKING:
    from dnslib import DNSRecord

__all__ = [
    "check_name",
    "is_absolute",
    "minimal_any_reply",
    "name_to_wire",
    "opt_record",
    "parse",
    "qclass_name",
    "qclass_value",
    "qtype_name",
    "qtype_value",
    "rcode_name",
    "replace_opt",
    "strip_opt",
    "to_text",
]

# dnslib is imported on first use: a one-shot ``resolver query`` for a common type needs none
# of it, and importing it is a tenth of that command's start-up.
_dnslib_errors: tuple[type[BaseException], ...] = ()


def _errors() -> tuple[type[BaseException], ...]:
    """What dnslib raises for bad input; its rdata parsers also leak plain Python errors on
    some malformed rdata, and deep pointer chains recurse in its name decoder."""
    global _dnslib_errors
    if not _dnslib_errors:
        from dnslib.bimap import BimapError
        from dnslib.buffer import BufferError as DNSBufferError
        from dnslib.dns import DNSError
        from dnslib.label import DNSLabelError

        _dnslib_errors = (
            DNSError,
            DNSBufferError,
            BimapError,
            DNSLabelError,
            ValueError,
            IndexError,
            KeyError,
            TypeError,
            struct.error,
            UnicodeError,
            RecursionError,
        )
    return _dnslib_errors


# The most asked types, named as dnslib names them (a test holds the two equal); the others
# are looked up in dnslib's table.
_COMMON_TYPES = {
    1: "A",
    2: "NS",
    5: "CNAME",
    6: "SOA",
    12: "PTR",
    13: "HINFO",
    15: "MX",
    16: "TXT",
    28: "AAAA",
    33: "SRV",
    35: "NAPTR",
    39: "DNAME",
    41: "OPT",
    43: "DS",
    44: "SSHFP",
    46: "RRSIG",
    47: "NSEC",
    48: "DNSKEY",
    50: "NSEC3",
    51: "NSEC3PARAM",
    52: "TLSA",
    64: "SVCB",
    65: "HTTPS",
    99: "SPF",
    251: "IXFR",
    252: "AXFR",
    255: "ANY",
    257: "CAA",
}
_COMMON_TYPE_VALUES = {text: value for value, text in _COMMON_TYPES.items()}

_HEADER = struct.Struct("!6H")
# Root owner, type, UDP size (the class field), extended rcode, version, flags, rdlength.
_OPT_FIXED = struct.Struct("!BHHBBHH")
_DO = 0x8000
_OPCODE_MASK = 0x7800
_TYPE_HINFO = 13
_ANY_TTL = 3600

_MAX_LABEL = 63
_MAX_NAME = 255

_CLASSES = {1: "IN", 3: "CH", 4: "HS", 254: "NONE", 255: "ANY"}
_CLASS_VALUES = {text: value for value, text in _CLASSES.items()}
_RCODES = {
    0: "NOERROR",
    1: "FORMERR",
    2: "SERVFAIL",
    3: "NXDOMAIN",
    4: "NOTIMP",
    5: "REFUSED",
    6: "YXDOMAIN",
    7: "YXRRSET",
    8: "NXRRSET",
    9: "NOTAUTH",
    10: "NOTZONE",
    11: "DSOTYPENI",
    16: "BADVERS",
    17: "BADKEY",
    18: "BADTIME",
    19: "BADMODE",
    20: "BADNAME",
    21: "BADALG",
    22: "BADTRUNC",
    23: "BADCOOKIE",
}


def parse(data: bytes) -> DNSRecord:
    """Parse a whole message with dnslib; raise WireError if it is malformed.

    dnslib also rejects labels that are not valid UTF-8, which the raw functions accept.
    """
    from dnslib import DNSRecord

    try:
        return DNSRecord.parse(data)
    except _errors() as exc:
        raise WireError(f"cannot parse message: {exc}") from exc


def to_text(data: bytes) -> str:
    """The message in dig's presentation format; raise WireError if it is malformed."""
    return str(parse(data))


def _escaped_byte(name: str, pos: int) -> tuple[bytes, int]:
    """The bytes of the escape at ``name[pos]`` (a backslash) and the position after it."""
    digits = name[pos + 1 : pos + 4]
    if len(digits) == 3 and digits.isascii() and digits.isdigit():
        value = int(digits)
        if value > 255:
            raise WireError(f"escape \\{digits} in name {name!r} is over 255")
        return bytes((value,)), pos + 4
    if pos + 1 >= len(name):
        raise WireError(f"name {name!r} ends in a lone backslash")
    return name[pos + 1].encode("utf-8"), pos + 2


def _split_labels(name: str) -> list[bytes]:
    """The labels of a presentation-format name: unescaped dots split, ``\\DDD`` and ``\\X``
    stand for the byte and the character. A final empty label (the trailing dot) is dropped."""
    if "\\" not in name:
        labels = name.split(".")
        if len(labels) > 1 and not labels[-1]:
            labels.pop()
        return [label.encode("utf-8") for label in labels]
    out: list[bytes] = []
    label = bytearray()
    pos = 0
    while pos < len(name):
        char = name[pos]
        if char == "\\":
            raw, pos = _escaped_byte(name, pos)
            label += raw
            continue
        if char == ".":
            out.append(bytes(label))
            label = bytearray()
        else:
            label += char.encode("utf-8")
        pos += 1
    if label or not out:
        out.append(bytes(label))
    return out


def is_absolute(name: str) -> bool:
    """Whether a presentation-format name ends in an unescaped dot (``a\\.`` does not)."""
    stripped = name[:-1].rstrip("\\") if name.endswith(".") else None
    return stripped is not None and (len(name) - 1 - len(stripped)) % 2 == 0


def _labels(name: str) -> list[bytes]:
    """The labels of a text name (UTF-8 encoded, root excluded); WireError naming the problem."""
    if not name:
        raise WireError("the name is empty; use '.' for the root")
    if name == ".":
        return []
    encoded = _split_labels(name)
    for raw in encoded:
        if not raw:
            raise WireError(f"name {name!r} has an empty label")
        if len(raw) > _MAX_LABEL:
            text = raw.decode("utf-8", "replace")
            shown = text if len(text) <= 20 else text[:20] + "…"
            raise WireError(f"label {shown!r} is {len(raw)} bytes, the limit is {_MAX_LABEL}")
    size = sum(len(raw) + 1 for raw in encoded) + 1
    if size > _MAX_NAME:
        raise WireError(f"name is {size} bytes in wire form, the limit is {_MAX_NAME}")
    return encoded


def check_name(name: str) -> str:
    """Validate a user-given domain name and return it with a trailing dot.

    The name is read as dig reads it: ``\\.`` is a dot inside a label, ``\\DDD`` the byte
    with that decimal value, ``\\X`` the character X; other characters count as their UTF-8
    bytes. Raises WireError for an empty name, an empty label (other than the root), a label
    over 63 bytes, a name over 255 bytes in wire form, or a bad escape (over 255, a lone
    trailing backslash).
    """
    _labels(name)
    return name if is_absolute(name) else name + "."


def name_to_wire(name: str) -> bytes:
    """The uncompressed wire form of a text name, case kept; WireError as ``check_name``."""
    return b"".join(bytes((len(raw),)) + raw for raw in _labels(name)) + b"\x00"


def opt_record(udp_size: int, do: bool, ext_rcode: int = 0, *, options: bytes = b"") -> bytes:
    """An OPT pseudo-record (root owner): our UDP size, the extended rcode, version 0, the DO
    bit, and ``options`` already encoded (code, length, data). ValueError for a size out of
    range."""
    if not 0 <= udp_size <= 0xFFFF:
        raise ValueError(f"EDNS UDP size {udp_size} is not in 0-65535")
    fixed = _OPT_FIXED.pack(0, TYPE_OPT, udp_size, ext_rcode, 0, _DO if do else 0, len(options))
    return fixed + options


def qtype_value(text: str) -> int:
    """The numeric type of a mnemonic ("a", "AAAA") or RFC 3597 form ("TYPE65").

    Raises WireError for an unknown mnemonic or a number out of range.
    """
    upper = text.strip().upper()
    if upper in _COMMON_TYPE_VALUES:
        return _COMMON_TYPE_VALUES[upper]
    if upper.isalnum() and upper.isascii():  # mnemonics are letters and digits: ask dnslib
        from dnslib import QTYPE

        reverse: dict[str, int] = QTYPE.reverse
        if upper in reverse:
            return reverse[upper]
    return _generic_value(text, upper, "TYPE")


def qtype_name(value: int) -> str:
    """The mnemonic of a type, or "TYPEnnn" when it has none; WireError if out of range."""
    _check_u16(value, "type")
    if value in _COMMON_TYPES:
        return _COMMON_TYPES[value]
    from dnslib import QTYPE

    forward: dict[int, str] = QTYPE.forward
    return forward.get(value, f"TYPE{value}")


def qclass_value(text: str) -> int:
    """The numeric class of "IN", "CH", "HS", "NONE", "ANY" or "CLASSnnn" (any case).

    Raises WireError for an unknown mnemonic or a number out of range.
    """
    upper = text.strip().upper()
    if upper in _CLASS_VALUES:
        return _CLASS_VALUES[upper]
    return _generic_value(text, upper, "CLASS")


def qclass_name(value: int) -> str:
    """The mnemonic of a class, or "CLASSnnn" when it has none; WireError if out of range."""
    _check_u16(value, "class")
    return _CLASSES.get(value, f"CLASS{value}")


def rcode_name(value: int) -> str:
    """The mnemonic of an (extended, 12-bit) rcode, or "RCODEnnn"; WireError if out of range."""
    if not 0 <= value <= 0xFFF:
        raise WireError(f"rcode {value} is not in 0-4095")
    return _RCODES.get(value, f"RCODE{value}")


def _check_u16(value: int, what: str) -> None:
    if not 0 <= value <= 0xFFFF:
        raise WireError(f"{what} {value} is not in 0-65535")


def _generic_value(text: str, upper: str, prefix: str) -> int:
    digits = upper.removeprefix(prefix)
    if upper.startswith(prefix) and digits.isdecimal() and digits.isascii():
        value = int(digits)
        _check_u16(value, prefix.lower())
        return value
    raise WireError(f"unknown {prefix.lower()} {text!r}")


def _split_opt(reply: bytes) -> tuple[bytes, int] | None:
    """The reply without its OPT record and the OPT's extended rcode, or None without OPT.

    Raw when the OPT is the last record (the usual place); otherwise records after it could
    point into records before it, so removing bytes in the middle is left to dnslib.
    """
    opt = find_opt(reply)
    if opt is None:
        return None
    ext_rcode = reply[opt.ttl_offset]
    if opt.end == opt.records_end:
        arcount = ((reply[10] << 8) | reply[11]) - 1
        return reply[:10] + arcount.to_bytes(2, "big") + reply[HEADER_SIZE : opt.start], ext_rcode
    record = parse(reply)
    record.ar = [rr for rr in record.ar if rr.rtype != TYPE_OPT]
    try:
        packed = bytes(record.pack())  # dnslib packs into a bytearray
    except _errors() as exc:
        raise WireError(f"cannot rebuild message without its OPT record: {exc}") from exc
    return packed, ext_rcode


def strip_opt(reply: bytes | bytearray) -> bytes:
    """Return ``reply`` without its OPT record (unchanged if it has none).

    Raises WireError if the message is malformed, has several OPT records, or its OPT carries
    an extended rcode, which cannot be expressed without OPT.
    """
    reply = as_bytes(reply)
    split = _split_opt(reply)
    if split is None:
        return reply
    stripped, ext_rcode = split
    if ext_rcode:
        raise WireError(f"extended rcode bits {ext_rcode} cannot be kept without OPT")
    return stripped


def replace_opt(reply: bytes | bytearray, *, udp_size: int, do: bool) -> bytes:
    """Return ``reply`` with its OPT record (if any) replaced by our own, appended last.

    OPT is hop-by-hop (RFC 6891), so the upstream's options are dropped; its extended rcode
    bits are kept so the full rcode does not change. Raises WireError if the message is
    malformed or has several OPT records, ValueError if ``udp_size`` is out of range.
    """
    reply = as_bytes(reply)
    split = _split_opt(reply)
    if split is None:
        header = read_header(reply)
        body, ext_rcode = reply[HEADER_SIZE : section_offsets(reply).end], 0
    else:
        stripped, ext_rcode = split
        header = read_header(stripped)
        body = stripped[HEADER_SIZE:]
    head = _HEADER.pack(*header[:5], header.arcount + 1)
    return head + body + opt_record(udp_size, do, ext_rcode)


def minimal_any_reply(query: bytes) -> bytes:
    """A NOERROR reply to ``query`` holding one synthesized HINFO "RFC8482" "" record.

    This is the minimal answer of RFC 8482 section 4.2 for qtype ANY, with TTL 3600 as BIND
    and Cloudflare send; the caller decides when to use it and adds an OPT if the query had
    one. ID, opcode, RD and CD are copied. Raises WireError unless the query has exactly one
    well-formed question.
    """
    header = read_header(query)
    question = read_question(query)
    flags = QR | RA | (header.flags & (_OPCODE_MASK | RD | CD)) | NOERROR
    rdata = b"\x07RFC8482\x00"
    answer = struct.pack(
        "!HHHIH", 0xC000 | HEADER_SIZE, _TYPE_HINFO, question.qclass, _ANY_TTL, len(rdata)
    )
    head = _HEADER.pack(header.id, flags, 1, 1, 0, 0)
    return head + query[HEADER_SIZE : question.end] + answer + rdata
