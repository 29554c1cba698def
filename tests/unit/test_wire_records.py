"""Whole messages as records: names inside rdata decompressed, replies written back."""

from __future__ import annotations

import pytest

from resolver.errors import WireError
from resolver.wire import DNSRecord
from resolver.wire.message import name_to_wire
from resolver.wire.records import Record, build_reply, read_message, target_name


def reply_text(text: str) -> bytes:
    """A reply built by dnslib (which compresses names) from zone-file lines."""
    from dnslib import RR

    record = DNSRecord.question("www.example.com", "A").reply()
    for rr in RR.fromZone(text):
        record.add_answer(rr)
    return bytes(record.pack())


def test_names_in_rdata_are_decompressed() -> None:
    data = reply_text(
        "www.example.com. 300 IN CNAME alias.example.com.\n"
        "example.com. 300 IN MX 10 mail.example.com.\n"
        "example.com. 300 IN SOA ns.example.com. host.example.com. 1 2 3 4 5\n"
    )
    message = read_message(data)
    cname, mx, soa = message.answer
    assert target_name(cname) == name_to_wire("alias.example.com.")
    assert mx.rdata == b"\x00\x0a" + name_to_wire("mail.example.com.")
    assert soa.rdata.startswith(name_to_wire("ns.example.com.") + name_to_wire("host.example.com."))
    assert len(soa.rdata) == len(name_to_wire("ns.example.com.host.example.com.")) + 1 + 20


def test_a_record_is_written_back_as_read() -> None:
    data = reply_text("www.example.com. 300 IN A 192.0.2.1\nx.example.com. 60 IN TXT hello\n")
    message = read_message(data)
    assert message.question is not None
    rebuilt = build_reply(message.question.name, 1, 1, 0, message.answer, flags=0x8180)
    again = DNSRecord.parse(rebuilt)
    assert [str(rr.rdata) for rr in again.rr] == ["192.0.2.1", '"hello"']
    assert str(again.rr[0].rname) == "www.example.com."
    assert rebuilt[12 + len(name_to_wire("www.example.com.")) + 4 :].startswith(b"\xc0\x0c")


def test_rdata_longer_than_its_names_is_refused() -> None:
    import struct

    owner = name_to_wire("www.example.com.")
    rdata = name_to_wire("a.example.com.") + b"\x00"  # a byte after the name
    data = (
        struct.pack("!6H", 1, 0x8180, 1, 1, 0, 0)
        + owner
        + struct.pack("!HH", 5, 1)
        + owner
        + struct.pack("!HHIH", 5, 1, 300, len(rdata))
        + rdata
    )
    with pytest.raises(WireError, match="is not 16 bytes long"):
        read_message(data)


def test_target_name_refuses_other_types() -> None:
    with pytest.raises(WireError):
        target_name(Record(b"\x00", 1, 1, 0, b"\x7f\x00\x00\x01"))
