"""``resolver query +trace`` as a real subprocess over the fake hierarchy (the ``hierarchy``
fixture: one Authority per server address, one port), always with fixtures/root.hints: the
steps it shows, the answer at the end, what the authorities saw, and how it fails."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
from conftest import Hierarchy
from support import assert_one_line_error

# The authorities run on the test's loop while the subprocess traces; the trace, not the loop,
# is under test here, so asyncio's loop will do.
pytestmark = pytest.mark.asyncio(loop_factories=["asyncio"])

REPO = Path(__file__).resolve().parent.parent.parent
HINTS = REPO / "fixtures" / "root.hints"
# A step line: server, zone, question name and type, time, outcome.
STEP = re.compile(r"^(\S+#\d+) +(\S+) +(\S+) (\S+) +(\d+\.\d) ms  (.+)$")


class Shown(NamedTuple):
    server: str
    zone: str
    question: str
    outcome: str


async def trace(port: int, *args: str, hints: Path = HINTS) -> subprocess.CompletedProcess[str]:
    """``resolver query +trace -p PORT --root-hints HINTS ARGS``, awaited so that the
    authorities on this loop can answer; a default server that nothing listens on, should
    the trace ever ask one."""
    env = {**os.environ, "RESOLVER_SERVER": "127.0.0.1:1"}
    command = [sys.executable, "-m", "resolver", "query", "+trace", "-p", str(port)]
    command += ["--root-hints", str(hints), *args]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO, env=env
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return subprocess.CompletedProcess(command, process.returncode, out.decode(), err.decode())


def steps(stdout: str, port: int) -> list[Shown]:
    """The step lines of a trace, the servers without the port (which must be ``port``)."""
    shown = []
    for line in stdout.splitlines():
        match = STEP.match(line)
        if match is None:
            continue
        server, zone, name, qtype, _, outcome = match.groups()
        address, _, server_port = server.partition("#")
        assert server_port == str(port), line
        shown.append(Shown(address, zone, f"{name} {qtype}", outcome))
    return shown


async def test_a_trace_goes_from_the_root_down_to_the_answer(hierarchy: Hierarchy) -> None:
    done = await trace(hierarchy.port, "www.example.com")
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    shown = steps(done.stdout, hierarchy.port)
    assert [(s.server, s.zone) for s in shown] == [
        ("127.0.0.2", "."),
        ("127.0.0.3", "com."),
        ("127.0.0.4", "example.com."),
    ]
    assert shown[0].outcome.startswith("referral to com. ")
    assert shown[1].outcome.startswith("referral to example.com. ")
    assert shown[2] == Shown("127.0.0.4", "example.com.", "www.example.com. A", "answer")


async def test_the_answer_follows_in_digs_format(hierarchy: Hierarchy) -> None:
    lines = (await trace(hierarchy.port, "www.example.com")).stdout.splitlines()
    assert ";; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 0" in lines
    assert ";; flags: qr rd ra; QUERY: 1, ANSWER: 1, AUTHORITY: 0, ADDITIONAL: 0" in lines
    assert "www.example.com.\t300\tIN\tA\t127.1.0.1" in lines
    assert f";; SERVER: 127.0.0.4#{hierarchy.port}(127.0.0.4) (UDP)" in lines
    assert ";; 3 queries in " in "\n".join(lines)


@pytest.mark.parametrize("spelling", ["+trace", "--trace"])
async def test_both_spellings_trace(hierarchy: Hierarchy, spelling: str) -> None:
    done = await trace(hierarchy.port, spelling, "www.example.com", "+short")
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("\n127.1.0.1\n")
    assert len(steps(done.stdout, hierarchy.port)) == 3


async def test_each_query_leaves_from_its_own_port_with_random_case(hierarchy: Hierarchy) -> None:
    names = ["www.example.com", "mail.example.com", "alias.example.com", "txtonly.example.com"]
    done = await trace(hierarchy.port, *names)
    assert done.returncode == 0, done.stderr
    received = [q for a in hierarchy.authorities.values() for q in a.queries]
    assert len(received) == 12  # each question from the root: three servers each
    # A fresh socket per query, its port the kernel's random pick: a repeat is rare luck.
    assert len({q.client[1] for q in received}) >= 11
    assert any(q.qname != q.qname.lower() for q in received)


async def test_a_server_that_does_not_echo_case_is_asked_twice_without_0x20(
    hierarchy: Hierarchy,
) -> None:
    leaf = hierarchy.authorities["127.0.0.4"]
    leaf.faults.lowercase = True
    # 17 letters: a draw all in lower case (echoed exactly) comes once in 2**17 runs.
    done = await trace(hierarchy.port, "txtonly.example.com")
    assert done.returncode == 0, done.stderr
    assert ";; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 0" in done.stdout
    outcomes = [s.outcome for s in steps(done.stdout, hierarchy.port) if s.server == "127.0.0.4"]
    assert outcomes == ["0x20 case not echoed: asking twice without it", "NODATA"]
    names = [q.qname for q in leaf.queries]
    assert len(names) == 3
    assert names[1] == names[2] == "txtonly.example.com."


async def test_a_cname_into_another_zone_is_followed_from_the_root(hierarchy: Hierarchy) -> None:
    done = await trace(hierarchy.port, "cross.example.com")
    assert done.returncode == 0, done.stderr
    shown = steps(done.stdout, hierarchy.port)
    assert shown[2] == Shown(
        "127.0.0.4",
        "example.com.",
        "cross.example.com. A",
        "CNAME to www.example.test.: resolving it",
    )
    assert [(s.server, s.zone) for s in shown[3:]] == [
        ("127.0.0.2", "."),
        ("127.0.0.3", "test."),
        ("127.0.0.5", "example.test."),
    ]
    assert shown[-1].outcome == "answer"
    lines = done.stdout.splitlines()
    assert "cross.example.com.\t300\tIN\tCNAME\twww.example.test." in lines
    assert "www.example.test.\t300\tIN\tA\t127.1.1.1" in lines


async def test_nxdomain_is_an_answer_with_the_soa(hierarchy: Hierarchy) -> None:
    done = await trace(hierarchy.port, "nonexistent.example.com")
    assert (done.returncode, done.stderr) == (0, "")
    assert steps(done.stdout, hierarchy.port)[-1] == Shown(
        "127.0.0.4", "example.com.", "nonexistent.example.com. A", "NXDOMAIN"
    )
    assert ";; ->>HEADER<<- opcode: QUERY, status: NXDOMAIN, id: 0" in done.stdout
    assert re.search(r"^example\.com\.\t+300\tIN\tSOA\tns1\.example\.com\. ", done.stdout, re.M)


async def test_a_glueless_name_server_is_looked_up_on_the_way(hierarchy: Hierarchy) -> None:
    done = await trace(hierarchy.port, "www.oob.com")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    start = lines.index(";; looking up ns.example.test., a name server without glue")
    back = lines.index(";; back to the question")
    lookup = steps("\n".join(lines[start:back]), hierarchy.port)
    assert [(s.server, s.zone) for s in lookup] == [
        ("127.0.0.2", "."),
        ("127.0.0.3", "test."),
        ("127.0.0.5", "example.test."),
    ]
    assert lookup[-1].question == "ns.example.test. A"
    assert lookup[-1].outcome == "answer"
    assert steps("\n".join(lines[back:]), hierarchy.port) == [
        Shown("127.0.0.7", "oob.com.", "www.oob.com. A", "answer")
    ]
    assert "www.oob.com.\t\t300\tIN\tA\t127.1.4.1" in lines


async def test_a_truncated_reply_is_asked_again_over_tcp(hierarchy: Hierarchy) -> None:
    done = await trace(hierarchy.port, "big.example.com", "TXT")
    assert done.returncode == 0, done.stderr
    outcomes = [s.outcome for s in steps(done.stdout, hierarchy.port)]
    assert outcomes[-2:] == ["truncated: asking again over TCP", "answer"]
    assert f";; SERVER: 127.0.0.4#{hierarchy.port}(127.0.0.4) (TCP)" in done.stdout
    assert done.stdout.count("\tIN\tTXT\t") == 8


async def test_a_zone_without_a_live_server_fails_with_one_line(hierarchy: Hierarchy) -> None:
    done = await trace(hierarchy.port, "www.lame.com")
    assert done.returncode == 9
    assert_one_line_error(done.stderr)
    assert "www.lame.com. A: no server of lame.com. could be reached" in done.stderr
    shown = steps(done.stdout, hierarchy.port)
    assert shown[-1].server == "127.0.0.254"
    assert shown[-1].outcome.startswith("failed: ")
    assert "->>HEADER<<-" not in done.stdout


async def test_a_bad_root_hints_file_is_one_line_naming_it(
    hierarchy: Hierarchy, tmp_path: Path
) -> None:
    hints = tmp_path / "broken.hints"
    hints.write_text(". 3600000 NS a.root-servers.test.\na.root-servers.test. A 300.1.1.1\n")
    done = await trace(1, "www.example.com", hints=hints)  # nothing is asked
    assert done.returncode == 2
    assert_one_line_error(done.stderr)
    assert f"--root-hints: {hints}:2: " in done.stderr
    assert done.stdout == ""


async def test_a_missing_root_hints_file_is_one_line_naming_it(
    hierarchy: Hierarchy, tmp_path: Path
) -> None:
    missing = tmp_path / "nothing.hints"
    done = await trace(1, "www.example.com", hints=missing)
    assert done.returncode == 2
    assert_one_line_error(done.stderr)
    assert f"--root-hints: {missing}: " in done.stderr


async def test_a_silent_server_is_asked_twice_then_the_trace_fails(hierarchy: Hierarchy) -> None:
    hierarchy.authorities["127.0.0.4"].faults.drop = True
    done = await trace(hierarchy.port, "www.example.com")
    assert done.returncode == 9
    assert_one_line_error(done.stderr)
    assert "no server of example.com. gave a usable answer (after 4 queries)" in done.stderr
    shown = steps(done.stdout, hierarchy.port)
    assert [(s.server, s.outcome) for s in shown[-2:]] == [("127.0.0.4", "timeout")] * 2


async def test_each_question_is_traced_from_the_root(hierarchy: Hierarchy) -> None:
    done = await trace(hierarchy.port, "www.example.com", "mail.example.com", "+short")
    assert done.returncode == 0, done.stderr
    assert [s.server for s in steps(done.stdout, hierarchy.port)] == [
        "127.0.0.2",
        "127.0.0.3",
        "127.0.0.4",
    ] * 2
    assert "\n127.1.0.1\n\n;; mail.example.com. A from the root hints (" in done.stdout
    assert done.stdout.endswith("\n127.1.0.25\n")
