"""``resolver query`` without click: its start-up is most of its cost, so the console script
(:mod:`resolver.console`) runs it before click is imported, and the click command of
:mod:`resolver.cli` (its help, ``CliRunner``) runs the same :func:`execute`.

Imports are lazy where a one-shot query does not need them: ``+trace`` loads the iteration,
plain queries the stub client only.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from resolver.errors import ConfigError, ResolverError, UpstreamError

if TYPE_CHECKING:
    from resolver.dig import Address
    from resolver.query import Invocation

__all__ = [
    "EXIT_BAD_SERVER",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_NO_REPLY",
    "EXIT_USAGE",
    "execute",
    "fail",
    "run",
]

# Exit codes. 0: success; 9: no server replied (as dig); the rest name the kind of failure.
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NO_REPLY = 9
EXIT_BAD_SERVER = 10
EXIT_INTERRUPTED = 130


def _echo(message: str, err: bool = False, nl: bool = True) -> None:
    """Write ``message`` (and a newline) to stdout or stderr and flush, as click.echo does."""
    stream = sys.stderr if err else sys.stdout
    stream.write(message + "\n" if nl else message)
    stream.flush()


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    """Print one readable line on stderr and exit with ``code``."""
    _echo(f"resolver: error: {message}", err=True)
    sys.exit(code)


def run(args: Sequence[str]) -> None:
    """The console script's ``resolver query ARGS``: exits the process with the command's code;
    returns only when help is asked, which the caller prints (through click)."""
    try:
        code = execute(args)
    except Exception as exc:  # the root of the command: one line, never a traceback
        first: BaseException = exc
        while isinstance(first, BaseExceptionGroup) and first.exceptions:
            first = first.exceptions[0]
        fail(f"internal error: {type(first).__name__}: {first}")
    finally:
        gc.freeze()  # see resolver.cli.run
    if code is not None:
        sys.exit(code)


def execute(args: Sequence[str]) -> int | None:
    """Run ``resolver query ARGS``: the exit code, or None when help is asked (the caller
    prints it). Usage and server errors print their line and exit (SystemExit)."""
    from resolver.query import parse_command_line, server_address

    try:
        invocation = parse_command_line(args, is_tty=sys.stdout.isatty())
    except ResolverError as exc:
        fail(f"{exc} (see 'resolver query --help')", EXIT_USAGE)
    if invocation.help:
        return None
    for warning in invocation.warnings:
        _echo(warning, err=True)
    if invocation.trace:
        return _trace_each(invocation)
    try:
        options = invocation.options
        default_port = 443 if options.https is not None else 853 if options.tls else 53
        server = server_address(
            invocation.server,
            invocation.port,
            default_port=default_port,
            family=invocation.family,
            env_server=os.environ.get("RESOLVER_SERVER"),
            resolv_conf=invocation.resolv_conf,
        )
    except ConfigError as exc:
        fail(f"unusable server address: {exc}", EXIT_BAD_SERVER)
    return _ask_each(invocation, server)


def _ask_each(invocation: Invocation, server: Address) -> int:
    """Ask every question in turn and print each reply; the exit code of the worst outcome."""
    from resolver.dig import format_json, format_short, format_text
    from resolver.stub import ask

    display = invocation.display
    # dig prints a stray reply's warning on stdout, +short or not; JSON output keeps stdout JSON.
    to_stderr = display.style == "json"
    code = 0
    for question in invocation.questions:
        try:
            reply = ask(
                server,
                question,
                invocation.options,
                lambda line: _echo(line, err=to_stderr),
                idnout=display.idnout,
            )
        except ConfigError as exc:
            fail(f"unusable server address: {exc.reason}", EXIT_BAD_SERVER)
        except UpstreamError as exc:
            _echo(f"resolver: error: no reply: {exc}", err=True)
            code = EXIT_NO_REPLY
            continue
        except (ResolverError, OSError) as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            fail("interrupted", EXIT_INTERRUPTED)
        if display.style == "json":
            _echo(format_json(reply), nl=False)
        elif display.style == "short":
            _echo(format_short(reply), nl=False)
        else:
            _echo(format_text(reply, display), nl=False)
    return code


def _trace_each(invocation: Invocation) -> int:
    """``+trace``: resolve every question from the root hints, printing each step as it
    happens and then the answer; the exit code of the worst outcome."""
    from resolver.config import RecursionConfig
    from resolver.dig import format_short, format_text
    from resolver.engine.hints import read_root_hints
    from resolver.stub import families
    from resolver.trace import trace
    from resolver.wire import qtype_name

    try:
        hints = read_root_hints(invocation.root_hints)
    except ConfigError as exc:
        fail(f"--root-hints: {exc.reason}", EXIT_USAGE)
    config = RecursionConfig(root_hints=invocation.root_hints, port=invocation.port or 53)
    anchors = None
    if invocation.options.dnssec:  # +trace +dnssec validates, as recursive mode does
        from resolver.engine.validation import read_trust_anchors, root_anchors

        try:
            anchor = invocation.trust_anchor
            anchors = read_trust_anchors(anchor) if anchor else root_anchors()
        except ConfigError as exc:
            fail(f"--trust-anchor: {exc.reason}", EXIT_USAGE)
    usable = families() if invocation.family is None else frozenset({invocation.family})
    source = invocation.root_hints or "IANA's, shipped with resolver"
    display = invocation.display
    code = 0
    # dig's text ends with a blank line after its statistics; other output needs one between.
    apart = display.style != "text" or not display.stats
    for index, question in enumerate(invocation.questions):
        if index and apart:
            _echo("")
        asked = f"{question.name} {qtype_name(question.qtype)}"
        _echo(f";; {asked} from the root hints ({source})")
        try:
            result = trace(
                question,
                config=config,
                hints=hints,
                families=usable,
                echo=_echo,
                tcp=invocation.options.tcp,
                anchors=anchors,
            )
        except (ResolverError, OSError) as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            fail("interrupted", EXIT_INTERRUPTED)
        _echo("")
        if result.reply is None:
            _echo(f"resolver: error: {asked}: {result.failure}", err=True)
            code = EXIT_NO_REPLY
        elif display.style == "short":
            _echo(format_short(result.reply), nl=False)
        else:
            _echo(format_text(result.reply, display), nl=False)
    return code
