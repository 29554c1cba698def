"""The one view of a reply: made by one walk where the reply is matched, and carried with it
to the decisions, normalising, the cache and the client's reply, so that none of them reads
the message again.

``scan`` walks a reply once and returns a :class:`ReplyView`: the message, where its question
ends, where every TTL field is and what the smallest one is, where its OPT record lies, the
full rcode, whether it is negative and, if so, how long RFC 2308 allows it to be cached.
``normalize`` turns a view of an upstream's reply into the view of the reply we store and
serve (OPT removed, RA set, AA clear) without walking it again when the OPT is the last record
(where servers put it).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from resolver.errors import WireError
from resolver.wire.message import strip_opt
from resolver.wire.raw import (
    AA,
    HEADER_SIZE,
    NOERROR,
    NXDOMAIN,
    RA,
    TC,
    TYPE_ANY,
    TYPE_OPT,
    TYPE_SOA,
    as_bytes,
    skip_name,
)
from resolver.wire.ttl import u31

__all__ = ["ReplyView", "normalize", "scan"]

_HEADER = struct.Struct("!6H")
_U32 = struct.Struct("!I")
_SOA_FIXED = 20  # serial, refresh, retry, expire, minimum: five 32-bit fields ending the rdata
_SOA_MIN_RDLENGTH = 2 + _SOA_FIXED  # two root names at the least
_TC_BYTE2 = TC >> 8


class ReplyView(NamedTuple):
    """What ``scan`` learns about a reply in one walk.

    ``message`` is the reply itself. ``question_end`` is the offset after the question
    section. ``offsets`` are the offsets of the TTL fields of every record in the answer,
    authority and additional sections except OPT (whose "TTL" holds EDNS flags), in message
    order; ``ttls`` are their values with RFC 2181's top-bit rule applied. ``min_ttl`` is the
    smallest of ``ttls`` (None without records). ``rcode`` includes the EDNS extended bits.
    ``negative`` is True for NXDOMAIN and for NODATA (NOERROR without an answer record of the
    question's type); ``negative_ttl`` is then min(SOA TTL, SOA MINIMUM) of the authority
    section's SOA (RFC 2308 section 5), or None when there is no SOA. ``truncated`` is the TC
    bit. ``opt_start`` and ``opt_end`` delimit the OPT record (-1 and -1 without one).
    """

    message: bytes
    question_end: int
    offsets: tuple[int, ...]
    ttls: tuple[int, ...]
    min_ttl: int | None
    rcode: int
    negative: bool
    negative_ttl: int | None
    truncated: bool
    opt_start: int = -1
    opt_end: int = -1


def _soa_negative_ttl(data: bytes, ttl: int, rdata_offset: int, rdlength: int) -> int:
    """min(SOA TTL, MINIMUM): the negative TTL RFC 2308 section 5 asks for."""
    if rdlength < _SOA_MIN_RDLENGTH:
        raise WireError(f"SOA rdata at offset {rdata_offset} is {rdlength} bytes, too short")
    minimum = u31(_U32.unpack_from(data, rdata_offset + rdlength - 4)[0])
    return min(ttl, minimum)


def scan(message: bytes | bytearray) -> ReplyView:
    """Walk ``message`` once and return its view (see :class:`ReplyView`); a bytearray is
    copied to the bytes the view holds.

    Raises WireError if the header, a question or a record is malformed or cut off, there is
    more than one OPT record (RFC 6891 section 6.1.1), or an SOA in the authority section is
    too short to hold its fixed fields.
    """
    reply = as_bytes(message)
    end = len(reply)
    if end < HEADER_SIZE:
        raise WireError(f"message of {end} bytes is shorter than the 12-byte header")
    _, flags, qdcount, answers, nscount, arcount = _HEADER.unpack_from(reply)
    pos = HEADER_SIZE
    qtype = -1
    for index in range(qdcount):
        pos = skip_name(reply, pos)
        if pos + 4 > end:
            raise WireError("question is cut off before its type and class")
        if index == 0:
            qtype = (reply[pos] << 8) | reply[pos + 1]
        pos += 4
    question_end = pos
    in_auth = answers + nscount
    offsets: list[int] = []
    ttls: list[int] = []
    matching_answer = False
    negative_ttl: int | None = None
    ext_rcode = 0
    opt_start = opt_end = -1
    # Written out rather than a walk over record spans: this runs for every reply relayed,
    # and a span object per record costs more than reading its fields.
    for index in range(in_auth + arcount):
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
        if rtype == TYPE_OPT and index >= in_auth:
            if opt_start >= 0:
                raise WireError("message has more than one OPT record")
            ext_rcode = reply[ttl_offset]
            opt_start, opt_end = start, pos
            continue
        ttl = u31(_U32.unpack_from(reply, ttl_offset)[0])
        offsets.append(ttl_offset)
        ttls.append(ttl)
        if index < answers:
            if rtype == qtype or qtype in (TYPE_ANY, -1):
                matching_answer = True
        elif index < in_auth and rtype == TYPE_SOA:
            soa = _soa_negative_ttl(reply, ttl, rdata, rdlength)
            negative_ttl = soa if negative_ttl is None else min(negative_ttl, soa)
    rcode = (ext_rcode << 4) | (flags & 0x0F)
    negative = rcode == NXDOMAIN or (rcode == NOERROR and not matching_answer)
    return ReplyView(
        message=reply,
        question_end=question_end,
        offsets=tuple(offsets),
        ttls=tuple(ttls),
        min_ttl=min(ttls) if ttls else None,
        rcode=rcode,
        negative=negative,
        negative_ttl=negative_ttl if negative else None,
        truncated=bool(flags & TC),
        opt_start=opt_start,
        opt_end=opt_end,
    )


def normalize(view: ReplyView) -> ReplyView:
    """The view of the reply in the form the engine stores and serves: the OPT record removed
    (it is hop-by-hop, RFC 6891), RA set, AA cleared (the answer is not ours). An OPT that is
    the last record (where servers put it) is cut off, and the view is kept; one elsewhere
    makes the reply rebuilt (records after it may point into the records it would shift) and
    walked again. Raises WireError when the OPT carries extended rcode bits, which cannot be
    kept without it."""
    reply = view.message
    start, end = view.opt_start, view.opt_end
    flags = (((reply[2] << 8) | reply[3]) & ~AA) | RA
    if start < 0:
        served = reply[:2] + flags.to_bytes(2, "big") + reply[4:]
        return view._replace(message=served)
    if view.rcode > 0x0F:
        raise WireError(f"extended rcode bits {view.rcode >> 4} cannot be kept without OPT")
    if end != len(reply):
        stripped = strip_opt(reply)
        return scan(stripped[:2] + flags.to_bytes(2, "big") + stripped[4:])
    arcount = ((reply[10] << 8) | reply[11]) - 1
    head = reply[:2] + flags.to_bytes(2, "big") + reply[4:10] + arcount.to_bytes(2, "big")
    served = head + reply[HEADER_SIZE:start]
    return view._replace(message=served, opt_start=-1, opt_end=-1)
