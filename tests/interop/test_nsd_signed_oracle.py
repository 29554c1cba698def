"""NSD as the oracle over signed zones: `resolver authority` and NSD serve the same zones,
signed here by ldns-signzone with keys made for the run (NSEC, NSEC3, and NSEC3 with
opt-out), and for every question, asked with DO and without, the status, AA, answer and
authority sections (RRSIGs, NSEC and NSEC3 records included) must be equal.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import free_port
from test_nsd_oracle import nsd_binary, nsd_config, serving, summary

from resolver.authority import load_zone
from resolver.wire import EDNS0, QTYPE, DNSLabel, DNSQuestion, DNSRecord, read_header

pytestmark = pytest.mark.interop

PARENT = """$ORIGIN signed.test.
$TTL 3600
@           SOA     ns1 hostmaster 1 7200 1800 1209600 300
            NS      ns1
            MX      10 mail
ns1         A       127.1.30.1
mail        A       127.1.30.2
www         A       127.1.30.3
www         AAAA    2001:db8::30:3
www         TXT     "text"
alias       CNAME   www
outside     CNAME   www.elsewhere.invalid.
*.wild      A       127.1.30.4
*.wild      TXT     "wild"
exists.wild A       127.1.30.5
*.cname     CNAME   www
a.b.ent     A       127.1.30.6
dn          DNAME   target
target      A       127.1.30.7
t.target    A       127.1.30.8
secure      NS      ns1.secure
ns1.secure  A       127.1.30.9
insecure    NS      ns.insecure
ns.insecure A       127.1.30.10
away        NS      ns.elsewhere.invalid.
"""
CHILD = """$ORIGIN secure.signed.test.
$TTL 600
@           SOA     ns1 hostmaster 1 3600 600 86400 60
            NS      ns1
ns1         A       127.1.30.9
www         A       127.1.31.1
*.w         A       127.1.31.2
"""
VARIANTS = {
    "nsec": [],
    "nsec3": ["-n", "-s", "cafe", "-t", "3"],
    "nsec3-optout": ["-n", "-t", "0", "-p"],
}
COMMON_TYPES = ("A", "AAAA", "NS", "SOA", "MX", "TXT", "CNAME", "DS", "DNSKEY", "NSEC")
QUERY_TIMEOUT = 2.0


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: apt-get install ldnsutils (.ci/run does)")
    return path


def run(args: list[str], cwd: Path) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.fail(f"{args[0]} failed: {done.stderr}")
    return done.stdout.strip()


def keys(directory: Path, origin: str) -> list[str]:
    """A KSK and a ZSK for ``origin`` (ECDSA P-256), made now; their base names."""
    ksk = run([tool("ldns-keygen"), "-a", "ECDSAP256SHA256", "-k", origin], directory)
    zsk = run([tool("ldns-keygen"), "-a", "ECDSAP256SHA256", origin], directory)
    return [ksk, zsk]


def sign(directory: Path, text: str, origin: str, extra: list[str]) -> tuple[str, str]:
    """Sign ``text`` for ``origin`` into a file in ``directory``: its name and the KSK's."""
    source = directory / f"{origin}zone"
    source.write_text(text)
    made = keys(directory, origin)
    run(
        [
            tool("ldns-signzone"),
            *extra,
            "-i",
            "20260101",
            "-e",
            "20361231",
            "-f",
            f"{source}.signed",
            "-o",
            origin,
            str(source),
            *made,
        ],
        directory,
    )
    return f"{source.name}.signed", made[0]


def signed_corpus(directory: Path, extra: list[str]) -> dict[str, str]:
    child, ksk = sign(directory, CHILD, "secure.signed.test.", extra)
    ds = run([tool("ldns-key2ds"), "-n", "-2", f"{ksk}.key"], directory)
    parent, _ = sign(directory, PARENT + ds + "\n", "signed.test.", extra)
    return {"signed.test.": parent, "secure.signed.test.": child}


@dataclass(frozen=True)
class Served:
    nsd: int
    ours: int
    zones: dict[str, Path]


@pytest.fixture(scope="module", params=list(VARIANTS), ids=list(VARIANTS))
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    directory = tmp_path_factory.mktemp(f"signed-{request.param}")
    files = signed_corpus(directory, VARIANTS[request.param])
    nsd_port, our_port = free_port(), free_port()
    config = directory / "nsd.conf"
    config.write_text(nsd_config(directory, nsd_port, files, directory))
    ours = [sys.executable, "-m", "resolver", "authority", "--listen", f"127.0.0.1:{our_port}"]
    ours += [f"--zone={directory / file}" for file in files.values()]
    with (
        serving([nsd_binary(), "-d", "-c", str(config)], nsd_port, "nsd"),
        serving(ours, our_port, "resolver authority"),
    ):
        yield Served(nsd_port, our_port, {o: directory / f for o, f in files.items()})


def ask(port: int, name: str, qtype: int, *, do: bool) -> bytes:
    import socket

    query = DNSRecord(q=DNSQuestion(name, qtype))
    query.add_ar(EDNS0(udp_len=4096, flags="do" if do else ""))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(QUERY_TIMEOUT)
        sock.connect(("127.0.0.1", port))
        sock.send(query.pack())
        for _ in range(8):
            reply = sock.recv(65535)
            header = read_header(reply)
            if header.id == query.header.id and header.qr:
                return reply
    raise AssertionError(f"no matching reply for {name} {qtype} on port {port}")


def questions(zones: dict[str, Path]) -> list[tuple[str, int]]:
    common = {int(getattr(QTYPE, text)) for text in COMMON_TYPES}
    found: set[tuple[str, int]] = set()
    for path in zones.values():
        zone = load_zone(path)
        for key in zone.names():
            name = str(DNSLabel(key))
            for qtype in (set(zone.types_at(key)) | common) - {46}:
                found.add((name, qtype))
            for other in (f"nothere.{name}", f"x.y.{name}"):
                for qtype in (QTYPE.A, QTYPE.TXT, QTYPE.DS):
                    found.add((other, qtype))
    return sorted(found)


def dname_nxdomain_quirk(theirs: dict[str, object], ours: dict[str, object]) -> bool:
    """NSD's one departure: when a DNAME leads to a name that does not exist, its authority
    section holds only the NSEC denying the wildcard, not the one covering the name itself;
    ours holds both (RFC 4035 3.1.3.2 asks for both). Everything else must be equal."""
    if theirs["status"] != 3 or not any(" DNAME " in r for r in theirs["answer"]):  # type: ignore[attr-defined]
        return False
    same = {k: v for k, v in theirs.items() if k != "authority"}
    return same == {k: v for k, v in ours.items() if k != "authority"} and set(
        theirs["authority"]  # type: ignore[call-overload]
    ) < set(ours["authority"])  # type: ignore[call-overload]


@pytest.mark.parametrize("do", [True, False], ids=["do", "no-do"])
def test_every_signed_answer_equals_nsds(served: Served, do: bool) -> None:
    differences = []
    asked = questions(served.zones)
    assert len(asked) > 150
    for name, qtype in asked:
        theirs = summary(ask(served.nsd, name, qtype, do=do))
        ours = summary(ask(served.ours, name, qtype, do=do))
        if dname_nxdomain_quirk(theirs, ours):
            continue
        if theirs != ours:
            differences.append(f"{name} {QTYPE.get(qtype)}:\n  nsd:  {theirs}\n  ours: {ours}")
    assert not differences, f"{len(differences)} answers differ:\n" + "\n".join(differences[:40])


def test_do_answers_carry_signatures_and_proofs(served: Served) -> None:
    answer = summary(ask(served.ours, "www.signed.test.", QTYPE.A, do=True))
    assert any(" RRSIG " in record for record in answer["answer"])  # type: ignore[union-attr]
    missing = summary(ask(served.ours, "nothere.signed.test.", QTYPE.A, do=True))
    assert missing["status"] == 3
    kinds = {record.split()[2] for record in missing["authority"]}  # type: ignore[union-attr]
    assert {"SOA", "RRSIG"} <= kinds
    assert kinds & {"NSEC", "NSEC3"}
    plain = summary(ask(served.ours, "www.signed.test.", QTYPE.A, do=False))
    assert not any(" RRSIG " in record for record in plain["answer"])  # type: ignore[union-attr]
