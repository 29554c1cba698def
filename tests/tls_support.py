"""Certificates made for a test (a private CA, server certificates good, expired and for
another name), and a scripted stream server that answers pipelined queries as a test says."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import secrets
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from resolver.wire.query import build_query

_NOW = datetime.datetime.now(datetime.UTC)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@dataclass(frozen=True)
class Issued:
    """A server certificate (PEM file), its key (PEM file) and the certificate's DER bytes."""

    cert: Path
    key: Path
    der: bytes


@dataclass
class PrivateCa:
    """A certificate authority of the test's own, written under ``directory``."""

    directory: Path

    def __post_init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(f"resolver test CA {self.directory.name}"))
            .issuer_name(_name(f"resolver test CA {self.directory.name}"))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_NOW - datetime.timedelta(days=1))
            .not_valid_after(_NOW + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self.directory / "ca.pem"
        self.pem.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))

    def issue(
        self,
        label: str,
        names: tuple[str, ...] = ("dns.test",),
        addresses: tuple[str, ...] = ("127.0.0.1",),
        *,
        expired: bool = False,
    ) -> Issued:
        """A server certificate for ``names`` and ``addresses`` (valid now, or expired a day
        ago), written as ``label``.pem and ``label``.key (the chain: the certificate, then the
        CA's)."""
        key = ec.generate_private_key(ec.SECP256R1())
        if expired:
            start, end = _NOW - datetime.timedelta(days=10), _NOW - datetime.timedelta(days=1)
        else:
            start, end = _NOW - datetime.timedelta(days=1), _NOW + datetime.timedelta(days=10)
        alternatives: list[x509.GeneralName] = [x509.DNSName(name) for name in names]
        alternatives += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(names[0] if names else addresses[0]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        cert_path = self.directory / f"{label}.pem"
        key_path = self.directory / f"{label}.key"
        cert_path.write_bytes(
            certificate.public_bytes(serialization.Encoding.PEM)
            + self.certificate.public_bytes(serialization.Encoding.PEM)
        )
        _write_key(key_path, key)
        return Issued(cert_path, key_path, certificate.public_bytes(serialization.Encoding.DER))


def server_context(issued: Issued) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(issued.cert, issued.key)
    return context


# Given every query a connection received so far (in order), return the replies to send now.
Answer = Callable[[list[bytes]], list[bytes]]


def insecure_client_context(alpn: str) -> ssl.SSLContext:
    """A client context that takes any certificate, offering ``alpn`` (for tests where what
    is checked is not TLS)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols([alpn])
    return context


def echo_reply(query: bytes, address: bytes = b"\x7f\x00\x00\x01") -> bytes:
    """A NOERROR reply to ``query`` (no OPT) with one A record for its question."""
    question_end = 12
    while query[question_end]:
        question_end += 1 + query[question_end]
    question_end += 5
    header = query[:2] + b"\x81\x80" + b"\x00\x01\x00\x01\x00\x00\x00\x00"
    answer = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + address
    return header + query[12:question_end] + answer


class StreamServer:
    """A DNS-over-TCP (or TLS, with ``context``) server on 127.0.0.1 whose replies a test
    scripts: ``answer`` is called after each query a connection receives with all its queries
    so far, and returns what to send. Counts the connections it accepted; ``close_idle``
    closes every open connection at once (a server ending idle connections)."""

    def __init__(self, answer: Answer, context: ssl.SSLContext | None = None) -> None:
        self.answer = answer
        self.context = context
        self.accepted = 0
        self.queries: list[bytes] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.received = asyncio.Event()
        self.handlers: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> StreamServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.context)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        self.close_idle()
        await asyncio.gather(*self.handlers, return_exceptions=True)
        await self.server.wait_closed()

    def close_idle(self) -> None:
        for writer in self.writers:
            writer.close()
        self.writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        seen: list[bytes] = []
        try:
            while True:
                size = int.from_bytes(await reader.readexactly(2), "big")
                query = await reader.readexactly(size)
                seen.append(query)
                self.queries.append(query)
                self.received.set()
                for reply in self.answer(seen):
                    writer.write(len(reply).to_bytes(2, "big") + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()


class Query:
    """A query in flight as the pool sees it (the transport's exchange, reduced)."""

    def __init__(self, name: str) -> None:
        self.query = build_query(name, 1, qid=secrets.randbelow(65536))
        self.qid = self.query[0] << 8 | self.query[1]
        self.question = self.query[12 : self.query.index(b"\x00", 12) + 5]
        self.done = False
        self.retried = False
        self.outcome: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def take(self, data: bytes) -> bool:
        if data[:2] != self.query[:2] or data[12 : 12 + len(self.question)] != self.question:
            return False
        self.done = True
        self.outcome.set_result(data)
        return True

    def fail(self, exc: BaseException) -> None:
        self.done = True
        self.outcome.set_exception(exc)
