"""A generic asyncio resource pool: fair, cancellation-safe, with timeouts and recycling.

``async with pool.acquire() as obj`` checks out one object exclusively and returns it when the
block ends; ``guard = await pool.acquire()`` gives the same as an explicit :class:`Guard`.
The pool knows nothing of DNS. ``core`` holds the Pool and its bookkeeping, ``guard`` what a
check-out hands out.
"""

from resolver.pool.core import Pool
from resolver.pool.guard import Guard, PoolStatistics

__all__ = ["Guard", "Pool", "PoolStatistics"]
