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
import datetime
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from benchmarks.dot_bench import ROOT, cpu_seconds, free_port, pinned, stop, wait_for

NAMES_PER_SECOND = 60_000  # more than either forwarder reaches here


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def ca_and_certificate(home: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA (ca.pem) and a certificate of it for dns.test (cert.pem, key.pem)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dns.test")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("dns.test")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = home / "ca.pem", home / "cert.pem", home / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(_key_pem(key))
    return paths


def unbound_base(home: Path, name: str) -> str:
    return f"""server:
    do-ip6: no
    num-threads: 1
    username: ""
    chroot: ""
    directory: "{home}"
    pidfile: "{home}/{name}.pid"
    use-syslog: no
    logfile: ""
    verbosity: 0
    access-control: 127.0.0.0/8 allow
    incoming-num-tcp: 1024
    outgoing-num-tcp: 64
    do-not-query-localhost: no
"""


def dnsperf(port: int, names: Path, args: argparse.Namespace) -> tuple[float, int, str]:
    argv = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(names), "-n", "1"]
    argv += ["-l", str(args.seconds), "-c", "1", "-q", str(args.outstanding), "-t", "2"]
    out = subprocess.run(
        pinned(0, argv), capture_output=True, text=True, timeout=args.seconds + 60
    ).stdout
    qps, completed = 0.0, 0
    lost = ""
    for line in out.splitlines():
        if "Queries per second:" in line:
            qps = float(line.split(":")[1])
        elif "Queries completed:" in line:
            completed = int(line.split(":")[1].split()[0])
        elif "Queries lost:" in line:
            lost = line.strip()
    return qps, completed, lost


API_KEY = "bench"  # dnsdist's API, on loopback, read by this script only


def dnsdist_conf(listen: int, upstream_tls: int, ca: Path, api: int) -> str:
    """dnsdist on UDP (and TCP) ``listen`` forwarding over DoT to ``upstream_tls``: the health
    check asks a name the upstream answers (nothing leaves loopback), no packet cache."""
    return f"""setSecurityPollSuffix("")
setLocal("127.0.0.1:{listen}")
setACL({{"127.0.0.0/8"}})
newServer({{address="127.0.0.1:{upstream_tls}", tls="openssl", subjectName="dns.test",
  caStore="{ca}", validateCertificates=true, checkName="check.wild.test.", checkInterval=1}})
webserver("127.0.0.1:{api}")
setWebserverConfig({{apiKey="{API_KEY}", acl="127.0.0.0/8"}})
"""


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
    for tool in ("unbound", "dnsperf", "dnsdist"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        ca, cert, key = ca_and_certificate(home)
        upstream_tls, unbound_port, ours_port = free_port(), free_port(), free_port()
        dnsdist_port, dnsdist_api = free_port(), free_port()
        (home / "dnsdist.conf").write_text(
            dnsdist_conf(dnsdist_port, upstream_tls, ca, dnsdist_api)
        )
        (home / "upstream.conf").write_text(
            unbound_base(home, "upstream")
            + f"""    interface: 127.0.0.1@{upstream_tls}
    tls-port: {upstream_tls}
    tls-service-key: "{key}"
    tls-service-pem: "{cert}"
    local-zone: "test." nodefault
    local-zone: "wild.test." redirect
    local-data: "wild.test. 300 IN A 127.1.0.9"
remote-control:
    control-enable: no
"""
        )
        (home / "forwarder.conf").write_text(
            unbound_base(home, "forwarder")
            + f"""    interface: 127.0.0.1@{unbound_port}
    tls-cert-bundle: "{ca}"
    local-zone: "test." nodefault
forward-zone:
    name: "."
    forward-addr: 127.0.0.1@{upstream_tls}#dns.test
    forward-tls-upstream: yes
remote-control:
    control-enable: no
"""
        )
        (home / "resolver.toml").write_text("[cache]\nenabled = false\n")
        log = home / "resolver.log"
        processes = [
            subprocess.Popen(
                pinned(0, ["unbound", "-d", "-c", str(home / "upstream.conf")]),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        ]
        try:
            wait_for(upstream_tls)
            forwarder = subprocess.Popen(
                pinned(1, ["unbound", "-d", "-c", str(home / "forwarder.conf")]),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            processes.append(forwarder)
            with log.open("w") as sink:
                ours = subprocess.Popen(
                    pinned(
                        1,
                        [
                            sys.executable,
                            "-m",
                            "resolver",
                            "serve",
                            "--config",
                            str(home / "resolver.toml"),
                            "--listen",
                            f"127.0.0.1:{ours_port}",
                            "--upstream",
                            f"tls://127.0.0.1:{upstream_tls}#dns.test",
                            "--tls-ca",
                            str(ca),
                        ],
                    ),
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=sink,
                )
            processes.append(ours)
            dnsdist = subprocess.Popen(
                pinned(
                    1,
                    [
                        "dnsdist",
                        "--supervised",
                        "--disable-syslog",
                        "-C",
                        str(home / "dnsdist.conf"),
                    ],
                ),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            processes.append(dnsdist)
            wait_for(unbound_port)
            wait_for(ours_port)
            wait_for(dnsdist_port)
            wait_for(dnsdist_api)
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
                before = cpu_seconds(process.pid)
                qps, completed, lost = dnsperf(port, names, args)
                spent = cpu_seconds(process.pid) - before
                rates[label] = completed / spent if spent else 0.0
                print(
                    f"{label:<22} {qps:>9,.0f} qps  {spent:>6.2f} CPU s  "
                    f"{rates[label]:>9,.0f} q/CPU-s  {lost}"
                )
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
            for label in ("unbound forward-tls", "dnsdist tls backend"):
                if rates[label]:
                    print(f"ours / {label.split()[0]} per CPU-second: {mine / rates[label]:.2f}x")
            faster = max(rates["unbound forward-tls"], rates["dnsdist tls backend"])
            if faster:
                print(f"ours / the faster per CPU-second: {mine / faster:.2f}x")
        finally:
            for process in reversed(processes):
                stop(process)


if __name__ == "__main__":
    main()
