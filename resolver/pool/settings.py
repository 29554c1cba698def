"""Checks of a Pool's settings, each failure naming the setting."""

from __future__ import annotations

from collections.abc import Sequence

from resolver.errors import ConfigError

__all__ = ["validate"]


def validate(
    given: Sequence[object],
    factory: object,
    min_size: int,
    max_size: int | None,
    max_uses: int | None,
    max_age: float | None,
    order: str,
) -> None:
    if min_size < 0:
        raise ConfigError("min_size", "must be 0 or more")
    if max_size is not None:
        if max_size < 1:
            raise ConfigError("max_size", "must be at least 1")
        if max_size < min_size:
            raise ConfigError("max_size", "must be at least min_size")
        if max_size < len(given):
            raise ConfigError("max_size", "is smaller than the number of objects given")
    if factory is None and not given:
        raise ConfigError("objects", "give objects or a factory")
    if max_uses is not None and max_uses < 1:
        raise ConfigError("max_uses", "must be at least 1")
    if max_age is not None and max_age <= 0:
        raise ConfigError("max_age", "must be positive")
    if factory is None and (max_uses is not None or max_age is not None):
        raise ConfigError("max_uses", "recycling needs a factory to make replacements")
    if order not in ("fifo", "random"):
        raise ConfigError("order", "must be 'fifo' or 'random'")
