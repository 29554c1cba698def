"""The daemon's front: UDP and TCP listeners, per-query handling, graceful shutdown.

``core`` holds the Server (lifecycle, access control, answering); ``listeners`` the I/O of
the UDP socket and of each TCP connection.
"""

from resolver.server.core import Answerer, Server, ServerStatistics

__all__ = ["Answerer", "Server", "ServerStatistics"]
