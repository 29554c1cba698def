"""EDNS options of the encrypted and stream transports, on raw bytes: TCP keepalive (RFC 7828)
and padding (RFC 7830, with RFC 8467's block sizes).

Stdlib only, like ``raw``: every function reads untrusted bytes and raises ``WireError`` on a
malformed message, never an ``IndexError``.
"""

from __future__ import annotations

import struct

from resolver.errors import WireError
from resolver.wire.raw import find_opt

__all__ = [
    "OPTION_KEEPALIVE",
    "OPTION_PADDING",
    "QUERY_BLOCK",
    "RESPONSE_BLOCK",
    "add_option",
    "pad",
    "read_keepalive",
    "stream_query",
]

OPTION_KEEPALIVE = 11  # edns-tcp-keepalive, RFC 7828
OPTION_PADDING = 12  # RFC 7830
QUERY_BLOCK = 128  # RFC 8467 section 4.1: queries padded to a multiple of 128 octets
RESPONSE_BLOCK = 468  # and responses to a multiple of 468
_OPTION = struct.Struct("!HH")


def _last_opt(data: bytes) -> int:
    """The offset of the OPT record's RDLENGTH when that record is the message's last one.
    Raises WireError when the message has no OPT or records follow it (then options cannot be
    appended in place)."""
    opt = find_opt(data)
    if opt is None:
        raise WireError("the message has no OPT record")
    if opt.end != opt.records_end or opt.records_end != len(data):
        raise WireError("the OPT record is not the message's last record")
    return opt.ttl_offset + 4


def add_option(data: bytes, code: int, value: bytes = b"") -> bytes:
    """``data`` with one more EDNS option appended to its OPT record (which must be the last
    record). Raises WireError otherwise, or when the record would grow past 65535 bytes."""
    rdlength_at = _last_opt(data)
    rdlength = ((data[rdlength_at] << 8) | data[rdlength_at + 1]) + 4 + len(value)
    if rdlength > 0xFFFF:
        raise WireError("the OPT record would be too long")
    return (
        data[:rdlength_at]
        + rdlength.to_bytes(2, "big")
        + data[rdlength_at + 2 :]
        + _OPTION.pack(code, len(value))
        + value
    )


def pad(data: bytes, block: int) -> bytes:
    """``data`` padded (RFC 7830) to a multiple of ``block`` bytes with a padding option in its
    OPT record; unchanged without an OPT record, or when the OPT is not the last record (a
    message we did not build). A message whose OPT already carries padding is returned as it is."""
    try:
        rdlength_at = _last_opt(data)
    except WireError:
        return data
    if _find_option(data, rdlength_at, OPTION_PADDING) is not None:
        return data
    size = len(data) + 4
    fill = -size % block
    return add_option(data, OPTION_PADDING, bytes(fill))


def stream_query(data: bytes, block: int) -> bytes:
    """The query ``data`` as sent over a stream: an empty edns-tcp-keepalive option (RFC 7828
    section 3.2.1) appended to its OPT record and, when ``block`` is not 0, padding (RFC 7830)
    to a multiple of ``block`` bytes (unless it carries padding already): what ``add_option``
    then ``pad`` make, from one walk of the message. Unchanged without an OPT record, or when
    the OPT is not the last record. Raises WireError when the record would grow past 65535
    bytes."""
    try:
        rdlength_at = _last_opt(data)
    except WireError:
        return data
    extra = _OPTION.pack(OPTION_KEEPALIVE, 0)
    if block and _find_option(data, rdlength_at, OPTION_PADDING) is None:
        fill = -(len(data) + 8) % block
        extra += _OPTION.pack(OPTION_PADDING, fill) + bytes(fill)
    rdlength = ((data[rdlength_at] << 8) | data[rdlength_at + 1]) + len(extra)
    if rdlength > 0xFFFF:
        raise WireError("the OPT record would be too long")
    return data[:rdlength_at] + rdlength.to_bytes(2, "big") + data[rdlength_at + 2 :] + extra


def _find_option(data: bytes, rdlength_at: int, code: int) -> bytes | None:
    """The value of option ``code`` in the OPT record whose RDLENGTH is at ``rdlength_at``."""
    end = rdlength_at + 2 + ((data[rdlength_at] << 8) | data[rdlength_at + 1])
    pos = rdlength_at + 2
    while pos + 4 <= end:
        found, length = _OPTION.unpack_from(data, pos)
        pos += 4
        if pos + length > end:
            raise WireError("an EDNS option runs past its OPT record")
        if found == code:
            return data[pos : pos + length]
        pos += length
    return None


def read_keepalive(data: bytes) -> float | None:
    """The idle timeout (seconds) a server's edns-tcp-keepalive option (RFC 7828) asks for in
    the reply ``data``, or None when it carries none (or no timeout). 0.0 means: close the
    connection once idle. Raises WireError on a malformed message."""
    opt = find_opt(data)
    if opt is None:
        return None
    value = _find_option(data, opt.ttl_offset + 4, OPTION_KEEPALIVE)
    if value is None or len(value) != 2:
        return None
    return ((value[0] << 8) | value[1]) / 10.0  # units of 100 milliseconds
