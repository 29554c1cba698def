"""TLS for the encrypted transports: client contexts that verify an upstream's certificate
(the system's CA store or one file), SPKI pins (RFC 7858 section 4.2), server contexts for our
listeners, and one line that says why a handshake failed.

Only the standard ``ssl`` module does TLS; ``cryptography`` only reads a certificate's public
key for a pin.
"""

from __future__ import annotations

import base64
import hashlib
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from resolver.errors import ConfigError

__all__ = [
    "client_context",
    "describe_failure",
    "server_context",
    "spki_pin",
]


def client_context(ca_file: Path | None = None, *, alpn: tuple[str, ...] = ()) -> ssl.SSLContext:
    """A context that verifies the server's certificate chain and name: against the system's CA
    store, or only against ``ca_file`` when given; TLS 1.2 at least (RFC 8310 section 9 asks no
    less), ``alpn`` offered. Raises ConfigError naming ``transport.tls_ca`` when that file
    cannot be read or holds no certificate."""
    try:
        context = ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("transport.tls_ca", f"{ca_file}: {_reason(exc)}") from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def server_context(cert: Path, key: Path, *, alpn: tuple[str, ...] = ()) -> ssl.SSLContext:
    """A listener's context with the certificate chain in ``cert`` and its private key in
    ``key`` (PEM); TLS 1.2 at least, ``alpn`` accepted. Raises ConfigError naming
    ``server.tls_cert`` when the files cannot be read or do not match."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("server.tls_cert", f"{cert} / {key}: {_reason(exc)}") from exc
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def spki_pin(der_certificate: bytes) -> str:
    """The pin of a certificate: base64 of the SHA-256 of its SubjectPublicKeyInfo (RFC 7469's
    pin-sha256, the form RFC 7858 section 4.2 uses)."""
    key = x509.load_der_x509_certificate(der_certificate).public_key()
    spki = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


def describe_failure(exc: BaseException) -> str:
    """Why a TLS handshake failed, in one line: the verification error (unknown CA, expired,
    wrong name) when there is one."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate not accepted: {exc.verify_message or exc.reason}"
    return f"TLS handshake failed: {_reason(exc)}"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).replace("_", " ").lower()
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
