"""TTL fields of a DNS reply rewritten on raw bytes (the cache's hot path).

``view.scan`` says where every TTL field is; the ``*_into`` functions then rewrite those fields
in place in a ``bytearray`` with one ``struct.pack_into`` per field, so a cached answer is served
as copy + patch, never parse + rebuild. Stdlib only.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from resolver.errors import WireError

__all__ = [
    "MAX_TTL",
    "decrement_ttls_into",
    "patch_ttls",
    "read_ttls",
    "set_ttls_into",
    "u31",
]

MAX_TTL = 0x7FFF_FFFF
"""The largest meaningful TTL: RFC 2181 section 8 makes a TTL with the top bit set mean 0."""

_U32 = struct.Struct("!I")


def u31(value: int) -> int:
    """A TTL as RFC 2181 section 8 reads it (and, by RFC 2308, the SOA MINIMUM): a value with
    the top bit set is 0."""
    return 0 if value > MAX_TTL else value


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
