"""The query engine: the decisions for one query as plain code (``forwarding``, with upstream
``selection``; ``iteration`` from the root in recursive mode, with its ``delegations`` and root
``hints``), the ``actions`` they answer with, and the one driver that performs them over the
transport (``driver``)."""

from resolver.engine.driver import Ask, Client, Engine, EngineStatistics, Outcome
from resolver.engine.forwarding import (
    EDE_NETWORK_ERROR,
    EDE_NO_REACHABLE_AUTHORITY,
    EDE_STALE_ANSWER,
)

__all__ = [
    "EDE_NETWORK_ERROR",
    "EDE_NO_REACHABLE_AUTHORITY",
    "EDE_STALE_ANSWER",
    "Ask",
    "Client",
    "Engine",
    "EngineStatistics",
    "Outcome",
]
