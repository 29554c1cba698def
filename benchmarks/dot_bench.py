"""DNS over TLS and HTTPS listeners, cache hits: ours (`resolver serve --listen-tls`) against
Unbound's (`tls-port`) with `dnsperf -m dot`, and ours (`--listen-https`) against dnsdist's DoH
frontend (`addDOHLocal`, with a packet cache) and Unbound's (`https-port`) with `dnsperf -m
doh`, all answering the same 64 names, on loopback, in queries per second and per CPU-second
of the server process (user + system time of all its threads from /proc/PID/stat over the
run).

    python -m benchmarks.dot_bench [--seconds 10] [--clients 10] [--outstanding 100]

Unbound answers from `local-data` (its cache path); ours and dnsdist forward to that Unbound's
plain port and answer from their caches after the warm-up. dnsperf 2.10's DoH loses replies
from dnsdist 1.7 with more than one query in flight, so the rows against dnsdist use GET with
one client and one query outstanding (`-c 1 -q 1`) for both; the rows against Unbound's DoH
listener use GET at the DoT rows' load. The certificate is made for the run (a throwaway CA
under a temporary directory); nothing leaves loopback. Each server is pinned to CPU 1 and
dnsperf to CPU 0 with taskset when there are two CPUs.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

from benchmarks import daemon
from benchmarks.certificates import ca_and_certificate
from benchmarks.cpu import process_seconds
from benchmarks.dnsperf import dnsperf_argv, lost_line, parse_dnsperf
from benchmarks.harness import failures_reported, missing_tool
from benchmarks.peers import dnsdist_argv, dnsdist_conf, unbound_argv, unbound_conf
from benchmarks.ports import free_port, wait_listening
from benchmarks.processes import HOST, ROOT, pinned, spawn, stop
from benchmarks.report import cpu_line, ours_over

PROG = "dot_bench"
NAMES = 64


def dnsperf(port: int, queries: Path, args: argparse.Namespace) -> tuple[float, str]:
    """dnsperf ``-m args.mode`` at ``port`` on CPU 0: its qps and its line of queries lost."""
    options = []
    if args.mode == "doh":
        options = ["-O", "doh-method=GET", "-O", f"doh-uri=https://{HOST}:{port}/dns-query"]
    argv = dnsperf_argv(
        port,
        queries,
        args.seconds,
        args.outstanding,
        clients=args.clients,
        core=None,
        timeout=None,
        mode=args.mode,
        options=options,
    )
    out = subprocess.run(
        pinned(0, argv), capture_output=True, text=True, timeout=args.seconds + 60
    ).stdout
    qps = parse_dnsperf(out)[3]
    return qps, lost_line(out)


def measure(name: str, pid: int, port: int, queries: Path, args: argparse.Namespace) -> float:
    dnsperf(port, queries, argparse.Namespace(**{**vars(args), "seconds": 2}))  # warm-up
    before = process_seconds(pid)
    qps, lost = dnsperf(port, queries, args)
    spent = process_seconds(pid) - before
    per_cpu = qps * args.seconds / spent if spent else 0.0
    print(cpu_line(name, qps, spent, per_cpu, lost, width=10))
    return per_cpu


def compare(peer: str, mine: float, theirs: float) -> None:
    line = ours_over(peer, mine, theirs)
    if line is not None:
        print(line)


def doh_frontend(doh: int, backend: int, cert: Path, key: Path) -> str:
    """dnsdist with a DoH frontend on ``doh`` (``/dns-query``) and a packet cache, in front of
    Unbound's plain port; the health check asks a name Unbound holds."""
    return dnsdist_conf(
        free_port(),
        f"""newServer({{address="{HOST}:{backend}", checkName="n1.example.", checkInterval=1}})
getPool(""):setCache(newPacketCache(10000))
addDOHLocal("{HOST}:{doh}", "{cert}", "{key}", "/dns-query")
""",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--outstanding", type=int, default=100)
    args = parser.parse_args()
    if missing_tool(PROG, ("unbound", "dnsperf", "dnsdist")):
        raise SystemExit(2)
    with failures_reported(PROG):
        run(args)


def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        _, cert, key = ca_and_certificate(home)
        queries = home / "queries.txt"
        queries.write_text("".join(f"n{i}.example. A\n" for i in range(NAMES)))
        plain, unbound_tls, unbound_https, ours_plain, ours_tls, ours_https, dnsdist_doh = (
            free_port() for _ in range(7)
        )
        (home / "dnsdist.conf").write_text(doh_frontend(dnsdist_doh, plain, cert, key))
        records = "".join(
            f'    local-data: "n{i}.example. 300 IN A 192.0.2.{i + 1}"\n' for i in range(NAMES)
        )
        server = f"""    interface: {HOST}@{plain}
    interface: {HOST}@{unbound_tls}
    interface: {HOST}@{unbound_https}
    port: {plain}
    tls-port: {unbound_tls}
    https-port: {unbound_https}
    tls-service-key: "{key}"
    tls-service-pem: "{cert}"
    local-zone: "example." static
{records}"""
        (home / "unbound.conf").write_text(unbound_conf(home, "unbound", server))
        unbound = spawn(pinned(1, unbound_argv(home / "unbound.conf")))
        listeners = [
            "--listen-tls", f"{HOST}:{ours_tls}", "--listen-https", f"{HOST}:{ours_https}",
            "--tls-cert", str(cert), "--tls-key", str(key),
        ]  # fmt: skip
        serve = daemon.serve(
            listen=f"{HOST}:{ours_plain}", upstream=f"{HOST}:{plain}", extra=listeners
        )
        ours = spawn(pinned(1, serve), cwd=ROOT)
        dnsdist = spawn(pinned(1, dnsdist_argv(home / "dnsdist.conf")))
        try:
            for port in (unbound_tls, unbound_https, ours_tls, ours_https, dnsdist_doh):
                wait_listening(port)

            def pair(title: str, peer: str, pid: int, port: int, ns: argparse.Namespace) -> None:
                """One comparison: its title, the peer's run, ours, and the ratio."""
                print(title)
                theirs = measure(peer, pid, port, queries, ns)
                ours_port = ours_tls if ns.mode == "dot" else ours_https
                mine = measure(
                    f"resolver --listen-{'tls' if ns.mode == 'dot' else 'https'}",
                    ours.pid,
                    ours_port,
                    queries,
                    ns,
                )
                compare(peer.split()[0], mine, theirs)

            load = f"{args.clients} clients, {args.outstanding} outstanding"
            pair(
                f"dnsperf -m dot, {args.seconds} s, {load}, {NAMES} names (cache hits)",
                "unbound (tls-port)",
                unbound.pid,
                unbound_tls,
                argparse.Namespace(**{**vars(args), "mode": "dot"}),
            )
            pair(
                f"dnsperf -m doh (GET), {args.seconds} s, 1 client, 1 outstanding",
                "dnsdist (addDOHLocal)",
                dnsdist.pid,
                dnsdist_doh,
                argparse.Namespace(**{**vars(args), "mode": "doh", "clients": 1, "outstanding": 1}),
            )
            pair(
                f"dnsperf -m doh (GET), {args.seconds} s, {load}",
                "unbound (https-port)",
                unbound.pid,
                unbound_https,
                argparse.Namespace(**{**vars(args), "mode": "doh"}),
            )
        finally:
            for process in (dnsdist, ours, unbound):
                stop(process)


if __name__ == "__main__":
    main()
