"""DNSSEC in the container hierarchy: the zones are signed at each start with keys made then
(the `sign` service, docker/sign-zones.py), and the recursive daemon validates from the root's
DS it wrote. Secure answers carry AD for a client that asks with AD or DO (with their RRSIGs
for DO), the broken zones are SERVFAIL with their Extended DNS Error, CD gives the data as it
came without AD, and the unsigned sib.com. (no DS at com.) answers without AD. `resolver query
+trace +dnssec`, from the same anchor, shows zone by zone which DS made each zone secure, the
NSEC that makes sib.com. insecure, and why a broken zone is bogus."""

from __future__ import annotations

import functools
import re
import subprocess
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
from conftest import TRANSPORTS, address, addresses
from conftest import ask as ask_service
from trace_output import chain

RECURSIVE = "recursive"
# The trust anchor the `sign` service wrote: the root's DS (the signed volume, read-only here).
ANCHOR = Path("/signed/root.key")


# Validation from cold may take a few round trips through the hierarchy.
ask = functools.partial(ask_service, timeout=10)


def types(section: list[dns.rrset.RRset]) -> set[str]:
    return {dns.rdatatype.to_text(rrset.rdtype) for rrset in section}


def ede(reply: dns.message.Message) -> list[int]:
    return [int(error.code) for error in reply.extended_errors()]


# Signed all the way from the root; each answer is reached down another path.
SECURE = [
    ("plain", "www.example.com.", "A", {"127.1.0.1"}),
    ("sub-delegation", "www.sub.example.com.", "A", {"127.1.2.1"}),
    ("other-tld", "www.example.test.", "A", {"127.1.1.1"}),
    ("wildcard", "anything.wild.test.", "A", {"127.1.3.1"}),
    ("glueless-out-of-bailiwick-ns", "www.oob.com.", "A", {"127.1.4.1"}),
    ("half-lame", "www.half.test.", "A", {"127.1.5.1"}),
    ("wildcard-cname-into-another-zone", "foo.alias.wild.test.", "A", {"127.1.1.1"}),
]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("name", "rdtype", "expected"), [s[1:] for s in SECURE], ids=[s[0] for s in SECURE]
)
def test_a_secure_answer_has_ad_when_asked_with_ad(
    name: str, rdtype: str, expected: set[str], transport: str
) -> None:
    reply = ask(RECURSIVE, name, rdtype, transport=transport, ad=True)
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AD
    assert addresses(reply) == expected
    assert "RRSIG" not in types(reply.answer)  # no DO: no RRSIGs


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_secure_answer_asked_with_do_has_ad_and_its_rrsigs(transport: str) -> None:
    reply = ask(RECURSIVE, "www.example.com.", transport=transport, do=True)
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AD
    assert types(reply.answer) == {"A", "RRSIG"}
    rrsig = next(r for r in reply.answer if r.rdtype == dns.rdatatype.RRSIG)
    assert [(rd.type_covered, rd.signer.to_text()) for rd in rrsig] == [
        (dns.rdatatype.A, "example.com.")
    ]


def test_a_secure_answer_has_no_ad_for_a_client_that_asked_for_neither() -> None:
    reply = ask(RECURSIVE, "www.example.com.")
    assert reply.rcode() == dns.rcode.NOERROR
    assert not reply.flags & dns.flags.AD


@pytest.mark.parametrize(
    ("name", "rdtype", "rcode", "proof"),
    [
        ("nonexistent.example.com.", "A", dns.rcode.NXDOMAIN, "NSEC"),
        ("www.example.com.", "MX", dns.rcode.NOERROR, "NSEC"),
        ("x.b.wild.test.", "A", dns.rcode.NXDOMAIN, "NSEC"),
    ],
    ids=["nxdomain", "nodata", "nxdomain-beside-a-wildcard"],
)
def test_a_signed_denial_is_secure_with_its_proof(
    name: str, rdtype: str, rcode: int, proof: str
) -> None:
    reply = ask(RECURSIVE, name, rdtype, do=True)
    assert reply.rcode() == rcode
    assert reply.flags & dns.flags.AD
    assert not reply.answer
    assert {"SOA", proof, "RRSIG"} <= types(reply.authority)


def test_a_wildcard_answer_with_do_carries_the_nsec_of_its_proof() -> None:
    reply = ask(RECURSIVE, "anything.wild.test.", "TXT", do=True)
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AD
    assert types(reply.answer) == {"TXT", "RRSIG"}
    assert "NSEC" in types(reply.authority)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_insecure_delegation_answers_without_ad(transport: str) -> None:
    # sib.com. is unsigned, and com.'s NSEC proves its delegation has no DS.
    reply = ask(RECURSIVE, "www.sib.com.", transport=transport, ad=True, do=True)
    assert reply.rcode() == dns.rcode.NOERROR
    assert addresses(reply) == {"127.1.7.1"}
    assert not reply.flags & dns.flags.AD
    assert types(reply.answer) == {"A"}


def test_the_insecure_delegation_is_proven_by_the_parent() -> None:
    # The proof the daemon relies on: com.'s referral to sib.com. holds no DS, and an NSEC
    # at sib.com. whose type bitmap has NS but no DS.
    reply = ask("tld", "www.sib.com.", do=True, recurse=False)
    assert "DS" not in types(reply.authority)
    nsec = next(r for r in reply.authority if r.rdtype == dns.rdatatype.NSEC)
    assert nsec.name.to_text() == "sib.com."
    covered = {kind for rd in nsec for kind in rd.to_text().split()[1:]}
    assert "NS" in covered
    assert "DS" not in covered


BROKEN = [
    ("expired-signatures", "www.expired.example.com.", dns.edns.EDECode.SIGNATURE_EXPIRED),
    ("ds-matching-no-key", "www.nokey.example.com.", dns.edns.EDECode.DNSKEY_MISSING),
]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(("name", "code"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_a_broken_zone_answers_servfail_with_its_ede(name: str, code: int, transport: str) -> None:
    reply = ask(RECURSIVE, name, transport=transport, ad=True)
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert not reply.answer
    assert not reply.flags & dns.flags.AD
    assert ede(reply) == [code]


@pytest.mark.parametrize(("name", "code"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_the_broken_zone_serves_its_data_the_daemon_refuses(name: str, code: int) -> None:
    # The zone is broken in its signatures, not in its data: its server answers.
    reply = ask("sub-example-com", name, do=True, recurse=False)
    assert reply.rcode() == dns.rcode.NOERROR
    assert {"A", "RRSIG"} == types(reply.answer)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("www.expired.example.com.", "127.1.8.1"), ("www.nokey.example.com.", "127.1.8.2")],
    ids=["expired-signatures", "ds-matching-no-key"],
)
def test_cd_gives_the_data_of_a_broken_zone_as_it_came_without_ad(name: str, expected: str) -> None:
    reply = ask(RECURSIVE, name, ad=True, cd=True)
    assert reply.rcode() == dns.rcode.NOERROR
    assert addresses(reply) == {expected}
    assert reply.flags & dns.flags.CD
    assert not reply.flags & dns.flags.AD
    # Checking disabled for one client is not a verdict for the next.
    assert ask(RECURSIVE, name, ad=True).rcode() == dns.rcode.SERVFAIL


def test_cd_on_a_secure_name_gives_its_data() -> None:
    reply = ask(RECURSIVE, "www.sub.example.com.", "AAAA", cd=True, do=True)
    assert reply.rcode() == dns.rcode.NOERROR
    assert addresses(reply) == {"2001:db8:2::1"}
    assert "RRSIG" in types(reply.answer)


def trace(name: str, tmp_path: Path) -> str:
    """``resolver query +trace +dnssec`` from the root container, validating from the anchor
    the `sign` service wrote; its output."""
    hints = tmp_path / "root.hints"
    root = address("root")
    hints.write_text(f". 3600000 NS a.root-servers.test.\na.root-servers.test. 3600000 A {root}\n")
    command = ["resolver", "query", "+trace", "+dnssec", "--root-hints", str(hints)]
    command += ["--trust-anchor", str(ANCHOR), name]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


SECURE_BY_DS = re.compile(
    r"^secure: DS (\d+) \(ECDSAP256SHA256, SHA256; (the trust anchor|referral by [\d.]+#53)\)"
    r" matches KSK \1 \(ECDSAP256SHA256\), which signs the DNSKEY set$"
)


def test_trace_shows_the_ds_that_made_each_zone_secure(tmp_path: Path) -> None:
    out = trace("www.sub.example.com.", tmp_path)
    verdicts = chain(out)
    assert list(verdicts) == [".", "com.", "example.com.", "sub.example.com."]
    for zone, verdict in verdicts.items():
        match = SECURE_BY_DS.match(verdict)
        assert match is not None, (zone, verdict)
        expected = "the trust anchor" if zone == "." else "referral by "
        assert match[2].startswith(expected)
    # The DS of sub.example.com. under example.com.'s referral, as dig +trace shows it.
    assert re.search(r"^sub\.example\.com\.\s+\d+\s+IN\s+DS\s+\d+ 13 2 ", out, re.M)
    assert ";; DNSSEC: secure" in out


def test_trace_shows_the_nsec_that_made_sib_com_insecure(tmp_path: Path) -> None:
    out = trace("www.sib.com.", tmp_path)
    verdict = chain(out)["sib.com."]
    assert verdict.startswith("insecure: ")
    assert re.search(r" \(NSEC in the referral by [\d.]+#53\)$", verdict), verdict
    assert re.search(r"^sib\.com\.\s+\d+\s+IN\s+NSEC\s+", out, re.M)
    assert ";; DNSSEC: insecure" in out


@pytest.mark.parametrize(
    ("name", "zone", "why"),
    [
        ("www.expired.example.com.", "expired.example.com.", "bogus (EDE 7): "),
        ("www.nokey.example.com.", "nokey.example.com.", "bogus (EDE 9): "),
    ],
    ids=["expired-signatures", "ds-matching-no-key"],
)
def test_trace_says_why_a_broken_zone_is_bogus(
    name: str, zone: str, why: str, tmp_path: Path
) -> None:
    out = trace(name, tmp_path)
    verdicts = chain(out)
    assert SECURE_BY_DS.match(verdicts["example.com."])
    assert verdicts[zone].startswith(why)
    assert f";; DNSSEC: {why.rstrip(': ')}" in out
