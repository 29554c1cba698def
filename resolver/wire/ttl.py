"""TTL fields of a DNS reply, read and rewritten on raw bytes (the cache's hot path).

``scan`` walks a reply once and says where every TTL field is, what the smallest one is and,
for a negative answer, how long RFC 2308 allows it to be cached. The ``*_into`` functions then
rewrite those fields in place in a ``bytearray`` with one ``struct.pack_into`` per field, so a
cached answer is served as copy + patch, never parse + rebuild. Stdlib only.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import NamedTuple

from resolver.errors import WireError
from resolver.wire.raw import (
    HEADER_SIZE,
    NOERROR,
    NXDOMAIN,
    TYPE_ANY,
    TYPE_OPT,
    TYPE_SOA,
    read_header,
    skip_name,
)

__all__ = [
    "MAX_TTL",
    "TtlInfo",
    "decrement_ttls_into",
    "patch_ttls",
    "read_ttls",
    "scan",
    "set_ttls_into",
]

MAX_TTL = 0x7FFF_FFFF
"""The largest meaningful TTL: RFC 2181 section 8 makes a TTL with the top bit set mean 0."""

_U32 = struct.Struct("!I")
_SOA_FIXED = 20  # serial, refresh, retry, expire, minimum: five 32-bit fields ending the rdata
_SOA_MIN_RDLENGTH = 2 + _SOA_FIXED  # two root names at the least


class TtlInfo(NamedTuple):
    """What ``scan`` learns about a reply's TTLs.

    ``offsets`` are the offsets of the TTL fields of every record in the answer, authority and
    additional sections except OPT (whose "TTL" holds EDNS flags), in message order; ``ttls``
    are their values with RFC 2181's top-bit rule applied. ``min_ttl`` is the smallest of
    ``ttls`` (None without records). ``rcode`` includes the EDNS extended bits. ``negative`` is
    True for NXDOMAIN and for NODATA (NOERROR without an answer record of the question's type);
    ``negative_ttl`` is then min(SOA TTL, SOA MINIMUM) of the authority section's SOA (RFC 2308
    section 5), or None when there is no SOA. ``truncated`` is the TC bit.
    """

    offsets: tuple[int, ...]
    ttls: tuple[int, ...]
    min_ttl: int | None
    rcode: int
    negative: bool
    negative_ttl: int | None
    truncated: bool


def _question_types(data: bytes, count: int) -> tuple[int, int]:
    """The first question's type (-1 when there is none) and the offset after the questions."""
    pos = HEADER_SIZE
    qtype = -1
    for index in range(count):
        pos = skip_name(data, pos)
        if pos + 4 > len(data):
            raise WireError("question is cut off before its type and class")
        if index == 0:
            qtype = int.from_bytes(data[pos : pos + 2], "big")
        pos += 4
    return qtype, pos


def _soa_negative_ttl(data: bytes, ttl: int, rdata_offset: int, rdlength: int) -> int:
    """min(SOA TTL, MINIMUM): the negative TTL RFC 2308 section 5 asks for."""
    if rdlength < _SOA_MIN_RDLENGTH:
        raise WireError(f"SOA rdata at offset {rdata_offset} is {rdlength} bytes, too short")
    minimum = _u31(_U32.unpack_from(data, rdata_offset + rdlength - 4)[0])
    return min(ttl, minimum)


def _u31(value: int) -> int:
    # RFC 2181 section 8: a TTL (and, by RFC 2308, the SOA MINIMUM) with the top bit set is 0.
    return 0 if value > MAX_TTL else value


def scan(reply: bytes) -> TtlInfo:
    """Walk ``reply`` once and return its TTL offsets, values and negative-caching facts.

    Raises WireError if the header, a question or a record is malformed or cut off, or an SOA
    in the authority section is too short to hold its fixed fields.
    """
    header = read_header(reply)
    qtype, pos = _question_types(reply, header.qdcount)
    answers = header.ancount
    in_auth = answers + header.nscount
    offsets: list[int] = []
    ttls: list[int] = []
    matching_answer = False
    negative_ttl: int | None = None
    ext_rcode = 0
    end = len(reply)
    # walk_records written out: this runs for every reply cached, and a span object per
    # record costs more than reading its fields.
    for index in range(in_auth + header.arcount):
        start = pos
        pos = skip_name(reply, pos)
        if pos + 10 > end:
            raise WireError(f"resource record at offset {start} is cut off")
        rtype = (reply[pos] << 8) | reply[pos + 1]
        ttl_offset = pos + 4
        rdlength = (reply[pos + 8] << 8) | reply[pos + 9]
        rdata = pos + 10
        pos = rdata + rdlength
        if pos > end:
            raise WireError(f"rdata of the record at offset {start} runs past the end")
        if rtype == TYPE_OPT:
            ext_rcode = reply[ttl_offset]
            continue
        ttl = _u31(_U32.unpack_from(reply, ttl_offset)[0])
        offsets.append(ttl_offset)
        ttls.append(ttl)
        if index < answers:
            if rtype == qtype or qtype in (TYPE_ANY, -1):
                matching_answer = True
        elif index < in_auth and rtype == TYPE_SOA:
            soa = _soa_negative_ttl(reply, ttl, rdata, rdlength)
            negative_ttl = soa if negative_ttl is None else min(negative_ttl, soa)
    rcode = (ext_rcode << 4) | header.rcode
    negative = rcode == NXDOMAIN or (rcode == NOERROR and not matching_answer)
    return TtlInfo(
        offsets=tuple(offsets),
        ttls=tuple(ttls),
        min_ttl=min(ttls) if ttls else None,
        rcode=rcode,
        negative=negative,
        negative_ttl=negative_ttl if negative else None,
        truncated=header.tc,
    )


def read_ttls(reply: bytes | bytearray, offsets: Iterable[int]) -> list[int]:
    """Return the raw 32-bit values at ``offsets``; raise WireError if one is out of bounds."""
    try:
        return [_U32.unpack_from(reply, offset)[0] for offset in offsets]
    except struct.error as exc:
        raise WireError(f"TTL offset outside the {len(reply)}-byte message") from exc


def set_ttls_into(buf: bytearray, offsets: Iterable[int], ttls: Iterable[int] | int) -> None:
    """Write ``ttls`` (one value per offset, or one value for all) at ``offsets`` in place.

    Values are clamped to 0..MAX_TTL. Raises WireError if an offset is outside ``buf``.
    """
    pack_into = _U32.pack_into
    try:
        if isinstance(ttls, int):
            value = min(max(ttls, 0), MAX_TTL)
            for offset in offsets:
                pack_into(buf, offset, value)
        else:
            for offset, ttl in zip(offsets, ttls, strict=True):
                pack_into(buf, offset, min(max(ttl, 0), MAX_TTL))
    except struct.error as exc:
        raise WireError(f"TTL offset outside the {len(buf)}-byte message") from exc


def decrement_ttls_into(buf: bytearray, offsets: Iterable[int], elapsed: int) -> None:
    """Subtract ``elapsed`` seconds from the TTL at each of ``offsets`` in place, stopping at 0.

    A stored TTL with the top bit set counts as 0 (RFC 2181 section 8). Raises WireError if an
    offset is outside ``buf``.
    """
    if elapsed <= 0:
        # A clock that went backwards must not raise TTLs; nothing elapsed means nothing to do.
        return
    unpack_from = _U32.unpack_from
    pack_into = _U32.pack_into
    try:
        for offset in offsets:
            ttl = unpack_from(buf, offset)[0]
            pack_into(buf, offset, ttl - elapsed if elapsed < ttl <= MAX_TTL else 0)
    except struct.error as exc:
        raise WireError(f"TTL offset outside the {len(buf)}-byte message") from exc


def patch_ttls(
    reply: bytes | bytearray,
    offsets: Iterable[int],
    elapsed: int | None = None,
    *,
    ttls: Iterable[int] | int | None = None,
) -> bytes:
    """Return a copy of ``reply`` with its TTL fields at ``offsets`` rewritten.

    Exactly one of ``elapsed`` (seconds to subtract from each TTL, never going below 0) or
    ``ttls`` (new values, one per offset or one for all, clamped to 0..MAX_TTL) must be given;
    ValueError otherwise. Raises WireError if an offset is outside ``reply``.
    """
    if (elapsed is None) == (ttls is None):
        raise ValueError("give exactly one of elapsed or ttls")
    buf = bytearray(reply)
    if ttls is not None:
        set_ttls_into(buf, offsets, ttls)
    else:
        assert elapsed is not None
        decrement_ttls_into(buf, offsets, elapsed)
    return bytes(buf)
