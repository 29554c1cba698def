"""The stub client behind ``resolver query``: one question to one server over plain sockets.

UDP first, each try on a fresh socket whose source port the kernel picks, with a fresh random
ID from the system's random source (``os.urandom``, as :mod:`secrets` uses); TCP when the
reply is truncated or TCP is asked for. Queries are built and replies matched by
:mod:`resolver.wire.query`, as the daemon's transport does: RFC 5452 section 9.1 (source
address and port here, then ID, QR, opcode, question; an error reply without a question is
taken); one that does not match is reported through ``warn`` in dig's words and the socket
keeps listening until the try's deadline. With 0x20 asked for (``resolver query +trace``,
whose queries go to authorities), the name's case is randomised, afresh for each try, and a
reply must echo it. Blocking sockets with timeouts: a one-shot query needs no event loop and
no pool.

With ``+tls`` the query goes over TLS (RFC 7858) and with ``+https`` as an HTTP/2 POST (RFC
8484, ID 0, the ``h2`` library's framing), as kdig does: without ``+tls-ca`` and
``+tls-hostname`` the certificate is not checked (kdig's opportunistic profile); with
``+tls-ca=FILE`` the chain must lead to FILE's CAs, with ``+tls-hostname=NAME`` it must carry
NAME (the system's CA store then, unless FILE is given).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Literal, NamedTuple

if TYPE_CHECKING:
    import ssl

from resolver.dig import Address, Reply, decode
from resolver.errors import (
    BadResponse,
    CaseMismatch,
    ConfigError,
    UpstreamTimeout,
    UpstreamUnreachable,
    WireError,
)
from resolver.query import QueryOptions, Question
from resolver.wire import CASE_DIFFERS, make_query, read_header, reply_mismatch

__all__ = ["Exchange", "ask", "exchange", "families", "server_name"]

Warn = Callable[[str], None]

_LENGTH = struct.Struct("!H")
_NSID_OPTION = b"\x00\x03\x00\x00"  # option code 3, empty: "tell me your NSID" (RFC 5001)
_MAX_UDP = 65535
# Linux reports ICMP errors (port unreachable) on unconnected UDP sockets only with these on;
# an unconnected socket is what lets a reply from the wrong source be seen and reported.
_IP_RECVERR = 11
_IPV6_RECVERR = 25


class Exchange(NamedTuple):
    """The matched reply's bytes, how it came and after how long (send to receipt, seconds);
    ``retried_tcp`` when a truncated UDP reply was asked again over TCP."""

    data: bytes
    transport: Literal["UDP", "TCP", "TLS", "HTTPS"]
    elapsed: float
    retried_tcp: bool = False


def server_name(server: Address) -> str:
    """``host:port`` (``[host]:port`` for IPv6), as errors name a server."""
    host, port = server
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _case_mismatch(server: Address) -> CaseMismatch:
    return CaseMismatch(server_name(server), "the reply's question differs in case only")


def _query(
    question: Question, options: QueryOptions, qid: int, randomize_case: bool
) -> tuple[bytes, bytes]:
    return make_query(
        question.wire_name,
        question.qtype,
        question.qclass,
        qid=qid,
        rd=options.recurse,
        cd=options.cd,
        ad=options.ad,
        do=options.dnssec,
        edns_size=options.edns,
        edns_options=_NSID_OPTION if options.nsid else b"",
        randomize_case=randomize_case,
    )


def _matched(
    data: bytes, qid: int, sent: bytes, server: Address, case_exact: bool, warn: Warn
) -> bool:
    """Whether ``data`` is our reply (RFC 5452 section 9.1, :func:`reply_mismatch`); a
    mismatch is told through ``warn`` in dig's words, a 0x20 reply that differs in case only
    raises CaseMismatch."""
    problem = reply_mismatch(data, qid, sent, case_exact=case_exact)
    if problem is None:
        return True
    if problem is CASE_DIFFERS:
        raise _case_mismatch(server)
    warn(problem)
    return False


def _socket(server: Address, kind: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
    try:
        sock = socket.socket(family, kind)
    except OSError as exc:
        reason = f"cannot open a socket toward {server_name(server)}: {exc.strerror or exc}"
        raise ConfigError("server", reason) from exc
    if kind == socket.SOCK_DGRAM and sys.platform == "linux":
        if family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_IP, _IP_RECVERR, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_RECVERR, 1)
    return sock


def _same_source(source: tuple[object, ...], server: Address) -> bool:
    host, port = str(source[0]), source[1]
    if port != server[1]:
        return False
    if host == server[0]:
        return True
    try:
        return ipaddress.ip_address(host.partition("%")[0]) == ipaddress.ip_address(
            server[0].partition("%")[0]
        )
    except ValueError:
        return False


def _remaining(deadline: float, server: Address, timeout: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise UpstreamTimeout(server_name(server), f"no reply within {timeout:g}s")
    return left


def _random_id() -> int:
    """A query ID from the system's random source (secrets.randbits without importing hmac,
    which a one-shot query would pay for at start-up)."""
    return int.from_bytes(os.urandom(2), "big")


def _unreachable(server: Address, exc: OSError) -> UpstreamUnreachable:
    return UpstreamUnreachable(server_name(server), exc.strerror or str(exc))


def _udp_try(
    server: Address, question: Question, options: QueryOptions, warn: Warn, case_exact: bool
) -> tuple[bytes, float]:
    qid = _random_id()
    query, sent = _query(question, options, qid, case_exact)
    with _socket(server, socket.SOCK_DGRAM) as sock:
        started = time.perf_counter()
        deadline = time.monotonic() + options.timeout
        try:
            sock.sendto(query, server)
        except OSError as exc:
            raise _unreachable(server, exc) from exc
        # Each pass takes one datagram or ends at the deadline.
        while True:
            sock.settimeout(_remaining(deadline, server, options.timeout))
            try:
                data, source = sock.recvfrom(_MAX_UDP)
            except TimeoutError:
                continue
            except OSError as exc:
                raise _unreachable(server, exc) from exc
            if not _same_source(source, server):
                warn(
                    f";; reply from unexpected source: {source[0]}#{source[1]},"
                    f" expected {server[0]}#{server[1]}"
                )
                continue
            if _matched(data, qid, sent, server, case_exact, warn):
                return data, time.perf_counter() - started


def _read_exactly(
    sock: socket.socket, size: int, deadline: float, server: Address, timeout: float
) -> bytes:
    chunks: list[bytes] = []
    missing = size
    # Each pass receives at least one byte or ends (deadline, closed connection).
    while missing:
        sock.settimeout(_remaining(deadline, server, timeout))
        try:
            chunk = sock.recv(missing)
        except TimeoutError:
            continue
        except OSError as exc:
            raise _unreachable(server, exc) from exc
        if not chunk:
            raise BadResponse(server_name(server), "the server closed the TCP connection early")
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


def _tcp_try(
    server: Address, question: Question, options: QueryOptions, warn: Warn, case_exact: bool
) -> tuple[bytes, float]:
    qid = _random_id()
    query, sent = _query(question, options, qid, case_exact)
    with _socket(server, socket.SOCK_STREAM) as sock:
        started = time.perf_counter()
        deadline = time.monotonic() + options.timeout
        sock.settimeout(_remaining(deadline, server, options.timeout))
        try:
            sock.connect(server)
            sock.sendall(_LENGTH.pack(len(query)) + query)
        except TimeoutError:
            raise UpstreamTimeout(
                server_name(server), f"no TCP connection within {options.timeout:g}s"
            ) from None
        except OSError as exc:
            raise _unreachable(server, exc) from exc
        # Each pass reads one whole message or ends at the deadline.
        while True:
            (size,) = _LENGTH.unpack(_read_exactly(sock, 2, deadline, server, options.timeout))
            data = _read_exactly(sock, size, deadline, server, options.timeout)
            if _matched(data, qid, sent, server, case_exact, warn):
                return data, time.perf_counter() - started


def _tls_context(options: QueryOptions, alpn: tuple[str, ...] = ()) -> ssl.SSLContext:
    import ssl  # here: a plain query's start-up does not pay for it

    """kdig's profiles: no check without a CA file or a name; the chain (the file's CAs, or
    the system's) with either; the name too with a name."""
    if options.tls_ca is None and options.tls_hostname is None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        try:
            context = ssl.create_default_context(cafile=options.tls_ca)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError("+tls-ca", f"{options.tls_ca}: {exc}") from exc
        context.check_hostname = options.tls_hostname is not None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def _tls_socket(
    server: Address, options: QueryOptions, deadline: float, alpn: tuple[str, ...] = ()
) -> ssl.SSLSocket:
    """A TLS connection to ``server``, its handshake done by ``deadline``. Raises
    UpstreamTimeout, UpstreamUnreachable (a certificate not accepted included)."""
    import ssl

    context = _tls_context(options, alpn)
    sock = _socket(server, socket.SOCK_STREAM)
    try:
        sock.settimeout(_remaining(deadline, server, options.timeout))
        sock.connect(server)
        wrapped = context.wrap_socket(sock, server_hostname=options.tls_hostname)
    except TimeoutError:
        sock.close()
        raise UpstreamTimeout(server_name(server), "no TLS connection in time") from None
    except ssl.SSLCertVerificationError as exc:
        sock.close()
        reason = f"certificate not accepted: {exc.verify_message or exc.reason}"
        raise UpstreamUnreachable(server_name(server), reason) from exc
    except OSError as exc:
        sock.close()
        raise _unreachable(server, exc) from exc
    return wrapped


def _tls_try(
    server: Address, question: Question, options: QueryOptions, warn: Warn, case_exact: bool
) -> tuple[bytes, float]:
    qid = _random_id()
    query, sent = _query(question, options, qid, case_exact)
    started = time.perf_counter()
    deadline = time.monotonic() + options.timeout
    with _tls_socket(server, options, deadline) as sock:
        try:
            sock.sendall(_LENGTH.pack(len(query)) + query)
        except OSError as exc:
            raise _unreachable(server, exc) from exc
        while True:
            (size,) = _LENGTH.unpack(_read_exactly(sock, 2, deadline, server, options.timeout))
            data = _read_exactly(sock, size, deadline, server, options.timeout)
            if _matched(data, qid, sent, server, case_exact, warn):
                return data, time.perf_counter() - started


def _https_try(
    server: Address, question: Question, options: QueryOptions, warn: Warn, case_exact: bool
) -> tuple[bytes, float]:
    """One POST of the query (ID 0, RFC 8484 section 4.1) over HTTP/2; the reply with our ID
    put back is matched as any other."""
    import h2.config
    import h2.connection
    import h2.events
    import h2.exceptions

    qid = _random_id()
    query, sent = _query(question, options, qid, case_exact)
    body = b"\x00\x00" + query[2:]
    started = time.perf_counter()
    deadline = time.monotonic() + options.timeout
    name = server_name(server)
    authority = options.tls_hostname or (f"[{server[0]}]" if ":" in server[0] else server[0])
    conn = h2.connection.H2Connection(h2.config.H2Configuration(header_encoding=None))
    conn.initiate_connection()
    conn.send_headers(
        1,
        [
            (b":method", b"POST"),
            (b":scheme", b"https"),
            (b":authority", authority.encode()),
            (b":path", options.https.encode() if options.https else b"/dns-query"),
            (b"content-type", b"application/dns-message"),
            (b"accept", b"application/dns-message"),
            (b"content-length", str(len(body)).encode()),
        ],
    )
    conn.send_data(1, body, end_stream=True)
    status, reply = b"", bytearray()
    with _tls_socket(server, options, deadline, ("h2",)) as sock:
        if sock.selected_alpn_protocol() != "h2":
            raise UpstreamUnreachable(name, "the server does not speak HTTP/2 (ALPN h2)")
        try:
            sock.sendall(conn.data_to_send())
            while True:
                sock.settimeout(_remaining(deadline, server, options.timeout))
                data = sock.recv(65536)
                if not data:
                    raise BadResponse(name, "the server closed the connection early")
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.ResponseReceived):
                        status = dict(event.headers or ()).get(b":status", b"")
                    elif isinstance(event, h2.events.DataReceived):
                        reply += event.data or b""
                        conn.acknowledge_received_data(event.flow_controlled_length, 1)
                    elif isinstance(event, h2.events.StreamEnded):
                        if status != b"200":
                            shown = status.decode(errors="replace") or "none"
                            raise BadResponse(name, f"HTTP status {shown}")
                        data = qid.to_bytes(2, "big") + bytes(reply[2:])
                        if len(reply) < 12 or not _matched(
                            data, qid, sent, server, case_exact, warn
                        ):
                            raise BadResponse(name, "the reply does not answer the query")
                        return data, time.perf_counter() - started
                    elif isinstance(event, h2.events.StreamReset | h2.events.ConnectionTerminated):
                        raise BadResponse(name, "the server reset the request")
                sock.sendall(conn.data_to_send())
        except TimeoutError:
            raise UpstreamTimeout(name, "no HTTPS reply before the timeout") from None
        except h2.exceptions.H2Error as exc:
            raise BadResponse(name, f"HTTP/2: {exc}") from exc
        except OSError as exc:
            raise _unreachable(server, exc) from exc


def exchange(
    server: Address,
    question: Question,
    options: QueryOptions,
    warn: Warn,
    *,
    randomize_case: bool = False,
) -> Exchange:
    """Ask ``server`` one question; return the matched reply.

    A UDP try that times out is repeated up to ``options.tries`` times, each with its own
    timeout, socket and ID; a truncated UDP reply is asked again over TCP unless
    ``options.ignore_tc``. With ``randomize_case`` (0x20), the name goes out with the case of
    its letters flipped at random and the reply must echo that case: one that matches in
    everything but the case ends the exchange with CaseMismatch, as the daemon's transport
    ends it in recursive mode (the caller may ask again without 0x20). Raises UpstreamTimeout
    when every try timed out, UpstreamUnreachable when the server refused (ICMP unreachable,
    TCP reset) or the network failed, BadResponse for a TCP connection closed mid-reply,
    CaseMismatch as said, ConfigError when no socket toward the server can be opened.
    """
    case_exact = randomize_case
    if options.https is not None:
        data, elapsed = _https_try(server, question, options, warn, case_exact)
        return Exchange(data, "HTTPS", elapsed)
    if options.tls:
        data, elapsed = _tls_try(server, question, options, warn, case_exact)
        return Exchange(data, "TLS", elapsed)
    if options.tcp:
        data, elapsed = _tcp_try(server, question, options, warn, case_exact)
        return Exchange(data, "TCP", elapsed)
    for attempt in range(1, options.tries + 1):
        try:
            data, elapsed = _udp_try(server, question, options, warn, case_exact)
        except UpstreamTimeout:
            if attempt == options.tries:
                raise
            continue
        if read_header(data).tc and not options.ignore_tc:
            data, elapsed = _tcp_try(server, question, options, warn, case_exact)
            return Exchange(data, "TCP", elapsed, retried_tcp=True)
        return Exchange(data, "UDP", elapsed)
    raise AssertionError("unreachable: the last try returns or raises")


def families() -> frozenset[int]:
    """The IP versions (4, 6) this machine can open and bind UDP sockets of."""
    usable = set()
    for version, family, wildcard in ((4, socket.AF_INET, "0.0.0.0"), (6, socket.AF_INET6, "::")):
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.bind((wildcard, 0))
        except OSError:
            continue
        usable.add(version)
    return frozenset(usable)


def ask(
    server: Address,
    question: Question,
    options: QueryOptions,
    warn: Warn,
    *,
    idnout: bool = False,
) -> Reply:
    """:func:`exchange`, then the reply decoded; BadResponse when it cannot be decoded."""
    done = exchange(server, question, options, warn)
    try:
        message = decode(done.data, idnout=idnout)
    except WireError as exc:
        raise BadResponse(server_name(server), f"malformed reply: {exc}") from exc
    return Reply(
        message,
        server,
        done.transport,
        done.elapsed,
        datetime.now().astimezone(),
        retried_tcp=done.retried_tcp,
    )
