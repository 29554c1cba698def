"""An exchange over TCP: one connection per query, opened, used and closed by its task."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from time import perf_counter

from resolver.errors import BadResponse, UpstreamTimeout, UpstreamUnreachable
from resolver.transport.exchange import Exchange

__all__ = ["over_tcp"]


async def over_tcp(exchange: Exchange, count_stray: Callable[[], None]) -> None:
    """Send ``exchange``'s query over a new TCP connection to its server and end the exchange
    with the matching reply or the error, by its deadline; a message that does not match is
    counted with ``count_stray`` and the next one read."""
    query = exchange.query
    name = exchange.name
    exchange.sent_at = perf_counter()
    try:
        async with asyncio.timeout_at(exchange.deadline):
            reader, writer = await asyncio.open_connection(*exchange.server)
            try:
                writer.write(len(query).to_bytes(2, "big") + query)
                while True:
                    size = int.from_bytes(await reader.readexactly(2), "big")
                    reply = await reader.readexactly(size)
                    if exchange.take(reply):
                        return
                    count_stray()
            finally:
                writer.close()
    except TimeoutError:
        exchange.fail(UpstreamTimeout(name, "no TCP reply before the deadline"))
    except asyncio.IncompleteReadError:
        exchange.fail(BadResponse(name, "TCP connection closed before a whole reply"))
    except OSError as exc:
        exchange.fail(UpstreamUnreachable(name, f"TCP: {exc.strerror or exc}"))
