"""A histogram of durations (seconds) over fixed buckets, cheap enough to feed on the query
path: one bisect into a tuple of bounds and two additions per observation, no lock."""

from __future__ import annotations

from bisect import bisect_left

__all__ = ["DURATION_BOUNDS", "Histogram"]

# Seconds: 0.25 ms doubling up to 8.192 s, the buckets CoreDNS uses for request durations.
DURATION_BOUNDS: tuple[float, ...] = tuple(0.00025 * 2**i for i in range(16))


class Histogram:
    """Counts of observed values by bucket: ``counts[i]`` holds the values above
    ``bounds[i - 1]`` and at most ``bounds[i]`` (Prometheus's ``le``), the last count those
    above every bound; ``total`` is their sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...] = DURATION_BOUNDS) -> None:
        assert list(bounds) == sorted(set(bounds)), "bounds must increase"
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def copy(self) -> Histogram:
        """A snapshot that later observations leave alone."""
        other = Histogram.__new__(Histogram)
        other.bounds = self.bounds
        other.counts = list(self.counts)
        other.total = self.total
        return other

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations at or below it) per bucket, ending with (inf, count)."""
        pairs: list[tuple[float, int]] = []
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            pairs.append((bound, running))
        return pairs

    def __str__(self) -> str:
        count = self.count
        if not count:
            return "none"
        return f"{count} (mean {self.total / count * 1000:.3f} ms)"

    def __repr__(self) -> str:
        return f"<Histogram count={self.count} total={self.total:.6f}>"
