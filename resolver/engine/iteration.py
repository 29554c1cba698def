"""Iteration from the root (recursive mode): the decisions for one client question, as plain
code, with no I/O and no clock of its own.

An :class:`Iteration` is told what happened (``start``, ``on_reply``, ``on_failure``, each
with the time) and answers with the next action: a :class:`~resolver.engine.actions.Query`
(ask this server this question) or :class:`~resolver.engine.actions.Done` (the reply, which
it builds from what the servers said, or none). The engine's driver performs the queries over
the transport, as it does the forwarding decisions. One query of its own is outstanding at a
time; a Query may also name lookups of name servers that the driver resolves beside it, as
questions of their own.

The rules:

* Start at the deepest zone the RRset cache knows for the name (the root hints at first);
  for type DS, at the zone above the name (the parent holds DS).
* Ask the zone's servers, fastest first (``ServerTimes``); a server never measured counts as
  376 ms. A server that times out, cannot be reached, answers SERVFAIL, REFUSED, NOTIMP or
  FORMERR (after asking again without EDNS), answers with a truncated reply twice (UDP then
  TCP), or is lame is left for the next server of the zone; servers that timed out get a
  second round, time allowing, without EDNS (RFC 6891 section 6.2.2: some firewalls drop
  it). A zone whose servers all fail ends the query with SERVFAIL, never a guess.
* A reply is classified as Unbound's iterator does, after dropping every record outside the
  zone the server was asked as a server of (RFC 2181 section 5.4.1): an answer (or a CNAME
  chain to it); a CNAME whose target lies elsewhere (followed, whatever the reply says about
  the target's zone); a referral (NS records for a zone below the current one holding the
  name, AA set or not); NXDOMAIN, or NODATA with the zone's SOA (AA set or not); lame (NS
  records upwards or sideways without AA, or an empty reply without AA from a server
  offering recursion); else NODATA without an SOA, answered NOERROR and remembered 5 s.
* QNAME minimisation (RFC 9156): a server is asked for the zone's name plus one label
  (type A), until the full name is reached or 10 such queries were made. A minimised query
  answered NXDOMAIN, or with an error, is asked again with the full name (the relaxed mode of
  Unbound: some servers answer empty non-terminals badly).
* A referral is followed; its NS set is stored in the RRset cache (rank: authority), and
  glue for its own name servers where the referring server is authoritative (the root's for
  any name, com.'s for names under com.: Unbound's harden-glue), ranked lowest, so that it
  never replaces an address from an answer. An authoritative reply's NS set for its own zone
  replaces the parent's. Other additional data is not used.
* A name server without glue is looked up (A, then AAAA when IPv6 can be used), a nested
  iteration on the same budget, servers outside the zone before those inside it, and up to
  two more of the zone's glueless servers beside it (``Query.lookups``); when an address
  turns up meanwhile, the lookup in progress is dropped and that address asked. A name
  already being looked up is not looked up again (loop detection), and one that cannot be
  found is skipped. Addresses are learnt once for every zone the server serves.
* CNAME and DNAME (RFC 6672: the CNAME is synthesised here from the DNAME) are followed,
  within one reply as far as the server's zone allows, then from the RRset cache's answer
  data, then by iterating for the target; at most 8 links, a loop ends with SERVFAIL.
  NXDOMAIN and NODATA end the query with the SOA the server gave.
* Limits: ``max_queries`` queries in all (lookups of name servers included), ``max_referrals``
  referrals per name, and the client query's deadline.
* 0x20: a reply that matched but for the case of the name (``CaseMismatch``) is asked again
  twice without 0x20 on fresh ports, and accepted only if both replies say the same
  (Unbound's caps fallback).

* DNSSEC (with a ``validator``): every server is asked with DO; each reply of the client's
  question that the iteration acts on (referrals, the answer, each CNAME link, the negative
  answer) is kept, and before the client's reply is built each is judged in turn by the
  validator, reading only the records inside the zone the server was asked for. The DS or
  DNSKEY set the validator lacks is asked for as a question of this iteration (DS of the
  zone's parent, DNSKEY of the zone; the RRset cache is not used for them: it keeps no
  signatures), and learnt; a zone whose servers all fail then ends the query. The answer's
  RRsets in the RRset cache take the verdict as their security status, and a TTL no longer
  than their signatures'. With a validator the RRset cache's answer data does not shortcut
  the client's question either, but with ``aggressive_nsec`` (RFC 8198) the secure NSEC
  records of a validated negative or wildcard answer are kept there with their RRSIGs (and a
  wildcard's RRset under its own name), and a later question they prove, in a zone the
  validator still holds secure, is answered from them without asking
  (``engine.aggressive``).

The reply built holds the question as the client asked it, the CNAME chain and the answer
(or, for a negative answer, the SOA in the authority section); for a client that set DO, the
RRSIGs over them and the NSEC/NSEC3 records of negative and wildcard answers; no additional
records, no OPT, RA set and AA clear, AD when the verdict is secure, TTLs capped by the
signatures: the form the engine stores and serves. ``Done.verdict`` carries the verdict for
the driver to apply (``validation.answering``).
"""

from __future__ import annotations

import ipaddress
import random
from typing import NamedTuple

import dns.name

from resolver.config import RecursionConfig
from resolver.engine import aggressive
from resolver.engine.actions import (
    EDE_NETWORK_ERROR,
    EDE_NO_REACHABLE_AUTHORITY,
    Done,
    Query,
)
from resolver.engine.delegations import Delegations, ServerTimes, Zone
from resolver.engine.validation import (
    EDE_DNSSEC_BOGUS,
    Need,
    NeedDNSKEY,
    NeedDS,
    Outcome,
    Reply,
    Security,
    Validator,
    ZoneKeys,
)
from resolver.engine.validation.outcome import name_of, worst
from resolver.errors import (
    CaseMismatch,
    LocalError,
    UpstreamTimeout,
    UpstreamUnreachable,
    WireError,
)
from resolver.rrsets import Rank
from resolver.rrsets import Security as Status
from resolver.wire.raw import AA, AD, CLASS_IN, NOERROR, NXDOMAIN, QR, RA, RD, TC
from resolver.wire.records import Message, Record, build_reply, read_message, target_name
from resolver.wire.view import ReplyView, scan

__all__ = ["Iteration", "Step"]

_ROOT = b"\x00"
_TYPE_A = 1
_TYPE_NS = 2
_TYPE_CNAME = 5
_TYPE_SOA = 6
_TYPE_AAAA = 28
_TYPE_DNAME = 39
_TYPE_DS = 43
_TYPE_RRSIG = 46
_TYPE_NSEC = 47
_TYPE_DNSKEY = 48
_TYPE_NSEC3 = 50
_PROOF_TYPES = frozenset({_TYPE_NSEC, _TYPE_NSEC3})
# Questions never answered from NSEC records: those about the DNSSEC records themselves, DS
# (its parent's chain, not its zone's), and ANY.
_NOT_SYNTHESISED = frozenset({_TYPE_DS, _TYPE_RRSIG, _TYPE_NSEC, _TYPE_DNSKEY, _TYPE_NSEC3, 255})
_TYPE_ANY = 255
_FORMERR = 1
_MAX_LINKS = 8  # CNAME and DNAME links followed for one question
_MAX_MINIMISE = 10  # minimised queries per name (RFC 9156's MAX_MINIMISE_COUNT)
_MAX_NESTING = 6  # name server lookups inside name server lookups
_NO_ADDRESS_TTL = 60  # how long a name server that has no address is remembered as such
_NORR_TTL = 5  # how long a NODATA without an SOA is remembered (Unbound's NORR_TTL)
# Glueless servers of one zone looked up beside the one the iteration looks up itself (with
# it, three at once: Unbound's target-fetch-policy at the first level).
_PARALLEL_LOOKUPS = 2
_RCODES = {1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
# The validator's verdict as the RRset cache records it.
_SECURITY = {
    Security.SECURE: Status.SECURE,
    Security.INSECURE: Status.INSECURE,
    Security.BOGUS: Status.BOGUS,
    Security.INDETERMINATE: Status.INDETERMINATE,
}
# Ties between servers are broken at random; seeding a generator per query would cost more
# than the rest of choosing.
_RNG = random.Random()

Action = Query | Done


class Step(NamedTuple):
    """One exchange of the iteration, for ``resolver query --trace``: the server asked (and
    the zone it was asked for), the question, what its reply meant, and how long it took;
    ``lookup``, the name server whose address is being looked up (None: the client's
    question); ``cut``, the zone a referral led to (None: the reply was no referral), whose
    DS records, or their proven absence, the referral holds."""

    server: tuple[str, int]
    zone: bytes
    name: bytes
    qtype: int
    outcome: str
    elapsed: float
    lookup: bytes | None = None
    cut: bytes | None = None


def _under(name: bytes, zone: bytes) -> bool:
    """Whether ``name`` is ``zone`` or below it (lowercase wire forms, label by label)."""
    if name == zone or zone == _ROOT:
        return True
    start = len(name) - len(zone)
    if start <= 0 or not name.endswith(zone):
        return False
    pos = 0
    while pos < start:  # the suffix must begin where a label does
        pos += name[pos] + 1
    return pos == start


def _one_label_below(name: bytes, above: bytes) -> bytes:
    """The ancestor of ``name`` (or ``name`` itself) one label longer than ``above``, which
    must hold it."""
    size = len(above)
    pos = previous = 0
    while len(name) - pos > size:
        previous = pos
        pos += name[pos] + 1
    return name[previous:]


def _parent(name: bytes) -> bytes:
    return name[name[0] + 1 :] if name != _ROOT else _ROOT


def _text(name: bytes) -> str:
    parts = []
    pos = 0
    while name[pos]:
        parts.append(name[pos + 1 : pos + 1 + name[pos]].decode("ascii", "replace"))
        pos += name[pos] + 1
    return ".".join(parts) + "." if parts else "."


def _address(record: Record) -> str | None:
    try:
        if record.rtype == _TYPE_A and len(record.rdata) == 4:
            return str(ipaddress.IPv4Address(record.rdata))
        if record.rtype == _TYPE_AAAA and len(record.rdata) == 16:
            return str(ipaddress.IPv6Address(record.rdata))
    except ValueError:
        return None
    return None


def _covered(record: Record) -> int:
    """The type an RRSIG record covers (its rdata's first two octets)."""
    return int.from_bytes(record.rdata[:2], "big") if len(record.rdata) >= 2 else -1


def _proofs(records: list[Record], extra: frozenset[int] = frozenset()) -> list[Record]:
    """The NSEC and NSEC3 records of ``records`` and the RRSIGs over them (and over the
    types in ``extra``, such as a negative answer's SOA)."""
    covered = _PROOF_TYPES | extra
    return [
        r
        for r in records
        if r.rtype in _PROOF_TYPES or (r.rtype == _TYPE_RRSIG and _covered(r) in covered)
    ]


def _signatures(records: list[Record], signed: list[Record]) -> list[Record]:
    """The RRSIGs of ``records`` over the RRsets of ``signed``."""
    sets = {(r.name.lower(), r.rtype) for r in signed}
    return [r for r in records if r.rtype == _TYPE_RRSIG and (r.name.lower(), _covered(r)) in sets]


def _keys_text(keys: ZoneKeys | Need) -> str:
    """What the validator made of a zone, in a few words (for +trace)."""
    if isinstance(keys, ZoneKeys):
        return f"{keys.zone} {keys.security.name.lower()} ({keys.reason})"
    what = "DS" if isinstance(keys, NeedDS) else "DNSKEY"
    return f"the {what} set of {keys.zone} is needed first"


def _digest(message: Message) -> tuple[int, frozenset[tuple[bytes, int, bytes]]]:
    """What two replies must share to say the same: rcode and the answer records."""
    return message.rcode, frozenset((r.name.lower(), r.rtype, r.rdata) for r in message.answer)


class _Kept(NamedTuple):
    """A reply kept for the validator: the records read from it, the question it answers
    (lowercase wire form), the zone whose server was asked, and that server's address."""

    message: Message
    name: bytes
    qtype: int
    zone: bytes
    server: str


class _Frame:
    """One name being resolved: the client's question (at the bottom of the stack), or the
    address of a name server (above it)."""

    __slots__ = (
        "below",
        "chain",
        "failed_servers",
        "fanned_out",
        "key",
        "learnt",
        "links",
        "minimise",
        "minimised",
        "need",
        "no_edns",
        "proofs",
        "qtype",
        "referrals",
        "replies",
        "retried",
        "server_of",
        "sigs",
        "timed_out",
        "tried",
        "zone",
    )

    def __init__(
        self, key: bytes, qtype: int, zone: Zone, minimise: bool, server_of: bytes | None
    ) -> None:
        self.key = key  # lowercase wire form
        self.qtype = qtype
        self.server_of = server_of  # the name server whose address this frame looks up
        self.chain: list[Record] = []
        self.links = 0
        self.referrals = 0
        self.minimise = minimise
        self.minimised = 0
        # DNSSEC: the DS or DNSKEY set this frame fetches for the validator (None: the
        # client's question or a name server's address), the replies kept to validate
        # (the records read, the question, the zone asked and the server), and the RRSIGs
        # and NSEC/NSEC3 records a DO client gets.
        self.need: Need | None = None
        self.replies: list[_Kept] = []
        self.sigs: list[Record] = []
        self.proofs: list[Record] = []
        # The NSEC, SOA and wildcard records (with RRSIGs) a secure verdict lets the RRset
        # cache keep for synthesis (RFC 8198).
        self.learnt: list[Record] = []
        self.enter(zone)

    def enter(self, zone: Zone) -> None:
        """Start asking the servers of ``zone``."""
        self.zone = zone
        self.below = zone.name  # the longest name known to exist under zone, with no cut
        self.tried: set[str] = set()
        self.timed_out: list[str] = []
        self.no_edns: set[str] = set()  # timed out with EDNS: asked without it next time
        self.retried = False
        self.failed_servers: set[bytes] = set()
        self.fanned_out = False  # the other glueless servers' lookups were handed out


class Iteration:
    """The way of one question from the root to its answer (see the module's rules)."""

    __slots__ = (
        "_aggressive",
        "_asked",
        "_caps",
        "_case",
        "_checked",
        "_config",
        "_deadline",
        "_delegations",
        "_dnssec",
        "_do",
        "_edns",
        "_families",
        "_name",
        "_outcomes",
        "_qclass",
        "_qtype",
        "_queries",
        "_read",
        "_result",
        "_rng",
        "_sent_at",
        "_server",
        "_side",
        "_stack",
        "_steps",
        "_tcp",
        "_times",
        "_unreachable",
        "_validator",
    )

    def __init__(
        self,
        name: bytes,
        qtype: int,
        qclass: int,
        deadline: float,
        *,
        config: RecursionConfig,
        delegations: Delegations,
        times: ServerTimes,
        families: frozenset[int] = frozenset({4, 6}),
        rng: random.Random | None = None,
        steps: list[Step] | None = None,
        validator: Validator | None = None,
        do: bool = False,
        aggressive_nsec: bool = False,
    ) -> None:
        self._name = name
        self._qtype = qtype
        self._qclass = qclass
        self._deadline = deadline
        self._config = config
        self._delegations = delegations
        self._times = times
        self._families = families
        self._rng = rng or _RNG
        self._steps = steps
        self._stack: list[_Frame] = []
        self._queries = 0
        self._unreachable = False
        self._server = ""
        self._asked: tuple[bytes, int] = (b"", 0)
        self._tcp = False
        self._edns = True
        self._case = config.randomize_case
        self._sent_at = 0.0
        self._caps: list[Message] | None = None
        self._side: tuple[tuple[bytes, int], ...] = ()
        # DNSSEC: with a validator, authorities are asked with DO and the client's answer
        # is judged (``_validate``) before it is given; ``do``: the client asked with DO.
        # RRSIG records asked for on purpose are not validated (Unbound neither): they are
        # no RRset of their own.
        self._validator = validator if qtype != _TYPE_RRSIG else None
        self._do = do
        self._dnssec = do or self._validator is not None
        # RFC 8198: answer from secure NSEC records of the RRset cache when they prove the
        # answer (never with CD: the driver passes False then), and keep those a secure
        # negative or wildcard answer brings.
        self._aggressive = aggressive_nsec and self._validator is not None
        self._read: _Kept | None = None
        self._checked = 0
        self._outcomes: list[Outcome] = []
        self._result: tuple[int, list[Record], list[Record] | tuple[()]] | None = None

    @property
    def queries(self) -> int:
        """Queries sent so far."""
        return self._queries

    # ----------------------------------------------------------------- events

    def start(self, now: float) -> Action:
        key = self._name.lower()
        start = _parent(key) if self._qtype == _TYPE_DS else key
        zone = self._delegations.closest(start, now)
        frame = _Frame(key, self._qtype, zone, self._config.qname_minimisation, None)
        self._stack.append(frame)
        # A NODATA without SOA is not in the engine's answer cache: it is remembered here.
        known = self._delegations.rrsets.get(key, self._qtype, now, min_rank=Rank.ANSWER)
        if known is not None and not known.rdatas and self._validator is None:
            self._step("NODATA without an SOA, from the cache", now)
            return self._complete(frame, NOERROR, [], (), now)
        if self._aggressive and self._qtype not in _NOT_SYNTHESISED:
            made = self._synthesise(key, zone.name, now)
            if made is not None:
                return made
        return self._next(now)

    def _synthesise(self, key: bytes, zone: bytes, now: float) -> Done | None:
        """The answer made from the secure NSEC records cached for ``zone`` (RFC 8198), when
        they prove one and the validator still holds the zone secure; else None."""
        rrsets = self._delegations.rrsets
        if not rrsets.chained(zone):
            return None
        made = aggressive.synthesise(rrsets, key, self._qtype, zone, now)
        if made is None:
            return None
        validator = self._validator
        assert validator is not None
        keys = validator.keys_for(name_of(zone))
        if not isinstance(keys, ZoneKeys) or keys.security is not Security.SECURE:
            return None
        self._asked = (key, self._qtype)  # what +trace shows: the question, asked of none
        self._step(f"{made.what}: synthesised from the validated cache", now)
        records, below = [*made.answer], [*made.authority]
        if self._do:
            records += made.answer_sigs
            below += made.proofs
        reply = build_reply(
            self._name,
            self._qtype,
            self._qclass,
            made.rcode,
            records,
            below,
            flags=QR | RD | RA | AD,
        )
        verdict = Outcome(Security.SECURE, None, made.what)
        return Done(scan(reply), None, verdict, synthesised=True)

    def on_reply(self, view: ReplyView, now: float) -> Action:
        """The validated reply to the last Query (its view; the records are read here)."""
        reply = view.message
        frame = self._stack[-1]
        server = self._server
        self._times.succeeded(server, now - self._sent_at, now)
        asked = self._asked[0]
        end = 12 + len(asked)
        known: int | None = None
        if reply[12:end].lower() == asked:
            # The question came back in our 0x20 case, and names compressed into it would
            # carry that case into the answer: they get the case we meant (lowercase).
            reply = reply[:12] + asked + reply[end:]
            known = end + 4  # matched to ours already: not read again
        try:
            message = read_message(reply, known)
        except WireError as exc:
            self._step(f"malformed reply ({exc})", now)
            frame.tried.add(server)
            return self._next(now)
        # What the validator reads of this reply, should it be kept: these records, not
        # the wire read again.
        self._read = _Kept(message, asked, self._asked[1], frame.zone.name, server)
        if self._caps is not None:
            self._caps.append(message)
            if len(self._caps) < 2:
                return self._again(now, case=False)
            first, second = self._caps
            self._caps = None
            if _digest(first) != _digest(second):
                self._step("replies without 0x20 differ: server skipped", now)
                frame.tried.add(server)
                return self._next(now)
        rcode = message.rcode
        if rcode == _FORMERR and self._edns:
            self._step("FORMERR: asking again without EDNS", now)
            return self._again(now, edns=False)
        if message.flags & TC and not self._tcp:
            self._step("truncated: asking again over TCP", now)
            return self._again(now, tcp=True)
        if rcode not in (NOERROR, NXDOMAIN):
            what = _RCODES.get(rcode, f"rcode {rcode}")
            if self._minimised(frame) and frame.minimise:
                self._step(f"{what} to a minimised query: asking the full name", now)
                frame.minimise = False
                return self._send(frame, server, now)
            self._step(f"{what}: next server", now)
            frame.tried.add(server)
            return self._next(now)
        try:
            return self._understand(frame, message, now)
        except WireError as exc:  # in a section read only now (see Message)
            self._step(f"malformed reply ({exc})", now)
            frame.tried.add(server)
            return self._next(now)

    def on_failure(self, exc: BaseException, now: float) -> Action:
        """The last Query ended without a reply: ``exc`` says how."""
        frame = self._stack[-1]
        server = self._server
        if isinstance(exc, CaseMismatch) and self._caps is None:
            self._step("0x20 case not echoed: asking twice without it", now)
            self._caps = []
            return self._again(now, case=False)
        self._caps = None
        frame.tried.add(server)
        if isinstance(exc, LocalError):
            self._step(f"not sent ({exc})", now)
        elif isinstance(exc, UpstreamTimeout):
            self._times.failed(server, now - self._sent_at, now)
            frame.timed_out.append(server)
            if self._edns:
                # Firewalls that drop queries with an OPT record exist (RFC 6891 section
                # 6.2.2): the second round asks this server without EDNS.
                frame.no_edns.add(server)
            self._step("timeout", now)
        else:
            self._times.failed(server, now - self._sent_at, now)
            self._unreachable = self._unreachable or isinstance(exc, UpstreamUnreachable)
            self._step(f"failed: {exc}", now)
        return self._next(now)

    # ----------------------------------------------------------------- choosing

    def _next(self, now: float) -> Action:
        """Ask the next server, starting or ending lookups of name servers as needed."""
        while True:
            if now >= self._deadline or self._queries >= self._config.max_queries:
                return self._fail()
            frame = self._stack[-1]
            if frame.server_of is not None and self._found_meanwhile(now):
                continue
            server, lookup = self._choose(frame, now)
            if server is not None:
                return self._send(frame, server, now)
            if lookup is not None and len(self._stack) <= _MAX_NESTING:
                qtype = _TYPE_A if 4 in self._families else _TYPE_AAAA
                if not frame.fanned_out:
                    # While this one is looked up here, a few other glueless servers of the
                    # zone are looked up beside it; whichever is found first serves.
                    frame.fanned_out = True
                    self._side = tuple((n, qtype) for n in self._others(frame, lookup, now))
                zone = self._delegations.closest(lookup, now)
                minimise = self._config.qname_minimisation
                self._stack.append(_Frame(lookup, qtype, zone, minimise, lookup))
                continue
            if lookup is not None:
                frame.failed_servers.add(lookup)
                continue
            # Every server of the zone failed (for the validator's DS or DNSKEY too: the
            # answer cannot be judged, so it is not given).
            if len(self._stack) == 1 or frame.need is not None:
                return self._fail()
            self._stack.pop()
            assert frame.server_of is not None
            self._stack[-1].failed_servers.add(frame.server_of)

    def _choose(self, frame: _Frame, now: float) -> tuple[str | None, bytes | None]:
        """The best address not yet tried among the zone's servers, or else a name server
        to look up, or else (None, None)."""
        delegations, times, rng = self._delegations, self._times, self._rng
        best: str | None = None
        best_score = (0.0, 0.0)
        missing: bytes | None = None
        for server in frame.zone.servers:
            addresses = delegations.addresses(server, now)
            if addresses is None:
                if server in frame.failed_servers or any(
                    f.server_of == server for f in self._stack
                ):
                    continue
                # A name server inside the zone it serves, without glue, can be found only
                # through another server of that zone: the others are looked up first.
                if missing is None or (
                    _under(missing, frame.zone.name) and not _under(server, frame.zone.name)
                ):
                    missing = server
                continue
            for address in addresses:
                if address in frame.tried or not self._usable(address):
                    continue
                score = (times.score(address, now), rng.random())
                if best is None or score < best_score:
                    best, best_score = address, score
        if best is not None or missing is not None:
            return best, missing
        if frame.timed_out and not frame.retried:
            # A lost datagram deserves one more try: a second round for the silent ones.
            frame.retried = True
            frame.tried.difference_update(frame.timed_out)
            frame.timed_out = []
            return self._choose(frame, now)
        return None, None

    def _found_meanwhile(self, now: float) -> bool:
        """Whether the frame waiting for the current name server lookup has an address to
        ask after all (learnt by a lookup beside this one): the lookup is then dropped."""
        below = self._stack[-2]
        addresses = self._delegations.addresses
        for server in below.zone.servers:
            for address in addresses(server, now) or ():
                if address not in below.tried and self._usable(address):
                    self._stack.pop()
                    return True
        return False

    def _others(self, frame: _Frame, lookup: bytes, now: float) -> list[bytes]:
        """Up to ``_PARALLEL_LOOKUPS`` servers of the zone besides ``lookup`` whose
        addresses are unknown, outside the zone first (see ``_choose``)."""
        looked_up = {f.server_of for f in self._stack}
        zone = frame.zone.name
        names = [
            server
            for server in frame.zone.servers
            if server != lookup
            and server not in frame.failed_servers
            and server not in looked_up
            and self._delegations.addresses(server, now) is None
        ]
        names.sort(key=lambda name: _under(name, zone))
        return names[:_PARALLEL_LOOKUPS]

    def _usable(self, address: str) -> bool:
        return (6 if ":" in address else 4) in self._families

    def _minimised(self, frame: _Frame) -> bool:
        return self._asked != (frame.key, frame.qtype)

    def _question(self, frame: _Frame) -> tuple[bytes, int]:
        """What to ask the zone's servers: the full question, or with QNAME minimisation the
        name one label below the longest name known to exist, type A."""
        if not frame.minimise or frame.minimised >= _MAX_MINIMISE:
            return frame.key, frame.qtype
        key = frame.key
        if not _under(key, frame.below):
            return key, frame.qtype
        name = _one_label_below(key, frame.below)
        return (name, _TYPE_A) if name != key else (key, frame.qtype)

    # ----------------------------------------------------------------- sending

    def _send(self, frame: _Frame, server: str, now: float) -> Action:
        name, qtype = self._question(frame)
        if (name, qtype) != (frame.key, frame.qtype):
            frame.minimised += 1
        self._asked = (name, qtype)
        self._server = server
        self._tcp = False
        self._edns = server not in frame.no_edns
        self._case = self._config.randomize_case
        return self._query(now)

    def _again(
        self,
        now: float,
        *,
        tcp: bool | None = None,
        edns: bool | None = None,
        case: bool | None = None,
    ) -> Action:
        """Ask the same server the same question again, changed as given."""
        if tcp is not None:
            self._tcp = tcp
        if edns is not None:
            self._edns = edns
        if case is not None:
            self._case = case
        return self._query(now)

    def _query(self, now: float) -> Action:
        if now >= self._deadline or self._queries >= self._config.max_queries:
            return self._fail()
        self._queries += 1
        self._sent_at = now
        side, self._side = self._side, ()
        ceiling = self._config.server_timeout
        wait = ceiling if self._tcp else self._times.timeout(self._server, ceiling, now)
        name, qtype = self._asked
        return Query(
            (self._server, self._config.port),
            name,
            qtype,
            self._tcp,
            self._edns,
            self._case,
            min(self._deadline, now + wait),
            side,
            self._dnssec and self._edns,
        )

    # ----------------------------------------------------------------- replies

    def _understand(self, frame: _Frame, message: Message, now: float) -> Action:
        """A NOERROR or NXDOMAIN reply from a server of ``frame.zone``, classified as
        Unbound's iterator does: an answer, a CNAME to follow, a negative answer (NXDOMAIN,
        NODATA), a referral, or a lame server."""
        zone = frame.zone.name
        asked, _ = self._asked
        aa = bool(message.flags & AA)
        nxdomain = message.rcode == NXDOMAIN
        # RFC 2181 section 5.4.1 (Unbound's scrubber): a server is believed only about the
        # zone it was asked as a server of; data outside it is dropped, data inside kept.
        answers = [
            r for r in message.answer if r.rclass == CLASS_IN and _under(r.name.lower(), zone)
        ]
        if self._minimised(frame):
            authority, inside = self._authority(message, zone)
            if aa and inside:
                self._learn_own_servers(frame, inside, now)
            cut = None if answers or nxdomain else self._cut(frame, authority, asked)
            if cut:
                return self._referral(frame, message, cut, now)
            if nxdomain:
                self._step(f"NXDOMAIN for {_text(asked)}: asking the full name", now)
                frame.minimise = False
                return self._send(frame, self._server, now)
            if not answers and self._lame(message, cut, self._soa(inside, asked), aa, now):
                frame.tried.add(self._server)
                return self._next(now)
            self._step(f"{_text(asked)} exists, no zone cut there", now)
            frame.below = asked
            return self._send(frame, self._server, now)
        current = frame.key
        chain: list[Record] = []
        qtype = frame.qtype
        while True:
            found = [
                r
                for r in answers
                if r.name.lower() == current and (r.rtype == qtype or qtype == _TYPE_ANY)
            ]
            if found:
                frame.chain += chain
                if (
                    aa
                    and self._delegations.rrsets.get(
                        zone, _TYPE_NS, now, min_rank=Rank.AUTHORITY_AA
                    )
                    is None
                ):
                    # The zone's own NS set, once per its TTL: an answer's authority section
                    # is read only for that (it costs as much as the rest of the reply).
                    self._learn_own_servers(frame, self._authority(message, zone)[1], now)
                self._learn_answer([*chain, *found], aa, now)
                # A DO client gets a wildcard answer's NSEC records, and a wildcard answer
                # teaches synthesis (RFC 8198): only then is the authority section read here.
                wildcard = self._aggressive and aggressive.expanded(answers)
                proofs = self._authority(message, zone)[1] if self._do or wildcard else []
                self._keep(frame, answers, [*chain, *found], proofs, proofs)
                self._step("answer", now)
                return self._complete(frame, NOERROR, found, (), now)
            link = self._link(answers, current, zone)
            if link is None:
                break
            records, target = link
            chain += records
            frame.links += 1
            seen = {r.name.lower() for r in frame.chain} | {r.name.lower() for r in chain}
            if frame.links > _MAX_LINKS or target in seen or target == frame.key:
                self._step("CNAME loop or chain too long", now)
                return Done(None, None)  # every server answered: none is unreachable
            current = target
        frame.chain += chain
        self._learn_answer(chain, aa, now)
        authority, inside = self._authority(message, zone)
        if aa and inside:
            self._learn_own_servers(frame, inside, now)
        soa = self._soa(inside, current)
        if current != frame.key:
            # A CNAME: the server's negative answer covers the chain's end only when that is
            # in the server's zone (NXDOMAIN, or NODATA with the zone's SOA); else the end is
            # resolved anew, and what the reply says about other zones is not used.
            if _under(current, zone) and (nxdomain or soa):
                self._keep(frame, answers, chain, inside, inside, negative=True)
                self._step("NXDOMAIN" if nxdomain else "NODATA", now)
                return self._complete(frame, message.rcode, [], soa[:1], now)
            self._keep(frame, answers, chain, [], [])
            self._step(f"CNAME to {_text(current)}: resolving it", now)
            return self._restart(frame, current, now)
        cut = None if nxdomain else self._cut(frame, authority, current)
        if cut:
            return self._referral(frame, message, cut, now)
        if nxdomain or soa:
            # With the zone's SOA a negative answer stands, AA or not (Unbound accepts it).
            self._keep(frame, answers, chain, inside, inside, negative=True)
            self._step("NXDOMAIN" if nxdomain else "NODATA", now)
            return self._complete(frame, message.rcode, [], soa[:1], now)
        if self._lame(message, cut, soa, aa, now):
            frame.tried.add(self._server)
            return self._next(now)
        self._keep(frame, answers, chain, inside, inside, negative=True)
        self._step("NODATA without an SOA", now)
        return self._complete(frame, NOERROR, [], (), now)

    @staticmethod
    def _authority(message: Message, zone: bytes) -> tuple[list[Record], list[Record]]:
        """The authority section's IN records, and those of them inside ``zone``."""
        authority = [r for r in message.authority if r.rclass == CLASS_IN]
        if not authority:
            return authority, authority
        return authority, [r for r in authority if _under(r.name.lower(), zone)]

    @staticmethod
    def _soa(authority: list[Record], name: bytes) -> list[Record]:
        """The SOA records of ``authority`` (already within the server's zone) whose owner
        holds ``name``."""
        return [r for r in authority if r.rtype == _TYPE_SOA and _under(name, r.name.lower())]

    def _lame(
        self, message: Message, cut: bytes | None, soa: list[Record], aa: bool, now: float
    ) -> bool:
        """Whether a reply without answer data, referral or negative answer shows a lame
        server: NS records upwards or sideways without AA (Unbound's LAME), or an empty
        reply without AA from a server offering recursion (its REC_LAME: an open resolver's
        empty cache). An empty reply otherwise is NODATA."""
        if aa or soa:
            return False
        if cut == b"":
            self._step("lame (a referral that leads nowhere down): next server", now)
            return True
        if message.flags & RA:
            self._step("lame (a recursive server, not authoritative): next server", now)
            return True
        return False

    def _learn_own_servers(self, frame: _Frame, inside: list[Record], now: float) -> None:
        """An authoritative reply's NS set for its own zone outranks the parent's referral:
        it is what the zone is served by, for its own TTL."""
        zone = frame.zone.name
        records = [r for r in inside if r.rtype == _TYPE_NS and r.name.lower() == zone]
        if records and zone != _ROOT:
            servers = tuple(dict.fromkeys(target_name(r).lower() for r in records))
            ttl = min(r.ttl for r in records)
            self._delegations.learn_zone(zone, servers, ttl, now, Rank.AUTHORITY_AA)

    def _learn_answer(self, records: list[Record], aa: bool, now: float) -> None:
        """Keep the answer's RRsets (a CNAME chain's links among them) in the RRset cache."""
        if not records:
            return
        rank = Rank.ANSWER_AA if aa else Rank.ANSWER
        put = self._delegations.rrsets.put
        if len(records) == 1:  # the common case: one record, one RRset
            record = records[0]
            put(record.name, record.rtype, (record.rdata,), record.ttl, rank, now)
            return
        sets: dict[tuple[bytes, int], tuple[list[bytes], int]] = {}
        for record in records:
            key = (record.name.lower(), record.rtype)
            entry = sets.get(key)
            if entry is None:
                sets[key] = ([record.rdata], record.ttl)
            else:
                entry[0].append(record.rdata)
                sets[key] = (entry[0], min(entry[1], record.ttl))
        for (name, rtype), (rdatas, ttl) in sets.items():
            put(name, rtype, tuple(dict.fromkeys(rdatas)), ttl, rank, now)

    def _link(
        self, answers: list[Record], current: bytes, zone: bytes
    ) -> tuple[list[Record], bytes] | None:
        """The CNAME (or DNAME with the CNAME synthesised from it) that ``current`` leads
        to in ``answers``, and its target; None when there is none."""
        if self._qtype != _TYPE_DNAME:
            for record in answers:
                owner = record.name.lower()
                if record.rtype == _TYPE_DNAME and owner != current and _under(current, owner):
                    if not _under(owner, zone):
                        continue
                    target = current[: len(current) - len(owner)] + target_name(record).lower()
                    if len(target) > 255:
                        return None
                    synthesised = Record(current, _TYPE_CNAME, CLASS_IN, record.ttl, target)
                    return [record, synthesised], target
        if self._qtype == _TYPE_CNAME:
            return None
        for record in answers:
            if record.rtype == _TYPE_CNAME and record.name.lower() == current:
                return [record], target_name(record).lower()
        return None

    def _cut(self, frame: _Frame, authority: list[Record], name: bytes) -> bytes | None:
        """The zone a referral in ``authority`` (a reply without answer data) leads to: the
        deepest NS owner below the server's zone that holds ``name``, whether AA is set or
        not; b"" for NS records that lead nowhere down (upwards, sideways, or to the name
        whose DS the parent was asked for); None when there are no NS records."""
        zone = frame.zone.name
        owners = {r.name.lower() for r in authority if r.rtype == _TYPE_NS}
        if not owners:
            return None
        below = [o for o in owners if o != zone and _under(o, zone) and _under(name, o)]
        if not below:
            return b""
        cut = max(below, key=len)
        if frame.qtype == _TYPE_DS and cut == frame.key:
            return b""  # the parent holds DS: a referral to the child is no answer
        return cut

    def _referral(self, frame: _Frame, message: Message, cut: bytes, now: float) -> Action:
        if self._validator is not None and frame.server_of is None:
            assert self._read is not None
            frame.replies.append(self._read)  # its DS, or their absence
        frame.referrals += 1
        if frame.referrals > self._config.max_referrals:
            self._step("too many referrals", now)
            return Done(None, None)
        records = [
            r
            for r in message.authority
            if r.rtype == _TYPE_NS and r.rclass == CLASS_IN and r.name.lower() == cut
        ]
        servers = tuple(dict.fromkeys(target_name(r).lower() for r in records))
        ttl = min(r.ttl for r in records)
        # Glue is believed for the referral's own name servers wherever the referring server
        # is authoritative (RFC 2181 section 5.4.1, Unbound's harden-glue): the root's for
        # any name, com.'s for names under com. (a sibling zone's server too), never beyond.
        # It ranks lowest: it never replaces an address learnt from an answer.
        referring = frame.zone.name
        glue: dict[bytes, list[str]] = {}
        glue_ttl: dict[bytes, int] = {}
        for record in message.additional:
            owner = record.name.lower()
            if owner not in servers or not _under(owner, referring) or record.rclass != CLASS_IN:
                continue
            address = _address(record)
            if address is not None:
                glue.setdefault(owner, []).append(address)
                glue_ttl[owner] = min(glue_ttl.get(owner, record.ttl), record.ttl)
        for owner, addresses in glue.items():
            self._delegations.learn_addresses(
                owner, tuple(addresses), glue_ttl[owner], now, Rank.ADDITIONAL
            )
        zone = self._delegations.learn_zone(cut, servers, ttl, now, Rank.AUTHORITY)
        count = f"{len(servers)} server{'s' if len(servers) != 1 else ''}"
        self._step(f"referral to {_text(cut)} ({count}, {len(glue)} with glue)", now, cut)
        frame.enter(zone)
        return self._next(now)

    def _restart(self, frame: _Frame, name: bytes, now: float) -> Action:
        """Go on with the CNAME target ``name``: from the RRset cache when it has the
        answer, else from the deepest zone known for it."""
        frame.key = name
        frame.referrals = 0
        frame.minimise = self._config.qname_minimisation
        frame.minimised = 0
        # A validating iteration asks the servers: the RRset cache keeps no signatures.
        cached = self._cached(frame, now) if self._validator is None else None
        if cached is not None:
            return cached
        frame.enter(self._delegations.closest(name, now))
        return self._next(now)

    def _cached(self, frame: _Frame, now: float) -> Action | None:
        """The end of ``frame``'s question from answer data of the RRset cache (a CNAME
        target already resolved, a NODATA without SOA still remembered), following cached
        CNAMEs; None when the cache cannot finish it (the frame then asks for the name its
        cached CNAMEs lead to)."""
        get = self._delegations.rrsets.get
        while True:
            name, qtype = frame.key, frame.qtype
            rrset = get(name, qtype, now, min_rank=Rank.ANSWER)
            if rrset is not None:
                ttl = rrset.remaining(now)
                records = [Record(name, qtype, CLASS_IN, ttl, rdata) for rdata in rrset.rdatas]
                self._step(f"{_text(name)} from the cache", now)
                return self._complete(frame, NOERROR, records, (), now)
            if qtype in (_TYPE_CNAME, _TYPE_ANY):
                return None
            alias = get(name, _TYPE_CNAME, now, min_rank=Rank.ANSWER)
            if alias is None or len(alias.rdatas) != 1:
                return None
            target = alias.rdatas[0].lower()
            frame.links += 1
            seen = {r.name.lower() for r in frame.chain}
            if frame.links > _MAX_LINKS or target in seen or target == name:
                return None  # asked of the servers, which show the loop
            frame.chain.append(
                Record(name, _TYPE_CNAME, CLASS_IN, alias.remaining(now), alias.rdatas[0])
            )
            frame.key = target

    def _complete(
        self,
        frame: _Frame,
        rcode: int,
        answer: list[Record],
        authority: list[Record] | tuple[()],
        now: float,
    ) -> Action:
        """``frame``'s name is resolved: the client's reply, or a name server's addresses."""
        if rcode == NOERROR and not answer and not authority:
            # NODATA without an SOA: no negative TTL to go by, so remembered only briefly
            # (Unbound's NORR_TTL), in the RRset cache as an RRset with no records.
            self._delegations.learn_rrset(frame.key, frame.qtype, (), _NORR_TTL, now, Rank.ANSWER)
        if frame.server_of is None:
            if frame.need is not None:
                return self._resume(now)  # the validator's DS or DNSKEY set is here
            if self._validator is not None:
                self._result = (rcode, answer, authority)
                return self._validate(now)
            return self._answer(rcode, answer, authority, None, now)
        addresses = tuple(a for a in map(_address, answer) if a is not None)
        if not addresses and frame.qtype == _TYPE_A and 6 in self._families:
            frame.qtype = _TYPE_AAAA
            frame.chain = []
            frame.links = 0
            return self._restart(frame, frame.server_of, now)
        if addresses:
            # Under the name server's own name, even when a CNAME led to them.
            ttl = min(r.ttl for r in answer)
            self._delegations.learn_addresses(frame.server_of, addresses, ttl, now, Rank.ANSWER)
        else:
            # Known to have no address (of the families asked), for a while.
            ttl = min([_NO_ADDRESS_TTL, *(r.ttl for r in authority)])
            self._delegations.learn_rrset(frame.server_of, frame.qtype, (), ttl, now, Rank.ANSWER)
        self._stack.pop()
        if not addresses:
            self._stack[-1].failed_servers.add(frame.server_of)
        return self._next(now)

    # ----------------------------------------------------------------- validation

    def _keep(
        self,
        frame: _Frame,
        answers: list[Record],
        signed: list[Record],
        authority: list[Record],
        inside: list[Record],
        *,
        negative: bool = False,
    ) -> None:
        """Keep the reply just read for the validator (the client's question, or the DS or
        DNSKEY set fetched for it), and for a DO client its RRSIGs over ``signed`` and the
        NSEC/NSEC3 records (with their RRSIGs, and the SOA's for a negative answer)."""
        if frame.server_of is not None:
            return
        if self._validator is not None:
            assert self._read is not None
            frame.replies.append(self._read)
        if self._aggressive and frame.need is None:
            if negative:
                frame.learnt += _proofs(inside, frozenset({_TYPE_SOA}))
                frame.learnt += [r for r in inside if r.rtype == _TYPE_SOA]
            elif authority and aggressive.expanded(answers):
                frame.learnt += [r for r in signed if r.rtype != _TYPE_CNAME]
                frame.learnt += _signatures(answers, signed)
                frame.learnt += _proofs(inside)
        if self._do and frame.need is None:
            frame.sigs += _signatures(answers, signed)
            if negative:
                frame.proofs += _proofs(inside, frozenset({_TYPE_SOA}))
            elif authority:
                frame.proofs += _proofs(inside)  # a wildcard answer's proof

    @staticmethod
    def _reply(kept: _Kept) -> Reply | Outcome:
        """A kept reply as the validator reads it, from the records read when it came: only
        those inside the zone the server was asked as a server of (what the iteration
        believed of it, RFC 2181 5.4.1); a server's word on another zone is judged where
        that zone is asked. The server's address goes with it, for the reason of a bogus
        verdict."""
        message, name, qtype, zone, server = kept
        try:
            origin = dns.name.from_wire(zone, 0)[0]
            answer = [r for r in message.answer if _under(r.name.lower(), zone)]
            authority = [r for r in message.authority if _under(r.name.lower(), zone)]
            return Reply.from_records(
                name, qtype, message.rcode, answer, authority, origin, server=server
            )
        except (WireError, ValueError, dns.name.NameTooLong) as exc:
            return Outcome(Security.BOGUS, EDE_DNSSEC_BOGUS, f"unreadable reply: {exc}")

    def _validate(self, now: float) -> Action:
        """Judge the kept replies of the client's question in order (referrals first, whose
        DS the validator learns, then the answer and each CNAME link), fetching the DS and
        DNSKEY sets the validator asks for; then answer with the worst verdict."""
        validator = self._validator
        assert validator is not None
        assert self._result is not None
        frame = self._stack[0]
        while self._checked < len(frame.replies):
            reply = self._reply(frame.replies[self._checked])
            verdict = reply if isinstance(reply, Outcome) else validator.validate(reply)
            if isinstance(verdict, NeedDS | NeedDNSKEY):
                return self._fetch(verdict, now)
            self._outcomes.append(verdict)
            self._checked += 1
        if self._outcomes:
            verdict = worst(self._outcomes)
        else:
            verdict = Outcome(Security.INDETERMINATE, reason="no reply to judge")
        rcode, answer, authority = self._result
        return self._answer(rcode, answer, authority, verdict, now)

    def _fetch(self, need: Need, now: float) -> Action:
        """Ask for the DS set (of the parent) or the DNSKEY set (of the zone) the validator
        needs, as a question of this iteration's own."""
        if any(f.need == need for f in self._stack):
            return self._fail()  # the chain of trust goes round in a circle
        key = need.zone.canonicalize().to_wire()
        assert key is not None
        qtype = _TYPE_DS if isinstance(need, NeedDS) else _TYPE_DNSKEY
        zone = self._delegations.closest(_parent(key) if qtype == _TYPE_DS else key, now)
        frame = _Frame(key, qtype, zone, False, None)
        frame.need = need
        self._stack.append(frame)
        return self._next(now)

    def _resume(self, now: float) -> Action:
        """A DS or DNSKEY set fetched: the validator learns it (and the sets fetched before
        it that waited for it), then judging goes on."""
        validator = self._validator
        assert validator is not None
        fresh = True  # the frame on top has just answered (its step is the last one)
        while True:
            frame = self._stack[-1]
            need = frame.need
            if need is None:
                return self._validate(now)
            if not frame.replies:
                return self._fail()
            reply = self._reply(frame.replies[-1])
            if isinstance(reply, Outcome):
                return self._fail()
            if isinstance(need, NeedDS):
                learned = validator.learn_ds(need.zone, reply)
            else:
                learned = validator.learn_dnskey(need.zone, reply)
            # A DS set learnt asks for the zone's DNSKEY set next: that is no reason to
            # learn the DS set again once the keys are in.
            if fresh and self._steps:
                # For +trace: what the set fetched made of the zone.
                said = "DS found" if learned == NeedDNSKEY(need.zone) else _keys_text(learned)
                last = self._steps[-1]
                self._steps[-1] = last._replace(outcome=f"{last.outcome}; {said}")
            fresh = False
            if isinstance(learned, NeedDS | NeedDNSKEY) and learned != NeedDNSKEY(need.zone):
                return self._fetch(learned, now)
            self._stack.pop()

    def _answer(
        self,
        rcode: int,
        answer: list[Record],
        authority: list[Record] | tuple[()],
        verdict: Outcome | None,
        now: float,
    ) -> Done:
        """The client's reply: the CNAME chain and the answer (or the SOA), with RRSIGs and
        NSEC/NSEC3 records for a DO client; AD when the verdict is secure; TTLs no longer
        than the signatures allow (RFC 4035 5.3.3)."""
        frame = self._stack[0]
        records = [*frame.chain, *answer, *frame.sigs]
        below = [*authority, *frame.proofs]
        flags = QR | RD | RA
        if verdict is not None:
            if verdict.secure:
                flags |= AD
            cap = verdict.ttl
            if cap is not None:
                records = [r._replace(ttl=min(r.ttl, cap)) for r in records]
                below = [r._replace(ttl=min(r.ttl, cap)) for r in below]
            self._mark([*frame.chain, *answer], verdict, now)
            if verdict.secure and frame.learnt:
                aggressive.learn(self._delegations.rrsets, frame.learnt, cap, now)
        reply = build_reply(
            self._name, self._qtype, self._qclass, rcode, records, below, flags=flags
        )
        return Done(scan(reply), None, verdict)

    def _mark(self, records: list[Record], verdict: Outcome, now: float) -> None:
        """The answer's RRsets in the RRset cache take the verdict as their security status,
        and a TTL no longer than the signatures allow."""
        rrsets = self._delegations.rrsets
        security = _SECURITY[verdict.security]
        cap = verdict.ttl
        for name, rtype in dict.fromkeys((r.name.lower(), r.rtype) for r in records):
            known = rrsets.get(name, rtype, now, min_rank=Rank.ANSWER)
            if known is None:
                continue
            ttl = known.remaining(now)
            if cap is not None:
                ttl = min(ttl, cap)
            rrsets.put(name, rtype, known.rdatas, ttl, known.rank, now, security=security)

    def _fail(self) -> Done:
        return Done(None, EDE_NETWORK_ERROR if self._unreachable else EDE_NO_REACHABLE_AUTHORITY)

    def _step(self, outcome: str, now: float, cut: bytes | None = None) -> None:
        if self._steps is not None:
            frame = self._stack[-1]
            name, qtype = self._asked
            server = (self._server, self._config.port)
            elapsed = now - self._sent_at
            self._steps.append(
                Step(server, frame.zone.name, name, qtype, outcome, elapsed, frame.server_of, cut)
            )
