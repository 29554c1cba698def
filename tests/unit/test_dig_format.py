"""Decoding a reply and printing it as dig does, as +short and as JSON: no sockets."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from resolver.dig import Display, Reply, decode, format_json, format_short, format_text
from resolver.errors import WireError
from resolver.wire import EDNS0, RR, DNSRecord, EDNSOption

WHEN = datetime(2024, 3, 1, 12, 30, 5, tzinfo=UTC)


def reply_bytes(
    name: str = "www.example.com.",
    qtype: str = "A",
    *,
    answers: Sequence[str] = (),
    authority: Sequence[str] = (),
    additional: Sequence[str] = (),
    rcode: int = 0,
    flags: str = "qr aa rd",
    edns: bool = True,
    do: bool = False,
    ext_rcode: int = 0,
    qid: int = 4242,
) -> bytes:
    record = DNSRecord.question(name, qtype)
    record.header.id = qid
    record.header.rcode = rcode
    for flag in flags.split():
        setattr(record.header, flag, 1)
    for text in answers:
        record.add_answer(*RR.fromZone(text))
    for text in authority:
        record.add_auth(*RR.fromZone(text))
    for text in additional:
        record.add_ar(*RR.fromZone(text))
    if edns:
        record.add_ar(EDNS0(udp_len=1232, flags="do" if do else "", ext_rcode=ext_rcode))
    return bytes(record.pack())


def make_reply(
    data: bytes, transport: str = "UDP", *, retried_tcp: bool = False, idnout: bool = False
) -> Reply:
    message = decode(data, idnout=idnout)
    return Reply(
        message,
        ("127.0.0.1", 5353),
        transport,  # type: ignore[arg-type]
        0.0123,
        WHEN,
        retried_tcp=retried_tcp,
    )


def test_decode_reads_header_flags_counts_and_opt() -> None:
    data = reply_bytes(answers=["www.example.com. 300 IN A 127.1.0.1"], do=True)
    message = decode(data)
    assert message.id == 4242
    assert message.opcode == "QUERY"
    assert message.status == "NOERROR"
    assert message.flags == ("qr", "aa", "rd")
    assert message.counts == (1, 1, 0, 1)
    assert message.opt is not None
    assert (message.opt.version, message.opt.flags, message.opt.udp) == (0, ("do",), 1232)
    assert message.additional == ()
    assert message.size == len(data)


def test_decode_lists_flags_in_digs_order() -> None:
    message = decode(reply_bytes(flags="cd ad ra rd tc aa qr"))
    assert message.flags == ("qr", "aa", "tc", "rd", "ra", "ad", "cd")


def test_decode_combines_the_extended_rcode_from_opt() -> None:
    assert decode(reply_bytes(rcode=0, ext_rcode=1)).status == "BADVERS"


def test_decode_without_edns_has_no_opt() -> None:
    message = decode(reply_bytes(edns=False, rcode=3))
    assert message.opt is None
    assert message.status == "NXDOMAIN"
    assert message.counts == (1, 0, 0, 0)


def test_decode_keeps_sections_apart() -> None:
    message = decode(
        reply_bytes(
            "example.com.",
            "MX",
            answers=["example.com. 300 IN MX 10 mail.example.com."],
            authority=["example.com. 300 IN NS ns1.example.com."],
            additional=["mail.example.com. 300 IN A 127.1.0.25"],
        )
    )
    assert [r.data for r in message.answer] == ["10 mail.example.com."]
    assert [r.rtype for r in message.authority] == ["NS"]
    assert [(r.name, r.ttl, r.rclass, r.rtype, r.data) for r in message.additional] == [
        ("mail.example.com.", 300, "IN", "A", "127.1.0.25")
    ]
    assert message.counts == (1, 1, 1, 2)


def with_raw_answer(name: str, rtype: int, rdata: bytes) -> bytes:
    """A reply to ``name`` with one answer record of any type and hand-made rdata."""
    data = bytearray(DNSRecord.question(name, "A").pack())
    data[2] |= 0x80  # QR
    data[7] = 1  # ancount
    data += b"\xc0\x0c" + rtype.to_bytes(2, "big") + b"\x00\x01" + (5).to_bytes(4, "big")
    return bytes(data + len(rdata).to_bytes(2, "big") + rdata)


def test_txt_strings_are_quoted_and_escaped_as_dig_does() -> None:
    message = decode(with_raw_answer("t.example.", 16, b'\x08say "hi"\x03a\\b\x02\x00\xff'))
    assert message.answer[0].data == '"say \\"hi\\"" "a\\\\b" "\\000\\255"'


def test_unknown_types_use_the_generic_rfc3597_form() -> None:
    message = decode(with_raw_answer("x.example.", 999, b"\x01\x02"))
    assert (message.answer[0].rtype, message.answer[0].data) == ("TYPE999", "\\# 2 0102")


def test_type_names_come_from_the_record_not_from_the_question() -> None:
    message = decode(with_raw_answer("x.example.", 16, b"\x02ok"))
    assert message.question[0].qtype == "A"
    assert (message.answer[0].rtype, message.answer[0].data) == ("TXT", '"ok"')


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\x00\x01\x81", id="shorter-than-a-header"),
        pytest.param(reply_bytes(answers=["a.example. 1 IN A 127.0.0.1"])[:-15], id="cut-off"),
    ],
)
def test_decode_rejects_malformed_replies(data: bytes) -> None:
    with pytest.raises(WireError):
        decode(data)


def test_decode_rejects_two_opt_records() -> None:
    record = DNSRecord.question("a.example.", "A")
    record.add_ar(EDNS0(udp_len=1232))
    record.add_ar(EDNS0(udp_len=1232))
    with pytest.raises(WireError, match="more than one OPT"):
        decode(bytes(record.pack()))


def test_format_text_has_digs_sections_and_footer() -> None:
    data = reply_bytes(answers=["www.example.com. 300 IN A 127.1.0.1"])
    assert format_text(make_reply(data)) == (
        ";; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 4242\n"
        ";; flags: qr aa rd; QUERY: 1, ANSWER: 1, AUTHORITY: 0, ADDITIONAL: 1\n"
        ";; WARNING: recursion requested but not available\n"
        "\n"
        ";; OPT PSEUDOSECTION:\n"
        "; EDNS: version: 0, flags:; udp: 1232\n"
        ";; QUESTION SECTION:\n"
        ";www.example.com.\t\tIN\tA\n"
        "\n"
        ";; ANSWER SECTION:\n"
        "www.example.com.\t300\tIN\tA\t127.1.0.1\n"
        "\n"
        ";; Query time: 12 msec\n"
        ";; SERVER: 127.0.0.1#5353(127.0.0.1) (UDP)\n"
        ";; WHEN: Fri Mar 01 12:30:05 UTC 2024\n"
        f";; MSG SIZE  rcvd: {len(data)}\n"
        "\n"
    )


def test_format_text_pads_short_names_to_digs_columns() -> None:
    data = reply_bytes("a.example.", answers=["a.example. 5 IN A 127.0.0.1"], flags="qr rd ra")
    text = format_text(make_reply(data))
    assert "a.example.\t\t5\tIN\tA\t127.0.0.1\n" in text
    assert ";a.example.\t\t\tIN\tA\n" in text
    assert "WARNING" not in text


def test_format_text_shows_do_and_tcp_and_skips_empty_sections() -> None:
    data = reply_bytes(
        "nothere.example.com.",
        rcode=3,
        do=True,
        authority=["example.com. 300 IN SOA ns1.example.com. h.example.com. 1 2 3 4 300"],
    )
    text = format_text(make_reply(data, "TCP"))
    assert "status: NXDOMAIN" in text
    assert "; EDNS: version: 0, flags: do; udp: 1232\n" in text
    assert ";; AUTHORITY SECTION:\n" in text
    assert "ANSWER SECTION" not in text
    assert "ADDITIONAL SECTION" not in text
    assert "(127.0.0.1) (TCP)\n" in text


def test_format_short_prints_answer_rdata_one_per_line() -> None:
    data = reply_bytes(
        "alias.example.com.",
        answers=[
            "alias.example.com. 300 IN CNAME www.example.com.",
            "www.example.com. 300 IN A 127.1.0.1",
        ],
        authority=["example.com. 300 IN NS ns1.example.com."],
    )
    assert format_short(make_reply(data)) == "www.example.com.\n127.1.0.1\n"


def test_format_short_of_an_empty_answer_is_empty() -> None:
    assert format_short(make_reply(reply_bytes(rcode=3))) == ""


def test_format_json_is_one_object_with_the_same_content() -> None:
    data = reply_bytes(answers=["www.example.com. 300 IN A 127.1.0.1"], do=True)
    text = format_json(make_reply(data))
    assert text.endswith("\n")
    assert text.count("\n") == 1
    document = json.loads(text)
    assert document == {
        "id": 4242,
        "opcode": "QUERY",
        "status": "NOERROR",
        "flags": ["qr", "aa", "rd"],
        "counts": {"query": 1, "answer": 1, "authority": 0, "additional": 1},
        "opt": {"version": 0, "flags": ["do"], "udp": 1232},
        "question": [{"name": "www.example.com.", "class": "IN", "type": "A"}],
        "answer": [
            {
                "name": "www.example.com.",
                "ttl": 300,
                "class": "IN",
                "type": "A",
                "data": "127.1.0.1",
            }
        ],
        "authority": [],
        "additional": [],
        "query_time_ms": 12.3,
        "server": "127.0.0.1#5353",
        "transport": "UDP",
        "when": "2024-03-01T12:30:05+00:00",
        "size": len(data),
    }


def test_format_json_without_edns_has_null_opt() -> None:
    assert json.loads(format_json(make_reply(reply_bytes(edns=False))))["opt"] is None


def test_dig_module_exports_the_model_and_the_formatters() -> None:
    import resolver.dig

    assert sorted(resolver.dig.__all__) == [
        "Display",
        "Message",
        "Opt",
        "QuestionEntry",
        "Record",
        "Reply",
        "decode",
        "format_json",
        "format_short",
        "format_text",
        "record_line",
        "server_text",
    ]


# --- names and rdata as dig prints them -------------------------------------------------------


def test_special_characters_in_names_are_escaped_as_dig_does() -> None:
    data = with_raw_answer("x.example.", 1, b"\x7f\x00\x00\x01")
    data = data.replace(b"\x01x\x07example", b"\x01;\x07example", 1)
    message = decode(data)
    assert message.question[0].name == "\\;.example."
    weird = bytearray(DNSRecord.question("placeholder.example.", "A").pack())
    weird[13:24] = b'a.b"c(d) @$'
    assert decode(bytes(weird)).question[0].name == 'a\\.b\\"c\\(d\\)\\032\\@\\$.example.'


def test_names_inside_rdata_are_escaped_too() -> None:
    target = b"\x03a.b\x07example\x00"
    message = decode(with_raw_answer("x.example.", 5, target))
    assert (message.answer[0].rtype, message.answer[0].data) == ("CNAME", "a\\.b.example.")


def test_the_rfc8482_hinfo_is_printed_as_text() -> None:
    message = decode(with_raw_answer("example.com.", 13, b"\x07RFC8482\x00"))
    assert (message.answer[0].rtype, message.answer[0].data) == ("HINFO", '"RFC8482" ""')


@pytest.mark.parametrize(
    ("zone_line", "data"),
    [
        pytest.param("a.example. 1 IN A 192.0.2.1", "192.0.2.1", id="A"),
        pytest.param("a.example. 1 IN AAAA 2001:db8::1", "2001:db8::1", id="AAAA"),
        pytest.param("a.example. 1 IN NS ns.example.", "ns.example.", id="NS"),
        pytest.param("a.example. 1 IN PTR host.example.", "host.example.", id="PTR"),
        pytest.param("a.example. 1 IN MX 10 mx.example.", "10 mx.example.", id="MX"),
        pytest.param("a.example. 1 IN SRV 1 2 3 t.example.", "1 2 3 t.example.", id="SRV"),
        pytest.param(
            "a.example. 1 IN SOA ns.example. h.example. 1 2 3 4 5",
            "ns.example. h.example. 1 2 3 4 5",
            id="SOA",
        ),
        pytest.param(
            'a.example. 1 IN CAA 0 issue "ca.example"', '0 issue "ca.example"', id="dnslib-CAA"
        ),
    ],
)
def test_rdata_presentation(zone_line: str, data: str) -> None:
    message = decode(reply_bytes("a.example.", answers=[zone_line]))
    assert message.answer[0].data == data


def test_a_labels_are_shown_as_unicode_with_idnout() -> None:
    data = reply_bytes(
        "xn--bcher-kva.example.", answers=["xn--bcher-kva.example. 5 IN CNAME xn--fa-hia.de."]
    )
    assert decode(data).answer[0].name == "xn--bcher-kva.example."
    shown = decode(data, idnout=True)
    assert shown.question[0].name == "bücher.example."
    assert (shown.answer[0].name, shown.answer[0].data) == ("bücher.example.", "faß.de.")


def test_nsid_is_shown_in_the_opt_pseudosection() -> None:
    record = DNSRecord.question("a.example.", "A")
    record.header.qr = 1
    record.add_ar(EDNS0(udp_len=1232, opts=[EDNSOption(3, b"ns1")]))
    text = format_text(make_reply(bytes(record.pack())))
    assert '; NSID: 6e 73 31 ("ns1")\n' in text


# --- layout -------------------------------------------------------------------------------------


def test_columns_past_a_stop_take_one_space_as_dig_does() -> None:
    long_name = "1.0.0.0." + "0." * 20 + "8.b.d.0.1.0.0.2.ip6.arpa."
    text = format_text(make_reply(reply_bytes(long_name, "PTR")))
    assert f";{long_name} IN PTR\n" in text
    medium = "abcdefghijklmnopqrst.example.com."
    text = format_text(make_reply(reply_bytes(medium)))
    assert f";{medium} IN\tA\n" in text


SOA = (
    "example.com. 3600 IN SOA ns1.example.com. hostmaster.example.com."
    " 2024010101 7200 3600 1209600 300"
)


def test_multiline_splits_the_soa_with_digs_comments() -> None:
    data = reply_bytes("example.com.", "SOA", answers=[SOA])
    display = Display(multiline=True, comments=False, stats=False)
    assert format_text(make_reply(data), display) == (
        ";example.com.\t\tIN SOA\n"
        "example.com.\t\t3600 IN\tSOA ns1.example.com. hostmaster.example.com. (\n"
        "\t\t\t\t2024010101 ; serial\n"
        "\t\t\t\t7200       ; refresh (2 hours)\n"
        "\t\t\t\t3600       ; retry (1 hour)\n"
        "\t\t\t\t1209600    ; expire (2 weeks)\n"
        "\t\t\t\t300        ; minimum (5 minutes)\n"
        "\t\t\t\t)\n"
    )


def test_multiline_keeps_other_records_on_one_line_in_narrower_columns() -> None:
    data = reply_bytes(answers=["www.example.com. 300 IN A 127.1.0.1"])
    display = Display(multiline=True, comments=False, stats=False, question=False)
    assert format_text(make_reply(data), display) == "www.example.com.\t300 IN A 127.1.0.1\n"


@pytest.mark.parametrize(
    ("display", "expected"),
    [
        pytest.param(
            Display(comments=False, question=False, authority=False, additional=False, stats=False),
            "www.example.com.\t300\tIN\tA\t127.1.0.1\n",
            id="noall-answer",
        ),
        pytest.param(
            Display(comments=False, answer=False, authority=False, additional=False, stats=False),
            ";www.example.com.\t\tIN\tA\n",
            id="noall-question",
        ),
        pytest.param(
            Display(question=False, answer=False, authority=False, additional=False, stats=False),
            ";; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 4242\n"
            ";; flags: qr aa rd; QUERY: 1, ANSWER: 1, AUTHORITY: 0, ADDITIONAL: 1\n"
            ";; WARNING: recursion requested but not available\n"
            "\n"
            ";; OPT PSEUDOSECTION:\n"
            "; EDNS: version: 0, flags:; udp: 1232\n",
            id="noall-comments",
        ),
        pytest.param(
            Display(
                comments=False, question=False, answer=False, authority=False, additional=False
            ),
            ";; Query time: 12 msec\n"
            ";; SERVER: 127.0.0.1#5353(127.0.0.1) (UDP)\n"
            ";; WHEN: Fri Mar 01 12:30:05 UTC 2024\n"
            ";; MSG SIZE  rcvd: 60\n"
            "\n",
            id="noall-stats",
        ),
    ],
)
def test_display_options_choose_the_parts_printed(display: Display, expected: str) -> None:
    data = reply_bytes(answers=["www.example.com. 300 IN A 127.1.0.1"])
    assert format_text(make_reply(data), display) == expected


def test_a_tcp_retry_is_announced_first_when_comments_are_on() -> None:
    reply = make_reply(reply_bytes(), "TCP", retried_tcp=True)
    assert format_text(reply).startswith(";; Truncated, retrying in TCP mode.\n;; ->>HEADER")
    assert "Truncated" not in format_text(reply, Display(comments=False))
    assert "Truncated" not in format_short(reply)


# --- DNSSEC records -------------------------------------------------------------------------

SIGNATURE = "Z4iHPc2wDAsEFYO6ZkQkrLchKLfbj9JlBVi/sxx72agNIRAg2W17S/OQN5UIBrsZZ9V2Zw4+dXkF"
KEY = "HyBbgRC2qx4PGTaalkIOZ5i4k4LNR8832d9bHWdWmvEJShmFciT4QFqK486x24N6fy/+XXJc5eICwlCCfzyObw=="
DIGEST = "0123456789ABCDEF" * 4


def dnssec_reply() -> bytes:
    import dns.message
    import dns.rrset

    message = dns.message.make_response(dns.message.make_query("signed.test.", "A"))
    for owner, rdtype, text in (
        (
            "www.signed.test.",
            "RRSIG",
            f"A 13 3 3600 20361231000000 20260101000000 42708 signed.test. {SIGNATURE}",
        ),
        ("signed.test.", "DNSKEY", f"257 3 13 {KEY}"),
        ("sec.signed.test.", "DS", f"12345 13 2 {DIGEST}"),
        ("signed.test.", "NSEC", "ns1.signed.test. NS SOA RRSIG NSEC DNSKEY TYPE65534"),
        (
            "dmipvsdee173qc3j1uj263jdcqeuammt.signed.test.",
            "NSEC3",
            "1 1 3 CAFE GCI8DVKANLJ9MF31S395O540INHSTQLT NS SOA RRSIG",
        ),
        ("signed.test.", "NSEC3PARAM", "1 0 0 -"),
    ):
        message.answer.append(dns.rrset.from_text(owner, 300, "IN", rdtype, text))
    return message.to_wire()


def test_dnssec_rdata_is_presented_as_dig_presents_it() -> None:
    texts = {record.rtype: record.data for record in decode(dnssec_reply()).answer}
    assert texts["RRSIG"] == (
        "A 13 3 3600 20361231000000 20260101000000 42708 signed.test. "
        f"{SIGNATURE[:56]} {SIGNATURE[56:]}"
    )
    assert texts["DNSKEY"] == f"257 3 13 {KEY[:56]} {KEY[56:]}"
    assert texts["DS"] == f"12345 13 2 {DIGEST[:56]} {DIGEST[56:]}"
    assert texts["NSEC"] == "ns1.signed.test. NS SOA RRSIG NSEC DNSKEY TYPE65534"
    assert texts["NSEC3"] == "1 1 3 CAFE GCI8DVKANLJ9MF31S395O540INHSTQLT NS SOA RRSIG"
    assert texts["NSEC3PARAM"] == "1 0 0 -"


def test_dnssec_rdata_in_multiline_breaks_its_long_fields_as_dig_does() -> None:
    text = format_text(make_reply(dnssec_reply()), Display(multiline=True))
    assert "IN DNSKEY 257 3 13 (\n" in text
    assert f"\t\t\t\t{KEY[:44]}\n\t\t\t\t{KEY[44:]}\n" in text
    assert "\t\t\t\t) ; KSK; alg = ECDSAP256SHA256 ; key id = 23682\n" in text
    assert "RRSIG A 13 3 3600 (\n\t\t\t\t20361231000000 20260101000000 42708 signed.test.\n" in text
    assert f"\t\t\t\t{DIGEST[44:]} )\n" in text
    assert (
        "NSEC3 1 1 3 CAFE (\n\t\t\t\tGCI8DVKANLJ9MF31S395O540INHSTQLT\n\t\t\t\tNS SOA RRSIG )"
        in text
    )


def test_malformed_nsec_bitmap_falls_back_to_the_generic_form() -> None:
    record = DNSRecord.question("signed.test.", "NSEC")
    record.header.qr = 1
    data = bytes(record.pack())
    # One NSEC record whose bitmap claims 40 octets in a window (at most 32 are allowed).
    rdata = b"\x00" + b"\x00\x28" + b"\x00" * 4
    owner = b"\x06signed\x04test\x00"
    body = owner + (47).to_bytes(2, "big") + b"\x00\x01" + b"\x00\x00\x01\x2c"
    body += len(rdata).to_bytes(2, "big") + rdata
    data = data[:6] + b"\x00\x01" + data[8:] + body
    (only,) = decode(data).answer
    assert only.data.startswith("\\# 7 ")


def test_record_line_puts_a_record_in_digs_answer_columns() -> None:
    from resolver.dig import Record, record_line

    record = Record("test.", 300, "IN", "DS", "12345 13 2 ABCD")
    assert record_line(record) == "test.\t\t\t300\tIN\tDS\t12345 13 2 ABCD"
