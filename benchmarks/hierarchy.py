"""The fixture hierarchy on port 53, in a network namespace of its own, with real resolvers in
front of it: for tests/interop/test_recursive_unbound.py and benchmarks/recursive_bench.py.

Unbound asks every authority on port 53 and cannot be told otherwise, so the whole hierarchy
of fixtures/README.md runs where port 53 is free for it: a network namespace made for the
occasion (``ip netns add``), where only the loopback interface exists and 127.0.0.0/8 is all
local. Each server address of the fixtures gets one NSD process of its own, bound to
127.0.0.N:53 and serving only the zones the README lists for that address (any other question
gets REFUSED). Unbound (iterator only, the fixtures' root hints) listens on UNBOUND_ADDRESS,
our daemon (``resolver serve`` in recursive mode, asking authorities on port 53) on
OURS_ADDRESS, and questions are asked with ``dig`` run inside the namespace.

Nothing here can reach past loopback: the namespace has no interface but ``lo`` and no route
but loopback's, so a datagram to any other address fails in the kernel with "Network is
unreachable". That is the guarantee; Unbound's own settings (no IPv6, its queries sent from
UNBOUND_ADDRESS, every address outside 127.0.0.0/8 in ``do-not-query-address``) only repeat it.
The namespace has its own ports too: a DNS service on the machine's port 53 (a packaged NSD or
Unbound started by its postinst) neither disturbs this hierarchy nor is disturbed by it.

Every process is started with ``ip netns exec`` (which execs, so the process we hold is the
server itself) in a process group of its own; ``Hierarchy.close()`` ends each group, then any
process still in the namespace (there are only ours), then deletes the namespace. ``running``
calls it on every way out, an exception or KeyboardInterrupt included.

For a workload over many delegations, ``write_spread()`` generates zones at run time:
``spread.test.`` (on 127.0.0.8, delegated from a copy of the fixtures' ``test.``) delegating
each child zone, with glue, to 127.0.0.9, which serves them all; ``running(...,
spread=...)`` serves them beside the fixtures.

Usage::

    with running(tmp_path) as hierarchy:
        unbound = hierarchy.start_unbound()
        ours = hierarchy.start_resolver()
        reply = hierarchy.dig(unbound, "www.example.com", "A")
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks import daemon
from benchmarks.errors import SetupError
from benchmarks.processes import ROOT, Proc

FIXTURES = ROOT / "fixtures"
ZONES = FIXTURES / "zones"
ROOT_HINTS = FIXTURES / "root.hints"

# fixtures/README.md, "Zones and servers": each address and the zones it serves (file names
# are the origin with "zone" after it; the root's is root.zone). 127.0.0.254, lame.com.'s and
# one of half.test.'s servers, is deliberately served by nobody.
AUTHORITIES: dict[str, tuple[str, ...]] = {
    "127.0.0.2": (".",),
    "127.0.0.3": ("com.", "test.", "org."),
    "127.0.0.4": ("example.com.", "sib.com."),
    "127.0.0.5": ("example.test.", "wild.test.", "half.test."),
    "127.0.0.6": ("sub.example.com.",),
    "127.0.0.7": ("oob.com.",),
}
UNBOUND_ADDRESS = "127.0.0.53"
OURS_ADDRESS = "127.0.0.54"
FLOOR_ADDRESS = "127.0.0.55"
PORT = 53

# The Debian package of each tool the harness runs.
PACKAGES = {
    "ip": "iproute2",
    "nsd": "nsd",
    "nsd-control": "nsd",
    "unbound": "unbound",
    "dig": "bind9-dnsutils",
    "dnsperf": "dnsperf",
    "taskset": "util-linux",
}
STARTUP = 15.0  # bound on a server answering once started
DIG_TIME = 12  # dig +time: more than the daemon's query_timeout (10 s)

_namespaces = itertools.count(1)


def tool(name: str) -> str:
    """The path of ``name`` (looked for in /usr/sbin too, which a user's PATH may lack).
    Raises SetupError naming the Debian package when it is not installed."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if found is None:
        package = PACKAGES.get(name, name)
        raise SetupError(f"{name} is not installed: apt-get install {package} (.ci/run does)")
    return found


def require(*names: str) -> None:
    """Raise SetupError naming every tool of ``names`` that is missing."""
    missing = []
    for name in names:
        try:
            tool(name)
        except SetupError as exc:
            missing.append(str(exc))
    if missing:
        raise SetupError("; ".join(missing))


def zone_file(origin: str) -> str:
    return "root.zone" if origin == "." else f"{origin}zone"


def outside_loopback() -> list[str]:
    """The IPv4 networks that together cover every address outside 127.0.0.0/8."""
    everything = ipaddress.IPv4Network("0.0.0.0/0")
    loopback = ipaddress.IPv4Network("127.0.0.0/8")
    return [str(net) for net in sorted(everything.address_exclude(loopback))]


def nsd_conf(
    home: Path, address: str, zones: Sequence[str], files: Mapping[str, Path] | None = None
) -> str:
    """nsd.conf for one server address: its zones only, files from fixtures/zones (or the
    path ``files`` gives for a zone), state in ``home``. Response rate limiting is off: this
    build limits to 200 answers a second per /24 by default, and every query here comes from
    127.0.0.0/24."""
    files = files or {}
    listed = "".join(
        f"zone:\n    name: {z}\n    zonefile: {files.get(z, zone_file(z))}\n" for z in zones
    )
    return f"""server:
    ip-address: {address}
    port: {PORT}
    do-ip4: yes
    do-ip6: no
    server-count: 1
    username: ""
    chroot: ""
    zonesdir: "{ZONES}"
    database: ""
    pidfile: "{home}/nsd.pid"
    zonelistfile: "{home}/zone.list"
    xfrdfile: "{home}/xfrd.state"
    xfrdir: "{home}"
    hide-version: yes
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
    verbosity: 1
remote-control:
    control-enable: yes
    control-interface: "{home}/nsd.ctl"
{listed}"""


def unbound_conf(
    home: Path,
    address: str = UNBOUND_ADDRESS,
    root_hints: Path = ROOT_HINTS,
    trust_anchor: Path | None = None,
) -> str:
    """unbound.conf: one thread, the iterator alone (no validator, so no trust anchor), the
    fixtures' root hints, authorities on loopback allowed and nothing else, glue hardened,
    QNAME minimisation at its default (on). Runs in the foreground as the user who starts it,
    no chroot, logging to stderr.

    Three settings make it fit the fixtures and our daemon's defaults: ``test.`` is a local
    zone of Unbound's by default (RFC 6761) and here must be asked of the hierarchy; a dead
    authority's retransmit timeout stops growing at 1 s (``server_timeout = 1.0`` in ours)
    instead of 2 minutes, so that the fully lame lame.com. ends in SERVFAIL within seconds,
    not minutes; and a reply is dropped only after 10 s (``query_timeout``), where Debian's
    build drops those older than 1.9 s by default (``discard-timeout``).

    With ``trust_anchor`` (a file of DS or DNSKEY records) it validates from that anchor
    (module-config "validator iterator"), attaching Extended DNS Errors to what it judges
    bogus, and logs why at ``val-log-level: 2``."""
    denied = "".join(f"    do-not-query-address: {net}\n" for net in outside_loopback())
    modules = "iterator"
    validating = ""
    if trust_anchor is not None:
        modules = "validator iterator"
        validating = (
            f'    trust-anchor-file: "{trust_anchor}"\n    ede: yes\n    val-log-level: 2\n'
        )

    return f"""server:
    interface: {address}
    port: {PORT}
    outgoing-interface: {address}
    do-ip4: yes
    do-ip6: no
    do-udp: yes
    do-tcp: yes
    num-threads: 1
    username: ""
    chroot: ""
    directory: "{home}"
    pidfile: "{home}/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 1
    module-config: "{modules}"
    root-hints: "{root_hints}"
    do-not-query-localhost: no
{validating}{denied}    local-zone: "test." nodefault
    infra-cache-max-rtt: 1000
    discard-timeout: 10000
    harden-glue: yes
    qname-minimisation: yes
    access-control: 127.0.0.0/8 allow
    hide-identity: yes
    hide-version: yes
remote-control:
    control-enable: no
"""


UNSIGNED = 'validation = "off"'
"""The ``[dnssec]`` settings for the unsigned fixture hierarchy: its root is not IANA's, so
validated against the shipped anchor every answer would be bogus (Unbound here runs the
iterator alone, without its validator)."""


def resolver_toml(
    address: str = OURS_ADDRESS,
    extra: str = "",
    root_hints: Path | None = None,
    dnssec: str = UNSIGNED,
) -> str:
    """The TOML file of our daemon in recursive mode: every authority asked on port 53, the
    fixtures' root hints (or ``root_hints``), listening on ``address``:53, with the
    ``[dnssec]`` settings ``dnssec``. ``extra`` is appended (more sections, such as
    ``[cache]``)."""
    return f"""mode = "recursive"

[server]
listen = ["{address}:{PORT}"]

[recursion]
root_hints = "{root_hints or ROOT_HINTS}"
port = {PORT}

[dnssec]
{dnssec}
{extra}"""


# --------------------------------------------------------------------------- spread zones

SPREAD_ZONE = "spread.test."
SPREAD_PARENT = "127.0.0.8"  # ns.spread.test.: spread.test. itself, delegating every child
SPREAD_LEAVES = "127.0.0.9"  # ns.<child>: every child zone
SPREAD_ANSWER = "127.1.5.1"  # every name under a child's wildcard
SPREAD_WARM = "warm.spread.test."  # A 127.1.5.2, in spread.test. itself


@dataclass(frozen=True, slots=True)
class Spread:
    """Generated zones for a workload over many delegations: ``spread.test.`` (delegated
    from a copy of the fixtures' test. zone, with glue) delegates each of ``children`` to
    its own in-bailiwick name server ``ns.<child>`` with glue, all at SPREAD_LEAVES; each
    child holds a wildcard A record. ``files`` maps each zone to its file."""

    children: tuple[str, ...]
    files: Mapping[str, Path]

    def authorities(self) -> dict[str, tuple[str, ...]]:
        """AUTHORITIES with the spread zones' servers added."""
        return {**AUTHORITIES, SPREAD_PARENT: (SPREAD_ZONE,), SPREAD_LEAVES: self.children}


def write_spread(directory: Path, children: Sequence[str]) -> Spread:
    """Write the zone files of ``children`` (origins under spread.test., ending in a dot),
    spread.test. delegating them, and test. delegating spread.test., into ``directory``."""
    home = directory / "spread-zones"
    home.mkdir()
    files: dict[str, Path] = {}
    serial = "1 3600 600 86400 300"
    test = (ZONES / zone_file("test.")).read_text()
    test += (
        f"\n; Generated: the spread zones' parent.\n{SPREAD_ZONE} 86400 IN NS ns.{SPREAD_ZONE}\n"
        f"ns.{SPREAD_ZONE} 86400 IN A {SPREAD_PARENT}\n"
    )
    files["test."] = home / "test.zone"
    files["test."].write_text(test)
    parent = [
        f"$ORIGIN {SPREAD_ZONE}",
        "$TTL 3600",
        f"@ IN SOA ns.{SPREAD_ZONE} hostmaster.{SPREAD_ZONE} {serial}",
        f"@ IN NS ns.{SPREAD_ZONE}",
        f"ns IN A {SPREAD_PARENT}",
        f"{SPREAD_WARM} IN A 127.1.5.2",
    ]
    for child in children:
        assert child.endswith("." + SPREAD_ZONE), child
        parent.append(f"{child} 86400 IN NS ns.{child}")
        parent.append(f"ns.{child} 86400 IN A {SPREAD_LEAVES}")
        path = home / f"{child}zone"
        path.write_text(
            f"$ORIGIN {child}\n$TTL 3600\n@ IN SOA ns.{child} hostmaster.{child} {serial}\n"
            f"@ IN NS ns.{child}\nns IN A {SPREAD_LEAVES}\n* IN A {SPREAD_ANSWER}\n"
        )
        files[child] = path
    files[SPREAD_ZONE] = home / f"{SPREAD_ZONE}zone"
    files[SPREAD_ZONE].write_text("\n".join(parent) + "\n")
    return Spread(tuple(children), files)


# --------------------------------------------------------------------------- dig


@dataclass(frozen=True, slots=True)
class Record:
    """One resource record as dig prints it."""

    name: str
    ttl: int
    rtype: str
    rdata: str

    @property
    def key(self) -> tuple[str, str, str]:
        """(name, type, rdata) without the TTL, names case-folded (a resolver may keep the
        query's case or the zone's; rdata of TXT is data and keeps its case)."""
        rdata = self.rdata if self.rtype == "TXT" else self.rdata.lower()
        return self.name.lower(), self.rtype, rdata


@dataclass(frozen=True, slots=True)
class Reply:
    """What dig printed for one question: the final reply (after its retry over TCP when the
    UDP reply was truncated), or ``status`` "no reply" when none came."""

    status: str
    flags: frozenset[str]
    answer: tuple[Record, ...]
    authority: tuple[Record, ...]
    truncated: bool  # the UDP reply had TC and dig asked again over TCP
    transport: str  # of the final reply: "UDP" or "TCP"
    ede: str  # the Extended DNS Error line, if any
    text: str  # dig's whole output, for messages

    def answer_set(self) -> frozenset[tuple[str, str, str]]:
        return frozenset(record.key for record in self.answer)

    def negative_soa(self) -> frozenset[tuple[str, str, str]]:
        """The SOA records of the authority section of a negative answer (NXDOMAIN, or
        NOERROR without an answer of the type asked): what a cache learns the negative TTL
        from. Empty for other answers."""
        if self.status not in ("NXDOMAIN", "NOERROR"):
            return frozenset()
        return frozenset(r.key for r in self.authority if r.rtype == "SOA")


_HEADER = re.compile(r"->>HEADER<<- opcode: \S+, status: (\S+), id:")
_FLAGS = re.compile(r"^;; flags: ([a-z ]*);", re.MULTILINE)
_SERVER = re.compile(r"^;; SERVER: .*\((UDP|TCP)\)\s*$", re.MULTILINE)
_EDE = re.compile(r"^; EDE: (.*)$", re.MULTILINE)


def _section(text: str, title: str) -> tuple[Record, ...]:
    match = re.search(rf"^;; {title} SECTION:\n(.*?)(?:\n\n|\Z)", text, re.MULTILINE | re.DOTALL)
    if match is None:
        return ()
    records = []
    for line in match.group(1).splitlines():
        name, ttl, _class, rtype, rdata = line.split(None, 4)
        records.append(Record(name, int(ttl), rtype, " ".join(rdata.split())))
    return tuple(records)


def parse_dig(text: str) -> Reply:
    """The last reply in dig's output (``+noall +comments +answer +authority +stats``)."""
    truncated = ";; Truncated, retrying in TCP mode." in text
    headers = list(_HEADER.finditer(text))
    if not headers:
        return Reply("no reply", frozenset(), (), (), truncated, "", "", text)
    last = text[headers[-1].start() :]
    flags = _FLAGS.search(last)
    server = _SERVER.search(last)
    ede = _EDE.search(last)
    return Reply(
        status=headers[-1].group(1).rstrip(","),
        flags=frozenset(flags.group(1).split()) if flags else frozenset(),
        answer=_section(last, "ANSWER"),
        authority=_section(last, "AUTHORITY"),
        truncated=truncated,
        transport=server.group(1) if server else "",
        ede=ede.group(1).strip() if ede else "",
        text=text,
    )


# --------------------------------------------------------------------------- the namespace


@dataclass(frozen=True, slots=True)
class Server:
    """A server started in the namespace: its process and the address it answers on (:53)."""

    address: str
    proc: Proc

    @property
    def name(self) -> str:
        return self.proc.name


class Hierarchy:
    """A network namespace holding the fixture hierarchy, and the servers started in it.
    Not thread-safe. ``close()`` ends everything and is idempotent."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.name = f"resolver-hierarchy-{os.getpid()}-{next(_namespaces)}"
        self.processes: list[Proc] = []
        self.authorities: dict[str, Server] = {}
        self._created = False

    def __repr__(self) -> str:
        alive = sum(proc.alive() for proc in self.processes)
        return f"<Hierarchy {self.name} processes={len(self.processes)} alive={alive}>"

    # -- the namespace

    def create(self) -> None:
        """Make the namespace and bring its loopback up. Raises SetupError."""
        ip = tool("ip")
        _delete_abandoned_namespaces(ip)
        self._check([ip, "netns", "add", self.name], "make a network namespace (needs root)")
        self._created = True
        self._check(self.argv([ip, "link", "set", "lo", "up"]), "bring lo up")

    def argv(self, command: Sequence[str]) -> list[str]:
        """``command`` run inside the namespace."""
        return [tool("ip"), "netns", "exec", self.name, *command]

    def run(
        self, command: Sequence[str], timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` inside the namespace to its end (at most ``timeout`` seconds)."""
        return subprocess.run(
            self.argv(command), capture_output=True, text=True, timeout=timeout, check=False
        )

    def _check(self, command: Sequence[str], what: str) -> None:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
        if done.returncode != 0:
            raise SetupError(f"could not {what}: {' '.join(command)}: {done.stderr.strip()}")

    def start(self, name: str, command: Sequence[str], core: str | None = None) -> Proc:
        """Start ``command`` in the namespace, in a process group of its own, logging to
        DIRECTORY/NAME.log; pinned to ``core`` when given. Stopped by close()."""
        pinned = [tool("taskset"), "-c", core] if core is not None else []
        log = self.directory / f"{name}.log"
        # SIGTERM when we end without close() (SIGKILL, say): no server outlives its starter.
        argv = self.argv([*pinned, *command])
        proc = Proc(name, argv, log, PORT, parent_death_signal=signal.SIGTERM)
        self.processes.append(proc)
        proc.start()
        return proc

    # -- the servers

    def start_authorities(
        self,
        core: str | None = None,
        spread: Spread | None = None,
        files: Mapping[str, Path] | None = None,
    ) -> dict[str, Server]:
        """One NSD per address of AUTHORITIES (and of ``spread``'s zones, with its copy of
        test.), each serving its zones on ADDRESS:53, from fixtures/zones or the file
        ``files`` names for a zone (see ``sign_fixtures``); returns once each answers for its
        first zone with AA. Raises SetupError."""
        authorities = spread.authorities() if spread is not None else AUTHORITIES
        paths = {**(files or {}), **(spread.files if spread is not None else {})}
        for address, zones in authorities.items():
            self.start_nsd(address, zones, paths, core=core, wait=False)
        for address, zones in authorities.items():
            self.wait_answering(self.authorities[address], zones[0], "SOA", aa=True)
        return self.authorities

    def start_nsd(
        self,
        address: str,
        zones: Sequence[str],
        files: Mapping[str, Path] | None = None,
        core: str | None = None,
        wait: bool = True,
    ) -> Server:
        """One NSD on ADDRESS:53 serving ``zones`` (files from fixtures/zones, or where
        ``files`` says); with ``wait``, returns once it answers for the first with AA.
        Raises SetupError."""
        home = self.directory / f"nsd-{address}"
        home.mkdir()
        conf = home / "nsd.conf"
        conf.write_text(nsd_conf(home, address, zones, files))
        proc = self.start(f"nsd-{address}", [tool("nsd"), "-d", "-c", str(conf)], core)
        server = self.authorities[address] = Server(address, proc)
        if wait:
            self.wait_answering(server, zones[0], "SOA", aa=True)
        return server

    def nsd_conf_path(self, address: str) -> Path:
        """The nsd.conf of the authority on ``address`` (for nsd-control)."""
        return self.directory / f"nsd-{address}" / "nsd.conf"

    def start_unbound(
        self,
        core: str | None = None,
        address: str = UNBOUND_ADDRESS,
        root_hints: Path = ROOT_HINTS,
        trust_anchor: Path | None = None,
    ) -> Server:
        """Unbound (unbound_conf()) on ADDRESS:53; returns once it answers. The configuration
        is checked with unbound-checkconf first when that is installed. Raises SetupError."""
        unbound = tool("unbound")
        home = self.directory / f"unbound-{address}"
        home.mkdir()
        conf = home / "unbound.conf"
        conf.write_text(unbound_conf(home, address, root_hints, trust_anchor))
        checkconf = shutil.which("unbound-checkconf") or shutil.which(
            "unbound-checkconf", path="/usr/sbin"
        )
        if checkconf is not None:
            self._check([checkconf, str(conf)], "validate unbound.conf")
        return self.start_server(
            f"unbound-{address}", address, [unbound, "-d", "-c", str(conf)], core
        )

    def start_resolver(
        self,
        core: str | None = None,
        address: str = OURS_ADDRESS,
        extra_toml: str = "",
        root_hints: Path | None = None,
        dnssec: str = UNSIGNED,
    ) -> Server:
        """Our daemon, ``python -m resolver serve`` from this checkout, in recursive mode
        (resolver_toml()) on ADDRESS:53; returns once it answers. Raises SetupError with its
        log when it exits first (a bad configuration, a port taken)."""
        config = daemon.write_config(
            self.directory / f"resolver-{address}.toml",
            resolver_toml(address, extra_toml, root_hints, dnssec),
        )
        return self.start_server(f"resolver-{address}", address, daemon.serve(config=config), core)

    def start_server(
        self, name: str, address: str, command: Sequence[str], core: str | None = None
    ) -> Server:
        """Start ``command``, a server listening on ADDRESS:53, and return once it replies to
        a question (". NS", recursion not desired). Raises SetupError."""
        return self.wait_answering(Server(address, self.start(name, command, core)), ".", "NS")

    def wait_answering(self, server: Server, name: str, qtype: str, aa: bool = False) -> Server:
        """Poll (recursion not desired) until ``server`` gives any reply to ``name qtype``
        (one with AA when ``aa``); returns it. Raises SetupError with its log when it exits
        first or STARTUP passes."""
        proc, address = server.proc, server.address
        deadline = time.monotonic() + STARTUP
        while True:
            if not proc.alive():
                log = proc.log.read_text(errors="replace")[-3000:]
                raise SetupError(f"{proc.name} exited before answering:\n{log}")
            reply = self.dig(address, name, qtype, "+norecurse", seconds=1)
            if reply.status != "no reply" and (not aa or "aa" in reply.flags):
                return server
            if time.monotonic() > deadline:
                log = proc.log.read_text(errors="replace")[-3000:]
                raise SetupError(
                    f"{proc.name} did not answer {name} {qtype} on {address} within "
                    f"{STARTUP:g} s (last: {reply.status}):\n{log}"
                )
            time.sleep(0.1)

    # -- questions

    def dig(
        self,
        server: str | Server,
        name: str,
        qtype: str = "A",
        *options: str,
        seconds: int = DIG_TIME,
    ) -> Reply:
        """Ask ``name qtype`` of ``server`` (an address, or a server started here) with dig
        inside the namespace: one try, over UDP with EDNS (dig's 1232 bytes) and again over
        TCP if truncated, waiting ``seconds`` for each. ``options`` are more dig options
        (``+tcp``, ``+noedns``, ``+norecurse``)."""
        address = server if isinstance(server, str) else server.address
        command = [
            tool("dig"), f"@{address}", "-p", str(PORT), name, qtype,
            "+noall", "+comments", "+answer", "+authority", "+stats",
            f"+time={seconds}", "+tries=1", *options,
        ]  # fmt: skip
        done = self.run(command, timeout=2 * seconds + 10)
        return parse_dig(done.stdout + done.stderr)

    # -- the end

    def close(self) -> None:
        """End every process started here, then any other left in the namespace, then
        delete the namespace. Idempotent; never raises for what is already gone."""
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()
        if not self._created:
            return
        ip = tool("ip")
        listed = subprocess.run(
            [ip, "netns", "pids", self.name], capture_output=True, text=True, timeout=10
        )
        for pid in listed.stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run([ip, "netns", "del", self.name], capture_output=True, timeout=10)
        self._created = False


def _delete_abandoned_namespaces(ip: str) -> None:
    """Delete the namespaces of this module whose creating process is gone and in which no
    process is left (one killed before it could close() leaves its namespace behind; its
    servers ended with it, see ``parent_death_signal``). Nothing is killed here."""
    listed = subprocess.run([ip, "netns", "list"], capture_output=True, text=True, timeout=10)
    for line in listed.stdout.splitlines():
        match = re.match(r"(resolver-hierarchy-(\d+)-\d+)\b", line)
        if match is None or _alive(int(match.group(2))):
            continue
        pids = subprocess.run(
            [ip, "netns", "pids", match.group(1)], capture_output=True, text=True, timeout=10
        )
        if pids.returncode == 0 and not pids.stdout.strip():
            subprocess.run([ip, "netns", "del", match.group(1)], capture_output=True, timeout=10)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def running(
    directory: Path,
    authorities: bool = True,
    core: str | None = None,
    spread: Spread | None = None,
    files: Mapping[str, Path] | None = None,
) -> Iterator[Hierarchy]:
    """A Hierarchy in a new namespace, its NSD authorities started (pinned to ``core`` when
    given; with ``spread``'s generated zones too; zone files from ``files`` where it names
    one) unless ``authorities`` is false; closed on
    the way out, whatever happens. Raises SetupError (a tool missing, no namespace, a server
    not answering)."""
    hierarchy = Hierarchy(directory)
    try:
        hierarchy.create()
        if authorities:
            hierarchy.start_authorities(core, spread, files)
        yield hierarchy
    finally:
        hierarchy.close()


def _generated(text: str) -> str:
    """``text`` with its plain ``$GENERATE FROM-TO LHS RHS`` lines written out (``$`` the
    number, no modifiers: all the fixtures use), which dnspython's reader does not take with
    quoted TXT data."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("$GENERATE"):
            lines.append(line)
            continue
        _, span, template = line.split(None, 2)
        first, last = (int(n) for n in span.split("-"))
        lines += [template.replace("$", str(n)) for n in range(first, last + 1)]
    return "\n".join(lines) + "\n"


def sign_fixtures(directory: Path, days: int = 30) -> tuple[dict[str, Path], Path]:
    """Every zone of AUTHORITIES signed with a key made now (ECDSA P-256, one key per zone
    signing everything, NSEC, valid from an hour ago for ``days``), each parent holding its
    served children's DS (a child nobody serves, such as lame.com., stays unsigned: an
    insecure delegation); the zone files written to ``directory`` under NSD's names. Returns
    each zone's file (for ``running``) and a trust anchor file (the root's DS) beside the
    directory, for Unbound's ``trust-anchor-file`` and our ``[dnssec] trust_anchors``. No key
    is written anywhere."""
    import dns.dnssec
    import dns.name
    import dns.rdatatype
    import dns.zone
    from cryptography.hazmat.primitives.asymmetric import ec

    directory.mkdir(parents=True, exist_ok=True)
    origins = [origin for zones in AUTHORITIES.values() for origin in zones]
    now = int(time.time())
    texts = {o: _generated((ZONES / zone_file(o)).read_text(encoding="utf-8")) for o in origins}
    ds_lines: dict[str, str] = {}
    # Children first: a parent is signed with its children's DS in it.
    for origin in sorted(origins, key=lambda o: -len(dns.name.from_text(o))):
        name = dns.name.from_text(origin)
        text = texts[origin]
        for child, ds in ds_lines.items():
            child_name = dns.name.from_text(child)
            parent = next(
                (dns.name.from_text(o) for o in sorted(origins, key=len, reverse=True)
                 if child_name != dns.name.from_text(o)
                 and child_name.is_subdomain(dns.name.from_text(o))),
                None,
            )  # fmt: skip
            if parent == name:
                text += ds
        private = ec.generate_private_key(ec.SECP256R1())
        dnskey = dns.dnssec.make_dnskey(private.public_key(), 13, 257)
        zone = dns.zone.from_text(text, origin=origin, relativize=False)
        dns.dnssec.sign_zone(
            zone, keys=[(private, dnskey)], inception=now - 3600, expiration=now + days * 86400
        )
        (directory / zone_file(origin)).write_text(zone.to_text(want_origin=True))
        ds = dns.dnssec.make_ds(name, dnskey, "SHA256")
        ds_lines[origin] = f"{origin} 3600 DS {ds}\n"
    anchor = directory.parent / f"{directory.name}.root.key"
    anchor.write_text(ds_lines["."].replace(" 3600 ", " "))
    return {origin: directory / zone_file(origin) for origin in origins}, anchor
