"""Unbound as the oracle of validation in recursive mode: a hierarchy of zones signed in the
test with fresh keys (the root, test., and below it zones good, NSEC3, with an expired
signature, with a signature not yet valid, stripped of RRSIGs, unsigned, with a DS matching no
key, with the DNSKEY set signed by the ZSK alone) is served by NSD in a network namespace of
the test's own (benchmarks/hierarchy.py); Unbound (validator and iterator) and our daemon
(``mode = "recursive"``, validation on by default) resolve it from the same root hints and
the same trust anchor, the test root's DS.

For every question, plain, with ``+cd`` and with ``+dnssec``, both must give the same rcode,
the same AD bit, whether data came back, and the same class of Extended DNS Error (RFC 8914:
a DNSSEC failure, 6 to 12, or another code, or none); a secure answer asked with ``+dnssec``
must carry its RRSIGs. The questions asked last fall in the NSEC spans the first ones
brought, so both resolvers answer them from their validated caches (RFC 8198).
Without nsd, unbound, ip, dig or the rights to make a namespace these tests fail, never skip.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from signing import Key, SignedZone, make_key, zone_text

from benchmarks.errors import SetupError
from benchmarks.hierarchy import Hierarchy, Reply, Server, require, running, zone_file

pytestmark = pytest.mark.interop

DAY = 86400
ROOT_ADDRESS, TLD_ADDRESS, LEAF_ADDRESS = "127.0.0.2", "127.0.0.3", "127.0.0.4"
SOA = "@ SOA ns hostmaster 1 7200 3600 1209600 300\n"
LEAF = SOA + f"@ NS ns\nns A {LEAF_ADDRESS}\nwww A 192.0.2.1\n*.wild TXT wild\n"
ZONES = ["good", "nsec3", "expired", "future", "stripped", "unsigned", "badds", "zskonly"]
QUESTIONS = [
    f"{name}.{zone}.test {qtype}{option}"
    for zone in ZONES
    for name, qtype in (("www", "A"), ("nothere", "A"), ("www", "MX"), ("x.wild", "TXT"))
    for option in ("", " +cd", " +dnssec")
]
# Asked after those, in the same NSEC spans: both resolvers answer these from the NSEC
# records already validated (RFC 8198), Unbound's aggressive-nsec and ours alike.
QUESTIONS += [
    f"{name}.{zone}.test {qtype}{option}"
    for zone in ZONES
    for name, qtype in (("y.wild", "TXT"), ("mz", "A"), ("www", "TXT"), ("y.wild", "MX"))
    for option in (" +dnssec", "", " +cd")
]


class World(NamedTuple):
    hierarchy: Hierarchy
    unbound: Server
    ours: Server


def strip_signatures(text: str) -> str:
    kept = [
        line
        for line in text.splitlines()
        if not any(f" {kind} " in line for kind in ("RRSIG", "NSEC", "NSEC3", "NSEC3PARAM"))
    ]
    return "\n".join(kept) + "\n"


def sign(directory: Path) -> tuple[Path, Path, list[str]]:
    """Zone files in ``directory`` (NSD's names), the root hints and the trust anchor files,
    and the leaf zones' origins."""
    now = int(time.time())
    window = {"inception": now - 3600, "expiration": now + 30 * DAY}
    leaves: dict[str, tuple[SignedZone, str, bool]] = {}

    def ds_lines(zone: SignedZone, key: Key | None = None) -> str:
        return "".join(f"{zone.origin} DS {rd.to_text()}\n" for rd in zone.ds(key=key))

    for label in ZONES:
        options: dict[str, object] = dict(window)
        if label == "nsec3":
            options["nsec3"] = (1, "ab", False)
        elif label == "expired":
            options.update(inception=now - 30 * DAY, expiration=now - 3 * DAY)
        elif label == "future":
            options.update(inception=now + 3 * DAY, expiration=now + 30 * DAY)
        elif label == "zskonly":
            options["dnskey_signer"] = "zsk"
        zone = SignedZone(f"{label}.test.", LEAF, **options)  # type: ignore[arg-type]
        if label == "unsigned":
            ds = ""
        elif label == "badds":
            ds = ds_lines(zone, make_key(13, 257))  # a key the zone does not have
        else:
            ds = ds_lines(zone)
        leaves[label] = (zone, ds, label not in ("stripped", "unsigned"))
    delegations = "".join(
        f"{label} NS ns.{label}\nns.{label} A {LEAF_ADDRESS}\n{ds}"
        for label, (_, ds, _) in leaves.items()
    )
    # The root's server is named in test. (and glued in the root), as Unbound looks it up.
    servers = f"@ NS ns\nns A {TLD_ADDRESS}\na.root-servers A {ROOT_ADDRESS}\n"
    test = SignedZone("test.", SOA + servers + delegations, **window)
    root = SignedZone(
        ".",
        "@ SOA a.root-servers.test. hostmaster.test. 1 7200 3600 1209600 300\n"
        f"@ NS a.root-servers.test.\na.root-servers.test. A {ROOT_ADDRESS}\n"
        f"test. NS ns.test.\nns.test. A {TLD_ADDRESS}\n"
        + "".join(f"test. DS {rd.to_text()}\n" for rd in test.ds()),
        **window,
    )
    (directory / zone_file(".")).write_text(zone_text(root))
    (directory / zone_file("test.")).write_text(zone_text(test))
    for zone, _, signed in leaves.values():
        text = zone_text(zone)
        (directory / zone_file(zone.origin.to_text())).write_text(
            text if signed else strip_signatures(text)
        )
    hints = directory / "root.hints"
    hints.write_text(
        f". 3600000 NS A.ROOT-SERVERS.TEST.\nA.ROOT-SERVERS.TEST. 3600000 A {ROOT_ADDRESS}\n"
    )
    anchor = directory / "root.key"
    anchor.write_text("".join(f". DS {rd.to_text()}\n" for rd in root.ds()))
    return hints, anchor, [f"{label}.test." for label in ZONES]


@contextlib.contextmanager
def failing_setup() -> Iterator[None]:
    """A setup that cannot be done is a failure of the test, with the reason: never a skip."""
    try:
        yield
    except SetupError as exc:
        reason = str(exc)
    else:
        return
    pytest.fail(reason, pytrace=False)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    stack = contextlib.ExitStack()
    zones = tmp_path_factory.mktemp("signed-zones")
    hints, anchor, leaves = sign(zones)
    with failing_setup():
        require("ip", "nsd", "unbound", "dig")
        hierarchy = stack.enter_context(
            running(tmp_path_factory.mktemp("signed-hierarchy"), authorities=False)
        )
    with stack:
        with failing_setup():
            files = {o: zones / zone_file(o) for o in [".", "test.", *leaves]}
            hierarchy.start_nsd(ROOT_ADDRESS, ["."], files)
            hierarchy.start_nsd(TLD_ADDRESS, ["test."], files)
            hierarchy.start_nsd(LEAF_ADDRESS, leaves, files)
            unbound = hierarchy.start_unbound(root_hints=hints, trust_anchor=anchor)
            ours = hierarchy.start_resolver(root_hints=hints, dnssec=f'trust_anchors = "{anchor}"')
        yield World(hierarchy, unbound, ours)


def ede_code(reply: Reply) -> int | None:
    match = re.match(r"\s*(\d+)", reply.ede)
    return int(match.group(1)) if match else None


# RFC 8914's DNSSEC failures. Unbound 1.17 names the precise one (7, 9, 10...) when it first
# judges a zone, and 6 (DNSSEC Bogus) while it remembers the zone's bad keys; ours names the
# precise one each time. The class is what both must agree on.
BOGUS_CODES = frozenset(range(6, 13))


def ede_class(reply: Reply) -> str | None:
    code = ede_code(reply)
    if code in BOGUS_CODES:
        return "dnssec-bogus"
    return None if code is None else str(code)


def summary(reply: Reply) -> dict[str, object]:
    """What the comparison holds equal (see the module)."""
    return {
        "status": reply.status,
        "ad": "ad" in reply.flags,
        "data": bool(reply.answer),
        "ede class": ede_class(reply),
    }


def ask(world: World, server: Server, question: str) -> Reply:
    name, qtype, *options = question.split()
    return world.hierarchy.dig(server, name, qtype, "+adflag", *options)


def test_unbound_validates_the_signed_hierarchy(world: World) -> None:
    good = ask(world, world.unbound, "www.good.test A")
    assert good.status == "NOERROR", good.text
    assert "ad" in good.flags, good.text
    expired = ask(world, world.unbound, "www.expired.test A")
    assert expired.status == "SERVFAIL", expired.text
    assert ede_code(expired) == 7, expired.text


@pytest.mark.parametrize(
    "question", QUESTIONS, ids=[q.replace(" +", "+").replace(" ", "-") for q in QUESTIONS]
)
def test_ours_validates_as_unbound(world: World, question: str) -> None:
    theirs = ask(world, world.unbound, question)
    ours = ask(world, world.ours, question)
    assert summary(ours) == summary(theirs), f"ours:\n{ours.text}\nunbound:\n{theirs.text}"
    if "+dnssec" in question and "ad" in ours.flags and ours.answer:
        assert "RRSIG" in {r.rtype for r in ours.answer}, ours.text


@pytest.mark.parametrize(
    ("zone", "code"),
    [("expired", 7), ("future", 8), ("badds", 9), ("stripped", 10), ("zskonly", 10)],
    ids=["expired", "not-yet-valid", "ds-matching-no-key", "stripped", "dnskey-by-zsk-alone"],
)
def test_ours_names_the_precise_failure_each_time(world: World, zone: str, code: int) -> None:
    for _ in range(2):  # the second answer comes from what the first left behind
        reply = ask(world, world.ours, f"www.{zone}.test A")
        assert reply.status == "SERVFAIL", reply.text
        assert ede_code(reply) == code, reply.text


def _logged(server: Server, question: str) -> str:
    """What ``server``'s log says after ``validation failure <QUESTION>: `` (waited for: the
    line is written as the answer goes out, and both logs are files)."""
    marker = f"validation failure <{question}>: "
    deadline = time.monotonic() + 30.0
    while True:
        for line in server.proc.log.read_text(errors="replace").splitlines():
            if marker in line:
                return line.split(marker, 1)[1]
        if time.monotonic() > deadline:
            pytest.fail(f"{server.name} logged no {marker!r}", pytrace=False)
        time.sleep(0.05)


@pytest.mark.parametrize("zone", ["expired", "future", "badds", "stripped", "zskonly"])
def test_ours_logs_a_bogus_zone_in_unbound_s_words(world: World, zone: str) -> None:
    # val-log-level 2: what failed, from which server, for which key; ours adds the EDE.
    for server in (world.unbound, world.ours):
        ask(world, server, f"www.{zone}.test A")
    question = f"www.{zone}.test. A IN"
    theirs = _logged(world.unbound, question)
    ours = _logged(world.ours, question)
    assert ours.startswith(f"{theirs} (EDE "), f"ours: {ours}\nunbound: {theirs}"
