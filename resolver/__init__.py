"""resolver: a DNS forwarder and resolver built on an async pool of pre-bound UDP sockets."""

from resolver.errors import (
    ConfigError,
    GuardReleased,
    PoolClosed,
    PoolError,
    PoolTimeout,
    ResolutionFailed,
    ResolverError,
    UpstreamError,
    WireError,
)
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
    "ResolutionFailed",
    "ResolverError",
    "UpstreamError",
    "WireError",
    "__version__",
]
