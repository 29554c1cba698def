"""A scripted internet for recursive mode: authorities that answer from small zones, each
with the misbehaviour a test gives it, as the resolvers of the real DNS meet them.

The scenarios are our own, from the RFCs (1034, 2181 section 5.4.1, 2308, 6672, 6891) and from
what Unbound's iterator is documented to do. Each server address answers through the
authority's responder from the zones listed for it; a ``Fault`` may then rewrite or drop the
reply. The same world serves the sans-I/O tests (``World.respond``) and the running server
(``serve_world``).

    127.0.0.2   .            com. and net. both served by a.gtld.net. (glue in the root:
                             in the root's zone, outside com.)
    127.0.0.10  com. net.    example.com. served by ns.other.com. (glue from com.: a sibling
                             zone's server); glueless.com. by ns.dns.net. (no glue; dns.net.'s
                             first servers dead or lame); inzone.com. by ns1.inzone.com.
                             (in-zone, no glue) and ns2.dns.net.; multi.com. by two glueless
                             servers, ns.dns.net. and ns2.dns.net.; example.net. half-lame
    127.0.0.11  example.com. other.com. example.net.
    127.0.0.12  aa.com. child.com. dns.net. inzone.com. glueless.com. multi.com.
    127.0.0.13  alias.com.   www CNAME www.example.net.
    127.0.0.14  nothing      REFUSED, unless a fault makes it lame another way
    127.0.0.254              nothing listens (dead)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from resolver.authority.respond import Responder
from resolver.authority.zone import parse_zone
from resolver.wire import RR, DNSRecord

ROOT_HINTS = ". 3600000 NS a.root-servers.test.\na.root-servers.test. 3600000 A 127.0.0.2\n"


def _zone(origin: str, body: str, ns: str = "", ns_ttl: int = 3600) -> str:
    apex_ns = ns or f"ns.{origin}"
    mailbox = "hostmaster." + (origin if origin != "." else "")
    return (
        f"$ORIGIN {origin}\n$TTL 3600\n"
        f"@ IN SOA {apex_ns} {mailbox} 1 7200 3600 1209600 300\n"
        f"@ {ns_ttl} IN NS {apex_ns}\n{body}"
    )


ZONES = {
    ".": _zone(
        ".",
        """
a.root-servers.test. A 127.0.0.2
com. 172800 NS a.gtld.net.
net. 172800 NS a.gtld.net.
a.gtld.net. 172800 A 127.0.0.10
""",
        ns="a.root-servers.test.",
    ),
    "com.": _zone(
        "com.",
        """
example 86400 NS ns.other.com.
other 86400 NS ns.other.com.
ns.other 86400 A 127.0.0.11
aa 86400 NS ns.aa.com.
ns.aa 86400 A 127.0.0.12
glueless 86400 NS ns.dns.net.
inzone 86400 NS ns1.inzone.com.
inzone 86400 NS ns2.dns.net.
child 86400 NS ns.child.com.
ns.child 86400 A 127.0.0.12
alias 86400 NS ns.alias.com.
ns.alias 86400 A 127.0.0.13
multi 86400 NS ns.dns.net.
multi 86400 NS ns2.dns.net.
""",
        ns="a.gtld.net.",
    ),
    "net.": _zone(
        "net.",
        """
a.gtld 172800 A 127.0.0.10
dns 86400 NS ns.dead.net.
dns 86400 NS ns.lame.net.
dns 86400 NS ns.good.net.
ns.dead 86400 A 127.0.0.254
ns.lame 86400 A 127.0.0.14
ns.good 86400 A 127.0.0.12
example 86400 NS ns.example.net.
example 86400 NS ns2.example.net.
example 86400 NS ns3.example.net.
ns.example 86400 A 127.0.0.11
ns2.example 86400 A 127.0.0.254
ns3.example 86400 A 127.0.0.14
""",
        ns="a.gtld.net.",
    ),
    "example.com.": _zone(
        "example.com.",
        """
www A 127.1.0.1
txt TXT "only text"
leaf.ent A 127.1.0.4
old DNAME example.net.
""",
        ns="ns.other.com.",
    ),
    "other.com.": _zone("other.com.", "ns A 127.0.0.11\n"),
    "example.net.": _zone("example.net.", "www A 127.1.1.1\nns A 127.0.0.11\n"),
    "aa.com.": _zone("aa.com.", "www A 127.1.2.1\nns A 127.0.0.12\n"),
    "child.com.": _zone("child.com.", "www A 127.1.3.1\nns A 127.0.0.12\n", ns_ttl=300),
    "dns.net.": _zone("dns.net.", "ns A 127.0.0.12\nns2 A 127.0.0.12\n", ns="ns.good.net."),
    "glueless.com.": _zone("glueless.com.", "www A 127.1.4.1\n", ns="ns.dns.net."),
    "inzone.com.": _zone(
        "inzone.com.", "ns1 A 127.0.0.12\nwww A 127.1.5.1\n", ns="ns1.inzone.com."
    ),
    "multi.com.": _zone("multi.com.", "www A 127.1.8.1\n", ns="ns.dns.net."),
    "alias.com.": _zone("alias.com.", "www CNAME www.example.net.\nns A 127.0.0.13\n"),
}

SERVES = {
    "127.0.0.2": (".",),
    "127.0.0.10": ("com.", "net."),
    "127.0.0.11": ("example.com.", "other.com.", "example.net."),
    "127.0.0.12": (
        "aa.com.",
        "child.com.",
        "dns.net.",
        "inzone.com.",
        "glueless.com.",
        "multi.com.",
    ),
    "127.0.0.13": ("alias.com.",),
    "127.0.0.14": (),
}

# A fault sees the query, the reply the zones give and whether it came over TCP; it returns
# the reply to send, or None to send nothing.
Fault = Callable[[DNSRecord, DNSRecord, bool], DNSRecord | None]


def _responders() -> dict[str, Responder]:
    zones = {origin: parse_zone(text, source=origin) for origin, text in ZONES.items()}
    return {address: Responder([zones[o] for o in origins]) for address, origins in SERVES.items()}


RESPONDERS = _responders()


@dataclass
class Asked:
    address: str
    qname: str  # lowercase text
    qtype: int
    tcp: bool
    edns: bool


@dataclass
class World:
    """The servers above with the faults of ``faults`` (by address), recording every
    query in ``asked``."""

    faults: dict[str, Fault] = field(default_factory=dict)
    asked: list[Asked] = field(default_factory=list)

    def respond(self, address: str, query: bytes, tcp: bool) -> bytes | None:
        """The reply of the server at ``address`` (None: nothing listens or it sends none)."""
        responder = RESPONDERS.get(address)
        if responder is None:
            return None
        parsed = DNSRecord.parse(query)
        self.asked.append(
            Asked(address, str(parsed.q.qname).lower(), parsed.q.qtype, tcp, bool(parsed.ar))
        )
        wire = responder.answer(query, max_udp=None if tcp else 1232)
        fault = self.faults.get(address)
        if wire is None or fault is None:
            return wire
        reply = fault(parsed, DNSRecord.parse(wire), tcp)
        return None if reply is None else bytes(reply.pack())

    def names_asked(self, address: str) -> list[str]:
        return [a.qname for a in self.asked if a.address == address]


# --- faults ------------------------------------------------------------------------------------


def not_authoritative(query: DNSRecord, reply: DNSRecord, tcp: bool) -> DNSRecord:
    """AA cleared: what a server sends that answers from a zone it holds as a secondary
    misconfigured, or through a load balancer that rewrites flags."""
    reply.header.aa = 0
    return reply


def claims_aa(query: DNSRecord, reply: DNSRecord, tcp: bool) -> DNSRecord:
    """AA set on every reply, referrals included."""
    reply.header.aa = 1
    return reply


def without_authority(query: DNSRecord, reply: DNSRecord, tcp: bool) -> DNSRecord:
    """Negative answers without their SOA."""
    reply.auth = []
    reply.header.auth = 0
    return reply


def recursive_lame(query: DNSRecord, reply: DNSRecord, tcp: bool) -> DNSRecord:
    """An open resolver in the NS set: an empty non-authoritative reply with RA."""
    empty = query.reply(ra=1, aa=0)
    empty.ar = []
    return empty


def upward_referral(query: DNSRecord, reply: DNSRecord, tcp: bool) -> DNSRecord:
    """A referral to the root, as old servers send for zones they do not serve."""
    referral = query.reply(ra=0, aa=0)
    referral.ar = []
    referral.add_auth(*RR.fromZone(". 518400 NS a.root-servers.test."))
    referral.add_ar(*RR.fromZone("a.root-servers.test. 518400 A 127.0.0.2"))
    return referral


def sideways_referral(query: DNSRecord, reply: DNSRecord, tcp: bool) -> DNSRecord:
    """A referral to a zone that does not hold the name asked."""
    referral = query.reply(ra=0, aa=0)
    referral.ar = []
    referral.add_auth(*RR.fromZone("elsewhere.org. 86400 NS ns.elsewhere.org."))
    referral.add_ar(*RR.fromZone("ns.elsewhere.org. 86400 A 127.0.0.254"))
    return referral


def with_own_ns(ttl: int) -> Fault:
    """Authoritative replies carry the zone's own NS set (TTL ``ttl``) in authority."""

    def fault(query: DNSRecord, reply: DNSRecord, tcp: bool) -> DNSRecord:
        if reply.header.aa and reply.rr:
            reply.add_auth(*RR.fromZone(f"child.com. {ttl} NS ns.child.com."))
        return reply

    return fault


def foreign_authority(query: DNSRecord, reply: DNSRecord, tcp: bool) -> DNSRecord:
    """A CNAME answer whose authority section names the target's zone, with a poisoned
    address: data the server is not authoritative for."""
    reply.add_auth(*RR.fromZone("example.net. 86400 NS ns.evil.example.net."))
    reply.add_ar(*RR.fromZone("ns.evil.example.net. 86400 A 127.0.0.254"))
    reply.add_ar(*RR.fromZone("www.example.net. 86400 A 192.0.2.66"))
    return reply


def drops_edns(query: DNSRecord, reply: DNSRecord, tcp: bool) -> DNSRecord | None:
    """A firewall that drops every query with an OPT record."""
    return None if query.ar else reply


def tcp_only(query: DNSRecord, reply: DNSRecord, tcp: bool) -> DNSRecord:
    """A server that answers only over TCP: every UDP reply is empty with TC set."""
    if tcp:
        return reply
    truncated = query.reply(ra=0, aa=reply.header.aa)
    truncated.ar = []
    truncated.header.tc = 1
    return truncated


def truncates_referrals(query: DNSRecord, reply: DNSRecord, tcp: bool) -> DNSRecord:
    """Referrals too big for UDP (TC set, sections empty); answers fit."""
    if tcp or reply.header.aa or not reply.auth:
        return reply
    return tcp_only(query, reply, tcp)


# --- serving the world over sockets --------------------------------------------------------------


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, world: World, address: str) -> None:
        self.world = world
        self.address = address
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = self.world.respond(self.address, data, False)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


@contextlib.asynccontextmanager
async def serve_world(world: World, port: int) -> AsyncIterator[None]:
    """Every server of SERVES listening on ``port`` of its address, UDP and TCP."""
    loop = asyncio.get_running_loop()
    closers: list[Callable[[], None]] = []
    servers: list[asyncio.Server] = []

    async def on_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        address = writer.get_extra_info("sockname")[0]
        try:
            while True:
                size = int.from_bytes(await reader.readexactly(2), "big")
                reply = world.respond(address, await reader.readexactly(size), True)
                if reply is None:
                    break
                writer.write(len(reply).to_bytes(2, "big") + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    try:
        for address in SERVES:
            transport, _ = await loop.create_datagram_endpoint(
                lambda a=address: _Udp(world, a), local_addr=(address, port)
            )
            closers.append(transport.close)
            servers.append(await asyncio.start_server(on_tcp, address, port))
        yield
    finally:
        for close in closers:
            close()
        for server in servers:
            server.close()
            await server.wait_closed()
