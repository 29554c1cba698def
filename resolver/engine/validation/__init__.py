"""DNSSEC validation (RFC 4033-4035, 5155, 6840, 8624, 9276), sans I/O, clock injected.

The iteration hands the validator what a reply said and gets back a verdict, or the name of
the DS or DNSKEY set it must fetch first; the validator never sends a query.

Input: a `Reply` (question, rcode, the answer and authority sections as `SignedRRset` values:
a ``dns.rrset.RRset`` with the RRSIG rdatas over it), built with ``Reply.from_wire(bytes,
zone)`` or ``Reply.from_message(message, zone)``; ``zone`` is the zone the iteration asked
(the delegation it followed), which decides whose keys judge unsigned data.

The loop, for one reply::

    validator = Validator(root_anchors(), clock=time.time)
    while True:
        verdict = validator.validate(reply)
        if isinstance(verdict, NeedDS):          # ask the parent: verdict.zone DS
            validator.learn_ds(verdict.zone, Reply.from_wire(ds_reply, parent_zone))
        elif isinstance(verdict, NeedDNSKEY):    # ask the zone: verdict.zone DNSKEY
            validator.learn_dnskey(verdict.zone, Reply.from_wire(dnskey_reply, verdict.zone))
        else:
            break                                # an Outcome

`learn_ds` and `learn_dnskey` may themselves answer a `NeedDS`/`NeedDNSKEY` (the DS set of a
zone is signed by its parent, whose keys may be unknown yet): fetch that, learn it, then give
the same reply again. ``keys_for(zone)`` answers a zone's `ZoneKeys` or what it needs.
A referral's authority section (NS with DS, or with the NSEC/NSEC3 proving no DS) may be
given to ``learn_ds`` in place of a DS query's reply.

Output: an `Outcome`: ``security`` (`Security.SECURE`, ``INSECURE``, ``INDETERMINATE``,
``BOGUS``), ``ede`` (RFC 8914: 6 DNSSEC Bogus, 7 Signature Expired, 8 Signature Not Yet
Valid, 9 DNSKEY Missing, 10 RRSIGs Missing, 12 NSEC Missing; 1 or 2 with an insecure zone
whose DS records name only unsupported algorithms or digests; 27 with an insecure answer whose
NSEC3 records use more than ``nsec3_iterations`` (150, Unbound's limit) iterations),
``reason`` (for the log) and ``ttl``, the most seconds the validated data may be cached
(RFC 4035 5.3.3). The verdict covers the whole answer: each RRset of a CNAME or DNAME chain,
and the denial of existence (NXDOMAIN, NODATA, wildcard expansion, wildcard NODATA; NSEC or
NSEC3 with closest encloser proofs and opt-out) when the answer lacks the data asked for.

What the validator learns of zones' keys it keeps until their TTL (capped by the signatures)
runs out; a bogus zone for `BOGUS_TTL` seconds (RFC 9520); at most `MAX_ZONES` of them. It
remembers at most `REMEMBERED_SIGNATURES` signatures found to verify, so that one signature
over the same data (a wildcard's RRset under many names, the same NSEC) is checked once.
``Reply.from_records`` groups the records the iteration already read, without a second parse
of the wire.

``answering(outcome, mode=..., ad=..., do=..., cd=...)`` turns a verdict into the answer's
flags (AD, SERVFAIL, EDE) as Unbound answers; see `resolver.engine.validation.answering`.
"""

from resolver.engine.validation.anchors import (
    ROOT_ANCHORS,
    TrustAnchor,
    TrustAnchors,
    parse_trust_anchors,
    read_trust_anchors,
    root_anchors,
)
from resolver.engine.validation.answering import Answering, answering
from resolver.engine.validation.denial import NSEC3_ITERATION_LIMIT
from resolver.engine.validation.outcome import (
    EDE_DNSKEY_MISSING,
    EDE_DNSSEC_BOGUS,
    EDE_NSEC3_ITERATIONS,
    EDE_NSEC_MISSING,
    EDE_RRSIGS_MISSING,
    EDE_SIGNATURE_EXPIRED,
    EDE_SIGNATURE_NOT_YET_VALID,
    EDE_UNSUPPORTED_ALGORITHM,
    EDE_UNSUPPORTED_DIGEST,
    Need,
    NeedDNSKEY,
    NeedDS,
    Outcome,
    Reply,
    Security,
    SignedRRset,
)
from resolver.engine.validation.signatures import SUPPORTED_ALGORITHMS, SUPPORTED_DIGESTS
from resolver.engine.validation.validator import (
    BOGUS_TTL,
    MAX_ZONES,
    REMEMBERED_SIGNATURES,
    Validator,
    ZoneKeys,
)

__all__ = [
    "BOGUS_TTL",
    "EDE_DNSKEY_MISSING",
    "EDE_DNSSEC_BOGUS",
    "EDE_NSEC3_ITERATIONS",
    "EDE_NSEC_MISSING",
    "EDE_RRSIGS_MISSING",
    "EDE_SIGNATURE_EXPIRED",
    "EDE_SIGNATURE_NOT_YET_VALID",
    "EDE_UNSUPPORTED_ALGORITHM",
    "EDE_UNSUPPORTED_DIGEST",
    "MAX_ZONES",
    "NSEC3_ITERATION_LIMIT",
    "REMEMBERED_SIGNATURES",
    "ROOT_ANCHORS",
    "SUPPORTED_ALGORITHMS",
    "SUPPORTED_DIGESTS",
    "Answering",
    "Need",
    "NeedDNSKEY",
    "NeedDS",
    "Outcome",
    "Reply",
    "Security",
    "SignedRRset",
    "TrustAnchor",
    "TrustAnchors",
    "Validator",
    "ZoneKeys",
    "answering",
    "parse_trust_anchors",
    "read_trust_anchors",
    "root_anchors",
]
