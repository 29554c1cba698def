"""The compose suite's helpers: a DNS client that asks services by name, dnsdist's API, and the
control channel through which the suite has scripts/compose-test stop and start services.

This suite runs inside the `tests` service of docker-compose.yml (see scripts/compose-test);
the project's own `python3 -m pytest` does not collect it.
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.query
import dns.rdatatype
import pytest

# Where the suite asks questions a client would: the forwarding daemon and dnsdist in front of
# the two replicas.
ENTRY_POINTS = ("forwarder", "dnsdist")
TRANSPORTS = ("udp", "tcp")

DNSDIST_API = "http://dnsdist:8083/api/v1/servers/localhost"
DNSDIST_API_KEY = "compose-tests"  # docker/dnsdist.conf; the network is internal
CONTROL = Path(os.environ.get("COMPOSE_CONTROL_DIR", "/control"))


def address(service: str) -> str:
    """The service's address, from Docker's DNS on the compose network."""
    return socket.gethostbyname(service)


def ask(
    service: str,
    name: str,
    rdtype: str = "A",
    *,
    transport: str = "udp",
    recurse: bool = True,
    timeout: float = 3.0,
    ad: bool = False,
    do: bool = False,
    cd: bool = False,
) -> dns.message.Message:
    """One question to ``service`` on port 53, with the DNSSEC flags asked for (as dig's
    +adflag, +dnssec and +cd); raises dns.exception.Timeout without a reply."""
    query = dns.message.make_query(name, rdtype, use_edns=0, payload=1232, want_dnssec=do)
    query.flags &= ~dns.flags.AD
    if ad:
        query.flags |= dns.flags.AD
    if cd:
        query.flags |= dns.flags.CD
    if not recurse:
        query.flags &= ~dns.flags.RD
    where = address(service)
    if transport == "tcp":
        return dns.query.tcp(query, where, port=53, timeout=timeout)
    return dns.query.udp(query, where, port=53, timeout=timeout)


def addresses(reply: dns.message.Message) -> set[str]:
    """The A and AAAA addresses in the answer section."""
    return {
        rdata.to_text()
        for rrset in reply.answer
        if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)
        for rdata in rrset
    }


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` every 0.2 s until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(0.2)


def dnsdist_servers() -> dict[str, dict[str, Any]]:
    """dnsdist's backends by name, as its HTTP API reports them (state, queries, ...)."""
    request = urllib.request.Request(DNSDIST_API, headers={"X-API-Key": DNSDIST_API_KEY})
    with urllib.request.urlopen(request, timeout=3) as response:
        body = json.load(response)
    return {server["name"]: server for server in body["servers"]}


class Control:
    """Asks scripts/compose-test to run ``docker-compose stop`` or ``start`` on a service.

    A request is a file ``request-N`` holding "VERB SERVICE"; the script runs the command and
    answers with ``done-N`` holding its exit status.
    """

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._count = 0

    def _run(self, verb: str, service: str, timeout: float = 150.0) -> None:
        self._count += 1
        number = f"{os.getpid()}{self._count:03d}"
        draft = self._directory / f".request-{number}"
        draft.write_text(f"{verb} {service}\n")
        draft.rename(self._directory / f"request-{number}")
        done = self._directory / f"done-{number}"
        wait_for(done.exists, timeout, f"docker-compose {verb} {service}")
        status = done.read_text().strip()
        assert status == "0", f"docker-compose {verb} {service} exited with {status}"

    def stop(self, service: str) -> None:
        self._run("stop", service)

    def start(self, service: str) -> None:
        self._run("start", service)


@pytest.fixture
def control() -> Control:
    if not CONTROL.is_dir():
        pytest.fail(f"{CONTROL} is missing: run this suite with scripts/compose-test")
    return Control(CONTROL)
