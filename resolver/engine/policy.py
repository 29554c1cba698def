"""Response policy decisions, without I/O: blocklists and RPZ zones (draft-vixie-dnsop-dns-rpz).

A :class:`Policy` is built by ``resolver.policy`` from the configured files and does not change
(but for two bounded memos of its own: clients' parsed addresses, parent names' dotted forms);
a reload builds a new one and puts it in the engine's place in one step. The engine asks it
twice per query:

* ``before(name, client)``, before the cache and the upstreams: the client-IP and QNAME
  triggers. ``name`` is the question's lowercase wire-form name;
* ``after(reply, name, client)`` on the answer before it goes to the client: the names of its
  CNAME chain (link by link, the QNAME triggers again) and the addresses it holds (the RPZ
  response-IP triggers). A blocklist's name met in a CNAME chain blocks the whole answer
  ("deep CNAME inspection").

Both answer a :class:`Hit` (what matched, where, and what to do) or None. ``respond`` makes the
reply a hit stands for. Policy replies are made fresh for each client and never stored in the
cache: the cache keeps what the upstream said, and the policy is applied on the way out.

Order (the RPZ draft's, as Unbound applies it): the RPZ zones in their configured order, each
with its client-IP triggers first, then QNAME (an exact name before the closest ``*.``
wildcard); the first zone with a hit decides, PASSTHRU included (a passed name is not looked
up in later zones nor in the lists). Then the blocklists: a name allowed by an allowlist or an
adblock ``@@`` exception is never blocked by any list; otherwise the first list (in order)
that blocks it decides. Answers are checked the same way: each CNAME target in chain order,
then the response IPs (RPZ ``rpz-ip``).

Name server triggers (``rpz-nsdname``, ``rpz-nsip``) apply in recursive mode only: ``after``
is then given ``path``, which tells the zone cuts known on the way to a name (the zone that
holds it, then each zone above it, the root excluded) with their name servers' names and
known addresses. They are checked for the question's name and each CNAME target. In
forwarding mode there is no path (the upstream followed the delegations) and they never
match. Within a zone the order is the draft's: QNAME (the chain's names), response IP,
NSDNAME, NSIP; the zones in their order, then the lists on the chain's names. (QNAME
triggers on the question itself are decided by ``before``, before any answer, as Unbound
does: a QNAME hit in a later zone wins over a name server trigger of an earlier zone.)

Lists and zones apply to every client, or only to those in their ``clients`` networks.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from resolver.errors import WireError
from resolver.wire.raw import (
    AA,
    NOERROR,
    NXDOMAIN,
    QR,
    RA,
    REFUSED,
    TC,
    TYPE_A,
    TYPE_CNAME,
    read_name,
    walk_records,
)
from resolver.wire.records import Record, build_reply, read_message

__all__ = [
    "BELOW",
    "EDE_BLOCKED",
    "EDE_CENSORED",
    "EDE_FILTERED",
    "ITSELF",
    "Blocklist",
    "Client",
    "Hit",
    "NameServers",
    "Networks",
    "Policy",
    "PolicyStatistics",
    "Response",
    "RpzZone",
    "Rule",
    "RuleData",
    "ServerPath",
    "respond",
    "splice",
]

# Extended DNS Error info codes (RFC 8914 section 4).
EDE_BLOCKED = 15
EDE_CENSORED = 16
EDE_FILTERED = 17

TYPE_AAAA = 28
_CLASS_IN = 1
_HEADER = struct.Struct("!6H")
_MAX_CLIENTS_MEMO = 4096
_MAX_PARENTS_MEMO = 4096

# Actions. A list blocks with one of the first four; an RPZ rule may use any.
NXDOMAIN_ACTION = "nxdomain"
NODATA = "nodata"
NULL = "null"
REFUSED_ACTION = "refused"
PASSTHRU = "passthru"
DROP = "drop"
TCP_ONLY = "tcp-only"
LOCAL = "local"  # local data, a CNAME rewrite included


class Client(NamedTuple):
    """Who asks: the address as the listener saw it, and whether over TCP."""

    host: str
    tcp: bool


RuleData = tuple[str, tuple[tuple[int, int, bytes], ...], str]
"""A Rule as a plain tuple, as the zones keep their rules: the garbage collector stops
tracking plain tuples of plain values, so a big zone costs a full collection nothing."""


class Rule(NamedTuple):
    """What one trigger does: ``action``, and for ``local`` the records to answer with
    (type, TTL, rdata; a CNAME among them is a rewrite, followed as a CNAME); ``text`` is
    the trigger as written, for the query log."""

    action: str
    records: tuple[tuple[int, int, bytes], ...]
    text: str


class Hit(NamedTuple):
    """A policy decision: the ``source`` (a list's or zone's name) whose ``rule`` matched
    ``name`` (lowercase wire form: the question's, or a CNAME target's); ``kind`` is
    ``"list"`` or ``"rpz"``; ``ede`` the Extended DNS Error to attach (None: none);
    ``chain`` the CNAME records leading from the question to ``name`` (answers only)."""

    source: str
    kind: str
    rule: Rule
    name: bytes
    ede: int | None
    ttl: int
    chain: tuple[Record, ...] = ()
    log: bool = True  # named in the query log (an RPZ zone's ``log = false``: not)


class NameServers(NamedTuple):
    """A zone cut on the way to a name: the ``zone``, its name servers' ``names`` (lowercase
    wire form) and the ``addresses`` known for them (text)."""

    zone: bytes
    names: tuple[bytes, ...]
    addresses: tuple[str, ...]


ServerPath = Callable[[bytes], Sequence[NameServers]]
"""The zone cuts on the way to a name (lowercase wire form), the deepest first."""


def _parse_ip(host: str) -> tuple[int, int] | None:
    """(version, value) of an address; an IPv4-mapped IPv6 address as its IPv4 one."""
    try:
        return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, host), "big")
    except OSError:
        pass
    try:
        address = ipaddress.IPv6Address(host.split("%", 1)[0])
    except ValueError:
        return None
    if address.ipv4_mapped is not None:
        return 4, int(address.ipv4_mapped)
    return 6, int(address)


class Networks:
    """Networks with a value each, looked up by longest prefix (IPv4 and IPv6 apart)."""

    __slots__ = ("_by_length", "_lengths", "count")

    def __init__(
        self,
        items: Iterable[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, object]] = (),
    ) -> None:
        self._by_length: dict[tuple[int, int], dict[int, object]] = {}
        self.count = 0
        for network, value in items:
            self.add(network, value)
        self._lengths: tuple[tuple[int, int], ...] = ()
        self._sort()

    def add(self, network: ipaddress.IPv4Network | ipaddress.IPv6Network, value: object) -> None:
        """Add ``network``; the first value given for a network is kept."""
        table = self._by_length.setdefault((network.version, network.prefixlen), {})
        if int(network.network_address) not in table:
            table[int(network.network_address)] = value
            self.count += 1
        self._sort()

    def _sort(self) -> None:
        self._lengths = tuple(sorted(self._by_length, key=lambda key: -key[1]))

    def lookup(self, version: int, value: int) -> object | None:
        """The value of the longest network holding the address, or None."""
        bits = 32 if version == 4 else 128
        for key in self._lengths:
            if key[0] != version:
                continue
            shift = bits - key[1]
            found = self._by_length[key].get((value >> shift) << shift)
            if found is not None:
                return found
        return None

    def __bool__(self) -> bool:
        return self.count > 0


ITSELF = 1  # a list entry that matches its own name
BELOW = 2  # a list entry that matches the names below it


@dataclass(slots=True)
class Blocklist:
    """One list's ``names``, as lowercase dotted text without the final dot (``b"ads.example"``:
    what list files hold, so that a million of them load without a conversion each), each
    with what it matches: ``ITSELF``, ``BELOW`` (``*.name``) or both (``||name^``). A dict
    of ints: one lookup per label of a question, and the garbage collector does not walk it.
    ``allow``: an allowlist (or an adblock list's ``@@`` exceptions), which only unblocks."""

    name: str
    action: str = NXDOMAIN_ACTION
    clients: Networks | None = None
    allow: bool = False
    names: dict[bytes, int] = field(default_factory=dict)
    style: str = "domains"  # how a matched name is written in the query log

    def match(self, dotted: Sequence[bytes]) -> tuple[bytes, bool] | None:
        """The entry matching the name whose ``dotted`` suffixes (itself first) are given,
        and whether it matched as the name itself; or None."""
        names = self.names
        first = dotted[0]
        flags = names.get(first)
        if flags is not None and flags & ITSELF:
            return first, True
        for suffix in dotted[1:]:
            flags = names.get(suffix)
            if flags is not None and flags & BELOW:
                return suffix, False
        return None

    def rule_text(self, entry: bytes, itself: bool) -> str:
        text = entry.decode("ascii", "replace")
        if self.style == "adblock":
            return f"{'@@' if self.allow else ''}||{text}^"
        if self.style == "hosts":
            return f"0.0.0.0 {text}"
        return text if self.names.get(entry, 0) & ITSELF else f"*.{text}"

    def __len__(self) -> int:
        return len(self.names)


@dataclass(slots=True)
class RpzZone:
    """One RPZ zone's triggers: QNAME (``names`` exact, ``wildcards`` keyed by the name below
    which ``*.`` matches; both in lowercase dotted text, as the lists), response IP and
    client IP (``Networks``), each rule a ``RuleData`` (see there). ``override`` replaces
    every rule's action (``[[policy.rpz]] action``)."""

    name: str
    clients: Networks | None = None
    names: dict[bytes, RuleData] = field(default_factory=dict)
    wildcards: dict[bytes, RuleData] = field(default_factory=dict)
    ips: Networks = field(default_factory=Networks)
    client_ips: Networks = field(default_factory=Networks)
    nsdnames: dict[bytes, RuleData] = field(default_factory=dict)
    nsdname_wildcards: dict[bytes, RuleData] = field(default_factory=dict)
    nsips: Networks = field(default_factory=Networks)
    override: Rule | None = None
    log: bool = True
    ede: int = EDE_FILTERED
    ttl: int = 5

    def match(self, dotted: Sequence[bytes]) -> Rule | None:
        """The rule for the name whose ``dotted`` suffixes (itself first) are given."""
        data = self.names.get(dotted[0])
        if data is None and self.wildcards:
            for suffix in dotted[1:]:
                data = self.wildcards.get(suffix)
                if data is not None:
                    break
        return None if data is None else Rule._make(data)

    def match_server(self, dotted: Sequence[bytes]) -> Rule | None:
        """The NSDNAME rule for the name server whose ``dotted`` suffixes are given."""
        data = self.nsdnames.get(dotted[0])
        if data is None and self.nsdname_wildcards:
            for suffix in dotted[1:]:
                data = self.nsdname_wildcards.get(suffix)
                if data is not None:
                    break
        return None if data is None else Rule._make(data)

    @property
    def server_triggers(self) -> bool:
        return bool(self.nsdnames or self.nsdname_wildcards or self.nsips)

    @staticmethod
    def rule_at(networks: Networks, version: int, value: int) -> Rule | None:
        data = networks.lookup(version, value)
        return None if data is None else Rule._make(data)  # type: ignore[arg-type]

    def rules(self) -> int:
        return (
            len(self.names)
            + len(self.wildcards)
            + self.ips.count
            + self.client_ips.count
            + len(self.nsdnames)
            + len(self.nsdname_wildcards)
            + self.nsips.count
        )


class PolicyStatistics(NamedTuple):
    zones: int
    lists: int
    rules: int  # RPZ triggers and list names


def _dotted(name: bytes) -> list[bytes]:
    """The suffixes of ``name`` (lowercase wire form) as dotted text, itself first, the
    root excluded: ``www.example.com``, ``example.com``, ``com``."""
    if len(name) < 2:
        return [b""]
    text = bytearray(name[1:-1])  # each label's length byte (but the first's) becomes a dot
    dots = []
    pos = name[0]
    end = len(text)
    while pos < end:
        dots.append(pos)
        length = text[pos]
        text[pos] = 46
        pos += length + 1
    whole = bytes(text)
    return [whole, *[whole[dot + 1 :] for dot in dots]]


class Policy:
    """The ordered RPZ zones and the blocklists (see the module). ``ttl``: of the records
    of a list's answer (``null``). ``censored``: lists' answers carry EDE 16 (Censored)
    instead of 15 (Blocked)."""

    __slots__ = (
        "_client_memo",
        "_ips_checked",
        "_names_checked",
        "_parents",
        "_servers_checked",
        "allows",
        "blocks",
        "client_dependent",
        "ede",
        "nsips_checked",
        "ttl",
        "zones",
    )

    def __init__(
        self,
        zones: Sequence[RpzZone] = (),
        lists: Sequence[Blocklist] = (),
        *,
        ttl: int = 60,
        censored: bool = False,
    ) -> None:
        self.zones = tuple(zones)
        self.allows = tuple(item for item in lists if item.allow)
        self.blocks = tuple(item for item in lists if not item.allow)
        self.ttl = ttl
        self.ede = EDE_CENSORED if censored else EDE_BLOCKED
        # Whether the same question may get another answer from another client: then no
        # answer may be reused for another client (the server's memo of recent replies).
        self.client_dependent = any(zone.clients or zone.client_ips for zone in self.zones) or any(
            item.clients for item in lists
        )
        self._names_checked = bool(self.blocks) or any(
            zone.names or zone.wildcards for zone in self.zones
        )
        self._ips_checked = any(zone.ips for zone in self.zones)
        self._servers_checked = any(zone.server_triggers for zone in self.zones)
        # Whether a path's addresses are read (a path may leave them out when not).
        self.nsips_checked = any(zone.nsips for zone in self.zones)
        self._client_memo: dict[str, tuple[int, int] | None] = {}
        # The dotted suffixes of recent questions' parent names: questions come in crowds
        # below a few domains, and a name's own label is then all there is to convert.
        self._parents: dict[bytes, list[bytes]] = {}

    def _dotted(self, name: bytes) -> list[bytes]:
        """``_dotted(name)``, from the memo of parent names when it holds the parent."""
        length = name[0] if name else 0
        if not length:
            return [b""]
        parent = name[length + 1 :]
        parents = self._parents
        known = parents.get(parent)
        if known is None:
            if len(parents) >= _MAX_PARENTS_MEMO:
                parents.clear()
            known = parents[parent] = _dotted(parent) if len(parent) > 1 else []
        label = name[1 : length + 1]
        if not known:
            return [label]
        return [label + b"." + known[0], *known]

    def _client(self, client: Client | None) -> tuple[int, int] | None:
        if client is None:
            return None
        memo = self._client_memo
        found = memo.get(client.host, ())
        if found == ():
            if len(memo) >= _MAX_CLIENTS_MEMO:
                memo.clear()
            found = memo[client.host] = _parse_ip(client.host)
        return found  # type: ignore[return-value]

    @staticmethod
    def _applies(clients: Networks | None, ip: tuple[int, int] | None) -> bool:
        if clients is None:
            return True
        return ip is not None and clients.lookup(*ip) is not None

    # ----------------------------------------------------------------- triggers

    def before(self, name: bytes, client: Client | None) -> Hit | None:
        """The client-IP and QNAME triggers for the question ``name`` (lowercase wire form)."""
        dotted = self._dotted(name)
        if not self.client_dependent:
            return self._before_anyone(dotted, name)
        ip = self._client(client)
        for zone in self.zones:
            if not self._applies(zone.clients, ip):
                continue
            if zone.client_ips and ip is not None:
                rule = zone.rule_at(zone.client_ips, *ip)
                if rule is not None:
                    return self._zone_hit(zone, rule, name)
            rule = zone.match(dotted)
            if rule is not None:
                return self._zone_hit(zone, rule, name)
        return self._listed(dotted, name, ip) if self.blocks else None

    def _before_anyone(self, dotted: list[bytes], name: bytes) -> Hit | None:
        """``before`` when no list or zone looks at the client: the same decisions, written
        out (this is every query's path, and calls cost more than the lookups)."""
        first = dotted[0]
        for zone in self.zones:
            data = zone.names.get(first)
            if data is None and zone.wildcards:
                wildcards = zone.wildcards
                for suffix in dotted[1:]:
                    data = wildcards.get(suffix)
                    if data is not None:
                        break
            if data is not None:
                return self._zone_hit(zone, Rule._make(data), name)
        for item in self.blocks:
            names = item.names
            flags = names.get(first)
            if flags is not None and flags & ITSELF:
                return self._listed(dotted, name, None)
            for suffix in dotted[1:]:
                flags = names.get(suffix)
                if flags is not None and flags & BELOW:
                    return self._listed(dotted, name, None)
        return None

    def _listed(
        self, dotted: Sequence[bytes], name: bytes, ip: tuple[int, int] | None
    ) -> Hit | None:
        blocked: tuple[Blocklist, tuple[bytes, bool]] | None = None
        for item in self.blocks:
            if item.clients is not None and not self._applies(item.clients, ip):
                continue
            found = item.match(dotted)
            if found is not None:
                blocked = item, found
                break
        if blocked is None:
            return None
        for allowed in self.allows:
            if allowed.clients is not None and not self._applies(allowed.clients, ip):
                continue
            if allowed.match(dotted) is not None:
                return None
        blocker, (entry, itself) = blocked
        rule = Rule(blocker.action, (), blocker.rule_text(entry, itself))
        return Hit(blocker.name, "list", rule, name, self.ede, self.ttl)

    @staticmethod
    def _zone_hit(zone: RpzZone, rule: Rule, name: bytes) -> Hit:
        override = zone.override
        if override is not None:
            rule = Rule(override.action, override.records, rule.text)
        return Hit(zone.name, "rpz", rule, name, zone.ede, zone.ttl, log=zone.log)

    @property
    def servers_checked(self) -> bool:
        """Whether a zone has name server triggers (``after`` then reads its ``path``)."""
        return self._servers_checked

    def after(
        self, reply: bytes, name: bytes, client: Client | None, path: ServerPath | None = None
    ) -> Hit | None:
        """The triggers on an answer (normalized form) to ``name``: in each zone, each CNAME
        target in chain order against the QNAME triggers, then each address against the
        response-IP triggers, then (given ``path``, recursive mode) the name servers of the
        zones on the way to the name and its targets against the NSDNAME triggers, then
        their addresses against the NSIP triggers; then the lists on the CNAME targets. A
        PASSTHRU hit is returned too (it ends the checks)."""
        names_checked, ips_checked = self._names_checked, self._ips_checked
        servers = path if self._servers_checked else None
        if len(reply) < 12 or not (names_checked or ips_checked or servers is not None):
            return None
        ancount = (reply[6] << 8) | reply[7]
        targets: list[bytes] = []
        addresses: list[tuple[int, int]] = []
        chains = names_checked or servers is not None  # a CNAME target's names matter
        if ancount and (chains or ips_checked):
            pos = 12 + len(name) + 4  # the question, as the engine stores it: one, uncompressed
            # Without response-IP triggers only a CNAME chain matters, and a chain comes first
            # in an answer (the question's own CNAME): a first record that is not one (its
            # owner a pointer, as servers write it) ends the check at three byte reads' cost.
            if (
                not ips_checked
                and reply[pos : pos + 2] == b"\xc0\x0c"
                and reply[pos + 2 : pos + 4] != b"\x00\x05"
            ):
                if servers is None:
                    return None
            else:
                try:
                    for span in walk_records(reply, pos, ancount):
                        rtype = span.rtype
                        if rtype == TYPE_CNAME and chains:
                            target = read_name(reply, span.rdata_offset)[0].lower()
                            if target != name:
                                targets.append(target)
                        elif ips_checked and rtype == TYPE_A and span.rdlength == 4:
                            end = span.end
                            addresses.append((4, int.from_bytes(reply[end - 4 : end], "big")))
                        elif ips_checked and rtype == TYPE_AAAA and span.rdlength == 16:
                            end = span.end
                            addresses.append((6, int.from_bytes(reply[end - 16 : end], "big")))
                except WireError:
                    return None
        if not targets and not addresses and servers is None:
            return None
        ip = self._client(client) if self.client_dependent else None
        dotted_targets = [(target, self._dotted(target)) for target in targets]
        on_path: list[NameServers] | None = None
        for zone in self.zones:
            if not self._applies(zone.clients, ip):
                continue
            if zone.names or zone.wildcards:
                for target, dotted in dotted_targets:
                    rule = zone.match(dotted)
                    if rule is not None:
                        hit = self._zone_hit(zone, rule, target)
                        if hit.rule.action == PASSTHRU:
                            return hit
                        return hit._replace(chain=_chain_to(reply, target))
            if zone.ips:
                for address in addresses:
                    rule = zone.rule_at(zone.ips, *address)
                    if rule is not None:
                        return self._zone_hit(zone, rule, name)
            if servers is not None and zone.server_triggers:
                if on_path is None:
                    on_path = _cuts(servers, (name, *targets))
                rule = self._server_rule(zone, on_path)
                if rule is not None:
                    return self._zone_hit(zone, rule, name)
        if self.blocks:
            for target, dotted in dotted_targets:
                listed = self._listed(dotted, target, ip)
                if listed is not None:  # the question is blocked as a whole (as blocky does)
                    return listed
        return None

    def _server_rule(self, zone: RpzZone, on_path: Sequence[NameServers]) -> Rule | None:
        """``zone``'s NSDNAME rule for a name server on the path, else its NSIP rule for
        one of their addresses; the deepest zone cut first."""
        if zone.nsdnames or zone.nsdname_wildcards:
            for cut in on_path:
                for server in cut.names:
                    rule = zone.match_server(self._dotted(server))
                    if rule is not None:
                        return rule
        if zone.nsips:
            for cut in on_path:
                for address in cut.addresses:
                    parsed = self._client(Client(address, False))
                    if parsed is not None:
                        rule = zone.rule_at(zone.nsips, *parsed)
                        if rule is not None:
                            return rule
        return None

    def statistics(self) -> PolicyStatistics:
        rules = sum(zone.rules() for zone in self.zones)
        rules += sum(len(item) for item in (*self.allows, *self.blocks))
        return PolicyStatistics(len(self.zones), len(self.allows) + len(self.blocks), rules)

    def __repr__(self) -> str:
        s = self.statistics()
        return f"<Policy zones={s.zones} lists={s.lists} rules={s.rules}>"


def _cuts(path: ServerPath, names: Iterable[bytes]) -> list[NameServers]:
    """The zone cuts on the way to each of ``names``, each once, in the order met."""
    seen: set[bytes] = set()
    found: list[NameServers] = []
    for name in names:
        for cut in path(name):
            if cut.zone not in seen:
                seen.add(cut.zone)
                found.append(cut)
    return found


def _chain_to(reply: bytes, target: bytes) -> tuple[Record, ...]:
    """The answer's CNAME records up to the one whose target is ``target``."""
    try:
        message = read_message(reply)
    except WireError:
        return ()
    chain: list[Record] = []
    for record in message.answer:
        if record.rtype == TYPE_CNAME:
            chain.append(record)
            if record.rdata.lower() == target:
                break
    return tuple(chain)


class Response(NamedTuple):
    """What a hit makes: ``reply`` (normalized form, our own: AA set) or None with
    ``drop`` (send nothing) or ``follow`` (a CNAME rewrite: answer ``follow`` for the
    question's type and put ``reply``'s records first); ``passthru`` when the answer the
    resolver would give stands."""

    reply: bytes | None
    drop: bool = False
    passthru: bool = False
    follow: bytes | None = None


def respond(hit: Hit, question: bytes, qtype: int, client: Client | None) -> Response:
    """The reply ``hit`` stands for, to the question ``question`` (as asked) of ``qtype``."""
    action = hit.rule.action
    if action == PASSTHRU:
        return Response(None, passthru=True)
    if action == DROP:
        return Response(None, drop=True)
    if action == TCP_ONLY:
        if client is not None and client.tcp:
            return Response(None, passthru=True)
        head = _HEADER.pack(0, QR | AA | RA | TC, 1, 0, 0, 0)
        return Response(head + question + struct.pack("!HH", qtype, _CLASS_IN))
    chain = list(hit.chain)
    owner = chain[-1].rdata if chain else question
    rcode = NOERROR
    records: list[Record] = []
    follow: bytes | None = None
    if action == NXDOMAIN_ACTION:
        rcode = NXDOMAIN
    elif action == REFUSED_ACTION:
        rcode = REFUSED
        chain = []
    elif action == NULL:
        if qtype == TYPE_A:
            records.append(Record(owner, TYPE_A, _CLASS_IN, hit.ttl, bytes(4)))
        elif qtype == TYPE_AAAA:
            records.append(Record(owner, TYPE_AAAA, _CLASS_IN, hit.ttl, bytes(16)))
    elif action == LOCAL:
        cname = [rdata for rtype, _ttl, rdata in hit.rule.records if rtype == TYPE_CNAME]
        if cname and qtype != TYPE_CNAME:
            target = _rewrite(cname[0], owner)
            ttl = next(t for rtype, t, _ in hit.rule.records if rtype == TYPE_CNAME)
            records.append(Record(owner, TYPE_CNAME, _CLASS_IN, ttl, target))
            follow = target
        else:
            records += [
                Record(
                    owner,
                    rtype,
                    _CLASS_IN,
                    ttl,
                    _rewrite(rdata, owner) if rtype == TYPE_CNAME else rdata,
                )
                for rtype, ttl, rdata in hit.rule.records
                if rtype == qtype or qtype == 255
            ]
    reply = build_reply(question, qtype, _CLASS_IN, rcode, [*chain, *records], flags=QR | AA | RA)
    return Response(reply, follow=follow)


def _rewrite(target: bytes, owner: bytes) -> bytes:
    """A CNAME target of an RPZ rule: ``*.suffix.`` puts the question's name in place of
    the ``*`` (the draft's wildcard rewrite)."""
    if target.startswith(b"\x01*") and len(target) > 3:
        joined = owner[:-1] + target[2:]
        if len(joined) <= 255:
            return joined
    return target


def splice(prefix: bytes, answer: bytes) -> bytes:
    """A CNAME rewrite's reply ``prefix`` (its CNAME records) followed by ``answer``, the
    reply for the rewrite's target: the target's rcode, answer and authority records.
    Raises WireError when either is malformed."""
    first, then = read_message(prefix), read_message(answer)
    assert first.question is not None
    question = first.question
    return build_reply(
        question.name,
        question.qtype,
        question.qclass,
        then.rcode,
        [*first.answer, *then.answer],
        then.authority,
        flags=QR | AA | RA,
    )
