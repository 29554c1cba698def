"""NSD as the oracle: `resolver authority` and NSD serve the same corpus of zone files, and for
every question over it the status, AA, answer and authority sections must be equal.

NSD runs with ``minimal-responses: yes``, so neither server adds what it need not; the
additional section is not compared. Records are compared as sets, case-folded (the two servers
may keep the query's case or the file's in names), because neither order nor case is part of
an answer's meaning.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import free_port

from resolver.authority import Zone, load_zone
from resolver.wire import (
    QTYPE,
    DNSLabel,
    DNSQuestion,
    DNSRecord,
    RecordSpan,
    name_to_text,
    read_header,
    read_name,
    section_offsets,
    walk_records,
)

pytestmark = pytest.mark.interop

CORPUS = Path(__file__).resolve().parents[2] / "fixtures" / "oracle"
ZONES = {
    "oracle.test.": "oracle.test.zone",
    "child.oracle.test.": "child.oracle.test.zone",
    "other.test.": "other.test.zone",
}
STARTUP = 15.0  # bound on a server becoming ready
STOP = 5.0
QUERY_TIMEOUT = 2.0
# Asked at every name of the corpus, besides the types the name owns.
NAME_ONLY = (QTYPE.NS, QTYPE.CNAME, QTYPE.PTR)
COMMON_TYPES = ("A", "AAAA", "NS", "SOA", "MX", "TXT", "CNAME", "DNAME", "DS", "SRV", "ANY")


def nsd_binary() -> str:
    path = shutil.which("nsd") or ("/usr/sbin/nsd" if Path("/usr/sbin/nsd").exists() else None)
    if path is None:
        pytest.fail("nsd is not installed: apt-get install nsd (.ci/run does)")
    return path


def nsd_config(
    directory: Path, port: int, zones_files: dict[str, str] = ZONES, zonesdir: Path = CORPUS
) -> str:
    zones = "".join(
        f"zone:\n    name: {name}\n    zonefile: {file}\n" for name, file in zones_files.items()
    )
    return (
        "server:\n"
        f"    ip-address: 127.0.0.1@{port}\n"
        f"    port: {port}\n"
        '    username: ""\n'
        '    chroot: ""\n'
        f'    zonesdir: "{zonesdir}"\n'
        f'    pidfile: "{directory}/nsd.pid"\n'
        f'    zonelistfile: "{directory}/zone.list"\n'
        f'    xfrdfile: "{directory}/xfrd.state"\n'
        f'    xfrdir: "{directory}"\n'
        f'    logfile: "{directory}/nsd.log"\n'
        '    database: ""\n'
        "    server-count: 1\n"
        "    minimal-responses: yes\n"
        "    refuse-any: no\n"
        "    rrl-ratelimit: 0\n"
        "    hide-version: yes\n"
        "    verbosity: 1\n"
        "remote-control:\n"
        "    control-enable: no\n" + zones
    )


def ask(port: int, name: str, qtype: int) -> bytes:
    query = DNSRecord(q=DNSQuestion(name, qtype))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(QUERY_TIMEOUT)
        sock.connect(("127.0.0.1", port))
        sock.send(query.pack())
        for _ in range(8):  # a stray datagram is skipped, a few at most
            reply = sock.recv(65535)
            header = read_header(reply)
            if header.id == query.header.id and header.qr:
                return reply
    raise AssertionError(f"no matching reply for {name} {qtype} on port {port}")


def answers(port: int) -> bool:
    try:
        ask(port, "oracle.test.", QTYPE.SOA)
    except (OSError, AssertionError):
        time.sleep(0.05)  # nothing listens yet: pace the polling
        return False
    return True


@contextlib.contextmanager
def serving(args: list[str], port: int, what: str) -> Iterator[None]:
    """Run ``args`` until it answers on ``port``; kill it (only it) on the way out."""
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + STARTUP
        while not answers(port):
            if process.poll() is not None:
                _, err = process.communicate()
                pytest.fail(f"{what} exited with {process.returncode}:\n{err}")
            if time.monotonic() > deadline:
                pytest.fail(f"{what} did not answer on port {port} within {STARTUP}s")
        yield
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.communicate(timeout=STOP)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate(timeout=STOP)


@dataclass(frozen=True)
class Ports:
    nsd: int
    ours: int


@pytest.fixture(scope="module")
def ports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ports]:
    nsd = nsd_binary()
    directory = tmp_path_factory.mktemp("nsd")
    nsd_port, our_port = free_port(), free_port()
    config = directory / "nsd.conf"
    config.write_text(nsd_config(directory, nsd_port))
    ours = [sys.executable, "-m", "resolver", "authority", "--listen", f"127.0.0.1:{our_port}"]
    ours += [f"--zone={CORPUS / file}" for file in ZONES.values()]
    with (
        serving([nsd, "-d", "-c", str(config)], nsd_port, "nsd"),
        serving(ours, our_port, "resolver authority"),
    ):
        yield Ports(nsd_port, our_port)


def corpus_questions() -> list[tuple[str, int]]:
    """Every name of the corpus (owners, empty non-terminals, a child and a sibling of each
    that do not exist) with the common types and the types the name owns."""
    zones: list[Zone] = [load_zone(CORPUS / file) for file in ZONES.values()]
    common = {int(getattr(QTYPE, text)) for text in COMMON_TYPES}
    questions: set[tuple[str, int]] = set()
    for zone in zones:
        for key in zone.names():
            name = str(DNSLabel(key))
            for qtype in set(zone.types_at(key)) | common:
                questions.add((name, qtype))
            for other in (f"nothere.{name}", f"x.y.{name}"):
                for qtype in (QTYPE.A, QTYPE.TXT, QTYPE.DS, QTYPE.NS):
                    questions.add((other, qtype))
    return sorted(questions)


def _name_at(data: bytes, offset: int) -> tuple[str, int]:
    name, after = read_name(data, offset)
    return name_to_text(name).lower(), after


def _rdata_text(data: bytes, span: RecordSpan) -> str:
    """The rdata with compressed names (the types RFC 3597 4 lets a server compress) spelled
    out, so that two servers' compression choices compare equal."""
    start, end = span.rdata_offset, span.end
    if span.rtype in NAME_ONLY:
        return _name_at(data, start)[0]
    if span.rtype == QTYPE.MX:
        return f"{int.from_bytes(data[start : start + 2], 'big')} {_name_at(data, start + 2)[0]}"
    if span.rtype == QTYPE.SOA:
        mname, after = _name_at(data, start)
        rname, after = _name_at(data, after)
        return f"{mname} {rname} {data[after:end].hex()}"
    return data[start:end].hex()


def section(data: bytes, offset: int, count: int) -> list[str]:
    records = []
    for span in walk_records(data, offset, count):
        owner, _ = _name_at(data, span.name_offset)
        ttl = int.from_bytes(data[span.ttl_offset : span.ttl_offset + 4], "big")
        text = f"{owner} {ttl} {QTYPE.get(span.rtype)} {_rdata_text(data, span)}"
        records.append(text)
    return sorted(records)


def summary(reply: bytes) -> dict[str, object]:
    header = read_header(reply)
    offsets = section_offsets(reply)
    return {
        "status": header.rcode,
        "aa": header.aa,
        "answer": section(reply, offsets.answer, header.ancount),
        "authority": section(reply, offsets.authority, header.nscount),
    }


def test_the_corpus_is_loaded_whole_by_both_servers(ports: Ports) -> None:
    for origin in ZONES:
        for port in (ports.nsd, ports.ours):
            reply = summary(ask(port, origin, QTYPE.SOA))
            assert reply["aa"], (port, origin)
            assert len(reply["answer"]) == 1, (port, origin)


def test_every_answer_equals_nsds(ports: Ports) -> None:
    differences = []
    questions = corpus_questions()
    assert len(questions) > 500  # the corpus is all asked, not a sample
    for name, qtype in questions:
        theirs = summary(ask(ports.nsd, name, qtype))
        ours = summary(ask(ports.ours, name, qtype))
        if theirs != ours:
            differences.append(f"{name} {QTYPE.get(qtype)}:\n  nsd:  {theirs}\n  ours: {ours}")
    assert not differences, f"{len(differences)} answers differ:\n" + "\n".join(differences)
