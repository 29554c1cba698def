"""Exchanges with DNS servers: one query over a pooled, pre-bound UDP socket or a TCP
connection, and a validated reply, reported by callback. Moves bytes and matches replies;
what to ask, and whether to ask again (over TCP after a truncated reply, without 0x20 after a
case mismatch), is the caller's to decide: the engine's.

Two kinds of owner share the machinery (:mod:`.exchanges`):

* :class:`Upstream` (:mod:`.upstream`), one forwarding upstream: a pool of sockets connected
  to it when bound, each serving a few queries (``transport.pool.max_uses``);
* :class:`Servers` (:mod:`.servers`), any server by address (recursive mode): per address
  family one pool of sockets bound to a random port and connected to a server only when
  checked out, each serving exactly one query, since an authority run by an attacker sees
  the source port of every query sent to it (RFC 5452 section 4.5). Replacements are bound in
  the background, so a fresh port costs no bind on the query path.

The parts: :mod:`.ids` (random message IDs), :mod:`.addresses`, :mod:`.exchange` (one query
in flight, ended exactly once), :mod:`.udp` (the sockets), :mod:`.readiness` (one
epoll set per owner watching its sockets, registered with the loop once), :mod:`.sweep` (the
deadline sweep), :mod:`.tcp`. Queries are built and replies matched by :mod:`resolver.wire.query`.

Every reply is matched as RFC 5452 section 9.1 asks before it is accepted: it must come from
the server's address and port, to the socket the query left from, with our random ID, QR set,
opcode QUERY and the same question (name, type, class; the name case-exact when 0x20
randomisation is on). The one exception is an error reply (FORMERR, SERVFAIL, NOTIMP,
REFUSED) without a question section, which servers that cannot parse or will not serve a
query send: it is accepted (with the ID and source checked) so that the caller can move on at
once instead of waiting for the deadline. Anything else is a stray: counted and dropped, and
the socket keeps listening until the deadline, so one forged datagram cannot end a query.
Except, for :class:`Servers`, a reply that matches in everything but the case of a 0x20 name:
it ends the exchange with CaseMismatch, so that the iteration can ask again without 0x20 and
compare (Unbound's caps fallback). A socket whose query timed out, failed or was abandoned is
discarded, never reused, so a late reply cannot reach the next query. Past
``unwanted_reply_threshold`` strays to an upstream's sockets within a minute, a warning is
logged and every socket that receives another is retired (Unbound's option of that name).
"""

from __future__ import annotations

from resolver.transport.addresses import format_address
from resolver.transport.encrypted import EncryptedTransport, upstream_for
from resolver.transport.exchange import Exchange, Report
from resolver.transport.servers import Servers, ServersStatistics
from resolver.transport.upstream import ForwardingUpstream, Upstream, UpstreamStatistics

__all__ = [
    "EncryptedTransport",
    "Exchange",
    "ForwardingUpstream",
    "Report",
    "Servers",
    "ServersStatistics",
    "Upstream",
    "UpstreamStatistics",
    "format_address",
    "upstream_for",
]
