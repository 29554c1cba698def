"""Memory per cached answer: RSS growth of a Cache holding N distinct positive answers.

Each answer is a realistic normalized reply, as the forwarder stores it (header with QR, RD
and RA set; the question; one A record whose owner is a compression pointer to it; no OPT):
``uN.example.com. 300 IN A 127.1.x.y``. Every reply goes through ``Cache.put`` under
``CacheKey.of(...)``, with the cache's own clock, so each entry holds what the daemon's would:
the key (a NamedTuple and its lowercased name), the CacheEntry (reply bytes, packed TTL offsets,
store time), and its OrderedDict slot.

Reported: resident set size (``/proc/self/statm``) before and after the inserts, both after
``gc.collect()``; the growth divided by the number of entries; a ``sys.getsizeof`` breakdown of
one entry (the part of the cost that is the objects themselves, without the allocator's and
the dict's overhead); with ``--tracemalloc``, the Python allocations per entry traced over a
second, separate fill of at most 100,000 entries (tracing slows ``put`` ~7x and its own
bookkeeping would inflate RSS, so it is kept out of the RSS figure). Target: at most 1 KB per entry.

Run from the repository root (see benchmarks/README.md, section "Cache")::

    python -m benchmarks.cache_memory                  # 1,000,000 entries, ~10 s
    python -m benchmarks.cache_memory --entries 100000 --tracemalloc
"""

from __future__ import annotations

import argparse
import gc
import platform
import struct
import sys
import time
import tracemalloc
from collections.abc import Sequence
from datetime import UTC, datetime

from benchmarks.memory import rss_bytes
from resolver.cache import Cache, CacheConfig, CacheEntry, CacheKey
from resolver.wire.view import scan

TARGET_BYTES = 1024
TRACED_ENTRIES = 100_000  # tracing slows put ~7x: a sample is enough for a per-entry figure
TYPE_A = 1
CLASS_IN = 1
_HEADER = struct.Struct("!HHHHHH")
_QUESTION_TAIL = struct.Struct("!HH")
# Owner: pointer to the question name at offset 12; type A, class IN, TTL 300, rdlength 4.
_ANSWER = struct.Struct("!HHHIH4s")
_FLAGS = 0x8180  # QR, RD, RA; NOERROR
_SUFFIX = b"\x07example\x03com\x00"


def wire_name(index: int) -> bytes:
    label = b"u%d" % index
    return bytes((len(label),)) + label + _SUFFIX


def reply_for(name: bytes, index: int) -> bytes:
    """The normalized reply ``uN.example.com. 300 IN A 127.1.x.y`` to ``uN.example.com. A``."""
    address = bytes((127, 1, (index >> 8) & 0xFF, index & 0xFF))
    return (
        _HEADER.pack(0, _FLAGS, 1, 1, 0, 0)
        + name
        + _QUESTION_TAIL.pack(TYPE_A, CLASS_IN)
        + _ANSWER.pack(0xC00C, TYPE_A, CLASS_IN, 300, 4, address)
    )


def fill(cache: Cache, entries: int) -> None:
    for index in range(entries):
        name = wire_name(index)
        key = CacheKey.of(name, TYPE_A, CLASS_IN, do=False, cd=False)
        if cache.put(key, scan(reply_for(name, index))) is None:
            raise SystemExit(f"cache_memory: the reply for {name!r} was not cached")


def traced_per_entry(entries: int) -> float:
    """Python allocations per entry, traced over a separate fill of a new cache."""
    cache = Cache(CacheConfig(max_entries=entries))
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        fill(cache, entries)
        gc.collect()
        return (tracemalloc.get_traced_memory()[0] - start) / entries
    finally:
        tracemalloc.stop()


def breakdown(cache: Cache) -> list[tuple[str, int]]:
    """sys.getsizeof of the objects one entry owns (a sample: the last one inserted)."""
    key, entry = next(reversed(cache._entries.items()))  # internals: measured, not used
    assert isinstance(entry, CacheEntry)
    return [
        ("CacheKey tuple", sys.getsizeof(key)),
        ("key name bytes", sys.getsizeof(key.name)),
        ("CacheEntry (slots)", sys.getsizeof(entry)),
        (f"reply bytes ({len(entry.reply)} B of DNS)", sys.getsizeof(entry.reply)),
        ("TTL offsets bytes", sys.getsizeof(entry._offsets)),
        ("stored_at float", sys.getsizeof(entry.stored_at)),
    ]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cache_memory",
        description="RSS per cached answer with N distinct names in resolver.cache.Cache.",
    )
    parser.add_argument("--entries", type=int, default=1_000_000, help="distinct names cached")
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="also trace Python allocations over a separate fill",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.entries <= 20_000_000:
        parser.error("--entries must be 1..20,000,000")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    n = args.entries
    print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"machine: {platform.machine()}, Linux {platform.release()}, python "
          f"{platform.python_version()}")  # fmt: skip
    cache = Cache(CacheConfig(max_entries=n))
    gc.collect()
    before = rss_bytes()
    started = time.perf_counter()
    fill(cache, n)
    elapsed = time.perf_counter() - started
    gc.collect()
    after = rss_bytes()
    stats = cache.statistics()
    if stats.entries != n or stats.evictions:
        print(f"!! expected {n} entries and no evictions, got {stats}", file=sys.stderr)
        return 1
    per_entry = (after - before) / n
    print(f"entries: {n:,} in {elapsed:.1f} s ({elapsed / n * 1e6:.2f} us per put)")
    print(f"RSS before: {before / 2**20:,.1f} MiB, after: {after / 2**20:,.1f} MiB, "
          f"growth {(after - before) / 2**20:,.1f} MiB")  # fmt: skip
    print("\n| what | bytes per entry |\n|---|---:|")
    print(f"| RSS growth / entries | {per_entry:,.0f} |")
    if args.tracemalloc:
        # A second, separate fill: tracing costs memory of its own, which must not be in RSS.
        sample = min(n, TRACED_ENTRIES)
        traced = traced_per_entry(sample)
        print(f"| tracemalloc: traced allocations / entries ({sample:,} entries) | {traced:,.0f} |")
    parts = breakdown(cache)
    for label, size in parts:
        print(f"| sys.getsizeof: {label} | {size} |")
    print(f"| sys.getsizeof: sum of the above | {sum(s for _, s in parts)} |")
    verdict = "MET" if per_entry <= TARGET_BYTES else "MISSED"
    print(f"\nVERDICT memory: {per_entry:,.0f} bytes per cached answer (target <= "
          f"{TARGET_BYTES}): {verdict}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
