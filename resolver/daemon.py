"""Assemble the daemon from a Config: the query engine, the listeners, their lifetimes.

The CLI builds a Config, makes a Daemon, and drives it; signals only call ``request_stop``.
"""

from __future__ import annotations

import logging

from resolver.cache import Cache
from resolver.config import Address, Config
from resolver.engine import Engine
from resolver.engine.local import LocalAnswers
from resolver.hosts import HostsEntry, read_hosts
from resolver.server import Server

__all__ = ["Daemon", "local_answers"]

log = logging.getLogger(__name__)
_SKIPPED_SHOWN = 5  # hosts-file lines named in the log; the rest are counted


def local_answers(config: Config) -> LocalAnswers:
    """The answers of our own ``config`` asks for, the hosts file read now (what a reload
    calls again and puts in ``Daemon.engine.local``). Raises ConfigError naming
    ``local.hosts`` when the hosts file cannot be read; logs the lines it skips."""
    entries: tuple[HostsEntry, ...] = ()
    path = config.local.hosts
    if path is not None:
        hosts = read_hosts(path)
        entries = hosts.entries
        if hosts.skipped:
            more = len(hosts.skipped) - _SKIPPED_SHOWN
            log.warning(
                "hosts file: %d line(s) skipped: %s%s",
                len(hosts.skipped),
                "; ".join(hosts.skipped[:_SKIPPED_SHOWN]),
                f"; and {more} more" if more > 0 else "",
            )
    forwarded = [domain.name for domain in config.forwarder.domains]
    return LocalAnswers.build(config.local, entries, forwarded=forwarded)


class Daemon:
    """A forwarding DNS server built from ``config``.

    ``start`` opens the upstream socket pools and binds the listeners before it returns;
    ``serve_until_stopped`` returns after ``request_stop`` once in-flight queries finished and
    every socket is closed. ``aclose`` is idempotent.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        cache = Cache(config.cache) if config.cache.enabled else None
        self.engine = Engine(
            config.forwarder, config.transport, cache=cache, local=local_answers(config)
        )
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
