#!/usr/bin/env python3
"""Sign the compose hierarchy's zones with keys made now, and write its trust anchor.

    sign-zones.py SOURCE TARGET

Reads every SOURCE/*.zone (the fixture zones, their name server addresses already those of
the compose network), and writes to TARGET:

* each zone signed (NSEC, ECDSA P-256: a KSK signing the DNSKEY set, a ZSK the rest), with
  the DS of each signed child added to its parent, from the deepest zone up to the root;
  sib.com. is left unsigned and its delegation has no DS: an insecure zone under a secure
  parent, proven by com.'s NSEC;
* two broken children of example.com., served beside sub.example.com. (the server of
  ns1.sub.example.com.): expired.example.com., whose signatures expired days ago (bogus:
  EDE 7, Signature Expired), and nokey.example.com., whose DS in example.com. matches none
  of its keys (bogus: EDE 9, DNSKEY Missing);
* root.key: the root's DS, the trust anchor of the recursive daemon (`[dnssec]
  trust_anchors`).

The private keys live only in this process: nothing but the signed zones and the anchor is
written. docker-compose.yml runs this once per start (the `sign` service), into a volume the
authority containers serve from and the recursive daemon reads its anchor from. Started again
in the same container (`docker-compose run` starts the dependencies of what it runs, this
one too), it leaves the zones as they are: the servers loaded them, and the daemon their
anchor, when they started. A new container (a new project, or a volume left over from one
that was not taken down) signs afresh.
"""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import dns.dnssec
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.DNSKEY
import dns.rrset
import dns.zone
from cryptography.hazmat.primitives.asymmetric import ec

DAY = 86400
ALGORITHM = 13  # ECDSAP256SHA256
UNSIGNED = frozenset({dns.name.from_text("sib.com.")})
PARENT = dns.name.from_text("example.com.")
SHARED_SERVER = dns.name.from_text("ns1.sub.example.com.")
# The broken children of example.com.: label, answer address, signature window (days from
# now), and whether the DS in the parent matches the zone's key.
BROKEN = (
    ("expired", "127.1.8.1", (-30, -3), True),
    ("nokey", "127.1.8.2", (-1, 30), False),
)

Key = tuple[ec.EllipticCurvePrivateKey, dns.rdtypes.ANY.DNSKEY.DNSKEY]


def make_key(flags: int) -> Key:
    private = ec.generate_private_key(ec.SECP256R1())
    return private, dns.dnssec.make_dnskey(private.public_key(), ALGORITHM, flags)


def ds_rrset(origin: dns.name.Name, key: Key, ttl: int) -> dns.rrset.RRset:
    ds = dns.dnssec.make_ds(origin, key[1], "SHA256")
    return dns.rrset.from_rdata(origin, ttl, ds)


def broken_zones(zones: dict[dns.name.Name, dns.zone.Zone]) -> dict[dns.name.Name, tuple]:
    """The broken children, delegated from example.com. to the address of its server of
    sub.example.com.; each with its signature window and whether its DS is right."""
    parent = zones[PARENT]
    address = parent.find_rdataset(SHARED_SERVER, dns.rdatatype.A)[0].address
    made = {}
    for label, answer, window, ds_right in BROKEN:
        origin = dns.name.from_text(f"{label}.{PARENT}")
        server = f"ns1.{origin}"
        zone = dns.zone.from_text(
            f"@ 3600 SOA {server} hostmaster.{origin} 1 7200 3600 1209600 300\n"
            f"@ 3600 NS {server}\n{server} 3600 A {address}\nwww 300 A {answer}\n",
            origin=origin,
            relativize=False,
        )
        with parent.writer() as txn:
            txn.add(origin, 86400, dns.rdata.from_text("IN", "NS", server))
            txn.add(dns.name.from_text(server), 86400, dns.rdata.from_text("IN", "A", address))
        made[origin] = (zone, window, ds_right)
    return made


def sign(source: Path, target: Path) -> None:
    # The container's host name is its ID: the mark of who signed what the volume holds.
    stamp, signer = target / ".signed-by", socket.gethostname()
    if (target / "root.key").exists() and stamp.exists() and stamp.read_text() == signer:
        print(f"sign-zones: {target} was signed by this container already: left as it is")
        return
    now = int(time.time())
    files: dict[dns.name.Name, str] = {}
    zones: dict[dns.name.Name, dns.zone.Zone] = {}
    for path in sorted(source.glob("*.zone")):
        zone = dns.zone.from_file(str(path), relativize=False)
        zones[zone.origin] = zone
        files[zone.origin] = path.name
    windows = {origin: (-1, 30) for origin in zones}
    ds_right = dict.fromkeys(zones, True)
    for origin, (zone, window, right) in broken_zones(zones).items():
        zones[origin], windows[origin], ds_right[origin] = zone, window, right
        files[origin] = f"{origin}zone"
    anchor = ""
    # Deepest first: a zone's DS goes into its parent before the parent is signed.
    for origin in sorted(zones, key=len, reverse=True):
        zone = zones[origin]
        if origin in UNSIGNED:
            continue
        ksk, zsk = make_key(257), make_key(256)
        first, last = windows[origin]
        dns.dnssec.sign_zone(
            zone,
            keys=[ksk, zsk],
            inception=now + first * DAY,
            expiration=now + last * DAY,
        )
        ds = ds_rrset(origin, ksk if ds_right[origin] else make_key(257), 86400)
        if origin == dns.name.root:
            anchor = ds.to_text() + "\n"
            continue
        parent = max(
            (name for name in zones if origin.is_subdomain(name) and name != origin), key=len
        )
        with zones[parent].writer() as txn:
            txn.add(ds)
    target.mkdir(parents=True, exist_ok=True)
    for origin, zone in zones.items():
        written = target / f".{files[origin]}.tmp"
        written.write_text(zone.to_text(relativize=False, want_origin=True))
        written.rename(target / files[origin])
    if not anchor:
        sys.exit("sign-zones: no root zone among the zones")
    (target / "root.key").write_text(anchor)
    stamp.write_text(signer)
    print(f"sign-zones: {len(zones)} zones written to {target}, anchor {target / 'root.key'}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.split("\n\n")[1])
    sign(Path(sys.argv[1]), Path(sys.argv[2]))
