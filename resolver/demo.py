"""``resolver demo``: the whole forwarder on loopback, offline and without root.

A fake authority serves the demo's zones on 127.0.0.1 (a free port), a Daemon forwards to it
from another free port, and a handful of questions go through the daemon with the same client
as ``resolver query``. Each answer is printed briefly with its timing, then the daemon's
statistics; everything is closed on the way out. The zones are package data
(``resolver/demo_zones``, read through importlib.resources), so the demo runs from any install
and any directory.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from importlib import resources

from resolver.authority import Authority, Zone, parse_zone
from resolver.config import (
    Config,
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
)

_LOOPBACK = "127.0.0.1"
_SHOWN_RECORDS = 3
_SHOWN_CHARS = 40
# Bounds: the daemon gives up on the authority well before the client gives up on the daemon.
_CLIENT = QueryOptions(timeout=3.0, tries=2)
_FORWARDER = ForwarderConfig(upstream_timeout=1.0, query_timeout=2.5)
_SMALL_POOL = TransportConfig(pool=SocketPoolConfig(min_size=2, max_size=16))


_ZONES = "demo_zones"


def demo_zones() -> list[Zone]:
    """The demo's zones, read from the package data of the installed ``resolver``.

    Raises ConfigError if a zone is missing or malformed (a broken install).
    """
    folder = resources.files("resolver").joinpath(_ZONES)
    files = sorted(
        (item for item in folder.iterdir() if item.name.endswith(".zone")),
        key=lambda item: item.name,
    )
    if not files:
        raise ConfigError(_ZONES, "the demo's zone files are missing from this install")
    return [
        parse_zone(item.read_text(encoding="utf-8"), source=f"resolver/{_ZONES}/{item.name}")
        for item in files
    ]


def _clip(text: str) -> str:
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"


def _record_text(record: Record) -> str:
    if record.rtype in ("CNAME", "DNAME"):
        return f"{record.rtype} {record.data}"
    return _clip(record.data)


def _summarize(message: Message) -> str:
    """One line: the status and the first few answer records."""
    if not message.answer:
        soa = any(r.rtype == "SOA" for r in message.authority)
        return f"{message.status}, no records" + (" (SOA in authority)" if soa else "")
    shown = [_record_text(r) for r in message.answer[:_SHOWN_RECORDS]]
    more = len(message.answer) - len(shown)
    return f"{message.status}  " + " | ".join(shown) + (f"  (+{more} more)" if more else "")


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

    ``zones`` replaces the demo's own (`demo_zones`). Raises ConfigError when the zones cannot
    be loaded, OSError when loopback sockets cannot be bound, and whatever ``write`` raises
    (BrokenPipeError when the reader of the output went away). Everything started is closed
    before returning or raising.
    """
    if zones is None:
        zones = demo_zones()
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with Authority(zones) as authority:
        config = Config(
            mode="forward",
            server=ServerConfig(listen=((_LOOPBACK, 0),)),
            forwarder=dataclasses.replace(_FORWARDER, upstreams=(authority.address,)),
            transport=_SMALL_POOL,
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
