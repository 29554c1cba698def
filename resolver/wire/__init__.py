"""The DNS wire format: the project's only importer of dnslib, plus raw-bytes fast paths.

``raw`` reads and patches message bytes with the stdlib only (the hot path); the dnslib classes
re-exported here (loaded on first use) are for the slow paths that need a full parse or a fresh
message. Everything malformed raises ``resolver.errors.WireError``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from resolver.wire.message import (
    check_name,
    is_absolute,
    minimal_any_reply,
    name_to_wire,
    opt_record,
    parse,
    qclass_name,
    qclass_value,
    qtype_name,
    qtype_value,
    rcode_name,
    replace_opt,
    strip_opt,
    to_text,
)
from resolver.wire.query import (
    CASE_DIFFERS,
    QUESTIONLESS_RCODES,
    build_query,
    make_query,
    reply_mismatch,
)
from resolver.wire.raw import (
    AA,
    AD,
    CD,
    CLASS_IN,
    FORMERR,
    HEADER_SIZE,
    NOERROR,
    NOTIMP,
    NXDOMAIN,
    OPCODE_QUERY,
    QR,
    RA,
    RD,
    REFUSED,
    SERVFAIL,
    TC,
    TYPE_A,
    TYPE_ANY,
    TYPE_AXFR,
    TYPE_CNAME,
    TYPE_IXFR,
    TYPE_NS,
    TYPE_OPT,
    TYPE_SOA,
    Header,
    OptSpan,
    QueryEdns,
    Question,
    RecordSpan,
    Sections,
    ancestors,
    as_bytes,
    error_reply,
    find_opt,
    name_to_text,
    randomize_case,
    read_header,
    read_name,
    read_query_edns,
    read_question,
    section_offsets,
    set_id,
    skip_name,
    skip_records,
    truncated_reply,
    walk_records,
)

if TYPE_CHECKING:
    from dnslib import (
        CLASS,
        EDNS0,
        OPCODE,
        QTYPE,
        RCODE,
        RR,
        DNSHeader,
        DNSLabel,
        DNSQuestion,
        DNSRecord,
        EDNSOption,
    )

__all__ = [
    "AA",
    "AD",
    "CASE_DIFFERS",
    "CD",
    "CLASS",
    "CLASS_IN",
    "EDNS0",
    "FORMERR",
    "HEADER_SIZE",
    "NOERROR",
    "NOTIMP",
    "NXDOMAIN",
    "OPCODE",
    "OPCODE_QUERY",
    "QR",
    "QTYPE",
    "QUESTIONLESS_RCODES",
    "RA",
    "RCODE",
    "RD",
    "REFUSED",
    "RR",
    "SERVFAIL",
    "TC",
    "TYPE_A",
    "TYPE_ANY",
    "TYPE_AXFR",
    "TYPE_CNAME",
    "TYPE_IXFR",
    "TYPE_NS",
    "TYPE_OPT",
    "TYPE_SOA",
    "DNSHeader",
    "DNSLabel",
    "DNSQuestion",
    "DNSRecord",
    "EDNSOption",
    "Header",
    "OptSpan",
    "QueryEdns",
    "Question",
    "RecordSpan",
    "Sections",
    "ancestors",
    "as_bytes",
    "build_query",
    "check_name",
    "error_reply",
    "find_opt",
    "is_absolute",
    "make_query",
    "minimal_any_reply",
    "name_to_text",
    "name_to_wire",
    "opt_record",
    "parse",
    "qclass_name",
    "qclass_value",
    "qtype_name",
    "qtype_value",
    "randomize_case",
    "rcode_name",
    "read_header",
    "read_name",
    "read_query_edns",
    "read_question",
    "replace_opt",
    "reply_mismatch",
    "section_offsets",
    "set_id",
    "skip_name",
    "skip_records",
    "strip_opt",
    "to_text",
    "truncated_reply",
    "walk_records",
]

# dnslib's classes are loaded on first use, so that what needs only the raw functions (a
# one-shot ``resolver query`` of a common type) does not pay for importing dnslib.
_DNSLIB = frozenset(
    {
        "CLASS",
        "EDNS0",
        "OPCODE",
        "QTYPE",
        "RCODE",
        "RR",
        "DNSHeader",
        "DNSLabel",
        "DNSQuestion",
        "DNSRecord",
        "EDNSOption",
    }
)


if not TYPE_CHECKING:  # hidden from mypy, which then still checks every name imported here

    def __getattr__(name: str) -> object:
        if name in _DNSLIB:
            import dnslib

            value = getattr(dnslib, name)
            globals()[name] = value
            return value
        raise AttributeError(f"module 'resolver.wire' has no attribute {name!r}")
