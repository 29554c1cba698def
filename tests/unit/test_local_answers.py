"""Answers of our own as plain code: which questions LocalAnswers takes, what it replies, and
the hosts-file parser. The daemon-level behaviour is in tests/integration/test_local.py."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from resolver.config import LocalConfig
from resolver.engine import Ask
from resolver.engine.local import HOSTS_TTL, LOCAL_TTL, LocalAnswers
from resolver.errors import ConfigError
from resolver.hosts import parse_hosts, read_hosts
from resolver.wire import DNSRecord, name_to_wire

A, SOA, PTR, TXT, AAAA = 1, 6, 12, 16, 28


def answer(local: LocalAnswers, name: str, qtype: int = A, qclass: int = 1) -> DNSRecord | None:
    reply = local.answer(Ask.of(name_to_wire(name), qtype, qclass, do=False, cd=False))
    return None if reply is None else DNSRecord.parse(reply)


def hosts(text: str) -> LocalAnswers:
    return LocalAnswers.build(LocalConfig(), parse_hosts(text).entries)


def test_names_outside_every_local_zone_are_not_ours() -> None:
    local = LocalAnswers.build(LocalConfig())
    for name in ("www.example.com.", "arpa.", "in-addr.arpa.", "8.8.8.8.in-addr.arpa.", "x."):
        assert answer(local, name, PTR) is None


def test_only_class_in_is_answered() -> None:
    local = LocalAnswers.build(LocalConfig())
    assert answer(local, "localhost.", A, qclass=3) is None
    assert answer(local, "1.1.168.192.in-addr.arpa.", PTR, qclass=3) is None


def test_replies_are_normalized_with_aa_and_the_question_as_asked() -> None:
    local = LocalAnswers.build(LocalConfig())
    reply = answer(local, "WWW.LocalHost.", AAAA)
    assert reply is not None
    assert (reply.header.qr, reply.header.aa, reply.header.ra, reply.header.rd) == (1, 1, 1, 0)
    assert str(reply.q.qname) == "WWW.LocalHost."
    assert [(str(rr.rname), rr.ttl, str(rr.rdata)) for rr in reply.rr] == [
        ("WWW.LocalHost.", LOCAL_TTL, "::1")
    ]
    assert reply.ar == []


def test_a_listed_name_answers_nodata_with_the_zone_soa_for_other_types() -> None:
    local = LocalAnswers.build(LocalConfig())
    reply = answer(local, "1.0.0.127.in-addr.arpa.", TXT)
    assert reply is not None
    assert reply.header.rcode == 0
    assert reply.rr == []
    assert [str(rr.rname) for rr in reply.auth] == ["127.in-addr.arpa."]


def test_ancestors_of_listed_names_exist_inside_a_zone() -> None:
    """RFC 8020: NXDOMAIN says nothing exists below; 0.0.127.in-addr.arpa has a child."""
    local = LocalAnswers.build(LocalConfig())
    for name in ("0.0.127.in-addr.arpa.", "0.127.in-addr.arpa."):
        reply = answer(local, name, PTR)
        assert reply is not None
        assert reply.header.rcode == 0
        assert reply.rr == []
    reply = answer(local, "1.127.in-addr.arpa.", PTR)
    assert reply is not None
    assert reply.header.rcode == 3


def test_all_switches_off_answers_nothing() -> None:
    off = LocalConfig(
        localhost=False, private_reverse=False, special_reverse=False, special_names=False
    )
    local = LocalAnswers.build(off)
    assert local.statistics() == (0, 0, 0, 0)
    assert answer(local, "localhost.") is None


def test_a_forwarded_domain_takes_its_part_out_of_a_local_zone() -> None:
    local = LocalAnswers.build(
        LocalConfig(), forwarded=["1.168.192.in-addr.arpa.", "127.in-addr.arpa.", "corp.test."]
    )
    assert answer(local, "5.1.168.192.in-addr.arpa.", PTR) is None
    assert answer(local, "1.168.192.in-addr.arpa.", SOA) is None
    reply = answer(local, "5.2.168.192.in-addr.arpa.", PTR)
    assert reply is not None
    assert reply.header.rcode == 3
    assert answer(local, "1.0.0.127.in-addr.arpa.", PTR) is None
    assert local.statistics().forwarded == 2  # corp.test is in no local zone


def test_a_forwarded_domain_above_a_local_zone_leaves_it_alone() -> None:
    local = LocalAnswers.build(LocalConfig(), forwarded=["in-addr.arpa."])
    reply = answer(local, "1.1.168.192.in-addr.arpa.", PTR)
    assert reply is not None
    assert reply.header.rcode == 3


def test_hosts_names_answer_both_families_and_nodata_otherwise() -> None:
    local = hosts("192.0.2.1 a.lan\n192.0.2.2 a.lan\n2001:db8::1 b.lan\n")
    first = answer(local, "A.lan.", A)
    assert first is not None
    assert [str(rr.rdata) for rr in first.rr] == ["192.0.2.1", "192.0.2.2"]
    assert {rr.ttl for rr in first.rr} == {HOSTS_TTL}
    for name, qtype in (("a.lan.", AAAA), ("b.lan.", A), ("a.lan.", TXT)):
        reply = answer(local, name, qtype)
        assert reply is not None
        assert reply.header.rcode == 0
        assert reply.rr == []
        assert reply.auth == []  # in no local zone: no SOA to give
    assert answer(local, "lan.", A) is None


def test_hosts_ptr_is_the_first_name_given_for_the_address() -> None:
    local = hosts("192.0.2.1 Canonical.lan alias\n192.0.2.1 later.lan\n")
    reply = answer(local, "1.2.0.192.in-addr.arpa.", PTR)
    assert reply is not None
    assert [str(rr.rdata) for rr in reply.rr] == ["Canonical.lan."]


def test_hosts_data_replaces_the_built_in_data_of_a_name_and_type() -> None:
    local = hosts("127.0.0.2 localhost\n")
    reply = answer(local, "localhost.", A)
    assert reply is not None
    assert [str(rr.rdata) for rr in reply.rr] == ["127.0.0.2"]
    reply = answer(local, "localhost.", AAAA)
    assert reply is not None
    assert [str(rr.rdata) for rr in reply.rr] == ["::1"]


def test_names_sharing_an_address_share_their_answers() -> None:
    names = " ".join(f"ad{i}.example" for i in range(1000))
    local = hosts(f"192.0.2.1 {names}\n")
    built_in = LocalAnswers.build(LocalConfig()).statistics()
    s = local.statistics()
    assert s.names == built_in.names + 1001  # the names and 1.2.0.192.in-addr.arpa (PTR)
    assert s.distinct == built_in.distinct + 2


def test_hosts_parser_skips_bad_lines_with_their_reasons() -> None:
    parsed = parse_hosts(
        "# comment\n\n192.0.2.1 a b # c\nnope x\n192.0.2.2\nfe80::1%eth0 s\n::1 l\n", "f"
    )
    assert parsed.entries == (
        (ipaddress.ip_address("192.0.2.1"), ("a", "b")),
        (ipaddress.ip_address("::1"), ("l",)),
    )
    assert [reason.split(":")[:2] for reason in parsed.skipped] == [
        ["f", "4"],
        ["f", "5"],
        ["f", "6"],
    ]


def test_hosts_names_that_are_not_domain_names_are_skipped() -> None:
    local = hosts(f"192.0.2.1 {'x' * 64}.lan ok.lan a..b\n")
    assert answer(local, "ok.lan.") is not None
    built_in = LocalAnswers.build(LocalConfig()).statistics().names
    assert local.statistics().names == built_in + 2  # ok.lan and 1.2.0.192.in-addr.arpa
    reply = answer(local, "1.2.0.192.in-addr.arpa.", PTR)
    assert reply is not None
    assert [str(rr.rdata) for rr in reply.rr] == ["ok.lan."]  # the first valid name


def test_reading_a_missing_or_binary_hosts_file_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        read_hosts(tmp_path / "missing")
    assert info.value.field == "local.hosts"
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="UTF-8"):
        read_hosts(binary)
