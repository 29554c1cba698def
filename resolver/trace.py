"""``resolver query +trace``: one question resolved from the root hints as recursive mode
resolves it, each exchange shown as it happens.

The decisions are recursive mode's own :class:`~resolver.engine.iteration.Iteration`; this
module is only a blocking driver for it. Each ``Query`` it asks for is performed with the stub
client's sockets (:func:`resolver.stub.exchange`: a fresh socket, so a fresh source port the
kernel picks, and a random ID per query; UDP, or TCP when the Query says so; 0x20 as the
Query says; strict reply matching), with RD clear and one try, and the reply or the failure
goes back to the iteration. Every :class:`~resolver.engine.iteration.Step` it records is
shown at once, one line each (:func:`format_step`, under :func:`heading`). No event loop and
no cache: each question starts at the root, with a validator of its own.

Servers are asked with DO, as ``dig +trace`` asks: under each referral come the DS records
the parent gave, with their RRSIGs, or the NSEC/NSEC3 records proving there are none
(:class:`~resolver.trust_trace.TrustTrace`). With trust anchors the trace validates, as
recursive mode does: the DNSKEY sets it fetches are shown with their keys, and at the end
each zone's verdict and why.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import NamedTuple

from resolver.config import RecursionConfig
from resolver.dig import Reply, decode, server_text
from resolver.engine import EDE_NETWORK_ERROR, EDE_NO_REACHABLE_AUTHORITY
from resolver.engine.actions import Done, Query
from resolver.engine.delegations import Delegations, ServerTimes
from resolver.engine.hints import RootHints
from resolver.engine.iteration import Iteration, Step
from resolver.engine.validation import TrustAnchors, Validator
from resolver.errors import (
    BadResponse,
    ConfigError,
    UpstreamError,
    UpstreamUnreachable,
    WireError,
)
from resolver.query import MAX_TIMEOUT, QueryOptions, Question
from resolver.stub import Exchange, exchange, server_name
from resolver.trust_trace import TrustTrace
from resolver.wire import name_to_text, qtype_name
from resolver.wire.view import scan

__all__ = ["Trace", "format_step", "heading", "trace"]

Echo = Callable[[str], None]
Clock = Callable[[], float]

_EDNS_SIZE = 1232  # what recursive mode advertises (transport.edns_size's default)
# Column widths of a step line: server, zone, question, time; the outcome ends the line.
_WIDTHS = (21, 15, 31, 9)


class Trace(NamedTuple):
    """How a trace ended: the final ``reply`` (as recursive mode would answer, decoded for
    dig's formatting; server, transport and time are the last exchange's), or None and
    ``failure`` saying why in a few words; ``queries`` sent in all and the whole trace's
    ``elapsed`` seconds."""

    reply: Reply | None
    failure: str | None
    queries: int
    elapsed: float


def _options(action: Query, now: float, tcp: bool) -> QueryOptions:
    """The stub's options for one Query: one try until its deadline, RD and AD clear, EDNS
    as the iteration says, a truncated reply kept (the iteration decides about TCP)."""
    timeout = min(max(action.deadline - now, 0.001), MAX_TIMEOUT)
    return QueryOptions(
        timeout=timeout,
        tries=1,
        tcp=action.tcp or tcp,
        ignore_tc=True,
        recurse=False,
        ad=False,
        dnssec=action.do,
        edns=_EDNS_SIZE if action.edns else None,
    )


def trace(
    question: Question,
    *,
    config: RecursionConfig,
    hints: RootHints,
    families: frozenset[int],
    echo: Echo,
    tcp: bool = False,
    clock: Clock = time.monotonic,
    anchors: TrustAnchors | None = None,
) -> Trace:
    """Resolve ``question`` from ``hints`` with the Iteration, asking every server on
    ``config.port``, only at addresses of ``families`` (4, 6), over TCP throughout with
    ``tcp``. Each step is written with ``echo`` as it happens (see :func:`format_step`,
    under :func:`heading`), and so is each stray reply, in dig's words, and at the end the
    number of queries and the time. Never raises for a server's sake: failures are the
    iteration's to handle, and end in ``Trace.failure``.

    Servers are asked with DO, and under each referral come the DS records it holds or the
    proof that there are none. With ``anchors`` the trace validates from them: the DS and
    DNSKEY sets the validator needs are fetched as steps of their own (each saying what it
    made of its zone, a DNSKEY set followed by its keys), and at the end come each zone's
    verdict and why (``;; chain of trust, zone by zone:``) and the verdict on the answer
    (``;; DNSSEC: secure ...``)."""
    validator = None if anchors is None else Validator(anchors)
    trust = TrustTrace(anchors)
    steps: list[Step] = []
    started = clock()
    deadline = started + config.query_timeout
    iteration = Iteration(
        question.wire_name,
        question.qtype,
        question.qclass,
        deadline,
        config=config,
        delegations=Delegations(hints, config.max_zones),
        times=ServerTimes(),
        families=families,
        steps=steps,
        validator=validator,
        do=True,  # as dig +trace asks: the DS records at referrals come back
    )
    echo(heading())
    action = iteration.start(started)
    shown = 0
    answered: tuple[Query, Exchange] | None = None
    while isinstance(action, Query):
        asked = Question(name_to_text(action.name), action.qtype, question.qclass)
        data: bytes | None = None
        try:
            done = exchange(
                action.server,
                asked,
                _options(action, clock(), tcp),
                echo,
                randomize_case=action.randomize_case,
            )
        except UpstreamError as exc:
            next_action = iteration.on_failure(exc, clock())
        except ConfigError as exc:  # no socket toward this server can be opened here
            unreachable = UpstreamUnreachable(server_name(action.server), exc.reason)
            next_action = iteration.on_failure(unreachable, clock())
        else:
            try:
                view = scan(done.data)
            except WireError as exc:  # ours, but its records cannot be read
                bad = BadResponse(server_name(action.server), f"malformed reply: {exc}")
                next_action = iteration.on_failure(bad, clock())
            else:
                answered = action, done
                data = done.data
                next_action = iteration.on_reply(view, clock())
        for index in range(shown, len(steps)):
            for line in format_step(steps[index], steps[index - 1] if index else None):
                echo(line)
            for line in trust.step(steps[index], data):
                echo(line)
        shown = len(steps)
        action = next_action
    ended = clock()
    echo(f";; {_queries(iteration.queries)} in {(ended - started) * 1000:.0f} ms")
    if validator is not None:
        for line in trust.summary(validator):
            echo(line)
    verdict = action.verdict
    if verdict is not None:
        ede = "" if verdict.ede is None else f" (EDE {verdict.ede})"
        reason = f": {verdict.reason}" if verdict.reason else ""
        echo(f";; DNSSEC: {verdict.security.name.lower()}{ede}{reason}")
    reply = None
    if action.reply is not None:
        assert answered is not None  # the reply is built from what a server said
        query, done = answered
        reply = Reply(
            decode(action.reply.message),
            query.server,
            done.transport,
            done.elapsed,
            datetime.now().astimezone(),
        )
    queries = iteration.queries
    if reply is not None:
        return Trace(reply, None, queries, ended - started)
    if ended >= deadline:
        failure = f"no answer within {config.query_timeout:g} s"
    elif queries >= config.max_queries:
        failure = f"gave up after {queries} queries (the limit)"
    else:
        failure = _failure(action, steps, queries)
    return Trace(None, failure, queries, ended - started)


def _queries(count: int) -> str:
    return f"{count} quer{'y' if count == 1 else 'ies'}"


def _question_text(name: bytes, qtype: int) -> str:
    return f"{name_to_text(name)} {qtype_name(qtype)}"


def format_step(step: Step, previous: Step | None) -> list[str]:
    """The lines for ``step`` (``previous``: the step shown before it, None for the first):
    one line with the server asked, the zone it was asked as a server of, the question, the
    time and the outcome; before it, a comment when a name server lookup starts or ends."""
    lines = []
    before = None if previous is None else previous.lookup
    if step.lookup != before:
        if step.lookup is not None:
            lines.append(f";; looking up {name_to_text(step.lookup)}, a name server without glue")
        else:
            lines.append(";; back to the question")
    fields = (
        server_text(step.server),
        name_to_text(step.zone),
        _question_text(step.name, step.qtype),
        f"{step.elapsed * 1000:.1f} ms",
    )
    lines.append(_row(*fields, step.outcome))
    return lines


def heading() -> str:
    """The comment over the step lines, naming the columns."""
    return _row("; SERVER", "ZONE", "QUESTION", "TIME", "OUTCOME")


def _row(server: str, zone: str, question: str, took: str, outcome: str) -> str:
    """One line of the columns (the time right-aligned; a long field pushes the rest on)."""
    widths = _WIDTHS
    return (
        f"{server:<{widths[0]}} {zone:<{widths[1]}} {question:<{widths[2]}} "
        f"{took:>{widths[3]}}  {outcome}"
    )


def _failure(done: Done, steps: list[Step], queries: int) -> str:
    """Why the iteration ended without a reply, from its EDE and its last step."""
    last = steps[-1] if steps else None
    if last is None:
        return "no server could be asked (no root server address usable here)"
    if done.ede is None:
        return last.outcome  # it gave up on what the servers said: a CNAME loop, say
    zone = name_to_text(last.zone)
    if done.ede == EDE_NETWORK_ERROR:
        return f"no server of {zone} could be reached (after {_queries(queries)})"
    assert done.ede == EDE_NO_REACHABLE_AUTHORITY, done
    return f"no server of {zone} gave a usable answer (after {_queries(queries)})"
