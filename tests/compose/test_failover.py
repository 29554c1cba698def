"""dnsdist in front of two forwarding replicas: when one is stopped (`docker-compose stop`),
every question is still answered by the other; when it comes back, it takes its share again."""

from __future__ import annotations

import dns.rcode
from conftest import Control, addresses, ask, dnsdist_servers, wait_for

ROUNDS = 20  # questions per phase: round robin gives each live replica half of them


def ask_through_dnsdist() -> None:
    for _ in range(ROUNDS):
        reply = ask("dnsdist", "www.example.com.", timeout=2.0)
        assert reply.rcode() == dns.rcode.NOERROR
        assert addresses(reply) == {"127.1.0.1"}


def test_dnsdist_fails_over_to_the_live_replica_and_back(control: Control) -> None:
    wait_for(
        lambda: all(s["state"] == "up" for s in dnsdist_servers().values()),
        30,
        "both replicas up in dnsdist",
    )
    control.stop("replica-a")
    try:
        wait_for(
            lambda: dnsdist_servers()["replica-a"]["state"] == "down",
            15,
            "dnsdist marks the stopped replica down",
        )
        before = dnsdist_servers()
        ask_through_dnsdist()
        after = dnsdist_servers()
        assert after["replica-b"]["queries"] - before["replica-b"]["queries"] >= ROUNDS
        assert after["replica-a"]["queries"] == before["replica-a"]["queries"]
    finally:
        control.start("replica-a")

    wait_for(
        lambda: dnsdist_servers()["replica-a"]["state"] == "up",
        30,
        "dnsdist marks the restarted replica up",
    )
    before = dnsdist_servers()
    ask_through_dnsdist()
    after = dnsdist_servers()
    assert after["replica-a"]["queries"] > before["replica-a"]["queries"]
    assert after["replica-b"]["queries"] > before["replica-b"]["queries"]
