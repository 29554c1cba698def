"""DNS over TLS and HTTPS. The forwarder listens on DoT (853) and DoH (443) with a certificate
from a private CA made when its container started (docker/make-certs.py); forwarder-dot and
forwarder-doh forward to it over ``tls://`` and ``https://``, trusting only that CA, as do the
clients here. Answers through every path equal the plain ones, and the daemons' own metrics
show the queries riding a few kept connections: the forwarder accepts no more connections than
its clients open, and most queries go over a connection that had carried one already."""

from __future__ import annotations

import base64
import functools
import http.client
import re
import secrets
import ssl
import subprocess
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest
from conftest import address, addresses, ask

CA = Path("/tls/ca.pem")  # the tls volume; docker-compose.yml mounts it read-only here
NAME = "forwarder"  # the name (and the service) the forwarder's certificate is for
DOT_PORT, DOH_PORT, METRICS_PORT = 853, 443, 9153
MAX_CONNECTIONS = 4  # transport.max_connections, the default: the most a forwarder opens

# One name per leaf authority, as the plain entry points are asked in test_entry_points.py.
ANSWERS = [
    ("www.example.com.", "A", {"127.1.0.1"}),
    ("www.example.com.", "AAAA", {"2001:db8::1"}),
    ("www.sub.example.com.", "A", {"127.1.2.1"}),
    ("www.example.test.", "A", {"127.1.1.1"}),
    ("anything.wild.test.", "A", {"127.1.3.1"}),
    ("www.oob.com.", "A", {"127.1.4.1"}),
]
ANSWER_IDS = [f"{name}{rdtype}" for name, rdtype, _ in ANSWERS]

# The forwarders whose upstream is the forwarder, and the transport it accepts them on.
THROUGH = {"forwarder-dot": "tls", "forwarder-doh": "https"}


def trusting_the_ca() -> ssl.SSLContext:
    if not CA.is_file():
        pytest.fail(f"{CA} is missing: the forwarder makes it at start (docker/make-certs.py)")
    return ssl.create_default_context(cafile=str(CA))


def query(name: str, rdtype: str) -> dns.message.Message:
    return dns.message.make_query(name, rdtype, use_edns=0, payload=1232)


def ask_dot(
    name: str, rdtype: str = "A", *, context: ssl.SSLContext | None = None, hostname: str = NAME
) -> dns.message.Message:
    return dns.query.tls(
        query(name, rdtype),
        address(NAME),
        port=DOT_PORT,
        timeout=5.0,
        ssl_context=context or trusting_the_ca(),
        server_hostname=hostname,
    )


def ask_doh(name: str, rdtype: str = "A", *, method: str = "POST") -> dns.message.Message:
    """One question over HTTPS/1.1 (the daemon's own client below speaks HTTP/2), ID 0 as
    RFC 8484 asks, by POST or by GET with ``?dns=`` base64url."""
    message = query(name, rdtype)
    message.id = 0
    wire = message.to_wire()
    connection = http.client.HTTPSConnection(NAME, DOH_PORT, timeout=5.0, context=trusting_the_ca())
    try:
        headers = {"Accept": "application/dns-message"}
        if method == "POST":
            headers["Content-Type"] = "application/dns-message"
            connection.request("POST", "/dns-query", body=wire, headers=headers)
        else:
            encoded = base64.urlsafe_b64encode(wire).rstrip(b"=").decode()
            connection.request("GET", f"/dns-query?dns={encoded}", headers=headers)
        response = connection.getresponse()
        body = response.read()
        assert response.status == 200, (response.status, body[:200])
        assert response.getheader("Content-Type") == "application/dns-message"
    finally:
        connection.close()
    return dns.message.from_wire(body)


def metric(service: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``, scraped from the
    service's /metrics; 0 when none has been counted yet."""
    url = f"http://{service}:{METRICS_PORT}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    total = 0.0
    for match in re.finditer(rf"^{name}(?:\{{(.*)\}})? (\S+)$", text, re.MULTILINE):
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(1) or ""))
        if all(found.get(key) == value for key, value in labels.items()):
            total += float(match.group(2))
    return total


@pytest.mark.parametrize(("name", "rdtype", "expected"), ANSWERS, ids=ANSWER_IDS)
def test_forwarder_answers_over_tls_as_over_udp(name: str, rdtype: str, expected: set[str]) -> None:
    reply = ask_dot(name, rdtype)
    assert reply.rcode() == dns.rcode.NOERROR
    assert addresses(reply) == expected == addresses(ask("forwarder", name, rdtype))


@pytest.mark.parametrize("method", ["POST", "GET"])
@pytest.mark.parametrize(("name", "rdtype", "expected"), ANSWERS[:3], ids=ANSWER_IDS[:3])
def test_forwarder_answers_over_https(
    method: str, name: str, rdtype: str, expected: set[str]
) -> None:
    reply = ask_doh(name, rdtype, method=method)
    assert reply.id == 0
    assert reply.rcode() == dns.rcode.NOERROR
    assert addresses(reply) == expected


def test_forwarder_answers_nxdomain_over_tls_with_the_soa() -> None:
    reply = ask_dot("nonexistent.example.com.")
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert [rrset.name.to_text() for rrset in reply.authority] == ["example.com."]


def test_the_tls_listener_is_refused_by_a_client_not_trusting_the_private_ca() -> None:
    # The image's own CA store knows nothing of the private CA.
    with pytest.raises(ssl.SSLCertVerificationError):
        ask_dot("www.example.com.", context=ssl.create_default_context())


def test_the_tls_listener_is_refused_by_a_client_expecting_another_name() -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        ask_dot("www.example.com.", hostname="dnsdist")


@pytest.mark.parametrize(
    "encryption",
    [["+tls"], ["+https"], ["+https=https://forwarder/dns-query"]],
    ids=["tls", "https", "https-url"],
)
def test_resolver_query_asks_the_forwarder_over_tls_and_https(encryption: list[str]) -> None:
    done = subprocess.run(
        [
            "resolver",
            "query",
            "@forwarder",
            "www.example.com",
            "A",
            "+short",
            *encryption,
            f"+tls-ca={CA}",
            f"+tls-hostname={NAME}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["127.1.0.1"]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("service", THROUGH)
@pytest.mark.parametrize(("name", "rdtype", "expected"), ANSWERS, ids=ANSWER_IDS)
def test_forwarder_over_an_encrypted_upstream_answers_as_the_forwarder(
    service: str, transport: str, name: str, rdtype: str, expected: set[str]
) -> None:
    reply = ask(service, name, rdtype, transport=transport)
    assert reply.rcode() == dns.rcode.NOERROR
    assert addresses(reply) == expected


@pytest.mark.parametrize("service", THROUGH)
def test_forwarder_over_an_encrypted_upstream_relays_nxdomain(service: str) -> None:
    reply = ask(service, "nonexistent.example.test.")
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert [rrset.name.to_text() for rrset in reply.authority] == ["example.test."]


DISTINCT = 40  # questions, none in any cache: each goes upstream over the encrypted transport
AT_ONCE = 8  # asked this many at a time, so that queries share a connection in flight


@pytest.mark.parametrize("service", THROUGH)
def test_encrypted_upstream_connections_are_kept_and_reused(service: str) -> None:
    transport = THROUGH[service]
    ours, theirs = functools.partial(metric, service), functools.partial(metric, "forwarder")
    connections, queries = (
        "resolver_upstream_connections_total",
        "resolver_upstream_connection_queries_total",
    )
    accepted, received = (
        "resolver_dns_connections_accepted_total",
        "resolver_dns_encrypted_requests_total",
    )
    before = (
        ours(connections, event="opened"),
        ours(queries, kind="all"),
        ours(queries, kind="reused"),
        theirs(accepted, transport=transport),
        theirs(received, transport=transport),
    )

    # Under wild.test.'s wildcard every name has an answer, and a fresh one is in no cache.
    run = secrets.token_hex(4)
    names = [f"q{i}-{run}-{transport}.wild.test." for i in range(DISTINCT)]
    with ThreadPoolExecutor(AT_ONCE) as pool:
        replies = list(pool.map(lambda name: ask(service, name, timeout=5.0), names))
    for reply in replies:
        assert reply.rcode() == dns.rcode.NOERROR
        assert addresses(reply) == {"127.1.3.1"}

    opened = ours(connections, event="opened") - before[0]
    sent = ours(queries, kind="all") - before[1]
    reused = ours(queries, kind="reused") - before[2]
    taken = theirs(accepted, transport=transport) - before[3]
    arrived = theirs(received, transport=transport) - before[4]
    print(
        f"{service}: {sent:g} queries over {opened:g} new connections ({reused:g} reused); "
        f"the forwarder accepted {taken:g} {transport} connections, got {arrived:g} queries"
    )
    assert sent >= DISTINCT
    # The forwarder got them over the encrypted transport, on a connection it had accepted.
    assert arrived >= DISTINCT
    assert theirs(accepted, transport=transport) >= 1
    assert opened <= MAX_CONNECTIONS, f"{opened} connections opened for {sent} queries"
    # Every query but the first on each new connection rides one that carried a query already.
    assert reused >= sent - opened
    # The forwarder's own count: no more connections than the pool opened.
    assert taken <= max(opened, 1)
