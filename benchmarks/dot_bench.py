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
import datetime
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

NAMES = 64
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for dns.test and 127.0.0.1 (dnsperf does not verify)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dns.test")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pinned(cpu: int, argv: list[str]) -> list[str]:
    if os.cpu_count() and os.cpu_count() >= 2 and shutil.which("taskset"):  # type: ignore[operator]
        return ["taskset", "-c", str(cpu), *argv]
    return argv


def wait_for(port: int, kind: int = socket.SOCK_STREAM, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.connect(("127.0.0.1", port))
                return
            except OSError:
                time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port}")


def dnsperf(port: int, queries: Path, args: argparse.Namespace) -> tuple[float, str]:
    argv = [
        "dnsperf",
        "-m",
        args.mode,
        "-s",
        "127.0.0.1",
        "-p",
        str(port),
        "-d",
        str(queries),
        "-l",
        str(args.seconds),
        "-c",
        str(args.clients),
        "-q",
        str(args.outstanding),
    ]
    if args.mode == "doh":
        argv += ["-O", "doh-method=GET", "-O", f"doh-uri=https://127.0.0.1:{port}/dns-query"]
    out = subprocess.run(
        pinned(0, argv), capture_output=True, text=True, timeout=args.seconds + 60
    ).stdout
    qps = 0.0
    for line in out.splitlines():
        if "Queries per second:" in line:
            qps = float(line.split(":")[1])
    lost = next((line.strip() for line in out.splitlines() if "Queries lost" in line), "")
    return qps, lost


def measure(name: str, pid: int, port: int, queries: Path, args: argparse.Namespace) -> float:
    dnsperf(port, queries, argparse.Namespace(**{**vars(args), "seconds": 2}))  # warm-up
    before = cpu_seconds(pid)
    qps, lost = dnsperf(port, queries, args)
    spent = cpu_seconds(pid) - before
    per_cpu = qps * args.seconds / spent if spent else 0.0
    print(f"{name:<22} {qps:>10,.0f} qps  {spent:>6.2f} CPU s  {per_cpu:>10,.0f} q/CPU-s  {lost}")
    return per_cpu


def dnsdist_conf(doh: int, backend: int, cert: Path, key: Path) -> str:
    """dnsdist with a DoH frontend on ``doh`` (``/dns-query``) and a packet cache, in front of
    Unbound's plain port; the health check asks a name Unbound holds."""
    return f"""setSecurityPollSuffix("")
setLocal("127.0.0.1:{free_port()}")
setACL({{"127.0.0.0/8"}})
newServer({{address="127.0.0.1:{backend}", checkName="n1.example.", checkInterval=1}})
getPool(""):setCache(newPacketCache(10000))
addDOHLocal("127.0.0.1:{doh}", "{cert}", "{key}", "/dns-query")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--outstanding", type=int, default=100)
    args = parser.parse_args()
    for tool in ("unbound", "dnsperf", "dnsdist"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        cert, key = certificate(home)
        queries = home / "queries.txt"
        queries.write_text("".join(f"n{i}.example. A\n" for i in range(NAMES)))
        plain, unbound_tls, unbound_https, ours_plain, ours_tls, ours_https, dnsdist_doh = (
            free_port() for _ in range(7)
        )
        (home / "dnsdist.conf").write_text(dnsdist_conf(dnsdist_doh, plain, cert, key))
        records = "".join(
            f'    local-data: "n{i}.example. 300 IN A 192.0.2.{i + 1}"\n' for i in range(NAMES)
        )
        (home / "unbound.conf").write_text(
            f"""server:
    interface: 127.0.0.1@{plain}
    interface: 127.0.0.1@{unbound_tls}
    interface: 127.0.0.1@{unbound_https}
    port: {plain}
    tls-port: {unbound_tls}
    https-port: {unbound_https}
    tls-service-key: "{key}"
    tls-service-pem: "{cert}"
    do-ip6: no
    num-threads: 1
    username: ""
    chroot: ""
    directory: "{home}"
    pidfile: ""
    use-syslog: no
    logfile: ""
    verbosity: 0
    access-control: 127.0.0.0/8 allow
    incoming-num-tcp: 1024
    local-zone: "example." static
{records}remote-control:
    control-enable: no
"""
        )
        unbound = subprocess.Popen(
            pinned(1, ["unbound", "-d", "-c", str(home / "unbound.conf")]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        ours = subprocess.Popen(
            pinned(
                1,
                [
                    sys.executable,
                    "-m",
                    "resolver",
                    "serve",
                    "--listen",
                    f"127.0.0.1:{ours_plain}",
                    "--upstream",
                    f"127.0.0.1:{plain}",
                    "--listen-tls",
                    f"127.0.0.1:{ours_tls}",
                    "--listen-https",
                    f"127.0.0.1:{ours_https}",
                    "--tls-cert",
                    str(cert),
                    "--tls-key",
                    str(key),
                    "--log-level",
                    "warning",
                ],
            ),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        dnsdist = subprocess.Popen(
            pinned(
                1, ["dnsdist", "--supervised", "--disable-syslog", "-C", str(home / "dnsdist.conf")]
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for port in (unbound_tls, unbound_https, ours_tls, ours_https, dnsdist_doh):
                wait_for(port)
            dot = argparse.Namespace(**{**vars(args), "mode": "dot"})
            print(
                f"dnsperf -m dot, {args.seconds} s, {args.clients} clients, "
                f"{args.outstanding} outstanding, {NAMES} names (cache hits)"
            )
            theirs = measure("unbound (tls-port)", unbound.pid, unbound_tls, queries, dot)
            mine = measure("resolver --listen-tls", ours.pid, ours_tls, queries, dot)
            if theirs:
                print(f"ours / unbound per CPU-second: {mine / theirs:.2f}x")
            doh = argparse.Namespace(
                **{**vars(args), "mode": "doh", "clients": 1, "outstanding": 1}
            )
            print(f"dnsperf -m doh (GET), {args.seconds} s, 1 client, 1 outstanding")
            theirs = measure("dnsdist (addDOHLocal)", dnsdist.pid, dnsdist_doh, queries, doh)
            mine = measure("resolver --listen-https", ours.pid, ours_https, queries, doh)
            if theirs:
                print(f"ours / dnsdist per CPU-second: {mine / theirs:.2f}x")
            doh = argparse.Namespace(**{**vars(args), "mode": "doh"})
            print(
                f"dnsperf -m doh (GET), {args.seconds} s, {args.clients} clients, "
                f"{args.outstanding} outstanding"
            )
            theirs = measure("unbound (https-port)", unbound.pid, unbound_https, queries, doh)
            mine = measure("resolver --listen-https", ours.pid, ours_https, queries, doh)
            if theirs:
                print(f"ours / unbound per CPU-second: {mine / theirs:.2f}x")
        finally:
            for process in (dnsdist, ours, unbound):
                stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """End a server this benchmark started: SIGTERM, then SIGKILL after 10 s."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


if __name__ == "__main__":
    main()
