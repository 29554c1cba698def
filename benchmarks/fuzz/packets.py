"""What the fuzzer sends: a hypothesis strategy for structured but hostile DNS messages, and a
seeded mutator of valid queries (bit flips, truncation, insertion, lying counts and label
lengths, splices)."""

from __future__ import annotations

import random
import struct

from hypothesis import strategies as st

from resolver.wire import build_query

_HEADER = struct.Struct("!HHHHHH")
# Types and classes where parsers have special cases, then any 16-bit value.
_TYPES = (0, 1, 2, 5, 6, 12, 15, 16, 28, 33, 41, 43, 46, 48, 250, 251, 252, 255, 256, 65535)
_CLASSES = (0, 1, 3, 4, 254, 255, 65535)

_codes = st.one_of(st.sampled_from(_TYPES), st.integers(0, 0xFFFF))
_classes = st.one_of(st.sampled_from(_CLASSES), st.integers(0, 0xFFFF))
_label = st.one_of(
    st.binary(min_size=1, max_size=63).map(lambda b: bytes([len(b)]) + b),
    # A length byte that lies, or uses the reserved 0x40/0x80 prefixes.
    st.tuples(st.integers(1, 255), st.binary(max_size=70)).map(lambda t: bytes([t[0]]) + t[1]),
)
_pointer = st.integers(0, 0x3FFF).map(lambda offset: struct.pack("!H", 0xC000 | offset))
_name = st.tuples(
    st.lists(_label, max_size=6),
    st.one_of(st.just(b"\x00"), _pointer, st.just(b"")),
).map(lambda t: b"".join(t[0]) + t[1])
_question = st.tuples(_name, _codes, _classes).map(lambda t: t[0] + struct.pack("!HH", *t[1:]))
_option = st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=40), st.integers(-2, 2)).map(
    lambda t: struct.pack("!HH", t[0], max(0, len(t[1]) + t[2])) + t[1]
)
_opt = st.tuples(
    st.sampled_from((b"\x00", b"\x01a\x00", b"\xc0\x0c")),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.lists(_option, max_size=4),
).map(
    lambda t: (
        t[0] + struct.pack("!HHIH", 41, t[1], t[2], sum(len(o) for o in t[3])) + b"".join(t[3])
    )
)
_record = st.one_of(
    _opt,
    st.tuples(_name, _codes, _classes, st.integers(0, 0xFFFFFFFF), st.binary(max_size=40)).map(
        lambda t: t[0] + struct.pack("!HHIH", t[1], t[2], t[3], len(t[4])) + t[4]
    ),
)


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    """One message: a header (flags of a query more often than not; counts true or lying),
    questions, records, maybe trailing bytes, maybe cut short."""
    questions = draw(st.lists(_question, max_size=3))
    records = draw(st.lists(_record, max_size=3))
    split = draw(st.integers(0, len(records)))
    flags = draw(st.one_of(st.integers(0, 0x7FFF), st.integers(0, 0xFFFF)))
    truthful = draw(st.booleans())
    counts = (
        (len(questions), split, 0, len(records) - split)
        if truthful
        else draw(st.tuples(*[st.integers(0, 0xFFFF)] * 4))
    )
    body = b"".join(questions) + b"".join(records) + draw(st.binary(max_size=8))
    message = _HEADER.pack(draw(st.integers(0, 0xFFFF)), flags, *counts) + body
    if draw(st.integers(0, 7)) == 0:
        message = message[: draw(st.integers(0, len(message)))]
    return message


def seeds() -> list[bytes]:
    """Valid queries to mutate: names the fixture zones hold and some they do not, with and
    without EDNS and DO."""
    names = ("www.example.com.", "example.com.", "mail.example.com.", "nx.example.com.", ".")
    out = []
    for name in names:
        for qtype in (1, 28, 15, 16, 255, 6):
            out.append(build_query(name, qtype, qid=0, edns_size=None))
            out.append(build_query(name, qtype, qid=0, do=True, edns_size=1232))
    return out


class Mutator:
    """Deterministic for a given seed: ``next()`` returns one mutated query."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._seeds = seeds()

    def next(self) -> bytes:
        rng = self._rng
        data = bytearray(rng.choice(self._seeds))
        for _ in range(rng.randint(1, 4)):
            self._mutate(data, rng)
        return bytes(data)

    def _mutate(self, data: bytearray, rng: random.Random) -> None:
        choice = rng.randrange(9)
        if not data:
            data.extend(rng.randbytes(rng.randint(1, 20)))
        at = rng.randrange(len(data))
        if choice == 0:  # flip a bit
            data[at] ^= 1 << rng.randrange(8)
        elif choice == 1:  # an interesting byte
            data[at] = rng.choice((0x00, 0x01, 0x3F, 0x40, 0x7F, 0x80, 0xC0, 0xFF))
        elif choice == 2:  # cut short
            del data[at:]
        elif choice == 3:  # insert bytes
            data[at:at] = rng.randbytes(rng.randint(1, 16))
        elif choice == 4:  # delete bytes
            del data[at : at + rng.randint(1, 8)]
        elif choice == 5 and len(data) >= 12:  # a count that lies
            field = 4 + 2 * rng.randrange(4)
            data[field : field + 2] = rng.choice((0, 1, 2, 0xFFFF, rng.randrange(65536))).to_bytes(
                2, "big"
            )
        elif choice == 6:  # a compression pointer anywhere
            data[at:at] = struct.pack("!H", 0xC000 | rng.randrange(len(data) + 4))
        elif choice == 7:  # splice with another seed
            other = rng.choice(self._seeds)
            data[at:] = other[rng.randrange(len(other)) :]
        elif len(data) >= 4:  # header flags: opcode, QR, Z, rcode bits
            data[2] = rng.randrange(256)
            data[3] = rng.randrange(256)
