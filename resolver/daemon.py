"""Assemble the daemon from a Config: the query engine, the listeners, their lifetimes.

The CLI builds a Config, makes a Daemon, and drives it; signals only call ``request_stop``.
"""

from __future__ import annotations

from resolver.cache import Cache
from resolver.config import Address, Config
from resolver.engine import Engine
from resolver.server import Server

__all__ = ["Daemon"]


class Daemon:
    """A forwarding DNS server built from ``config``.

    ``start`` opens the upstream socket pools and binds the listeners before it returns;
    ``serve_until_stopped`` returns after ``request_stop`` once in-flight queries finished and
    every socket is closed. ``aclose`` is idempotent.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        cache = Cache(config.cache) if config.cache.enabled else None
        self.engine = Engine(config.forwarder, config.transport, cache=cache)
        self.server = Server(config.server, self.engine)
        self._closed = False

    @property
    def addresses(self) -> list[Address]:
        return self.server.addresses

    async def start(self) -> None:
        """Open upstream pools (leaving out, with a warning, upstreams no socket can reach),
        then bind listeners. Raises OSError, or UpstreamError when no upstream can be used;
        whatever was opened is closed again then."""
        await self.engine.start()
        try:
            await self.server.start()
        except BaseException:
            await self.aclose()
            raise

    def request_stop(self) -> None:
        self.server.request_stop()

    async def serve_until_stopped(self) -> None:
        try:
            await self.server.serve_until_stopped()
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.server.aclose()
        await self.engine.aclose()

    def __repr__(self) -> str:
        return f"<Daemon {self.server!r} {self.engine!r}>"
