"""The engine's driver: every client question goes through ``Engine.answer``.

It holds what outlives one query (the cache, the questions in flight, the upstreams and their
health) and performs the actions of the per-query decisions (``forwarding.Forwarding``, or
``iteration.Iteration`` in recursive mode, which has the delegation cache too) over the
transport, on callbacks from datagram to reply: no task and no timer of its own on the
common path. Before anything else, the questions we answer ourselves (``local.LocalAnswers``:
localhost, private reverse zones, the hosts file) are answered without asking anyone. Around
the decisions it does the cache's companions, all of whose state is in the cache (one lookup
per question):

* a fresh cached answer is returned at once, with the moment until which exactly those bytes
  remain the answer (so the server may keep the finished reply in the cache for repeats);
* identical questions in flight share one upstream query (coalescing);
* an entry in the last tenth of its TTL is refreshed once in the background (prefetch);
* serve-stale (RFC 8767): when the refresh of an expired entry fails (no reply, SERVFAIL or
  REFUSED) or takes longer than 1.8 s, the expired answer is served with TTL 30 and EDE 3;
  after a failed refresh, stale answers go out at once, without asking again, for 30 s (the
  cache's hold).

A question that misses the cache goes to the upstreams of the longest configured domain
(``ForwarderConfig.domains``) that holds its name, each domain with its own selector (policy
and health), or to the default upstreams (in recursive mode: resolved from the root). An
upstream listed in several places is one socket pool, with separate health in each place.

An answer is never invented: when every attempt fails and nothing stale is at hand the client
gets SERVFAIL (with EDE 22 or 23), never NXDOMAIN. Such a failure is remembered in the cache
for ``cache.servfail_ttl`` seconds (RFC 9520), in both modes, so repeats fail at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import dns.name
import dns.rdataclass
import dns.rdatatype

from resolver.cache import Cache, CacheEntry, CacheKey, CacheStatistics, Freshness
from resolver.config import (
    DnssecConfig,
    ForwarderConfig,
    RecursionConfig,
    TransportConfig,
    Validation,
)
from resolver.engine.actions import (
    EDE_NO_REACHABLE_AUTHORITY,
    EDE_STALE_ANSWER,
    Done,
    Query,
    Send,
)
from resolver.engine.delegations import Delegations, ServerTimes
from resolver.engine.forwarding import Forwarding
from resolver.engine.hints import RootHints, read_root_hints
from resolver.engine.iteration import Iteration
from resolver.engine.local import LocalAnswers
from resolver.engine.policy import Client, Hit, NameServers, Policy, respond, splice
from resolver.engine.selection import Selector
from resolver.engine.validating import ValidatingForwarding
from resolver.engine.validation import (
    Security,
    Validator,
    ZoneKeys,
    answering,
    read_trust_anchors,
    root_anchors,
)
from resolver.errors import UpstreamError, UpstreamUnreachable, WireError
from resolver.throttle import LogThrottle
from resolver.transport import (
    Exchange,
    ForwardingUpstream,
    Servers,
    ServersStatistics,
    UpstreamStatistics,
    upstream_for,
)
from resolver.wire.message import name_to_wire
from resolver.wire.raw import AD, CLASS_IN, REFUSED, SERVFAIL, ancestors
from resolver.wire.view import ReplyView, scan

__all__ = ["Ask", "Client", "Decision", "Engine", "EngineStatistics", "Outcome"]

# RFC 8767 section 5: answer from stale data after 1.8 s of trying to refresh (and after a
# failed refresh keep answering stale without asking again for a while: the cache's hold).
_STALE_ANSWER_AFTER = 1.8
# How long the server may repeat a local answer's finished bytes: a reload that replaces the
# local answers is seen by every client within this.
_LOCAL_REUSE = 1.0
# CNAME rewrites of the response policy followed for one question (a loop ends there).
_MAX_REWRITES = 8

log = logging.getLogger(__name__)


class Ask(NamedTuple):
    """One question as the engine handles it: the cache key and what goes upstream."""

    key: CacheKey
    name: bytes
    qtype: int
    qclass: int
    do: bool
    cd: bool

    @classmethod
    def of(cls, name: bytes, qtype: int, qclass: int, do: bool, cd: bool) -> Ask:
        # CacheKey.of's lowercasing, without its call: this runs for every query.
        return cls(CacheKey(name.lower(), qtype, qclass, do, cd), name, qtype, qclass, do, cd)


class Outcome(NamedTuple):
    """The engine's answer to a question: ``reply`` in normalized form (see
    ``wire.view.normalize``;
    its ID is arbitrary, its question case may differ from the asker's, AA is set only in
    answers of our own from ``local.LocalAnswers``), or None for
    SERVFAIL; ``ede`` an RFC 8914 info code to attach, or None; ``until`` the moment (on the
    engine's clock) until which exactly these bytes remain the answer, 0.0 when they may not
    be reused or no repeat is expected (the first cache hit of an entry in a second: see
    ``CacheHit.until``). ``policy``: the response policy's hit when the policy made this
    answer (then a missing reply means: send nothing, the DROP action)."""

    reply: bytes | None
    ede: int | None
    until: float
    policy: Hit | None = None


Waiter = Callable[[Outcome], None]


Action = Send | Query | Done


class Decision(Protocol):
    """What the driver drives: the decisions for one question, told each event with the time
    and answering with the next action. ``forwarding.Forwarding`` (whose Send names an
    upstream) is one; ``iteration.Iteration`` (recursive mode, whose Query names a server
    address) is the other, performed by this same driver over the same transport."""

    def start(self, now: float) -> Action: ...

    def on_reply(self, reply: ReplyView, now: float) -> Action: ...

    def on_failure(self, exc: BaseException, now: float) -> Action: ...


@dataclass(frozen=True, slots=True)
class EngineStatistics:
    queries: int
    answered: int
    failed: int
    failovers: int
    cache_answers: int
    local_answers: int
    coalesced: int
    prefetches: int
    stale_answers: int
    upstream_queries: int
    upstreams: tuple[UpstreamStatistics, ...]  # the default ones, then the domains' others
    cache: CacheStatistics | None
    servers: ServersStatistics | None = None  # recursive mode's queries to authorities
    zones: int = 0  # zone cuts in the delegation cache
    # DNSSEC verdicts on the answers resolved (recursive mode with validation).
    secure: int = 0
    insecure: int = 0
    bogus: int = 0
    indeterminate: int = 0
    # Answers made from validated NSEC records without asking (RFC 8198).
    synthesised: int = 0
    policy_hits: tuple[tuple[str, str, int], ...] = ()  # (list or zone, action, hits)


class _Route:
    """Where the questions for one domain (or all others) go: upstreams, their names (as the
    validator's reasons give the server), and their selector."""

    __slots__ = ("config", "name", "names", "selector", "upstreams")

    def __init__(
        self,
        name: str,
        upstreams: list[ForwardingUpstream],
        selector: Selector,
        config: ForwarderConfig,
    ) -> None:
        self.name = name
        self.upstreams = upstreams
        self.names = tuple(upstream.name for upstream in upstreams)
        self.selector = selector
        self.config = config  # the policy and health settings its selector was made with


class _Flight:
    """One question being resolved: its decisions, who waits for it, its stale fallback."""

    __slots__ = (
        "ask",
        "decision",
        "engine",
        "exchange",
        "route",
        "stale",
        "stale_served",
        "timer",
        "waiters",
    )

    def __init__(self, engine: Engine, ask: Ask, route: _Route, decision: Decision) -> None:
        self.engine = engine
        self.ask = ask
        self.route = route
        self.decision = decision
        self.waiters: list[Waiter] = []
        self.exchange: Exchange | None = None
        self.stale: CacheEntry | None = None
        self.stale_served = False
        self.timer: asyncio.TimerHandle | None = None

    def report(self, reply: ReplyView | None, exc: BaseException | None) -> None:
        self.engine._advance(self, reply, exc)


class Engine:
    """Answers questions itself, from the cache or by forwarding to upstreams (see the
    module), or with ``recursion`` by iterating from the root (``iteration.Iteration``) over
    ``servers``, with a delegation cache seeded from ``hints`` (read from
    ``recursion.root_hints`` when None); domains of ``config.domains`` are still forwarded
    then (Unbound's forward-zone). ``local`` holds the answers of our own (none when None);
    ``response_policy`` the response policy (``policy.Policy``: blocklists, RPZ zones; none
    when None); a reload may replace either at any time.

    With ``validation`` "on" or "permissive" every answer resolved or forwarded is judged
    by a DNSSEC validator (forwarded ones through ``validating.ValidatingForwarding``; trust
    anchors from ``dnssec``: its ``trust_anchors`` file, else IANA's root anchor): secure
    answers carry AD, bogus ones are SERVFAIL with their Extended DNS Error ("on",
    remembered as a failure) or given without AD ("permissive"), each logged once per
    reason a while. The default, "off", validates nothing.

    ``answer`` is the one entry point, for UDP and TCP queries alike.
    """

    def __init__(
        self,
        config: ForwarderConfig,
        transport: TransportConfig | None = None,
        *,
        upstreams: Sequence[ForwardingUpstream] | None = None,
        cache: Cache | None = None,
        local: LocalAnswers | None = None,
        response_policy: Policy | None = None,
        rng: random.Random | None = None,
        recursion: RecursionConfig | None = None,
        hints: RootHints | None = None,
        servers: Servers | None = None,
        dnssec: DnssecConfig | None = None,
        validation: Validation = "off",
    ) -> None:
        self.config = config
        self.local = local
        self.response_policy = response_policy
        self._policy_hits: dict[tuple[str, str], int] = {}
        self.recursion = recursion
        self.servers: Servers | None = None
        self.delegations: Delegations | None = None
        self._times = ServerTimes()
        self._families = frozenset({4, 6})
        self.validation: Validation = validation
        self.validator: Validator | None = None
        self._verdicts = dict.fromkeys(Security, 0)
        self._aggressive_nsec = (dnssec or DnssecConfig()).aggressive_nsec
        self._synthesised = 0
        if validation != "off":
            self.validator = _validator(dnssec or DnssecConfig())
        if recursion is not None:
            self.servers = servers or Servers(transport)
            self.delegations = Delegations(
                hints or read_root_hints(recursion.root_hints),
                recursion.max_zones,
                rrsets=cache.rrsets if cache is not None else None,
            )
        if upstreams is None:
            upstreams = [
                upstream_for(address, transport, bootstrap=config.bootstrap)
                for address in config.upstreams
            ]
        if not upstreams and recursion is None:
            raise ValueError("an engine needs at least one upstream")
        self.upstreams = list(upstreams)
        self._rng = rng
        self._events = LogThrottle(log)
        self.selector = self._selector(".", self.upstreams, config)
        self._default = _Route(".", self.upstreams, self.selector, config)
        # What is started, closed and counted: the default upstreams, then those only domains
        # list. A domain's upstream at the address of one already here is that one.
        self._pools = list(self.upstreams)
        known = {upstream.address: upstream for upstream in reversed(self.upstreams)}
        self._routes: dict[bytes, _Route] = {}
        for domain in config.domains:
            listed = []
            for address in domain.upstreams:
                upstream = known.get(address)
                if upstream is None:
                    upstream = known[address] = upstream_for(
                        address, transport, bootstrap=config.bootstrap
                    )
                    self._pools.append(upstream)
                listed.append(upstream)
            policy = domain.policy or config.policy
            own = dataclasses.replace(config, upstreams=domain.upstreams, policy=policy, domains=())
            selector = self._selector(domain.name, listed, own)
            key = name_to_wire(domain.name).lower()
            self._routes[key] = _Route(domain.name, listed, selector, own)
        self.cache = cache
        self._inflight: dict[CacheKey, _Flight] = {}
        self._emptied: asyncio.Event | None = None  # set when the last flight lands (retire)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queries = 0
        self._answered = 0
        self._failed = 0
        self._failovers = 0
        self._cache_answers = 0
        self._local_answers = 0
        self._coalesced = 0
        self._prefetches = 0
        self._stale_answers = 0
        self._upstream_queries = 0

    async def start(self) -> None:
        """Open every upstream's socket pool. An upstream whose sockets cannot be opened (an
        address no socket can reach, such as a link-local one without a scope) is left out
        with a warning, and the others serve. Raises UpstreamUnreachable, naming each upstream
        and why, when none can be used; on any failure every socket opened is closed again."""
        self._loop = asyncio.get_running_loop()
        try:
            if self.servers is not None:
                await self.servers.start()
                self._families = frozenset(
                    version
                    for version, probe in ((4, ("127.0.0.1", 53)), (6, ("::1", 53)))
                    if self.servers.can_send_to(probe)
                )
            # Each start runs to its end: one failing must not cancel (and leak) the others.
            results = await asyncio.gather(
                *(upstream.start() for upstream in self._pools), return_exceptions=True
            )
        except BaseException:
            await asyncio.shield(self.aclose())
            raise
        failed: dict[ForwardingUpstream, UpstreamUnreachable] = {}
        unexpected: list[BaseException] = []
        for upstream, result in zip(self._pools, results, strict=True):
            if isinstance(result, UpstreamUnreachable):
                failed[upstream] = result
            elif isinstance(result, BaseException):
                unexpected.append(result)
        if unexpected:
            await asyncio.shield(self.aclose())
            raise unexpected[0]
        if not failed:
            return
        await asyncio.gather(*(upstream.aclose() for upstream in failed))
        # Every route must keep an upstream: a domain left without one would leak its names
        # to the default upstreams, so that is as fatal as having none at all.
        for route in (self._default, *self._routes.values()):
            if route.upstreams and all(upstream in failed for upstream in route.upstreams):
                await asyncio.shield(self.aclose())
                reasons = "; ".join(str(failed[upstream]) for upstream in route.upstreams)
                where = "upstreams" if route is self._default else f"upstreams of {route.name}"
                if len(route.upstreams) == 1:
                    raise failed[route.upstreams[0]]
                raise UpstreamUnreachable(where, f"none can be used ({reasons})")
        for exc in failed.values():
            log.warning("upstream left out: %s", exc)
        # Nothing has been asked yet: the choice starts afresh among the usable ones.
        self._pools = [upstream for upstream in self._pools if upstream not in failed]
        self.upstreams = [upstream for upstream in self.upstreams if upstream not in failed]
        self.selector = self._selector(".", self.upstreams, self.config)
        self._default = _Route(".", self.upstreams, self.selector, self.config)
        for key, route in list(self._routes.items()):
            usable = [upstream for upstream in route.upstreams if upstream not in failed]
            if len(usable) != len(route.upstreams):
                selector = self._selector(route.name, usable, route.config)
                self._routes[key] = _Route(route.name, usable, selector, route.config)

    def _selector(
        self, name: str, upstreams: list[ForwardingUpstream], config: ForwarderConfig
    ) -> Selector:
        """A selector among ``upstreams`` (the route ``name``'s) that logs health changes."""

        def changed(index: int, up: bool) -> None:
            where = "" if name == "." else f" (for {name})"
            address = upstreams[index].name
            if up:
                self._events.log(
                    logging.INFO, (address, name), "upstream %s%s answers again", address, where
                )
            else:
                self._events.log(
                    logging.INFO,
                    (address, name),
                    "upstream %s%s is down after %d failures in a row; tried last for %gs",
                    address,
                    where,
                    config.down_after,
                    config.down_for,
                )

        return Selector(len(upstreams), config, rng=self._rng, on_health=changed)

    async def retire(self, grace: float) -> None:
        """Close once the questions in flight are answered (a reload replaced this engine and
        sends it nothing new): each waiter gets its answer, or SERVFAIL (EDE 22, no reachable
        authority) when still unanswered after ``grace`` seconds; then every upstream's
        sockets close."""
        if self._inflight:
            self._emptied = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self._emptied.wait()
        for flight in list(self._inflight.values()):
            if flight.exchange is not None:
                flight.exchange.cancel()
                flight.exchange = None
            self._conclude(flight, Done(None, EDE_NO_REACHABLE_AUTHORITY))
        await self.aclose()

    async def aclose(self) -> None:
        """Abandon the questions in flight, close every upstream's sockets. Idempotent."""
        for flight in list(self._inflight.values()):
            if flight.timer is not None:
                flight.timer.cancel()
            if flight.exchange is not None:
                flight.exchange.cancel()
        self._inflight.clear()
        await asyncio.gather(*(u.aclose() for u in self._pools))
        if self.servers is not None:
            await self.servers.aclose()

    def clock(self) -> Callable[[], float]:
        """The clock that cached answers age by (``Outcome.until`` is on it)."""
        if self.cache is not None:
            return self.cache.clock
        return (self._loop or asyncio.get_running_loop()).time

    @property
    def query_timeout(self) -> float:
        if self.recursion is not None:
            return self.recursion.query_timeout
        return self.config.query_timeout

    # ----------------------------------------------------------------- answering

    def answer(
        self, ask: Ask, deadline: float, done: Waiter, client: Client | None = None
    ) -> Outcome | None:
        """Answer ``ask`` by ``deadline`` (loop time): the Outcome at once when the cache has
        it (``done`` is then never called), else None, and ``done(outcome)`` is called exactly
        once, at the latest shortly after the deadline (possibly before this returns, when the
        first step already ends the query). Never raises for the upstreams' sake: failures
        are Outcomes without a reply. ``client`` (who asks) is what the response policy's
        client triggers and groups read."""
        self._queries += 1
        policy = self.response_policy
        if policy is not None:
            return self._policed(policy, ask, deadline, done, client, 0)
        return self._resolve(ask, deadline, done)

    def _resolve(self, ask: Ask, deadline: float, done: Waiter) -> Outcome | None:
        """``answer`` without the response policy."""
        local = self.local
        if local is not None:
            reply = local.answer(ask)
            if reply is not None:
                self._local_answers += 1
                self._answered += 1
                return Outcome(reply, None, self.clock()() + _LOCAL_REUSE)
        cache = self.cache
        stale: CacheEntry | None = None
        if cache is not None:
            now = cache.now()
            hit = cache.get(ask.key, now)
            if hit is not None:
                entry = hit.entry
                freshness = hit.freshness
                if freshness is Freshness.FRESH:
                    if entry.failure and entry.reply is None:
                        # RFC 9520: a failed resolution is not tried again for every repeat.
                        self._failed += 1
                        return Outcome(None, entry.ede, 0.0)
                    if hit.needs_prefetch:
                        self._prefetch(ask)
                    self._cache_answers += 1
                    self._answered += 1
                    return Outcome(cache.serve(entry, 0, ask.name, now), entry.ede, hit.until)
                if freshness is Freshness.HELD:
                    return self._stale_outcome(entry, ask.name)
                stale = entry
        flight = self._inflight.get(ask.key)
        if flight is not None:
            self._coalesced += 1
            if flight.stale_served and stale is not None:
                return self._stale_outcome(stale, ask.name)
            flight.waiters.append(done)
            self._stale_timer(flight, stale)
            return None
        flight = self._flight(ask, deadline)
        flight.waiters.append(done)
        self._stale_timer(flight, stale)
        self._take_off(flight)
        return None

    # ----------------------------------------------------------------- policy

    def _policed(
        self,
        policy: Policy,
        ask: Ask,
        deadline: float,
        done: Waiter,
        client: Client | None,
        depth: int,
    ) -> Outcome | None:
        """``answer`` under the response policy: its question triggers first, then the
        answer's (CNAME chain, addresses) before the client gets it."""
        hit = policy.before(ask.key.name, client)
        if hit is not None:
            return self._enforce(policy, hit, ask, deadline, done, client, depth, None)

        def checked(outcome: Outcome) -> None:
            final = self._checked(policy, ask, outcome, deadline, done, client, depth)
            if final is not None:
                done(final)

        outcome = self._resolve(ask, deadline, checked)
        if outcome is None:
            return None
        return self._checked(policy, ask, outcome, deadline, done, client, depth)

    def _checked(
        self,
        policy: Policy,
        ask: Ask,
        outcome: Outcome,
        deadline: float,
        done: Waiter,
        client: Client | None,
        depth: int,
    ) -> Outcome | None:
        if outcome.reply is not None:
            path = None
            if policy.servers_checked and self.delegations is not None:
                path = self._servers_on_path
            hit = policy.after(outcome.reply, ask.key.name, client, path)
            if hit is not None:
                return self._enforce(policy, hit, ask, deadline, done, client, depth, outcome)
        if policy.client_dependent and outcome.until:
            # Another client may get another answer: the server must not repeat this one.
            return outcome._replace(until=0.0)
        return outcome

    def _servers_on_path(self, name: bytes) -> list[NameServers]:
        """The zone cuts a recursive resolution of ``name`` follows, as the delegation cache
        knows them now (just learnt for a fresh answer), with their name servers' known
        addresses (when a zone has rpz-nsip triggers); none for a name under a domain
        forwarded to upstreams."""
        delegations = self.delegations
        assert delegations is not None
        if self._route(name).upstreams:
            return []
        now = (self._loop or asyncio.get_running_loop()).time()  # the iterations' clock
        policy = self.response_policy
        with_addresses = policy is not None and policy.nsips_checked
        found = []
        for cut in delegations.cuts(name, now):
            addresses: list[str] = []
            if with_addresses:  # only rpz-nsip triggers read them
                for server in cut.servers:
                    addresses += delegations.addresses(server, now) or ()
            found.append(NameServers(cut.name, cut.servers, tuple(addresses)))
        return found

    def _enforce(
        self,
        policy: Policy,
        hit: Hit,
        ask: Ask,
        deadline: float,
        done: Waiter,
        client: Client | None,
        depth: int,
        answered: Outcome | None,
    ) -> Outcome | None:
        """Apply ``hit`` to ``ask`` (``answered``: the resolver's answer, when the hit was on
        it). A policy answer is made for this client alone: never cached, never repeated."""
        key = (hit.source, hit.rule.action)
        self._policy_hits[key] = self._policy_hits.get(key, 0) + 1
        response = respond(hit, ask.name, ask.qtype, client)
        if response.passthru:
            if answered is not None:
                return answered._replace(until=0.0) if policy.client_dependent else answered
            return self._resolve(ask, deadline, done)
        self._answered += 1
        if response.reply is None or response.follow is None:
            return Outcome(response.reply, hit.ede, 0.0, hit)
        if depth >= _MAX_REWRITES:
            return Outcome(None, None, 0.0)  # a loop of rewrites: SERVFAIL
        prefix = response.reply
        target = Ask.of(response.follow, ask.qtype, ask.qclass, ask.do, ask.cd)

        def followed(outcome: Outcome) -> None:
            done(self._spliced(prefix, outcome, hit))

        outcome = self._policed(policy, target, deadline, followed, client, depth + 1)
        return None if outcome is None else self._spliced(prefix, outcome, hit)

    @staticmethod
    def _spliced(prefix: bytes, outcome: Outcome, hit: Hit) -> Outcome:
        """A rewrite's CNAME before the answer for its target."""
        if outcome.reply is None:  # the target failed (SERVFAIL), or was dropped
            return outcome._replace(until=0.0)
        try:
            reply = splice(prefix, outcome.reply)
        except WireError:
            return Outcome(None, None, 0.0)  # an unusable answer for the target: SERVFAIL
        return Outcome(reply, hit.ede, 0.0, hit)

    def _stale_timer(self, flight: _Flight, stale: CacheEntry | None) -> None:
        """With a stale answer at hand, waiting clients get it after 1.8 s at the latest."""
        if stale is not None and flight.timer is None:
            flight.stale = stale
            loop = self._loop or asyncio.get_running_loop()
            flight.timer = loop.call_at(
                loop.time() + _STALE_ANSWER_AFTER, self._answer_stale_now, flight
            )

    def _stale_outcome(self, entry: CacheEntry, name: bytes) -> Outcome:
        assert self.cache is not None
        self._stale_answers += 1
        self._answered += 1
        return Outcome(self.cache.serve(entry, 0, name), EDE_STALE_ANSWER, 0.0)

    # ----------------------------------------------------------------- driving

    def route(self, name: bytes) -> str:
        """The domain whose upstreams get the questions for ``name`` (lowercase wire form);
        ``"."`` for the default upstreams."""
        return self._route(name).name

    def _route(self, name: bytes) -> _Route:
        routes = self._routes
        if routes:
            for suffix in ancestors(name):
                route = routes.get(suffix)
                if route is not None:
                    return route
        return self._default

    def _flight(self, ask: Ask, deadline: float) -> _Flight:
        """A new flight for ``ask``, registered as in flight; ``_take_off`` starts it."""
        route = self._route(ask.key.name)
        decision: Decision
        if route.upstreams and self.validator is not None:
            decision = ValidatingForwarding(
                route.selector,
                self.config.upstream_timeout,
                deadline,
                validator=self.validator,
                qtype=ask.qtype,
                do=ask.do,
                servers=route.names,
            )
        elif route.upstreams:
            decision = Forwarding(route.selector, self.config.upstream_timeout, deadline)
        else:
            assert self.recursion is not None
            assert self.delegations is not None
            decision = Iteration(
                ask.name,
                ask.qtype,
                ask.qclass,
                deadline,
                config=self.recursion,
                delegations=self.delegations,
                times=self._times,
                families=self._families,
                rng=self._rng,
                validator=self.validator,
                do=ask.do,
                aggressive_nsec=self._aggressive_nsec and not ask.cd,
            )
        flight = _Flight(self, ask, route, decision)
        self._inflight[ask.key] = flight
        return flight

    def _take_off(self, flight: _Flight) -> None:
        # Last, once waiters are in place: the first action may already conclude the flight.
        loop = self._loop or asyncio.get_running_loop()
        self._perform(flight, flight.decision.start(loop.time()))

    def _prefetch(self, ask: Ask) -> None:
        if ask.key in self._inflight:
            return
        self._prefetches += 1
        loop = self._loop or asyncio.get_running_loop()
        self._take_off(self._flight(ask, loop.time() + self.query_timeout))

    def _look_up(self, lookups: tuple[tuple[bytes, int], ...]) -> None:
        """Name servers' addresses an iteration wants beside its own query (Unbound's
        parallel target fetches): each is a question of its own, as a prefetch is, with no
        waiter; coalesced with one in flight, skipped when the cache answers it. Their
        iterations store what they find in the RRset cache every iteration reads."""
        loop = self._loop or asyncio.get_running_loop()
        cache = self.cache
        for name, qtype in lookups:
            ask = Ask.of(name, qtype, CLASS_IN, do=False, cd=False)
            if ask.key in self._inflight:
                continue
            if cache is not None:
                hit = cache.get(ask.key)
                if hit is not None and hit.freshness is Freshness.FRESH:
                    continue
            self._take_off(self._flight(ask, loop.time() + self.query_timeout))

    def _advance(self, flight: _Flight, reply: ReplyView | None, exc: BaseException | None) -> None:
        """The transport reported on the flight's exchange: decide and do the next step."""
        loop = self._loop or asyncio.get_running_loop()
        flight.exchange = None
        if reply is not None:
            action = flight.decision.on_reply(reply, loop.time())
        else:
            assert exc is not None
            if isinstance(exc, UpstreamError):
                self._events.log(
                    logging.INFO,
                    (exc.server, type(exc)),
                    "upstream failure: %s",
                    exc,
                )
            action = flight.decision.on_failure(exc, loop.time())
        self._perform(flight, action)

    def _perform(self, flight: _Flight, action: Action) -> None:
        if isinstance(action, Done):
            self._conclude(flight, action)
            return
        if isinstance(action, Query):
            servers = self.servers
            assert servers is not None
            self._upstream_queries += 1
            query, question = servers.build_query(
                action.name,
                action.qtype,
                flight.ask.qclass,
                edns=action.edns,
                randomize_case=action.randomize_case,
                do=action.do,
            )
            flight.exchange = servers.send(
                action.server,
                query,
                question,
                deadline=action.deadline,
                report=flight.report,
                tcp=action.tcp,
                case_exact=action.randomize_case,
            )
            if action.lookups:
                self._look_up(action.lookups)
            return
        upstream = flight.route.upstreams[action.upstream]
        self._upstream_queries += 1
        if action.failover:
            self._failovers += 1
        ask = flight.ask
        # AD is always asked for (RFC 6840 section 5.7): the server clears it in replies to
        # clients that asked for neither AD nor DO, so one cached answer serves both kinds.
        name, qtype = action.question or (ask.name, ask.qtype)
        query, question = upstream.build_query(
            name,
            qtype,
            ask.qclass,
            cd=ask.cd or action.dnssec,
            do=ask.do or action.dnssec,
            ad=True,
            edns=action.edns,
        )
        flight.exchange = upstream.send(
            query, question, deadline=action.deadline, report=flight.report, tcp=action.tcp
        )

    def _conclude(self, flight: _Flight, done: Done) -> None:
        """The flight is over: store what it got, answer everyone who waits for it."""
        key = flight.ask.key
        if self._inflight.get(key) is flight:
            del self._inflight[key]
            if not self._inflight and self._emptied is not None:
                self._emptied.set()
        if flight.timer is not None:
            flight.timer.cancel()
        view = done.reply  # in the form we store and serve (see Done), read once
        if done.synthesised:
            self._synthesised += 1
        extra: int | None = None  # an EDE that goes with the answer (an insecure one's)
        if done.verdict is not None and view is not None:
            view, done, extra = self._judged(flight, view, done)
        reply = view.message if view is not None else None
        cache = self.cache
        if view is not None and cache is not None:
            try:  # noqa: SIM105
                cache.put(key, view, ede=extra)
            except WireError:
                pass  # a reply the cache cannot take is still relayed: the client gets it
        failed = reply is None or reply[3] & 0x0F in (SERVFAIL, REFUSED)
        waiters = flight.waiters
        flight.waiters = []
        if failed and cache is not None:
            # RFC 8767 section 5: an answer whose refresh failed is served stale, at once and
            # without asking again for a while; RFC 9520: with nothing to serve, the failure
            # is remembered, so repeats of the question do not each wait for the servers.
            stale = cache.hold(key) or flight.stale
            if stale is not None:
                for waiter in waiters:
                    waiter(self._stale_outcome(stale, flight.ask.name))
                return
            if reply is None:
                cache.fail(key, done.ede)
        outcome = Outcome(reply, extra if reply is not None else done.ede, 0.0)
        if reply is None:
            self._failed += len(waiters)
        else:
            self._answered += len(waiters)
        for waiter in waiters:
            waiter(outcome)

    def _judged(
        self, flight: _Flight, view: ReplyView, done: Done
    ) -> tuple[ReplyView | None, Done, int | None]:
        """What the DNSSEC verdict does to the answer (``validation.answering``): the
        reply (None: SERVFAIL), the Done to conclude with, and an EDE to attach."""
        verdict = done.verdict
        assert verdict is not None
        self._verdicts[verdict.security] += 1
        ask = flight.ask
        how = answering(verdict, mode=self.validation, ad=True, do=ask.do, cd=ask.cd)
        if how.log_bogus:
            # In Unbound's words at val-log-level 2: the question, what failed, from which
            # server, for which RRset or key; then the EDE the client gets.
            self._events.log(
                logging.WARNING,
                ("bogus", verdict.reason),
                "validation failure <%s>: %s (EDE %s%s)%s",
                _question_text(ask.name, ask.qtype, ask.qclass),
                verdict.reason or "bogus",
                verdict.ede,
                "" if how.servfail else "; permissive: answered anyway",
                self._private_root_hint(),
            )
        if how.servfail:
            return None, Done(None, how.ede, verdict), None
        message = view.message
        if not how.ad and message[3] & AD:  # AD is in the flags word's low octet
            view = scan(message[:3] + bytes((message[3] & ~AD & 0xFF,)) + message[4:])
        return view, done, how.ede

    def _private_root_hint(self) -> str:
        """A word for whoever points ``root_hints`` at a private root but keeps IANA's
        anchor: every answer is then bogus, as Unbound would have it."""
        recursion, validator = self.recursion, self.validator
        if recursion is None or validator is None:
            return ""
        root = validator.keys_for(dns.name.root)
        if not isinstance(root, ZoneKeys) or root.security is not Security.BOGUS:
            return ""
        return (
            f"; the root servers of {recursion.root_hints or 'the root hints'} do not match "
            "the trust anchor: give their root's anchor (--trust-anchor, [dnssec] "
            'trust_anchors) or set [dnssec] validation = "off"'
        )

    def _answer_stale_now(self, flight: _Flight) -> None:
        """The refresh is slow: whoever waits gets the stale answer; it goes on for the cache."""
        flight.timer = None
        stale = flight.stale
        if stale is None:
            return
        flight.stale_served = True
        waiters = flight.waiters
        flight.waiters = []
        for waiter in waiters:
            waiter(self._stale_outcome(stale, flight.ask.name))

    def statistics(self) -> EngineStatistics:
        return EngineStatistics(
            queries=self._queries,
            answered=self._answered,
            failed=self._failed,
            failovers=self._failovers,
            cache_answers=self._cache_answers,
            local_answers=self._local_answers,
            coalesced=self._coalesced,
            prefetches=self._prefetches,
            stale_answers=self._stale_answers,
            upstream_queries=self._upstream_queries,
            upstreams=tuple(u.statistics() for u in self._pools),
            cache=self.cache.statistics() if self.cache is not None else None,
            servers=self.servers.statistics() if self.servers is not None else None,
            zones=self.delegations.statistics()[0] if self.delegations is not None else 0,
            secure=self._verdicts[Security.SECURE],
            insecure=self._verdicts[Security.INSECURE],
            bogus=self._verdicts[Security.BOGUS],
            indeterminate=self._verdicts[Security.INDETERMINATE],
            synthesised=self._synthesised,
            policy_hits=tuple((s, a, n) for (s, a), n in sorted(self._policy_hits.items())),
        )

    def __repr__(self) -> str:
        s = self.statistics()
        mode = "recursive " if self.recursion is not None else ""
        return (
            f"<Engine {mode}upstreams={len(self.upstreams)} domains={len(self._routes)} "
            f"policy={self.config.policy} "
            f"queries={s.queries} answered={s.answered} failed={s.failed} "
            f"inflight={len(self._inflight)}>"
        )


def _validator(config: DnssecConfig) -> Validator:
    """A validator from ``config``'s anchors (a bad file raises ConfigError)."""
    if config.trust_anchors is not None:
        anchors = read_trust_anchors(config.trust_anchors)
    else:
        anchors = root_anchors()
    anchors = anchors.with_negative(config.negative_trust_anchors)
    return Validator(
        anchors, nsec3_iterations=config.nsec3_max_iterations, bogus_ttl=config.bogus_ttl
    )


def _question_text(name: bytes, qtype: int, qclass: int) -> str:
    """``www.example. A IN``, as Unbound's log shows a question."""
    labels = []
    pos = 0
    while pos < len(name) and name[pos]:
        labels.append(name[pos + 1 : pos + 1 + name[pos]].decode("ascii", "replace"))
        pos += name[pos] + 1
    rdtype = dns.rdatatype.to_text(dns.rdatatype.RdataType.make(qtype))
    rdclass = dns.rdataclass.to_text(dns.rdataclass.RdataClass.make(qclass))
    return f"{'.'.join(labels)}. {rdtype} {rdclass}"
