"""The zone-file authoritative server used by tests, the demo and docker compose.

`masterfile` reads master files (the one importer of dnspython), `zone` checks their records
as a zone and indexes them, `respond` answers queries without I/O, `server` runs the UDP and
TCP listeners with fault injection and logging.
"""

from __future__ import annotations

from resolver.authority.respond import (
    EDNS_UDP_SIZE,
    Lookup,
    Responder,
    Step,
    error_response,
    lookup_in_zone,
)
from resolver.authority.server import Authority, Faults, ReceivedQuery, serve_authority
from resolver.authority.zone import Key, Zone, load_zone, name_key, parse_zone

__all__ = [
    "EDNS_UDP_SIZE",
    "Authority",
    "Faults",
    "Key",
    "Lookup",
    "ReceivedQuery",
    "Responder",
    "Step",
    "Zone",
    "error_response",
    "load_zone",
    "lookup_in_zone",
    "name_key",
    "parse_zone",
    "serve_authority",
]
