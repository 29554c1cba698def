"""Forwarding over DNS over TLS: ours (`resolver serve --upstream tls://...`, cache off) against
Unbound as a forwarder with `forward-tls-upstream: yes` and dnsdist with a DoT backend
(`newServer{..., tls="openssl"}`, no packet cache), all forwarding to the same Unbound DoT
upstream (answering every name under wild.test from `local-data`), clients asking distinct
names over UDP with dnsperf. Reports queries per second and per CPU-second of the forwarder
process (all its threads), and the TLS handshakes per 10,000 queries for ours (from its own
statistics, logged on SIGUSR1) and dnsdist (its backend's `tcpNewConnections` through its API).

    python -m benchmarks.dot_forward_bench [--seconds 10] [--outstanding 200]

Everything runs on loopback with a CA and certificate made for the run. With two CPUs the
forwarder under test has CPU 1, the upstream and dnsperf CPU 0.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks import daemon
from benchmarks.certificates import ca_and_certificate
from benchmarks.cpu import process_seconds
from benchmarks.dnsperf import dnsperf_argv, lost_line, parse_dnsperf
from benchmarks.harness import failures_reported, missing_tool
from benchmarks.peers import dnsdist_argv, dnsdist_conf, unbound_argv, unbound_conf
from benchmarks.ports import free_port, wait_listening
from benchmarks.processes import HOST, ROOT, pinned, spawn, stop
from benchmarks.report import cpu_line, ours_over

PROG = "dot_forward_bench"
NAMES_PER_SECOND = 60_000  # more than either forwarder reaches here


def dnsperf(port: int, names: Path, args: argparse.Namespace) -> tuple[float, int, str]:
    """dnsperf over UDP at ``port`` on CPU 0, reading ``names`` once: its qps, queries
    completed and line of queries lost."""
    argv = dnsperf_argv(port, names, args.seconds, args.outstanding, once=True, core=None)
    out = subprocess.run(
        pinned(0, argv), capture_output=True, text=True, timeout=args.seconds + 60
    ).stdout
    _, completed, _, qps, _, _ = parse_dnsperf(out)
    return qps, completed, lost_line(out)


API_KEY = "bench"  # dnsdist's API, on loopback, read by this script only


def tls_backend(listen: int, upstream_tls: int, ca: Path, api: int) -> str:
    """dnsdist on UDP (and TCP) ``listen`` forwarding over DoT to ``upstream_tls``: the health
    check asks a name the upstream answers (nothing leaves loopback), no packet cache."""
    return dnsdist_conf(
        listen,
        f"""newServer({{address="{HOST}:{upstream_tls}", tls="openssl", subjectName="dns.test",
  caStore="{ca}", validateCertificates=true, checkName="check.wild.test.", checkInterval=1}})
webserver("{HOST}:{api}")
setWebserverConfig({{apiKey="{API_KEY}", acl="127.0.0.0/8"}})
""",
    )


def dnsdist_state(api: int) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{api}/api/v1/servers/localhost", headers={"X-API-Key": API_KEY}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        state: dict[str, Any] = json.load(response)
    return state


def write_names(path: Path, run: str, count: int) -> None:
    path.write_text("".join(f"q{i}.{run}.wild.test A\n" for i in range(count)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--outstanding", type=int, default=200)
    args = parser.parse_args()
    if missing_tool(PROG, ("unbound", "dnsperf", "dnsdist")):
        raise SystemExit(2)
    with failures_reported(PROG):
        run(args)


def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        ca, cert, key = ca_and_certificate(home)
        upstream_tls, unbound_port, ours_port = free_port(), free_port(), free_port()
        dnsdist_port, dnsdist_api = free_port(), free_port()
        (home / "dnsdist.conf").write_text(tls_backend(dnsdist_port, upstream_tls, ca, dnsdist_api))
        upstream = f"""    interface: {HOST}@{upstream_tls}
    tls-port: {upstream_tls}
    tls-service-key: "{key}"
    tls-service-pem: "{cert}"
    local-zone: "test." nodefault
    local-zone: "wild.test." redirect
    local-data: "wild.test. 300 IN A 127.1.0.9"
"""
        (home / "upstream.conf").write_text(unbound_conf(home, "upstream", upstream))
        forwarding = f"""    interface: {HOST}@{unbound_port}
    tls-cert-bundle: "{ca}"
    local-zone: "test." nodefault
"""
        forward_zone = f"""forward-zone:
    name: "."
    forward-addr: {HOST}@{upstream_tls}#dns.test
    forward-tls-upstream: yes
"""
        (home / "forwarder.conf").write_text(
            unbound_conf(home, "forwarder", forwarding, forward_zone)
        )
        config = daemon.write_config(home / "resolver.toml", "[cache]\nenabled = false\n")
        log = home / "resolver.log"
        processes = [spawn(pinned(0, unbound_argv(home / "upstream.conf")))]
        try:
            wait_listening(upstream_tls)
            forwarder = spawn(pinned(1, unbound_argv(home / "forwarder.conf")))
            processes.append(forwarder)
            serve = daemon.serve(
                config=config,
                listen=f"{HOST}:{ours_port}",
                upstream=f"tls://{HOST}:{upstream_tls}#dns.test",
                extra=["--tls-ca", str(ca)],
                log_level=None,  # its statistics, logged on SIGUSR1, are read from the log
            )
            with log.open("wb") as sink:
                ours = spawn(pinned(1, serve), cwd=ROOT, stderr=sink)
            processes.append(ours)
            dnsdist = spawn(pinned(1, dnsdist_argv(home / "dnsdist.conf")))
            processes.append(dnsdist)
            for port in (unbound_port, ours_port, dnsdist_port, dnsdist_api):
                wait_listening(port)
            names = home / "names.txt"
            print(
                f"distinct names over UDP, forwarded over DoT; {args.seconds} s, "
                f"{args.outstanding} outstanding"
            )
            rates = {}
            for label, process, port in (
                ("unbound forward-tls", forwarder, unbound_port),
                ("dnsdist tls backend", dnsdist, dnsdist_port),
                ("resolver tls://", ours, ours_port),
            ):
                write_names(names, f"warm{port}", 2000)
                dnsperf(port, names, argparse.Namespace(seconds=2, outstanding=50))
                write_names(names, f"r{port}", NAMES_PER_SECOND * args.seconds)
                before = process_seconds(process.pid)
                qps, completed, lost = dnsperf(port, names, args)
                spent = process_seconds(process.pid) - before
                rates[label] = completed / spent if spent else 0.0
                print(cpu_line(label, qps, spent, rates[label], lost, width=9))
            ours.send_signal(signal.SIGUSR1)
            time.sleep(1.0)
            text = log.read_text()
            opened = re.findall(r"opened=(\d+)", text)
            queries = re.findall(r"streams=StreamStatistics\([^)]*?queries=(\d+)", text)
            if opened and queries and int(queries[-1]):
                per = int(opened[-1]) * 10_000 / int(queries[-1])
                print(
                    f"ours: {opened[-1]} TLS connections for {queries[-1]} queries "
                    f"({per:.2f} handshakes per 10,000 queries)"
                )
            backend = dnsdist_state(dnsdist_api)["servers"][0]
            connections, asked = int(backend["tcpNewConnections"]), int(backend["queries"])
            if asked:
                print(
                    f"dnsdist: {connections} TLS connections for {asked} queries "
                    f"({connections * 10_000 / asked:.2f} handshakes per 10,000 queries, "
                    f"{backend.get('tcpReusedConnections', '?')} reused)"
                )
            mine = rates["resolver tls://"]
            faster = max(rates["unbound forward-tls"], rates["dnsdist tls backend"])
            for peer, theirs in (
                ("unbound", rates["unbound forward-tls"]),
                ("dnsdist", rates["dnsdist tls backend"]),
                ("the faster", faster),
            ):
                line = ours_over(peer, mine, theirs)
                if line is not None:
                    print(line)
        finally:
            for process in reversed(processes):
                stop(process)


if __name__ == "__main__":
    main()
