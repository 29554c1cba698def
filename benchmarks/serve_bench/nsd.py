"""The authoritative upstream of the ``distinct`` workload: NSD serving a wildcard zone.

Everything lives in the benchmark's temporary directory: nsd.conf (loopback only, a free
port, no chroot, no user switch, no database, response rate limiting off, minimal responses),
the zone file and a control socket, through which ``nsd-control stats_noreset`` reads how many
queries NSD answered. NSD runs in the foreground (``nsd -d``) in its own process group, pinned
like the other upstream; stopping the group stops its main, xfrd and server processes.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from benchmarks.errors import SetupError
from benchmarks.ports import free_port
from benchmarks.processes import HOST, LOAD_CORE, Proc

ZONE = "wild.test"
ANSWER = "127.1.0.9"  # every name under the zone's wildcard
PROBE = ("ready.wild.test", "A")
NSD = "NSD"

ZONE_TEXT = f"""$ORIGIN {ZONE}.
$TTL 300
@   IN SOA ns.{ZONE}. hostmaster.{ZONE}. 1 3600 600 86400 300
@   IN NS  ns.{ZONE}.
ns  IN A   127.0.0.53
*   IN A   {ANSWER}
"""


def _config(tmp: Path, port: int) -> str:
    # Response rate limiting, on by default in this build (200 per second per /24), would
    # drop most of the benchmark's queries: every query comes from 127.0.0.1.
    return f"""server:
    ip-address: {HOST}@{port}
    do-ip4: yes
    do-ip6: no
    server-count: 1
    chroot: ""
    username: ""
    pidfile: "{tmp}/nsd.pid"
    database: ""
    zonelistfile: "{tmp}/nsd.zonelist"
    xfrdfile: "{tmp}/nsd.xfrd.state"
    xfrdir: "{tmp}"
    zonesdir: "{tmp}"
    minimal-responses: yes
    hide-version: yes
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
    verbosity: 0
remote-control:
    control-enable: yes
    control-interface: "{tmp}/nsd.ctl"
zone:
    name: {ZONE}
    zonefile: "{tmp}/{ZONE}.zone"
"""


def nsd_proc(tmp: Path, name: str, ttl: int = 300) -> tuple[Proc, NsdCounter]:
    """NSD on a free loopback port with the wildcard zone (not started yet), its records'
    TTL ``ttl`` seconds, and its counter. With ``-d`` and no logfile, NSD logs to stderr:
    the Proc's log."""
    home = tmp / "nsd"
    home.mkdir()
    port = free_port()
    (home / f"{ZONE}.zone").write_text(ZONE_TEXT.replace("$TTL 300", f"$TTL {ttl}"))
    conf = home / "nsd.conf"
    conf.write_text(_config(home, port))
    argv = ["taskset", "-c", LOAD_CORE, "nsd", "-d", "-c", str(conf)]
    return Proc(name, argv, tmp / "nsd.log", port, probe=PROBE), NsdCounter(conf)


class NsdCounter:
    """NSD's count of queries received, read through its control socket."""

    _LINE = re.compile(r"^num\.queries=(\d+)$", re.MULTILINE)

    def __init__(self, conf: Path) -> None:
        self.conf = conf

    def read(self) -> int:
        done = subprocess.run(
            ["nsd-control", "-c", str(self.conf), "stats_noreset"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        match = self._LINE.search(done.stdout)
        if done.returncode != 0 or match is None:
            raise SetupError(f"nsd-control stats_noreset failed:\n{done.stderr}{done.stdout}")
        return int(match.group(1))
