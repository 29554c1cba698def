"""resolver: a DNS forwarder and resolver built on an async pool of pre-bound UDP sockets.

The pool's names are loaded on first use: ``python -m resolver query`` imports this package,
and a one-shot query must not pay for asyncio.
"""

from typing import TYPE_CHECKING

from resolver.errors import (
    ConfigError,
    GuardReleased,
    PoolClosed,
    PoolError,
    PoolTimeout,
    ResolverError,
    UpstreamError,
    WireError,
)

if TYPE_CHECKING:
    from resolver.pool import Guard, Pool, PoolStatistics

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "Guard",
    "GuardReleased",
    "Pool",
    "PoolClosed",
    "PoolError",
    "PoolStatistics",
    "PoolTimeout",
    "ResolverError",
    "UpstreamError",
    "WireError",
    "__version__",
]

_LAZY = frozenset({"Guard", "Pool", "PoolStatistics"})


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import resolver.pool

        return getattr(resolver.pool, name)
    raise AttributeError(f"module 'resolver' has no attribute {name!r}")
