"""``resolver demo``: the whole forwarder on loopback, offline and without root.

A fake authority serves the demo's zones on 127.0.0.1 (a free port), a Daemon forwards to it
from another free port, and a handful of questions go through the daemon with the same client
as ``resolver query``. Each answer is printed briefly with its timing, then the daemon's
statistics; everything is closed on the way out. The zones are package data
(``resolver/demo_zones``, read through importlib.resources), so the demo runs from any install
and any directory.

The daemon validates (DNSSEC, ``[dnssec] validation = "on"``): at each run example.com. is
signed with keys made then (ECDSA P-256, never written anywhere but a temporary directory
the anchor file lives in), with a child zone expired.example.com. whose signatures expired
days ago; the trust anchor is example.com.'s DS. An answer from example.com. comes with AD,
one from the expired zone is SERVFAIL with EDE 7 (Signature Expired).
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import dns.dnssec
import dns.name
import dns.rdatatype
import dns.zone
from cryptography.hazmat.primitives.asymmetric import ec
from dns.rdtypes.ANY.DNSKEY import DNSKEY

from resolver.authority import Authority, Zone, parse_zone
from resolver.config import (
    Config,
    DnssecConfig,
    ForwarderConfig,
    ServerConfig,
    SocketPoolConfig,
    TransportConfig,
)
from resolver.daemon import Daemon
from resolver.dig import Address, Message, Record
from resolver.errors import ConfigError, UpstreamError
from resolver.query import QueryOptions, Question
from resolver.stub import ask
from resolver.transport import format_address
from resolver.wire import check_name, qtype_value

__all__ = ["DEMO_QUESTIONS", "demo_zones", "run_demo"]

Write = Callable[[str], None]

# (name, type, what it shows)
DEMO_QUESTIONS: tuple[tuple[str, str, str], ...] = (
    ("www.example.com", "A", "a plain answer"),
    ("www.example.com", "A", "the same again: a cache hit, the authority is not asked"),
    ("alias.example.com", "A", "a CNAME, followed by the authority"),
    ("chain1.example.com", "A", "a chain of three CNAMEs"),
    ("nothere.example.com", "A", "a name that does not exist"),
    ("big.example.com", "TXT", "2 KB of TXT: truncated over UDP, so asked again over TCP"),
    ("example.com", "MX", "mail exchangers, one in another zone"),
    ("www.example.com", "AAAA", "an IPv6 address"),
    ("www.example.com", "TXT", "DNSSEC: a signed NODATA, validated (AD)"),
    ("www.expired.example.com", "A", "DNSSEC: an expired signature, bogus (SERVFAIL, EDE 7)"),
)

_SIGNED = "example.com."
_EXPIRED = "expired.example.com."
_DAY = 86400

_LOOPBACK = "127.0.0.1"
_SHOWN_RECORDS = 3
_SHOWN_CHARS = 40
# Bounds: the daemon gives up on the authority well before the client gives up on the daemon.
_CLIENT = QueryOptions(timeout=3.0, tries=2)
_FORWARDER = ForwarderConfig(upstream_timeout=1.0, query_timeout=2.5)
_SMALL_POOL = TransportConfig(pool=SocketPoolConfig(min_size=2, max_size=16))


_ZONES = "demo_zones"


def _zone_texts() -> list[tuple[str, str]]:
    """The demo's zone files (name, text), from the package data of the installed
    ``resolver``; raises ConfigError when there are none (a broken install)."""
    folder = resources.files("resolver").joinpath(_ZONES)
    files = sorted(
        (item for item in folder.iterdir() if item.name.endswith(".zone")),
        key=lambda item: item.name,
    )
    if not files:
        raise ConfigError(_ZONES, "the demo's zone files are missing from this install")
    return [(item.name, item.read_text(encoding="utf-8")) for item in files]


def demo_zones() -> list[Zone]:
    """The demo's zones, read from the package data of the installed ``resolver``.

    Raises ConfigError if a zone is missing or malformed (a broken install).
    """
    return [parse_zone(text, source=f"resolver/{_ZONES}/{name}") for name, text in _zone_texts()]


def _key() -> tuple[ec.EllipticCurvePrivateKey, DNSKEY]:
    private = ec.generate_private_key(ec.SECP256R1())
    return private, dns.dnssec.make_dnskey(private.public_key(), 13, 257)


def _generated(text: str) -> str:
    """``text`` with its plain ``$GENERATE FROM-TO LHS RHS`` lines written out (``$`` the
    number; the demo's zone uses no modifiers), for dnspython, whose reader does not take the
    quoted TXT data of one."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("$GENERATE"):
            lines.append(line)
            continue
        _, span, template = line.split(None, 2)
        first, last = (int(n) for n in span.split("-"))
        lines += [template.replace("$", str(n)) for n in range(first, last + 1)]
    return "\n".join(lines) + "\n"


def signed_zones(directory: Path) -> tuple[list[Zone], Path]:
    """The demo's zones with example.com. signed with fresh keys (a KSK alone signing everything,
    NSEC) and a child expired.example.com. signed with signatures that expired days ago;
    and the trust anchor file (example.com.'s DS) written in ``directory``."""
    now = int(time.time())
    child_key = _key()
    child = dns.zone.from_text(
        "@ 3600 SOA ns1 hostmaster 1 7200 3600 1209600 300\n@ 3600 NS ns1\n"
        "ns1 3600 A 127.0.0.4\nwww 300 A 127.1.9.1\n",
        origin=_EXPIRED,
    )
    dns.dnssec.sign_zone(
        child, keys=[child_key], inception=now - 30 * _DAY, expiration=now - 3 * _DAY
    )
    texts = {_EXPIRED: child.to_text(want_origin=True)}
    files = dict(_zone_texts())
    source = files.pop(f"{_SIGNED}zone")
    parent_key = _key()
    ds = dns.dnssec.make_ds(_EXPIRED, child_key[1], "SHA256")
    parent = dns.zone.from_text(
        _generated(source)
        + f"expired 3600 NS ns1.expired\nns1.expired 3600 A 127.0.0.4\nexpired 3600 DS {ds}\n",
        origin=_SIGNED,
    )
    dns.dnssec.sign_zone(parent, keys=[parent_key], inception=now - 3600, expiration=now + 7 * _DAY)
    texts[_SIGNED] = parent.to_text(want_origin=True)
    anchor = directory / "example.com.key"
    anchor.write_text(f"{_SIGNED} DS {dns.dnssec.make_ds(_SIGNED, parent_key[1], 'SHA256')}\n")
    out = [parse_zone(text, source=f"resolver/{_ZONES}/{name}") for name, text in files.items()]
    out += [parse_zone(text, source=f"{origin} (signed)") for origin, text in texts.items()]
    return out, anchor


def _ede(message: Message) -> list[tuple[int, bytes]]:
    """The Extended DNS Errors of a reply (RFC 8914: option 15), as (info code, text)."""
    options = message.opt.options if message.opt is not None else ()
    return [
        (int.from_bytes(data[:2], "big"), data[2:])
        for code, data in options
        if code == 15 and len(data) >= 2
    ]


def _clip(text: str) -> str:
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"


def _record_text(record: Record) -> str:
    if record.rtype in ("CNAME", "DNAME"):
        return f"{record.rtype} {record.data}"
    return _clip(record.data)


def _summarize(message: Message) -> str:
    """One line: the status and the first few answer records."""
    secure = "  (AD: validated)" if "ad" in message.flags else ""
    if not message.answer:
        soa = any(r.rtype == "SOA" for r in message.authority)
        ede = next((f" (EDE {c})" for c, _ in _ede(message)), "")
        return (
            f"{message.status}, no records" + (" (SOA in authority)" if soa else "") + ede + secure
        )
    shown = [_record_text(r) for r in message.answer[:_SHOWN_RECORDS]]
    more = len(message.answer) - len(shown)
    return (
        f"{message.status}  " + " | ".join(shown) + (f"  (+{more} more)" if more else "") + secure
    )


# Engine statistics that only recursive mode keeps (its queries to authorities, its delegation
# cache): in forwarding mode they are not zero, they do not exist.
_RECURSIVE_ONLY = frozenset({"servers", "zones"})


def _statistics_lines(
    value: object, indent: str = "  ", omit: frozenset[str] = frozenset()
) -> list[str]:
    """A statistics dataclass as lines: scalar fields on one line, nested ones indented;
    the fields named in ``omit`` and those that are None (kept by nothing that runs) left out."""
    assert dataclasses.is_dataclass(value)
    scalars: list[str] = []
    nested: list[tuple[str, object]] = []
    for field in dataclasses.fields(value):
        item = getattr(value, field.name)
        if item is None or field.name in omit:
            continue
        if dataclasses.is_dataclass(item):
            nested.append((field.name, item))
        elif isinstance(item, tuple) and item and dataclasses.is_dataclass(item[0]):
            nested += [(field.name, element) for element in item]
        else:
            scalars.append(f"{field.name.replace('_', ' ')} {item}")
    lines = [indent + ", ".join(scalars)] if scalars else []
    for name, item in nested:
        lines.append(f"{indent}{name.replace('_', ' ')}:")
        lines += _statistics_lines(item, indent + "  ")
    return lines


async def _ask_all(daemon: Address, authority: Authority, write: Write) -> int:
    failures = 0
    for name, type_text, what in DEMO_QUESTIONS:
        question = Question(check_name(name), qtype_value(type_text))
        asked_before = len(authority.queries)
        write(f"{question.name} {type_text}: {what}")
        try:
            # The blocking stub client of ``resolver query``, off the loop the daemon runs on.
            reply = await asyncio.to_thread(
                ask, daemon, question, _CLIENT, lambda line: write(f"    {line}")
            )
        except UpstreamError as exc:
            failures += 1
            write(f"    no reply: {exc}")
            continue
        asked = len(authority.queries) - asked_before
        write(f"    {_summarize(reply.message)}")
        write(
            f"    {reply.elapsed * 1000:.1f} ms over {reply.transport}, {reply.message.size} bytes;"
            f" the authority was asked {asked} time{'' if asked == 1 else 's'}"
        )
    return failures


async def run_demo(write: Write, *, zones: list[Zone] | None = None) -> int:
    """Run the demo, writing lines with ``write``; return how many questions got no reply.

    ``zones`` replaces the demo's own (`demo_zones`, with example.com. signed at each run
    and validated from its DS: see the module); given zones are not validated. Raises
    ConfigError when the zones cannot be loaded, OSError when loopback sockets cannot be
    bound, and whatever ``write`` raises (BrokenPipeError when the reader of the output went
    away). Everything started is closed before returning or raising.
    """
    with tempfile.TemporaryDirectory(prefix="resolver-demo.") as directory:
        dnssec = DnssecConfig()
        if zones is None:
            zones, anchor = signed_zones(Path(directory))
            dnssec = DnssecConfig(validation="on", trust_anchors=anchor)
        return await _run(write, zones, dnssec)


async def _run(write: Write, zones: list[Zone], dnssec: DnssecConfig) -> int:
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with Authority(zones) as authority:
        config = Config(
            mode="forward",
            server=ServerConfig(listen=((_LOOPBACK, 0),)),
            forwarder=dataclasses.replace(_FORWARDER, upstreams=(authority.address,)),
            transport=_SMALL_POOL,
            dnssec=dnssec,
        )
        daemon = Daemon(config)
        await daemon.start()
        try:
            address = daemon.addresses[0]
            write(
                f"fake authority for {len(zones)} zones on {format_address(authority.address)};"
                f" the daemon listens on {format_address(address)} and forwards to it"
            )
            write("")
            failures = await _ask_all(address, authority, write)
            write("")
            write("daemon statistics (forwarder, upstream, socket pool):")
            omit = _RECURSIVE_ONLY if config.mode == "forward" else frozenset()
            for line in _statistics_lines(daemon.engine.statistics(), omit=omit):
                write(line)
            write("daemon server:")
            for line in _statistics_lines(daemon.server.statistics()):
                write(line)
            counts = authority.statistics()
            write(
                f"fake authority: {counts['udp_queries']} UDP and {counts['tcp_queries']} TCP"
                " queries received"
            )
        finally:
            await daemon.aclose()
    write(f"done in {loop.time() - started:.2f} s; everything closed")
    return failures
