"""Access control: which clients may ask, and what those outside the allowed networks get."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

__all__ = ["AccessControl"]

_MEMO_MAX = 4096  # hosts remembered; bounded, so that a spray of sources cannot grow it


class AccessControl:
    """The allowed networks (``[server] allow``) and whether a client outside them is refused
    (REFUSED) or ignored (``outside_allow``). :meth:`allows` remembers its recent answers."""

    __slots__ = ("_memo", "_networks", "refuse_outsiders")

    def __init__(self, allow: Iterable[str], outside_allow: str) -> None:
        self._networks = [ipaddress.ip_network(n, strict=False) for n in allow]
        self._memo: dict[str, bool] = {}
        self.refuse_outsiders = outside_allow == "refuse"

    def allows(self, host: str) -> bool:
        """Whether the client at ``host`` (as the socket gives it: an IPv4 client of a
        dual-stack socket as ``::ffff:a.b.c.d``, maybe with a ``%scope``) may ask."""
        known = self._memo.get(host)
        if known is not None:
            return known
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        allowed = any(address in network for network in self._networks)
        if len(self._memo) >= _MEMO_MAX:
            self._memo.clear()
        self._memo[host] = allowed
        return allowed
