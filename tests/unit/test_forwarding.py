"""The forwarding decisions without sockets: events in, actions out."""

from __future__ import annotations

import struct

import pytest

from resolver.config import ForwarderConfig
from resolver.engine.forwarding import (
    EDE_NETWORK_ERROR,
    EDE_NO_REACHABLE_AUTHORITY,
    Done,
    Forwarding,
    Send,
)
from resolver.engine.selection import Selector
from resolver.errors import BadResponse, LocalError, UpstreamTimeout, UpstreamUnreachable
from resolver.wire.view import ReplyView, scan

TIMEOUT = 2.0


def decide(count: int = 2, deadline: float = 10.0, **config: object) -> tuple[Forwarding, Selector]:
    selector = Selector(count, ForwarderConfig(upstream_timeout=TIMEOUT, **config))  # type: ignore[arg-type]
    return Forwarding(selector, TIMEOUT, deadline), selector


def reply(rcode: int = 0, tc: bool = False) -> ReplyView:
    """The view of a reply in the form the engine serves (RA set, AA clear, no OPT), one
    question, as the transport reports it."""
    header = struct.pack("!6H", 1, 0x8080 | (0x0200 if tc else 0) | rcode, 1, 0, 0, 0)
    return scan(header + b"\x07example\x03com\x00" + struct.pack("!HH", 1, 1))


def test_starts_with_the_first_upstream_over_udp_with_edns() -> None:
    forwarding, _ = decide()
    assert forwarding.start(0.0) == Send(0, False, True, TIMEOUT, False)


def test_an_answer_ends_the_query_with_it() -> None:
    forwarding, selector = decide()
    forwarding.start(0.0)
    assert forwarding.on_reply(reply(), 0.05) == Done(reply(), None)
    assert selector.srtt(0) == pytest.approx(0.05)


def test_truncated_udp_is_asked_again_over_tcp_once() -> None:
    forwarding, _ = decide()
    forwarding.start(0.0)
    assert forwarding.on_reply(reply(tc=True), 0.1) == Send(0, True, True, 0.1 + TIMEOUT, False)
    # A TC bit over TCP is relayed as it is: no third query.
    assert forwarding.on_reply(reply(tc=True), 0.2) == Done(reply(tc=True), None)


def test_formerr_to_edns_is_asked_again_without_edns_then_fails_over() -> None:
    forwarding, _ = decide()
    forwarding.start(0.0)
    assert forwarding.on_reply(reply(1), 0.1) == Send(0, False, False, 0.1 + TIMEOUT, False)
    assert forwarding.on_reply(reply(1), 0.2) == Send(1, False, True, 0.2 + TIMEOUT, True)


@pytest.mark.parametrize("rcode", [2, 5], ids=["servfail", "refused"])
def test_an_error_rcode_fails_over_and_is_relayed_if_nobody_does_better(rcode: int) -> None:
    forwarding, _ = decide()
    forwarding.start(0.0)
    assert forwarding.on_reply(reply(rcode), 0.1) == Send(1, False, True, 0.1 + TIMEOUT, True)
    # The second is silent; the first already answered, so it is not asked again.
    action = forwarding.on_failure(UpstreamTimeout("b", "silent"), 2.1)
    assert action == Send(1, False, True, 2.1 + TIMEOUT, False)
    assert forwarding.on_failure(UpstreamTimeout("b", "silent"), 4.1) == Done(reply(rcode), None)


def test_silent_upstreams_get_one_try_each_then_a_second_round() -> None:
    forwarding, _ = decide()
    forwarding.start(0.0)
    sends = [forwarding.on_failure(UpstreamTimeout("x", ""), t) for t in (2.0, 4.0, 6.0)]
    assert [s.upstream for s in sends if isinstance(s, Send)] == [1, 0, 1]
    assert forwarding.on_failure(UpstreamTimeout("x", ""), 8.0) == Done(
        None, EDE_NO_REACHABLE_AUTHORITY
    )


def test_the_deadline_ends_the_query() -> None:
    forwarding, _ = decide(deadline=3.0)
    assert forwarding.start(0.0) == Send(0, False, True, 2.0, False)
    assert forwarding.on_failure(UpstreamTimeout("a", ""), 2.0) == Send(1, False, True, 3.0, True)
    assert forwarding.on_failure(UpstreamTimeout("b", ""), 3.0) == Done(
        None, EDE_NO_REACHABLE_AUTHORITY
    )


def test_unreachable_upstreams_are_not_asked_again_and_say_network_error() -> None:
    forwarding, _ = decide()
    forwarding.start(0.0)
    forwarding.on_failure(UpstreamUnreachable("a", "refused"), 0.01)
    assert forwarding.on_failure(UpstreamUnreachable("b", "refused"), 0.02) == Done(
        None, EDE_NETWORK_ERROR
    )


def test_a_local_failure_moves_on_without_blaming_the_upstream() -> None:
    forwarding, selector = decide(down_after=1)
    forwarding.start(0.0)
    assert forwarding.on_failure(LocalError("no socket"), 0.1) == Send(
        1, False, True, 0.1 + TIMEOUT, True
    )
    assert not selector.is_down(0, 0.2)
    assert selector.srtt(0) is None


def test_a_timeout_marks_the_upstream_down_and_raises_its_rtt() -> None:
    forwarding, selector = decide(down_after=1)
    forwarding.start(0.0)
    forwarding.on_failure(UpstreamTimeout("a", ""), 2.0)
    assert selector.is_down(0, 2.1)
    assert selector.srtt(0) == 2 * TIMEOUT  # backed off: twice what was waited


def test_a_bad_tcp_reply_fails_over() -> None:
    forwarding, _ = decide()
    forwarding.start(0.0)
    assert isinstance(forwarding.on_failure(BadResponse("a", "closed"), 0.1), Send)


def with_opt(reply: ReplyView, ext_rcode: int = 0) -> bytes:
    """The reply with an OPT record appended (its extended rcode bits as given)."""
    message = reply.message
    arcount = struct.unpack_from("!H", message, 10)[0] + 1
    opt = b"\x00" + struct.pack("!HHBBHH", 41, 1232, ext_rcode, 0, 0, 0)
    return message[:10] + struct.pack("!H", arcount) + message[12:] + opt


def test_the_relayed_reply_is_in_served_form_without_opt_and_aa() -> None:
    forwarding, _ = decide()
    forwarding.start(0.0)
    upstream = bytearray(with_opt(reply()))
    upstream[2] |= 0x04  # AA from the upstream: not ours to claim
    assert forwarding.on_reply(scan(bytes(upstream)), 0.05) == Done(reply(), None)


def test_a_reply_whose_opt_cannot_be_removed_moves_on_to_the_next_upstream() -> None:
    forwarding, _ = decide()
    first = forwarding.start(0.0)
    assert isinstance(first, Send)
    action = forwarding.on_reply(scan(with_opt(reply(), ext_rcode=1)), 0.05)
    assert action == Send(1 - first.upstream, False, True, 0.05 + TIMEOUT, True)
