"""Forwarding with DNSSEC validation: the decisions for one forwarded question when
``[dnssec] validation`` is on in forward mode (Unbound's validator behind a forward zone), as
plain code: no I/O, no clock of its own.

The client's question goes to the upstreams as ``forwarding.Forwarding`` sends it, but always
with DO and CD (the upstream's own validation must not hide bogus data from ours); the reply
is judged by the validator, and the DS and DNSKEY sets it lacks are asked of the same
upstreams, each a forwarded question of its own (DO and CD too). The verdict goes with the
reply (``Done.verdict``) for the driver to apply (AD, SERVFAIL with EDE). An upstream that
strips signatures makes signed data bogus (EDE 10, RRSIGs Missing), never silently insecure.

The reply given keeps its RRSIGs and NSEC/NSEC3 records only when the client asked with DO;
AD is set when the verdict is secure, whatever the upstream said.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import dns.name

from resolver.engine.actions import Done, Send
from resolver.engine.forwarding import Forwarding
from resolver.engine.selection import Selector
from resolver.engine.validation import (
    EDE_DNSSEC_BOGUS,
    Need,
    NeedDNSKEY,
    NeedDS,
    Outcome,
    Reply,
    Security,
    Validator,
)
from resolver.errors import WireError
from resolver.wire.raw import AD
from resolver.wire.records import build_reply, read_message
from resolver.wire.view import ReplyView, scan

__all__ = ["ValidatingForwarding"]

_TYPE_DS = 43
_TYPE_RRSIG = 46
_TYPE_NSEC = 47
_TYPE_DNSKEY = 48
_TYPE_NSEC3 = 50
_DNSSEC_TYPES = frozenset({_TYPE_RRSIG, _TYPE_NSEC, _TYPE_NSEC3})

Action = Send | Done


class ValidatingForwarding:
    """One forwarded question, validated (see the module). ``name``, ``qtype`` and ``do``
    are the client's question and its DO bit."""

    __slots__ = (
        "_answer",
        "_answered_by",
        "_deadline",
        "_do",
        "_forwarding",
        "_needs",
        "_qtype",
        "_selector",
        "_sent",
        "_servers",
        "_timeout",
        "_validator",
    )

    def __init__(
        self,
        selector: Selector,
        upstream_timeout: float,
        deadline: float,
        *,
        validator: Validator,
        qtype: int,
        do: bool,
        servers: Sequence[str] = (),
    ) -> None:
        self._selector = selector
        # The upstreams' names by index, and the one asked last: the server a bogus
        # verdict's reason names, as Unbound's does behind a forward zone.
        self._servers = servers
        self._sent = ""
        self._timeout = upstream_timeout
        self._deadline = deadline
        self._validator = validator
        self._qtype = qtype
        self._do = do
        self._forwarding = Forwarding(selector, upstream_timeout, deadline)
        self._answer: ReplyView | None = None
        self._answered_by = ""
        # The DS and DNSKEY sets being fetched, each with its reply once it came; the last is
        # the one asked now, those below it wait for it.
        self._needs: list[tuple[Need, Reply | None]] = []

    def start(self, now: float) -> Action:
        return self._step(self._forwarding.start(now), now)

    def on_reply(self, reply: ReplyView, now: float) -> Action:
        return self._step(self._forwarding.on_reply(reply, now), now)

    def on_failure(self, exc: BaseException, now: float) -> Action:
        return self._step(self._forwarding.on_failure(exc, now), now)

    def _step(self, action: Action, now: float) -> Action:
        if isinstance(action, Send):
            servers = self._servers
            self._sent = servers[action.upstream] if action.upstream < len(servers) else ""
            if not self._needs:
                return action._replace(dnssec=True)
            need = self._needs[-1][0]
            qtype = _TYPE_DS if isinstance(need, NeedDS) else _TYPE_DNSKEY
            wire = need.zone.canonicalize().to_wire()
            assert wire is not None
            return action._replace(dnssec=True, question=(wire, qtype))
        if not self._needs:  # the client's question
            if action.reply is None or action.reply.message[3] & 0x0F not in (0, 3):
                return action  # no answer, or an error: relayed as forwarding relays it
            self._answer = action.reply
            self._answered_by = self._sent
            return self._judge(now)
        if action.reply is None:
            return action  # a key set the upstreams would not give: the answer cannot be judged
        self._needs[-1] = (self._needs[-1][0], _reply(action.reply.message, self._sent))
        return self._learn(now)

    def _learn(self, now: float) -> Action:
        """The last set asked for came: learn it, then the sets that waited for it (each
        from its own reply), then judge the answer again."""
        validator = self._validator
        while self._needs:
            need, reply = self._needs[-1]
            if reply is None:
                return Done(None, EDE_DNSSEC_BOGUS)  # unreadable
            if isinstance(need, NeedDS):
                learned = validator.learn_ds(need.zone, reply)
            else:
                learned = validator.learn_dnskey(need.zone, reply)
            # A DS set learnt asks for the zone's DNSKEY set next: that is no reason to
            # learn the DS set again once the keys are in.
            if isinstance(learned, NeedDS | NeedDNSKEY) and learned != NeedDNSKEY(need.zone):
                return self._fetch(learned, now)
            self._needs.pop()
        return self._judge(now)

    def _judge(self, now: float) -> Action:
        assert self._answer is not None
        reply = _reply(self._answer.message, self._answered_by)
        if reply is None:
            verdict: Outcome | Need = Outcome(Security.BOGUS, EDE_DNSSEC_BOGUS, "unreadable")
        else:
            verdict = self._validator.validate(reply)
        if isinstance(verdict, NeedDS | NeedDNSKEY):
            return self._fetch(verdict, now)
        try:
            shaped = self._shape(self._answer, verdict.secure)
        except WireError:
            return Done(None, EDE_DNSSEC_BOGUS, verdict)
        return Done(shaped, None, verdict)

    def _fetch(self, need: Need, now: float) -> Action:
        if any(need == waiting for waiting, _ in self._needs):
            return Done(None, EDE_DNSSEC_BOGUS)  # the chain of trust goes round in a circle
        self._needs.append((need, None))
        self._forwarding = Forwarding(self._selector, self._timeout, self._deadline)
        return self._step(self._forwarding.start(now), now)

    def _shape(self, view: ReplyView, secure: bool) -> ReplyView:
        """The reply for the client: AD as the verdict says, and without the DNSSEC records
        it did not ask for (no DO)."""
        message = view.message
        if self._do:
            low = (message[3] & ~AD & 0xFF) | (AD if secure else 0)
            return scan(message[:3] + bytes((low,)) + message[4:])
        read = read_message(message)
        question = read.question
        assert question is not None
        keep = self._qtype

        def wanted(record_type: int) -> bool:
            return record_type not in _DNSSEC_TYPES or record_type == keep

        answer = [r for r in read.answer if wanted(r.rtype)]
        authority = [r for r in read.authority if wanted(r.rtype)]
        flags = (read.flags & ~AD) | (AD if secure else 0)
        reply = build_reply(
            question.name,
            question.qtype,
            question.qclass,
            read.rcode,
            answer,
            authority,
            flags=flags,
        )
        return scan(reply)


def _reply(message: bytes, server: str) -> Reply | None:
    try:
        return dataclasses.replace(Reply.from_wire(message), server=server)
    except (WireError, ValueError, dns.name.NameTooLong):
        return None
