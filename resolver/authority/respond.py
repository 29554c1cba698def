"""The authoritative answering logic, sans I/O: query bytes in, reply bytes out.

`Responder.answer` picks the closest enclosing zone it serves and follows RFC 1034 4.3.2:
authoritative answers, referrals at zone cuts, CNAME chains across the zones it serves,
DNAME synthesis (RFC 6672), DS from the parent side of a cut (RFC 4035 3.1.4.1), wildcards
(RFC 4592), negative answers with the SOA (RFC 2308), and one RRset for ANY (RFC 8482 4.1).
NSD with ``minimal-responses: yes`` answers the same questions the same way; an oracle test
holds the two together.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from resolver.authority.signed import (
    no_ds_proof,
    nodata_proof,
    nxdomain_proof,
    signatures,
    wildcard_proof,
)
from resolver.authority.zone import (
    TYPE_DNAME,
    TYPE_DS,
    Key,
    Zone,
    make_rr,
    name_key,
    wire_name,
)
from resolver.errors import ConfigError, WireError
from resolver.wire import (
    CLASS_IN,
    EDNS0,
    FORMERR,
    NOERROR,
    NOTIMP,
    NXDOMAIN,
    OPCODE_QUERY,
    RA,
    REFUSED,
    RR,
    TYPE_ANY,
    TYPE_AXFR,
    TYPE_CNAME,
    TYPE_IXFR,
    TYPE_NS,
    TYPE_SOA,
    DNSHeader,
    DNSLabel,
    DNSQuestion,
    DNSRecord,
    QueryEdns,
    error_reply,
    read_header,
    read_query_edns,
    read_question,
)

__all__ = [
    "EDNS_UDP_SIZE",
    "Lookup",
    "Responder",
    "Step",
    "error_response",
    "lookup_in_zone",
]

EDNS_UDP_SIZE = 1232
"""The UDP payload size this server advertises and the most it sends over UDP (DNS flag day
2020)."""

_CLASSIC_UDP_SIZE = 512  # RFC 1035 4.2.1, and the floor RFC 6891 6.2.5 sets for EDNS sizes
_MAX_CHAIN = 16  # CNAMEs followed before giving up on what must be a loop
_MAX_NAME = 255  # octets of a wire name (RFC 1035 2.3.4)
_YXDOMAIN = 6  # a DNAME substitution made a name too long (RFC 6672 2.2)
# ANY gets one RRset (RFC 8482 4.1): the first of these types at the name, in file order; else
# the last of the others, the large DNSSEC types last of all (NSD chooses the same way).
_ANY_PREFERRED = frozenset({1, 28, 6, 15, 12})  # A, AAAA, SOA, MX, PTR
_ANY_AVOIDED = frozenset({48, 46, 47})  # DNSKEY, RRSIG, NSEC
_TYPE_NSEC3 = 50
_BADVERS_HIGH = 1  # extended rcode 16 (BADVERS) = high bits 1, header rcode 0 (RFC 6891 9)
_FLAGS = struct.Struct("!H")


class Step(enum.Enum):
    """What one zone says about one name."""

    ANSWER = "answer"
    CNAME = "cname"
    DNAME = "dname"
    REFERRAL = "referral"
    NODATA = "nodata"
    NXDOMAIN = "nxdomain"


@dataclass(slots=True)
class Lookup:
    """The outcome of a lookup: header flags and the three record sections."""

    rcode: int = NOERROR
    aa: bool = True
    answer: list[Any] = field(default_factory=list)
    authority: list[Any] = field(default_factory=list)
    additional: list[Any] = field(default_factory=list)
    step: Step = Step.ANSWER


class Responder:
    """Answers queries from a set of zones; holds no I/O and no mutable state.

    Raises ConfigError on construction if two zones have the same origin.
    """

    def __init__(self, zones: Iterable[Zone]) -> None:
        self._zones: dict[Key, Zone] = {}
        for zone in zones:
            if zone.apex in self._zones:
                raise ConfigError(zone.source, f"zone {zone.origin} is loaded twice")
            self._zones[zone.apex] = zone

    def __repr__(self) -> str:
        return f"<Responder zones={sorted(z.origin for z in self._zones.values())}>"

    @property
    def zones(self) -> list[Zone]:
        """The zones served, in the order given."""
        return list(self._zones.values())

    def zone_for(self, key: Key, qtype: int = 0) -> Zone | None:
        """The zone served that answers ``qtype`` at ``key``, or None.

        That is the closest enclosing zone, except for DS at the apex of a zone whose parent is
        also served: DS belongs to the parent side of the cut (RFC 4035 3.1.4.1).
        """
        for start in range(len(key) + 1):
            zone = self._zones.get(key[start:])
            if zone is not None:
                if start == 0 and qtype == TYPE_DS and key:
                    return self.zone_for(key[1:]) or zone
                return zone
        return None

    def answer(self, query: bytes, *, max_udp: int | None) -> bytes | None:
        """Return the reply to the raw ``query``, or None when nothing should be sent.

        ``max_udp`` is the largest reply the transport may carry (``EDNS_UDP_SIZE`` for this
        server's UDP), or None for TCP. Over UDP the reply is also capped at 512 bytes, or at
        the client's EDNS size when it sent one; a larger reply is cut to header and question
        (plus OPT) with TC set. Returns None for messages shorter than a header and for
        responses (QR set), so that two servers cannot ping-pong. Raises nothing for bad input:
        malformed queries get FORMERR, other opcodes NOTIMP, names outside every zone, zone
        transfers and classes other than IN REFUSED.
        """
        try:
            header = read_header(query)
        except WireError:
            return None
        if header.qr:
            return None
        if header.opcode != OPCODE_QUERY:
            return error_response(query, NOTIMP)
        try:
            question = read_question(query)
            edns = read_query_edns(query, question.end)
        except WireError:
            return error_response(query, FORMERR)
        qname = DNSLabel(_labels(question.name))
        reply = DNSRecord(
            DNSHeader(id=header.id, qr=1, rd=int(header.rd)),
            q=DNSQuestion(qname, question.qtype, question.qclass),
        )
        if edns is not None and edns.version != 0:
            reply.add_ar(EDNS0(udp_len=EDNS_UDP_SIZE, ext_rcode=_BADVERS_HIGH))
            return bytes(reply.pack())
        dnssec = edns is not None and edns.do
        self._fill(reply, qname, question.qtype, question.qclass, dnssec)
        if edns is not None:
            # RFC 3225 3: the DO bit is copied into the response.
            reply.add_ar(EDNS0(udp_len=EDNS_UDP_SIZE, flags="do" if dnssec else ""))
        wire = bytes(reply.pack())
        limit = _udp_limit(edns, max_udp)
        if limit is not None and len(wire) > limit:
            return _truncated(reply, edns)
        return wire

    def _fill(self, reply: Any, qname: Any, qtype: int, qclass: int, dnssec: bool) -> None:
        if qclass != CLASS_IN or qtype in (TYPE_AXFR, TYPE_IXFR):
            # Only IN data is served, and zone transfers are not offered to anyone.
            reply.header.rcode = REFUSED
            return
        result = self.lookup(qname, qtype, dnssec=dnssec)
        if result is None:
            reply.header.rcode = REFUSED
            return
        reply.header.rcode = result.rcode
        reply.header.aa = int(result.aa)
        reply.add_answer(*result.answer)
        reply.add_auth(*result.authority)
        reply.add_ar(*result.additional)

    def lookup(self, qname: Any, qtype: int, *, dnssec: bool = False) -> Lookup | None:
        """Resolve ``qname``/``qtype`` (class IN) from the zones served, following CNAMEs.

        With ``dnssec`` (the query's DO bit), signed zones add their RRSIGs and proofs.
        Returns None when no zone encloses ``qname`` (the caller answers REFUSED). A CNAME
        chain stops at a name outside every zone, at a referral, or at a loop, keeping the
        CNAMEs found so far; AA reflects the first zone, the rcode the last name (RFC 6604).
        """
        key = name_key(qname)
        zone = self.zone_for(key, qtype)
        if zone is None:
            return None
        result = Lookup()
        seen = {key}
        name = qname
        proofs: list[Any] = []  # the wildcard proofs of the CNAMEs followed (with DO)
        for _ in range(_MAX_CHAIN):
            step = lookup_in_zone(zone, name, qtype, dnssec=dnssec)
            if step.step is Step.REFERRAL and result.answer:
                break
            result.answer.extend(step.answer)
            result.authority = proofs + step.authority
            result.additional = step.additional
            result.rcode, result.step = step.rcode, step.step
            result.aa = result.aa and step.aa
            if step.step not in (Step.CNAME, Step.DNAME) or step.rcode != NOERROR:
                break
            proofs = result.authority
            name = next(rr for rr in reversed(step.answer) if rr.rtype == TYPE_CNAME).rdata.label
            key = name_key(name)
            next_zone = self.zone_for(key, qtype)
            if next_zone is None or key in seen:
                break
            seen.add(key)
            zone = next_zone
        return result


def lookup_in_zone(zone: Zone, qname: Any, qtype: int, *, dnssec: bool = False) -> Lookup:
    """What ``zone`` alone says about ``qname``/``qtype``: one step, CNAMEs not followed.

    ``qname`` must be inside the zone (an assert). Wildcard answers are synthesized with
    ``qname`` as owner; a name below a DNAME gets the DNAME and a CNAME synthesized from it
    (YXDOMAIN when the new name would be too long); DS at a cut is answered from this side;
    TYPE ANY returns one RRset of the name (RFC 8482 4.1). With ``dnssec`` and a signed
    zone, each RRset comes with its RRSIGs and each negative or wildcard answer and each
    referral with its NSEC or NSEC3 proof (RFC 4035 3.1).
    """
    key = name_key(qname)
    assert zone.contains(key), f"{qname} is not in {zone.origin}"
    signed = dnssec and zone.signed
    cut = zone.cut_above(key)
    if cut is not None and not (cut == key and qtype == TYPE_DS):
        return _referral(zone, cut, signed)
    owner = key
    encloser = key
    if not zone.exists(key):
        encloser = _closest_encloser(zone, key)
        if encloser in zone.dnames:
            return _dname(zone, qname, encloser, signed)
        owner = (b"*", *encloser)
        if not zone.exists(owner):
            authority = _negative_soa(zone, signed)
            if signed:
                authority += nxdomain_proof(zone, key, encloser)
            return Lookup(NXDOMAIN, authority=authority, step=Step.NXDOMAIN)
    synthesized = owner != key
    rrsets = zone.types_at(owner)
    chosen = _any_rrset(rrsets) if qtype == TYPE_ANY else 0
    step = Step.ANSWER
    if chosen:
        rtype = chosen
    elif qtype in rrsets:
        rtype = qtype
    elif TYPE_CNAME in rrsets:
        rtype, step = TYPE_CNAME, Step.CNAME
    else:
        authority = _negative_soa(zone, signed)
        if signed:
            authority += nodata_proof(zone, key, owner)
        return Lookup(authority=authority, step=Step.NODATA)
    records = list(rrsets[rtype])
    answer = _owned_by(records, qname, synthesized)
    authority = []
    if signed:
        answer += signatures(zone, owner, rtype, qname, synthesized)
        if synthesized:
            authority = wildcard_proof(zone, key, encloser)
    if step is Step.CNAME:
        return Lookup(answer=answer, authority=authority, step=step)
    additional = _targets(zone, records) if qtype == TYPE_NS else []
    return Lookup(answer=answer, authority=authority, additional=additional)


def _negative_soa(zone: Zone, signed: bool) -> list[Any]:
    soa = zone.negative_soa()
    if not signed:
        return [soa]
    # The SOA's RRSIGs take the negative TTL too, as NSD gives them.
    sigs = zone.signatures(zone.apex, TYPE_SOA)
    return [soa, *(RR(rr.rname, rr.rtype, rr.rclass, soa.ttl, rr.rdata) for rr in sigs)]


def _any_rrset(rrsets: Mapping[int, list[Any]]) -> int:
    """The type of the one RRset that answers ANY, or 0 when the name has none."""
    preferred = [rtype for rtype in rrsets if rtype in _ANY_PREFERRED and rrsets[rtype]]
    if preferred:
        return preferred[0]
    others = [rtype for rtype in rrsets if rrsets[rtype] and rtype != _TYPE_NSEC3]
    normal = [rtype for rtype in others if rtype not in _ANY_AVOIDED]
    return (normal or others or [0])[-1]


def _dname(zone: Zone, qname: Any, owner: Key, signed: bool) -> Lookup:
    """The DNAME at ``owner`` and the CNAME it synthesizes for ``qname`` below it (unsigned:
    RFC 6672 5.3.1 lets a validator check it against the signed DNAME)."""
    (dname,) = zone.rrset(owner, TYPE_DNAME)
    sigs = zone.signatures(owner, TYPE_DNAME) if signed else []
    labels = tuple(qname.label)
    target = labels[: len(labels) - len(owner)] + zone.dnames[owner]
    if len(wire_name(target)) > _MAX_NAME:
        return Lookup(_YXDOMAIN, answer=[dname, *sigs], step=Step.DNAME)
    cname = make_rr(labels, TYPE_CNAME, int(dname.ttl), wire_name(target))
    return Lookup(answer=[dname, *sigs, cname], step=Step.DNAME)


def _referral(zone: Zone, cut: Key, signed: bool) -> Lookup:
    ns = zone.rrset(cut, TYPE_NS)
    authority = ns + no_ds_proof(zone, cut) if signed else ns
    return Lookup(aa=False, authority=authority, additional=_targets(zone, ns), step=Step.REFERRAL)


def _targets(zone: Zone, ns_records: list[Any]) -> list[Any]:
    """The addresses (glue) this zone holds for the NS targets; out-of-zone targets get none."""
    glue: list[Any] = []
    for rr in ns_records:
        target = name_key(rr.rdata.label)
        if zone.contains(target):
            glue.extend(zone.addresses(target))
    return glue


def _closest_encloser(zone: Zone, key: Key) -> Key:
    for start in range(1, len(key) + 1):
        if zone.exists(key[start:]):
            return key[start:]
    raise AssertionError("the apex always exists")


def _owned_by(records: list[Any], qname: Any, synthesized: bool) -> list[Any]:
    if not synthesized:
        return list(records)
    return [RR(qname, rr.rtype, rr.rclass, rr.ttl, rr.rdata) for rr in records]


def _labels(wire_name: bytes) -> tuple[bytes, ...]:
    labels: list[bytes] = []
    pos = 0
    while wire_name[pos]:
        length = wire_name[pos]
        labels.append(wire_name[pos + 1 : pos + 1 + length])
        pos += 1 + length
    return tuple(labels)


def _udp_limit(edns: QueryEdns | None, max_udp: int | None) -> int | None:
    if max_udp is None:
        return None
    client = max(_CLASSIC_UDP_SIZE, edns.udp_size) if edns is not None else _CLASSIC_UDP_SIZE
    return min(client, max_udp)


def _truncated(reply: Any, edns: QueryEdns | None) -> bytes:
    short = DNSRecord(DNSHeader(id=reply.header.id, qr=1, rd=reply.header.rd), q=reply.q)
    short.header.tc = 1
    short.header.aa = reply.header.aa
    short.header.rcode = reply.header.rcode
    if edns is not None:
        # RFC 6891 7: a responder that understood EDNS includes OPT in every reply.
        short.add_ar(EDNS0(udp_len=EDNS_UDP_SIZE))
    return bytes(short.pack())


def error_response(query: bytes, rcode: int) -> bytes | None:
    """A reply to ``query`` with ``rcode``, no records and RA clear; None if it has no header."""
    try:
        reply = error_reply(query, rcode)
    except WireError:
        return None
    # error_reply speaks as a resolver; an authoritative server offers no recursion.
    (flags,) = _FLAGS.unpack_from(reply, 2)
    return reply[:2] + _FLAGS.pack(flags & ~RA) + reply[4:]
