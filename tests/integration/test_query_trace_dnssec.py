"""``resolver query +trace`` over a hierarchy signed in the test with fresh keys (root on
127.0.0.2, test. on 127.0.0.3, its children on 127.0.0.4, each a `resolver` Authority): the DS
records each referral holds, or the NSEC proving there are none, under the referral's step;
with ``+dnssec`` the keys of each DNSKEY set fetched, and zone by zone the verdict and why
(the DS that matched a key of the zone, and where the DS came from; the proof of no DS; the
failure)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import NamedTuple

import dns.dnssec
import pytest
from signing import SignedZone, zone_text
from support import free_port
from trace_output import chain

from resolver.authority import Authority
from resolver.authority.zone import parse_zone

# The authorities run on the test's loop while the subprocess traces.
pytestmark = pytest.mark.asyncio(loop_factories=["asyncio"])

DAY = 86400
NOW = int(time.time())
WINDOW = {"inception": NOW - 3600, "expiration": NOW + 30 * DAY}
SOA = "@ SOA ns hostmaster 1 7200 3600 1209600 300\n"
LEAF = SOA + "@ NS ns\nns A 127.0.0.4\nwww A 192.0.2.1\n"
ROOT, TLD, LEAVES = "127.0.0.2", "127.0.0.3", "127.0.0.4"
STEP = re.compile(r"^(\S+#\d+) +(\S+) +(\S+) (\S+) +(\d+\.\d) ms  (.+)$")


class World(NamedTuple):
    port: int
    directory: Path
    ds: dict[str, int]  # the key tag of each zone's DS, as its parent (or the anchor) has it
    keys: dict[str, tuple[int, int]]  # each signed zone's KSK and ZSK tags


def _tag(zone: SignedZone, which: str) -> int:
    return int(dns.dnssec.key_id(getattr(zone, which).dnskey))


def _world(directory: Path) -> tuple[dict[str, list[str]], dict[str, int], dict[str, SignedZone]]:
    leaves = {
        "good": SignedZone("good.test.", LEAF, **WINDOW),
        "unsigned": SignedZone("unsigned.test.", LEAF, **WINDOW),
        "expired": SignedZone(
            "expired.test.", LEAF, inception=NOW - 30 * DAY, expiration=NOW - 3 * DAY
        ),
        "nokey": SignedZone("nokey.test.", LEAF, **WINDOW),
    }
    stranger = SignedZone("nokey.test.", LEAF, **WINDOW)  # its key is the DS nokey. gets
    ds: dict[str, int] = {}
    delegations = ""
    for label, zone in leaves.items():
        delegations += f"{label} NS ns.{label}\nns.{label} A {LEAVES}\n"
        if label == "unsigned":
            continue
        made = (stranger if label == "nokey" else zone).ds()
        delegations += "".join(f"{label} DS {rd.to_text()}\n" for rd in made)
        ds[f"{label}.test."] = made[0].key_tag
    test = SignedZone("test.", SOA + f"@ NS ns\nns A {TLD}\n" + delegations, **WINDOW)
    root = SignedZone(
        ".",
        SOA.replace("ns hostmaster", "a.root-servers.test. hostmaster.test.")
        + f"@ NS a.root-servers.test.\ntest. NS ns.test.\nns.test. A {TLD}\n"
        + "".join(f"test. DS {rd.to_text()}\n" for rd in test.ds()),
        **WINDOW,
    )
    ds["test."] = test.ds()[0].key_tag
    ds["."] = root.ds()[0].key_tag
    texts = {ROOT: [zone_text(root)], TLD: [zone_text(test)], LEAVES: []}
    for label, zone in leaves.items():
        text = zone_text(zone)
        if label == "unsigned":
            text = "\n".join(line for line in text.splitlines() if " RRSIG " not in line) + "\n"
        texts[LEAVES].append(text)
    (directory / "root.hints").write_text(
        ".  3600000 NS A.ROOT-SERVERS.TEST.\nA.ROOT-SERVERS.TEST. 3600000 A 127.0.0.2\n"
    )
    (directory / "root.key").write_text("".join(f". DS {rd.to_text()}\n" for rd in root.ds()))
    zones = {".": root, "test.": test, **{z.origin.to_text(): z for z in leaves.values()}}
    return texts, ds, zones


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    texts, ds, zones = _world(tmp_path)
    keys = {name: (_tag(zone, "ksk"), _tag(zone, "zsk")) for name, zone in zones.items()}
    port = free_port(ROOT)
    started: list[Authority] = []
    try:
        for address, served in texts.items():
            authority = Authority(
                [parse_zone(text, source=f"{address}-{i}") for i, text in enumerate(served)]
            )
            started.append(authority)
            await authority.start(address, port)
        yield World(port, tmp_path, ds, keys)
    finally:
        for authority in started:
            await authority.aclose()


async def trace(world: World, name: str, *flags: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "resolver", "query", "+trace", *flags, "-p", str(world.port)]
    command += ["--root-hints", str(world.directory / "root.hints")]
    command += ["--trust-anchor", str(world.directory / "root.key"), name]
    env = {**os.environ, "RESOLVER_SERVER": "127.0.0.1:1"}
    process = await asyncio.create_subprocess_exec(
        *command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return subprocess.CompletedProcess(command, process.returncode, out.decode(), err.decode())


def under(stdout: str, step: str) -> list[str]:
    """The lines shown between the step line whose outcome starts with ``step`` and the
    next step line."""
    lines = stdout.splitlines()
    start = next(
        i for i, line in enumerate(lines) if (m := STEP.match(line)) and m[6].startswith(step)
    )
    shown = []
    for line in lines[start + 1 :]:
        if STEP.match(line) or (line.startswith(";; ") and "queries in" in line):
            break
        shown.append(line)
    return shown


def fields(line: str) -> list[str]:
    return line.split()


async def test_each_referral_shows_the_ds_records_it_holds_with_their_rrsig(world: World) -> None:
    done = await trace(world, "www.good.test.", "+dnssec")
    to_test = under(done.stdout, "referral to test.")
    assert [fields(line)[:5] for line in to_test] == [
        ["test.", "300", "IN", "DS", str(world.ds["test."])],
        ["test.", "300", "IN", "RRSIG", "DS"],
    ]
    to_good = under(done.stdout, "referral to good.test.")
    assert [fields(line)[:5] for line in to_good] == [
        ["good.test.", "300", "IN", "DS", str(world.ds["good.test."])],
        ["good.test.", "300", "IN", "RRSIG", "DS"],
    ]
    # The RRSIG over good.test.'s DS is by test.'s ZSK.
    assert fields(to_good[1])[10:12] == [str(world.keys["test."][1]), "test."]


async def test_a_referral_without_ds_shows_the_nsec_that_proves_it(world: World) -> None:
    done = await trace(world, "www.unsigned.test.", "+dnssec")
    shown = under(done.stdout, "referral to unsigned.test.")
    assert [fields(line)[:4] for line in shown] == [
        ["unsigned.test.", "300", "IN", "NSEC"],
        ["unsigned.test.", "300", "IN", "RRSIG"],
    ]
    bitmap = fields(shown[0])[5:]
    assert "NS" in bitmap
    assert "DS" not in bitmap


async def test_each_dnskey_set_fetched_shows_its_keys_and_which_signed_it(world: World) -> None:
    done = await trace(world, "www.good.test.", "+dnssec")
    ksk, zsk = world.keys["good.test."]
    assert under(done.stdout, "answer; good.test. secure") == [
        f";; DNSKEY of good.test.: KSK {ksk} (ECDSAP256SHA256), ZSK {zsk} (ECDSAP256SHA256);"
        f" the set is signed by {ksk}"
    ]


async def test_each_zone_is_secure_through_the_ds_that_matched_its_key(world: World) -> None:
    done = await trace(world, "www.good.test.", "+dnssec")
    port = world.port

    def secure(zone: str, source: str) -> str:
        tag = world.ds[zone]
        assert world.keys[zone][0] == tag
        return (
            f"secure: DS {tag} (ECDSAP256SHA256, SHA256; {source}) matches KSK {tag}"
            " (ECDSAP256SHA256), which signs the DNSKEY set"
        )

    assert chain(done.stdout) == {
        ".": secure(".", "the trust anchor"),
        "test.": secure("test.", f"referral by {ROOT}#{port}"),
        "good.test.": secure("good.test.", f"referral by {TLD}#{port}"),
    }
    assert ";; DNSSEC: secure" in done.stdout


async def test_an_insecure_zone_says_which_proof_showed_it_has_no_ds(world: World) -> None:
    done = await trace(world, "www.unsigned.test.", "+dnssec")
    verdicts = chain(done.stdout)
    assert verdicts["test."].startswith("secure: ")
    # The validator's reason, then the proof and where it was.
    verdict = verdicts["unsigned.test."]
    assert verdict.startswith("insecure: ")
    assert verdict.endswith(f" (NSEC in the referral by {TLD}#{world.port})")
    assert not any("unsigned.test. DNSKEY" in line for line in done.stdout.splitlines())


@pytest.mark.parametrize(
    ("zone", "code", "held_to"),
    [
        (
            "expired.test.",
            7,
            "DS {tag} (ECDSAP256SHA256, SHA256; {tld}) matches KSK {tag} (ECDSAP256SHA256)",
        ),
        (
            "nokey.test.",
            9,
            "no key of its DNSKEY set matches DS {tag} (ECDSAP256SHA256, SHA256; {tld})",
        ),
    ],
    ids=["expired-signature", "ds-matching-no-key"],
)
async def test_a_bogus_zone_says_why_and_which_ds_it_was_held_to(
    world: World, zone: str, code: int, held_to: str
) -> None:
    done = await trace(world, f"www.{zone}", "+dnssec")
    verdict = chain(done.stdout)[zone]
    # The EDE and the validator's reason, then the DS the zone's keys were held to.
    assert verdict.startswith(f"bogus (EDE {code}): ")
    tld = f"referral by {TLD}#{world.port}"
    assert verdict.endswith("; " + held_to.format(tag=world.ds[zone], tld=tld))
    assert f";; DNSSEC: bogus (EDE {code})" in done.stdout


async def test_a_plain_trace_shows_the_ds_at_referrals_and_validates_nothing(
    world: World,
) -> None:
    # As dig +trace, which asks with DO: the DS records come, no DNSKEY is asked for.
    done = await trace(world, "www.good.test.")
    assert [fields(line)[3] for line in under(done.stdout, "referral to good.test.")] == [
        "DS",
        "RRSIG",
    ]
    assert "DNSKEY" not in done.stdout
    assert "chain of trust" not in done.stdout
    assert ";; DNSSEC:" not in done.stdout
    assert ";; 3 queries in " in done.stdout


async def test_under_a_wrong_anchor_each_zone_is_bogus_for_the_root_s_sake(world: World) -> None:
    stranger = SignedZone(".", SOA, **WINDOW)
    anchor = "".join(f". DS {rd.to_text()}\n" for rd in stranger.ds())
    (world.directory / "root.key").write_text(anchor)
    done = await trace(world, "www.good.test.", "+dnssec")
    tag = stranger.ds()[0].key_tag
    verdicts = chain(done.stdout)
    assert verdicts["."].startswith("bogus (EDE 9): ")
    assert verdicts["."].endswith(
        f"; no key of its DNSKEY set matches DS {tag} (ECDSAP256SHA256, SHA256; the trust anchor)"
    )
    # Their own keys were never fetched: nothing is said of them but the root's failure.
    assert verdicts["test."] == verdicts["."].split("; ")[0]
    assert ";; DNSSEC: bogus (EDE 9)" in done.stdout
