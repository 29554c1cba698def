"""What a DNSSEC validation costs: per answer with the zone's keys known (warm), and per zone
whose keys must be learned first (cold: its DS set checked with the parent's keys, its DNSKEY
set with a key matching the DS, then the answer).

Zones are signed in the process with fresh keys (the tests' signer, tests/signing.py): the
root, ``test.`` and ``example.test.``, all with the algorithm asked for; the validator is
given replies as the iteration would give them, with the clock fixed. Reported: microseconds
per warm positive answer (each signature checked: the validator's memo of verified signatures
off; and again, the signature remembered), per warm NSEC3 NXDOMAIN (closest encloser proof, 2
iterations of hashing; memo off), per cold zone (memo off), and per reply grouped for the
validator from the records the iteration read (``Reply.from_records``) against a second parse
of its wire (``Reply.from_wire``), each the median of ``--rounds`` rounds of ``--count`` runs.

Run from the repository root (see benchmarks/README.md, section "Validation")::

    python -m benchmarks.validation_bench                 # ECDSAP256SHA256 and RSASHA256-2048
    python -m benchmarks.validation_bench --count 500 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import dns.message
import dns.name
import dns.rrset
import signing

from resolver.engine.validation import (
    REMEMBERED_SIGNATURES,
    NeedDNSKEY,
    NeedDS,
    Outcome,
    Reply,
    TrustAnchor,
    TrustAnchors,
    Validator,
    ZoneKeys,
)
from resolver.wire.records import read_message

SOA = "@ SOA ns hostmaster 1 7200 3600 1209600 300\n@ NS ns\nns A 192.0.2.53\n"
ALGORITHMS = {13: "ECDSAP256SHA256", 8: "RSASHA256 (2048-bit)", 15: "ED25519"}


class Hierarchy:
    def __init__(self, algorithm: int) -> None:
        signing.RSA_BITS = 2048
        self.leaf = signing.SignedZone(
            "example.test.", SOA + "www A 192.0.2.1\n", algorithm=algorithm, nsec3=(2, "ab", False)
        )
        ds = "".join(f"example DS {rd.to_text()}\n" for rd in self.leaf.ds())
        self.test = signing.SignedZone(
            "test.",
            SOA + "example NS ns.example\nns.example A 192.0.2.5\n" + ds,
            algorithm=algorithm,
        )
        root_ds = "".join(f"test. DS {rd.to_text()}\n" for rd in self.test.ds())
        self.root = signing.SignedZone(
            ".", SOA + "test. NS ns.test.\nns.test. A 192.0.2.6\n" + root_ds, algorithm=algorithm
        )
        self.zones = {z.origin: z for z in (self.leaf, self.test, self.root)}
        self.anchors = TrustAnchors(
            {dns.name.root: TrustAnchor(dns.name.root, tuple(self.root.ds()))}
        )
        self.answer = Reply(
            dns.name.from_text("www.example.test."),
            1,
            answer=(self.leaf.signed("www.example.test.", "A"),),
        )
        leaf = self.leaf
        proof = [
            leaf.nsec3("example.test."),
            leaf.nsec3("nope.example.test."),
            leaf.nsec3("*.example.test."),
        ]
        unique = [p for i, p in enumerate(proof) if p not in proof[:i]]
        self.nxdomain = Reply(
            dns.name.from_text("nope.example.test."), 1, 3, authority=(leaf.soa(), *unique)
        )

    def validator(self, remembered: int = 0) -> Validator:
        return Validator(self.anchors, clock=lambda: signing.NOW, remembered_signatures=remembered)

    def ds_reply(self, zone: dns.name.Name) -> Reply:
        parent = self.zones[zone.parent()]
        return Reply(zone, 43, answer=(parent.signed(zone.to_text(), "DS"),))

    def resolve(self, validator: Validator, reply: Reply) -> Outcome:
        while True:
            verdict = validator.validate(reply)
            if isinstance(verdict, Outcome):
                return verdict
            self.learn(validator, verdict)

    def learn(self, validator: Validator, need: NeedDS | NeedDNSKEY) -> None:
        while True:
            if isinstance(need, NeedDS):
                result = validator.learn_ds(need.zone, self.ds_reply(need.zone))
                if result == NeedDNSKEY(need.zone):
                    return
            else:
                zone = self.zones[need.zone]
                result = validator.learn_dnskey(need.zone, zone.dnskey_reply())
            if isinstance(result, ZoneKeys):
                return
            self.learn(validator, result)


def per_run(action: Callable[[], object], count: int, rounds: int) -> float:
    """Median microseconds per call over ``rounds`` rounds of ``count`` calls."""
    results = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(count):
            action()
        results.append((time.perf_counter() - start) / count * 1e6)
    return statistics.median(results)


def cold_zone(world: Hierarchy, count: int, rounds: int) -> float:
    """Median microseconds to validate the answer of a zone whose keys are not known yet,
    the parents' keys known (learned, untimed, through a reply signed by ``test.``)."""
    parent_reply = Reply(dns.name.from_text("test."), 6, answer=(world.test.soa(),))
    results = []
    for _ in range(rounds):
        spent = 0.0
        for _ in range(count):
            fresh = world.validator()
            assert world.resolve(fresh, parent_reply).secure
            start = time.perf_counter()
            assert world.resolve(fresh, world.answer).secure
            spent += time.perf_counter() - start
        results.append(spent / count * 1e6)
    return statistics.median(results)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300, help="validations per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    print(
        f"{'algorithm':<22} {'warm answer':>12} {'remembered':>11} {'warm NXDOMAIN':>14} "
        f"{'cold zone':>10}  (µs)"
    )
    for algorithm, label in ALGORITHMS.items():
        world = Hierarchy(algorithm)
        warm = world.validator()
        assert world.resolve(warm, world.answer).secure
        assert world.resolve(warm, world.nxdomain).secure
        answer = per_run(partial(warm.validate, world.answer), args.count, args.rounds)
        nxdomain = per_run(partial(warm.validate, world.nxdomain), args.count, args.rounds)
        remembering = world.validator(REMEMBERED_SIGNATURES)
        assert world.resolve(remembering, world.answer).secure
        again = per_run(partial(remembering.validate, world.answer), args.count, args.rounds)
        zone = cold_zone(world, max(1, args.count // 5), args.rounds)
        print(f"{label:<22} {answer:>12.0f} {again:>11.0f} {nxdomain:>14.0f} {zone:>10.0f}")
    wire, read = reading(args.count, args.rounds)
    print(
        f"a reply grouped for the validator: second parse {wire:.0f} µs, records read {read:.0f} µs"
    )


def reading(count: int, rounds: int) -> tuple[float, float]:
    """Microseconds to group a signed wildcard answer (TXT and its RRSIG, the NSEC covering
    the name and its RRSIG) for the validator: parsed again from its wire by dnspython, and
    from the records ``wire.records`` read (what recursive mode does). Distinct names, as a
    resolver sees them; ECDSAP256SHA256."""
    zone = signing.SignedZone("example.test.", SOA + "*.wild TXT wild\n", algorithm=13)
    messages = []
    for index in range(count):
        query = dns.message.make_query(f"q{index}.wild.example.test.", "TXT", want_dnssec=True)
        response = dns.message.make_response(query)
        name = dns.name.from_text(f"q{index}.wild.example.test.")
        signed = zone.signed("*.wild.example.test.", "TXT")
        response.answer.append(dns.rrset.from_rdata_list(name, 300, list(signed.rrset)))
        response.answer.append(dns.rrset.from_rdata_list(name, 300, list(signed.sigs)))
        proof = zone.nsec(f"q{index}.wild.example.test.")
        response.authority.append(proof.rrset)
        response.authority.append(
            dns.rrset.from_rdata_list(proof.rrset.name, 300, list(proof.sigs))
        )
        messages.append(response.to_wire())
    origin = dns.name.from_text("example.test.")

    def second_parse() -> None:
        for wire in messages:
            Reply.from_wire(wire, origin)

    def records_read() -> None:
        for wire in messages:
            message = read_message(wire)
            question = message.question
            assert question is not None
            Reply.from_records(
                question.name,
                question.qtype,
                message.rcode,
                message.answer,
                message.authority,
                origin,
            )

    return (
        per_run(second_parse, 1, rounds) / count,
        per_run(records_read, 1, rounds) / count,
    )


if __name__ == "__main__":
    main()
