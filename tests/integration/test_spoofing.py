"""Forged replies to the daemon's pooled upstream sockets (RFC 5452): raw sockets on loopback
send replies from the upstream's address and port to the port each query left from (the
attacker is told it), while the upstream holds its true answer back. With 0x20 on, nothing is
poisoned; with it off, a full ID sweep poisons (so the harness can see poisoning); past the
unwanted-reply threshold the daemon warns and retires the flooded sockets. Needs root for the
raw socket: without it these tests fail, they do not skip."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator

import pytest

from benchmarks.spoof.forge import POISON, TRUTH, Attacker, attacked_round, random_ids, target


@pytest.fixture
def attacker() -> Iterator[Attacker]:
    raw = Attacker()  # PermissionError without root: a failure, not a skip
    yield raw
    raw.close()


ROUNDS, FORGED = 4, 4096


async def test_forged_reply_flood_poisons_nothing_with_0x20(attacker: Attacker) -> None:
    rng = random.Random(13)
    async with target(randomize_case=True, threshold=0) as running:
        for index in range(ROUNDS):
            ids = random_ids(FORGED, rng)
            reply, _ = await attacked_round(running, attacker, index, ids, lower=True)
            assert reply.endswith(TRUTH), reply.hex()
        stats = running.upstream.statistics()
    # The flood reached the sockets (the kernel may drop a few) and was refused.
    assert stats.strays >= 0.9 * ROUNDS * FORGED
    assert stats.replies == ROUNDS


async def test_a_full_id_sweep_poisons_without_0x20(attacker: Attacker) -> None:
    """The control: the same attack with 0x20 off and every ID tried gets a forgery in."""
    rng = random.Random(14)
    async with target(randomize_case=False, threshold=0) as running:
        for index in range(3):  # a kernel drop may lose the one right ID: a few tries
            reply, _ = await attacked_round(
                running, attacker, index, random_ids(65536, rng), lower=True
            )
            if reply.endswith(POISON):
                return
    pytest.fail("no forged reply was accepted in three full ID sweeps")


async def test_unwanted_replies_past_the_threshold_warn_and_retire_the_socket(
    attacker: Attacker, caplog: pytest.LogCaptureFixture
) -> None:
    rng = random.Random(15)
    caplog.set_level(logging.WARNING, logger="resolver.transport")
    async with target(randomize_case=True, threshold=100) as running:
        discarded = running.upstream.pool.statistics().discarded
        reply, port = await attacked_round(running, attacker, 0, random_ids(1000, rng), lower=True)
        assert reply.endswith(TRUTH)
        stats = running.upstream.statistics()
        assert stats.attacks == 1
        assert stats.retired_sockets == 1
        assert stats.pool.discarded == discarded + 1  # retired when its exchange ended
        # The next query leaves from another port.
        _, next_port = await attacked_round(running, attacker, 1, [], lower=True)
        assert next_port != port
    warnings = [r for r in caplog.records if "unwanted replies" in r.getMessage()]
    assert len(warnings) == 1


async def test_an_idle_socket_flooded_past_the_threshold_is_not_used_again(
    attacker: Attacker,
) -> None:
    rng = random.Random(16)
    async with target(randomize_case=True, threshold=100) as running:
        _, port = await attacked_round(running, attacker, 0, [], lower=True)
        query = running.delayed.arrived[0][0]
        upstream = running.upstream
        before = upstream.statistics()

        def settled(sent: int) -> bool:
            return sent >= 0 and upstream.statistics().strays >= before.strays + sent

        # The socket went back to the pool after round 0: idle, it takes in the flood.
        await attacker.flood(
            query, running.delayed.address[1], port, random_ids(300, rng), lower=True,
            settled=settled,
        )  # fmt: skip
        assert upstream.statistics().retired_sockets == 1
        # Idle sockets are drawn at random: ask until the flooded one comes up (bounded; with
        # two or three idle sockets, 30 rounds miss it with a chance of about 1e-5).
        ports = []
        for index in range(1, 31):
            ports.append((await attacked_round(running, attacker, index, [], lower=True))[1])
            if upstream.statistics().pool.discarded > before.pool.discarded:
                break
        assert port not in ports
        assert upstream.statistics().pool.discarded >= before.pool.discarded + 1
