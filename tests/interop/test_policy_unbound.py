"""Unbound as the oracle of the response policy: one RPZ zone, loaded by Unbound (``module-config:
"respip iterator"``, an ``rpz:`` clause) and by our daemon in recursive mode (``[[policy.rpz]]``),
over the fixture hierarchy served by NSD in a network namespace of the test's own
(benchmarks/hierarchy.py). For every question of the set, the rcode and the answer set (names
case-folded, TTLs ignored) are equal; a DROP gets no reply from either.

Unbound 1.17 answers some RPZ questions differently from its cache (the notes on its quirks:
a rule on a CNAME target is skipped for a cached answer), so its cache is flushed before each
question (``unbound-control flush_zone .``, over a control socket of its own).

Everything runs as root in a namespace where only loopback exists; without nsd, unbound,
unbound-control, ip, dig or the rights to make a namespace these tests fail, they never skip.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.errors import SetupError
from benchmarks.hierarchy import (
    UNBOUND_ADDRESS,
    Hierarchy,
    Reply,
    Server,
    require,
    running,
    tool,
    unbound_conf,
)

pytestmark = pytest.mark.interop

OURS = "127.0.0.57"
ZONE = """$ORIGIN rpz.example.
$TTL 300
@ SOA localhost. root.localhost. 1 3600 600 86400 60
  NS localhost.
; QNAME triggers: NXDOMAIN, NODATA, PASSTHRU, DROP, local data, a rewrite
www.example.com CNAME .
short.example.com CNAME *.
mail.example.com CNAME rpz-passthru.
nonexistent.example.com CNAME rpz-drop.
www.example.test A 192.0.2.1
www.example.test A 192.0.2.2
www.example.test TXT "policy"
zero.example.com CNAME www.oob.com.
; a wildcard, and an exact name under it that passes
*.wild.test CNAME .
host.wild.test CNAME rpz-passthru.
; a CNAME target
chain3.example.com CNAME *.
; response IPs: www.half.test, www.sub.example.com
32.1.5.1.127.rpz-ip CNAME .
32.1.2.1.127.rpz-ip A 192.0.2.9
; name servers: wild.test.'s by name (wild.test SOA), oob.com.'s by address (www.oob.com)
ns1.wild.test.rpz-nsdname CNAME *.
32.7.0.0.127.rpz-nsip A 192.0.2.7
"""
QUESTIONS = [
    "www.example.com A",
    "www.example.com AAAA",
    "short.example.com A",
    "mail.example.com A",
    "nonexistent.example.com A",
    "www.example.test A",
    "www.example.test TXT",
    "www.example.test MX",
    "zero.example.com A",
    "anything.wild.test A",
    "a.b.wild.test A",
    "host.wild.test A",
    "wild.test SOA",
    "chain1.example.com A",
    "alias.example.com A",
    "www.half.test A",
    "www.sub.example.com A",
    "www.oob.com A",
    "example.com MX",
    "nothere.example.test A",
    "oob.com SOA",
    "nothere.oob.com A",
]


def question_id(question: str) -> str:
    return question.replace(" ", "-")


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


class Oracle:
    """Unbound with the RPZ zone, and the way to empty its cache."""

    def __init__(self, hierarchy: Hierarchy, home: Path, server: Server, control: str) -> None:
        self.hierarchy = hierarchy
        self.home = home
        self.server = server
        self.control = control

    def flush(self) -> None:
        conf = str(self.home / "unbound.conf")
        done = self.hierarchy.run([self.control, "-c", conf, "flush_zone", "."])
        assert done.returncode == 0, done.stdout + done.stderr
        done = self.hierarchy.run([self.control, "-c", conf, "flush_requestlist"])
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def hierarchy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hierarchy]:
    stack = contextlib.ExitStack()
    with failing_setup():
        require("ip", "nsd", "unbound", "unbound-control", "dig")
        started = stack.enter_context(running(tmp_path_factory.mktemp("policy-hierarchy")))
    with stack:
        yield started


@pytest.fixture(scope="module")
def zone_file(hierarchy: Hierarchy) -> Path:
    path = hierarchy.directory / "rpz.example.zone"
    path.write_text(ZONE)
    return path


@pytest.fixture(scope="module")
def unbound(hierarchy: Hierarchy, zone_file: Path) -> Oracle:
    home = hierarchy.directory / "unbound-rpz"
    home.mkdir()
    conf = unbound_conf(home, UNBOUND_ADDRESS)
    assert 'module-config: "iterator"' in conf
    conf = conf.replace('module-config: "iterator"', 'module-config: "respip iterator"')
    control = f"""remote-control:
    control-enable: yes
    control-interface: "{home}/unbound.ctl"
    control-use-cert: no
rpz:
    name: "rpz.example."
    zonefile: "{zone_file}"
    rpz-log: yes
"""
    conf = conf.replace("remote-control:\n    control-enable: no\n", control)
    (home / "unbound.conf").write_text(conf)
    with failing_setup():
        unbound_control = tool("unbound-control")
        server = hierarchy.start_server(
            "unbound-rpz",
            UNBOUND_ADDRESS,
            [tool("unbound"), "-d", "-c", str(home / "unbound.conf")],
        )
    return Oracle(hierarchy, home, server, unbound_control)


@pytest.fixture(scope="module")
def ours(hierarchy: Hierarchy, zone_file: Path) -> Server:
    with failing_setup():
        return hierarchy.start_resolver(
            address=OURS, extra_toml=f'\n[[policy.rpz]]\nfile = "{zone_file}"\n'
        )


def ask(hierarchy: Hierarchy, server: Server, question: str) -> Reply:
    name, qtype = question.split()
    return hierarchy.dig(server, name, qtype, seconds=3)


def summary(reply: Reply) -> dict[str, object]:
    return {"status": reply.status, "answer": sorted(reply.answer_set())}


def test_unbound_applies_the_zone(hierarchy: Hierarchy, unbound: Oracle) -> None:
    unbound.flush()
    assert ask(hierarchy, unbound.server, "www.example.com A").status == "NXDOMAIN"
    unbound.flush()
    assert ask(hierarchy, unbound.server, "www.oob.com A").status == "NOERROR"


@pytest.mark.parametrize(
    ("question", "answer"),
    [("wild.test SOA", []), ("www.oob.com A", ["192.0.2.7"]), ("nothere.oob.com A", ["192.0.2.7"])],
    ids=["nsdname", "nsip", "nsip-on-nxdomain"],
)
def test_both_apply_the_name_server_triggers(
    hierarchy: Hierarchy, unbound: Oracle, ours: Server, question: str, answer: list[str]
) -> None:
    """The comparison above means something for these: the triggers change the answers."""
    unbound.flush()
    for server in (unbound.server, ours):
        reply = ask(hierarchy, server, question)
        assert reply.status == "NOERROR", reply.text
        assert sorted(str(rdata) for *_, rdata in reply.answer_set()) == answer, reply.text


@pytest.mark.parametrize("question", QUESTIONS, ids=question_id)
def test_our_policy_answer_equals_unbounds(
    hierarchy: Hierarchy, unbound: Oracle, ours: Server, question: str
) -> None:
    unbound.flush()
    theirs = ask(hierarchy, unbound.server, question)
    mine = ask(hierarchy, ours, question)
    assert summary(mine) == summary(theirs), (
        f"{question}\n--- unbound:\n{theirs.text}\n--- ours:\n{mine.text}"
    )
