"""`resolver query` prints DNSSEC records (RRSIG, DNSKEY, DS, NSEC, NSEC3, NSEC3PARAM) as the
real dig does, and sends +dnssec, +cd and +adflag as dig does, over `resolver authority`
serving zones signed here by ldns-signzone with keys made for the run (RSASHA256 and ECDSA, so
both short and long signatures and keys are shown)."""

from __future__ import annotations

import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import free_port
from test_dig import run_both, start, tool

pytestmark = pytest.mark.interop

ZONE = """$ORIGIN signed.test.
$TTL 3600
@       SOA     ns1 hostmaster 1 7200 1800 1209600 300
        NS      ns1
ns1     A       127.1.30.1
www     A       127.1.30.3
*.wild  TXT     "wild"
sec     NS      ns.sub
sec     DS      12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF
sub     NS      ns.sub
ns.sub  A       127.1.30.9
"""
STOP = 5.0


def signed_zones(directory: Path) -> tuple[Path, Path]:
    """The zone signed with an NSEC chain and with an NSEC3 chain."""
    (directory / "zone").write_text(ZONE)
    made = []
    for args in (["-a", "ECDSAP256SHA256", "-k"], ["-a", "RSASHA256", "-b", "1024"]):
        keygen = [tool("ldns-keygen", "ldnsutils"), *args, "signed.test."]
        made.append(
            subprocess.run(
                keygen, cwd=directory, capture_output=True, text=True, check=True
            ).stdout.strip()
        )
    outputs = []
    for name, extra in (("nsec", []), ("nsec3", ["-n", "-s", "cafe", "-t", "3"])):
        sign = [
            tool("ldns-signzone", "ldnsutils"),
            *extra,
            "-i",
            "20260101",
            "-e",
            "20361231",
            "-f",
            name,
            "-o",
            "signed.test.",
            "zone",
            *made,
        ]
        subprocess.run(sign, cwd=directory, capture_output=True, text=True, check=True)
        outputs.append(directory / name)
    return outputs[0], outputs[1]


@dataclass(frozen=True)
class Ports:
    nsec: int
    nsec3: int


@pytest.fixture(scope="module")
def ports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ports]:
    nsec, nsec3 = signed_zones(tmp_path_factory.mktemp("dig-dnssec"))
    started: list[subprocess.Popen[str]] = []
    chosen = Ports(free_port(), free_port())
    try:
        for port, zone in ((chosen.nsec, nsec), (chosen.nsec3, nsec3)):
            start(["authority", "--listen", f"127.0.0.1:{port}", f"--zone={zone}"], port, started)
        yield chosen
    finally:
        for process in started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.communicate(timeout=STOP)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.communicate(timeout=STOP)


SAME = [
    pytest.param("nsec", ("www.signed.test", "+noall", "+answer"), id="A-and-RRSIG"),
    pytest.param("nsec", ("signed.test", "DNSKEY", "+noall", "+answer"), id="DNSKEY"),
    pytest.param("nsec", ("sec.signed.test", "DS", "+noall", "+answer"), id="DS"),
    pytest.param("nsec", ("nothere.signed.test", "+noall", "+authority"), id="NSEC"),
    pytest.param("nsec", ("sub.signed.test", "DS", "+noall", "+authority"), id="NSEC-no-DS"),
    pytest.param(
        "nsec", ("x.wild.signed.test", "TXT", "+noall", "+answer", "+authority"), id="wildcard"
    ),
    pytest.param("nsec3", ("nothere.signed.test", "+noall", "+authority"), id="NSEC3"),
    pytest.param("nsec3", ("signed.test", "NSEC3PARAM", "+noall", "+answer"), id="NSEC3PARAM"),
    pytest.param(
        "nsec", ("signed.test", "DNSKEY", "+multiline", "+noall", "+answer"), id="multiline-DNSKEY"
    ),
    pytest.param(
        "nsec", ("sec.signed.test", "DS", "+multiline", "+noall", "+answer"), id="multiline-DS"
    ),
    pytest.param(
        "nsec3", ("nothere.signed.test", "+multiline", "+noall", "+authority"), id="multiline-NSEC3"
    ),
]


@pytest.mark.parametrize(("zone", "args"), SAME)
def test_resolver_query_prints_dnssec_records_as_dig_does(
    ports: Ports, zone: str, args: tuple[str, ...]
) -> None:
    port = ports.nsec if zone == "nsec" else ports.nsec3
    dig_out, ours = run_both(port, "+dnssec", "+norecurse", *args)
    assert ours == dig_out
    assert "RRSIG" in ours


@pytest.mark.parametrize(
    "flags",
    [("+dnssec",), ("+cd",), ("+adflag",), ("+dnssec", "+cd", "+adflag"), ("+nodnssec",)],
    ids=["dnssec", "cd", "adflag", "all-three", "none"],
)
def test_resolver_query_sends_the_dnssec_flags_as_dig_does(
    ports: Ports, flags: tuple[str, ...]
) -> None:
    dig_out, ours = run_both(ports.nsec, "www.signed.test", "+nocmd", "+nostats", *flags)
    id_line = re.compile(r"id: \d+")
    dig_body = dig_out.split(";; Got answer:\n", 1)[1]
    assert id_line.sub("id: N", ours) == id_line.sub("id: N", dig_body)
    assert ("RRSIG" in ours) == ("+dnssec" in flags)
