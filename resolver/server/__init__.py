"""The daemon's listeners: UDP and TCP in front of the engine.

:mod:`.listeners` binds the sockets the workers share (and sizes their buffers);
:mod:`.access` says which clients may ask; :mod:`.connections` is the TCP connection policy
(idle timeouts, pressure, eviction); :mod:`.server` is the :class:`Server`, which reads
queries, hands them to the engine and sends the replies.
"""

from __future__ import annotations

from resolver.server.listeners import Listener, bind_listeners
from resolver.server.server import (
    COUNTED_TYPES,
    Answerer,
    ReplyCounts,
    Server,
    ServerStatistics,
)

__all__ = [
    "COUNTED_TYPES",
    "Answerer",
    "Listener",
    "ReplyCounts",
    "Server",
    "ServerStatistics",
    "bind_listeners",
]
