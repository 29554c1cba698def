"""Server addresses as the transport names and opens them."""

from __future__ import annotations

import socket

from resolver.config import Address

__all__ = ["WILDCARD", "family", "format_address"]

# Sockets for any server (recursive mode) are bound to these with a port the kernel picks at
# random.
WILDCARD: dict[int, Address] = {socket.AF_INET: ("0.0.0.0", 0), socket.AF_INET6: ("::", 0)}


def format_address(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def family(server: Address) -> int:
    """The address family of a numeric address."""
    return socket.AF_INET6 if ":" in server[0] else socket.AF_INET
