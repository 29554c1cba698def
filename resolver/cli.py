"""The command line: the only importer of click and uvloop, and the only caller of asyncio.run.

Every error reaches the user as one line on stderr and a non-zero exit code, never a traceback.
asyncio and logging are imported by the commands that run a loop: ``resolver query`` needs
neither, and its start-up time is most of its cost.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from resolver import __version__
from resolver.errors import ConfigError, ResolverError

if TYPE_CHECKING:
    import asyncio

    from resolver.config import Config
    from resolver.workers import WorkerArgs

T = TypeVar("T")

# Exit codes. 0: success; 9: no server replied (as dig); the rest name the kind of failure.
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_NO_REPLY = 9


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    """Print one readable line on stderr and exit with ``code``."""
    click.echo(f"resolver: error: {message}", err=True)
    sys.exit(code)


def run_async(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main`` on uvloop where it exists (Linux), else on asyncio's loop."""
    import asyncio

    try:
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a Linux dependency
        factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())


def setup_logging(level: str, worker: int | None = None) -> None:
    """Log lines on stderr; a worker's (of ``serve --workers``) say which worker it is, in
    place of what it inherited from its parent."""
    import logging

    who = "" if worker is None else f"worker {worker} (pid %(process)d) "
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format=f"%(asctime)s {who}%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=worker is not None,
    )


def _show_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from resolver.build import build_name

    click.echo(f"resolver {__version__} ({build_name()})")
    ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_show_version,
    help="Show the version and which build runs (pure Python or compiled), then exit.",
)
def main() -> None:
    """resolver: a caching DNS forwarder on an async pool of pre-bound UDP sockets."""


def run() -> None:
    """The commands of the console script (:mod:`resolver.console`): :func:`main`, then a quick
    exit.

    Whatever is alive when a command ends lives until the process exits; freezing it keeps the
    collector from walking every imported module once more at shutdown, which costs a one-shot
    ``resolver query`` about a tenth of its run time.
    """
    try:
        main()
    except Exception as exc:  # the root of every command: one line, never a traceback
        fail(f"internal error: {_describe(exc)}")
    finally:
        gc.freeze()


def _describe(exc: BaseException) -> str:
    """One line for an unexpected error; a group (from a TaskGroup) by its first member."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"


def _merge(base: dict[str, Any], section: str, key: str, value: object) -> None:
    if value is None or (isinstance(value, list) and not value):
        return
    base.setdefault(section, {})[key] = value


# The defaults `serve --help` shows, as the Config's dataclasses have them (a test compares
# the two); written out so that `resolver query` need not import the config module.
SERVE_DEFAULTS = {
    "mode": "forward",
    "root_hints": "IANA's, shipped with resolver",
    "trust_anchor": "IANA's root anchor, shipped with resolver",
    "listen": "127.0.0.1:53",
    "upstream": "the nameservers of /etc/resolv.conf",
    "policy": "sequential",
    "upstream_timeout": "2.0",
    "query_timeout": "5.0",
    "allow": "127.0.0.0/8, ::1/128",
    "randomize_case": "no-0x20",
    "metrics": "off",
    "workers": "1",
}


@main.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    help="TOML file; the flags below override it.",
    show_default="none",
)
@click.option(
    "--mode",
    type=click.Choice(["forward", "recursive"]),
    help="Forward to upstreams, or resolve from the root.",
    show_default=SERVE_DEFAULTS["mode"],
)
@click.option(
    "--root-hints",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Root hints file (named.root format) for recursive mode.",
    show_default=SERVE_DEFAULTS["root_hints"],
)
@click.option(
    "--trust-anchor",
    type=click.Path(path_type=Path, dir_okay=False),
    help="DNSSEC trust anchors: DS or DNSKEY records in master-file format.",
    show_default=SERVE_DEFAULTS["trust_anchor"],
)
@click.option(
    "--listen",
    multiple=True,
    help="ADDR:PORT to serve on (repeatable).",
    show_default=SERVE_DEFAULTS["listen"],
)
@click.option(
    "--upstream",
    multiple=True,
    help="Upstream ADDR[:PORT], tls://ADDR[:PORT][#NAME] or https://HOST[:PORT]/PATH[#NAME] "
    "(repeatable).",
    show_default=SERVE_DEFAULTS["upstream"],
)
@click.option(
    "--resolv-conf",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Without --upstream (nor upstreams in the config) forward to this file's nameservers, "
    "our own listening addresses left out.",
    show_default="/etc/resolv.conf",
)
@click.option(
    "--listen-tls",
    multiple=True,
    metavar="ADDR[:PORT]",
    help="Serve DNS over TLS on ADDR:PORT (port 853 if left out; repeatable); needs --tls-cert "
    "and --tls-key.",
    show_default="off",
)
@click.option(
    "--listen-https",
    multiple=True,
    metavar="ADDR[:PORT]",
    help="Serve DNS over HTTPS on ADDR:PORT at /dns-query (port 443 if left out; repeatable).",
    show_default="off",
)
@click.option(
    "--tls-cert",
    type=click.Path(path_type=Path, dir_okay=False),
    help="PEM certificate chain of the TLS and HTTPS listeners (read again on SIGHUP).",
    show_default="none",
)
@click.option(
    "--tls-key",
    type=click.Path(path_type=Path, dir_okay=False),
    help="PEM private key of --tls-cert (read again on SIGHUP).",
    show_default="none",
)
@click.option(
    "--tls-ca",
    type=click.Path(path_type=Path, dir_okay=False),
    help="PEM CA certificates that tls:// and https:// upstreams are verified against.",
    show_default="the system's CA store",
)
@click.option(
    "--policy",
    type=click.Choice(["sequential", "round_robin", "random", "fastest"]),
    help="How to choose among upstreams.",
    show_default=SERVE_DEFAULTS["policy"],
)
@click.option(
    "--upstream-timeout",
    type=float,
    help="Seconds per upstream attempt.",
    show_default=SERVE_DEFAULTS["upstream_timeout"],
)
@click.option(
    "--query-timeout",
    type=float,
    help="Seconds for a whole client query.",
    show_default=SERVE_DEFAULTS["query_timeout"],
)
@click.option(
    "--allow",
    multiple=True,
    help="Client network to serve (repeatable).",
    show_default=SERVE_DEFAULTS["allow"],
)
@click.option(
    "--0x20/--no-0x20",
    "randomize_case",
    default=None,
    help="0x20 case randomisation.",
    show_default=SERVE_DEFAULTS["randomize_case"],
)
@click.option(
    "--query-log",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Log each answered query to FILE as a JSON line (reopened on SIGHUP).",
    show_default="off",
)
@click.option(
    "--rpz",
    "rpz",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Apply the RPZ zone in FILE (repeatable; after the config file's [[policy.rpz]]).",
    show_default="none",
)
@click.option(
    "--metrics",
    metavar="ADDR:PORT",
    help="Serve Prometheus metrics over HTTP on ADDR:PORT, at /metrics (port 9153 if left out).",
    show_default=SERVE_DEFAULTS["metrics"],
)
@click.option(
    "--user",
    metavar="NAME",
    help="Become this user once the sockets are bound (started as root).",
    show_default="stay who we are",
)
@click.option(
    "--workers",
    type=int,
    help="Processes answering, each with its own sockets (SO_REUSEPORT) and cache.",
    show_default=SERVE_DEFAULTS["workers"],
)
@click.option(
    "--log-level",
    default="info",
    type=click.Choice(["debug", "info", "warning"]),
    show_default=True,
)
def serve(
    config_path: Path | None,
    mode: str | None,
    root_hints: Path | None,
    trust_anchor: Path | None,
    listen: tuple[str, ...],
    upstream: tuple[str, ...],
    resolv_conf: Path | None,
    listen_tls: tuple[str, ...],
    listen_https: tuple[str, ...],
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_ca: Path | None,
    policy: str | None,
    upstream_timeout: float | None,
    query_timeout: float | None,
    allow: tuple[str, ...],
    randomize_case: bool | None,
    query_log: Path | None,
    rpz: tuple[Path, ...],
    metrics: str | None,
    user: str | None,
    workers: int | None,
    log_level: str,
) -> None:
    """Run the caching DNS daemon, forwarding to upstreams or (--mode recursive)
    resolving from the root, until SIGINT or SIGTERM, which let the queries in flight
    finish first. In recursive mode --query-timeout and --0x20 apply to the [recursion]
    settings.

    \b
    Signals:
      SIGHUP   read the config file (and hosts file) again and apply it;
               a file that does not validate is logged, the running
               config kept; new upstream settings get new sockets while
               the old ones finish; the listeners (DNS and metrics), mode
               and cache.enabled need a restart (a warning names them)
      SIGUSR1  log the statistics

    With no upstream given (neither --upstream nor [forwarder] upstreams)
    and not in recursive mode, the nameservers of /etc/resolv.conf (or
    --resolv-conf FILE) are the upstreams, our own listening addresses
    left out; the log names those taken.

    With --listen-tls and --listen-https (and --tls-cert, --tls-key), DNS
    over TLS and over HTTPS (/dns-query, GET and POST) are served too.

    With --metrics (or [metrics] listen), GET /metrics on that address
    answers with the counters in Prometheus's text format.

    With $NOTIFY_SOCKET set (systemd's Type=notify), READY=1 is sent once
    the sockets are bound (and privileges dropped), RELOADING=1 and READY=1
    around a reload, STOPPING=1 at shutdown.

    With --workers N (N > 1), N processes answer, each on sockets of its own
    (SO_REUSEPORT) with its own cache; the parent binds them, drops privileges,
    restarts a worker that dies, passes the signals above on to the workers,
    and tells READY=1 once all are ready.

    \b
    Exit codes:
      0  stopped by SIGTERM or SIGINT
      1  could not start (address in use, no usable upstream, --user
         refused) or an internal error
      2  usage error (unknown option, bad option value)
      3  bad configuration: one line naming the field and why
    """
    if user is not None:
        from resolver.service import lookup_user

        try:
            lookup_user(user)
        except ConfigError as exc:
            fail(f"bad configuration: {exc}", EXIT_CONFIG)

    def load() -> Config:  # the start's, and SIGHUP's: the file read again, the flags on top
        config = build_serve_config(
            config_path,
            mode=mode,
            root_hints=root_hints,
            trust_anchor=trust_anchor,
            listen=listen,
            upstream=upstream,
            resolv_conf=resolv_conf,
            listen_tls=listen_tls,
            listen_https=listen_https,
            tls_cert=tls_cert,
            tls_key=tls_key,
            tls_ca=tls_ca,
            policy=policy,
            upstream_timeout=upstream_timeout,
            query_timeout=query_timeout,
            allow=allow,
            randomize_case=randomize_case,
            query_log=query_log,
            rpz=rpz,
            metrics=metrics,
            workers=workers,
        )
        if config.dnssec.trust_anchors is not None:
            from resolver.engine.validation import read_trust_anchors

            read_trust_anchors(config.dnssec.trust_anchors)  # a bad file is refused now
        return config

    setup_logging(log_level)  # before the first load: it logs the upstreams of resolv.conf
    try:
        config = load()
    except ConfigError as exc:
        fail(f"bad configuration: {exc}", EXIT_CONFIG)

    def run_daemon(config: Config, worker: WorkerArgs | None) -> None:
        try:
            # A worker's parent has dropped the privileges already.
            run_async(lambda: _serve(config, load, None if worker else user, worker))
        except ConfigError as exc:  # a file named in the config (hosts, query log) is unusable
            fail(f"bad configuration: {exc}", EXIT_CONFIG)
        except ResolverError as exc:
            fail(str(exc))
        except OSError as exc:
            fail(f"cannot start: {exc.strerror or exc}")

    if config.server.workers == 1:
        run_daemon(config, None)
        return

    def work(worker: WorkerArgs) -> int:  # in each worker's process
        setup_logging(log_level, worker.number)
        try:
            # Started again, it reads the files as a reload would: the workers may have
            # reloaded since the parent read them.
            run_daemon(load() if worker.again else config, worker)
        except ConfigError as exc:
            fail(f"bad configuration: {exc}", EXIT_CONFIG)
        except Exception as exc:  # the root of a worker, as run() is of the command
            fail(f"internal error: {_describe(exc)}")
        return 0

    try:
        code = _supervise(config, user, work)
    except OSError as exc:
        fail(f"cannot start: {exc.strerror or exc}")
    if code:
        sys.exit(code)


def build_serve_config(
    config_path: Path | None,
    *,
    mode: str | None = None,
    root_hints: Path | None = None,
    trust_anchor: Path | None = None,
    listen: tuple[str, ...] = (),
    upstream: tuple[str, ...] = (),
    resolv_conf: Path | None = None,
    listen_tls: tuple[str, ...] = (),
    listen_https: tuple[str, ...] = (),
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    tls_ca: Path | None = None,
    policy: str | None = None,
    upstream_timeout: float | None = None,
    query_timeout: float | None = None,
    allow: tuple[str, ...] = (),
    randomize_case: bool | None = None,
    query_log: Path | None = None,
    rpz: tuple[Path, ...] = (),
    metrics: str | None = None,
    workers: int | None = None,
) -> Config:
    """The daemon's Config: the TOML file (if any), then flags on top; in forward mode without
    upstreams, the nameservers of ``resolv_conf`` (/etc/resolv.conf), logged. Raises
    ConfigError."""
    from resolver.config import config_from_mapping, load_config

    data: dict[str, Any] = load_config(config_path) if config_path is not None else {}
    if mode is not None:
        data["mode"] = mode
    # The flags that both modes have go to the section of the mode that runs.
    recursive = data.get("mode") == "recursive"
    _merge(data, "server", "listen", list(listen))
    _merge(data, "server", "allow", list(allow))
    _merge(data, "forwarder", "upstreams", list(upstream))
    _merge(data, "forwarder", "policy", policy)
    _merge(data, "forwarder", "upstream_timeout", upstream_timeout)
    _merge(data, "recursion" if recursive else "forwarder", "query_timeout", query_timeout)
    _merge(data, "recursion" if recursive else "transport", "randomize_case", randomize_case)
    _merge(data, "recursion", "root_hints", None if root_hints is None else str(root_hints))
    _merge(data, "dnssec", "trust_anchors", None if trust_anchor is None else str(trust_anchor))
    _merge(data, "log", "query_log", None if query_log is None else str(query_log))
    _merge(data, "metrics", "listen", metrics)
    _merge(data, "server", "workers", workers)
    _merge(data, "server", "listen_tls", list(listen_tls))
    _merge(data, "server", "listen_https", list(listen_https))
    _merge(data, "server", "tls_cert", None if tls_cert is None else str(tls_cert))
    _merge(data, "server", "tls_key", None if tls_key is None else str(tls_key))
    _merge(data, "transport", "tls_ca", None if tls_ca is None else str(tls_ca))
    if not recursive and not data.get("forwarder", {}).get("upstreams"):
        _merge(data, "forwarder", "upstreams", _resolv_conf_upstreams(data, resolv_conf))
    section = data.setdefault("policy", {}) if rpz else None
    if isinstance(section, dict):  # anything else is refused below, naming the field
        zones = section.get("rpz", [])
        if isinstance(zones, list):
            section["rpz"] = [*zones, *({"file": str(path)} for path in rpz)]
    return config_from_mapping(data)


def _resolv_conf_upstreams(data: dict[str, Any], path: Path | None) -> list[str]:
    """The nameservers of ``path`` (/etc/resolv.conf) as upstreams, those that would reach our
    own listeners left out; both logged. Raises ConfigError."""
    import logging

    from resolver.config import ServerConfig, parse_address
    from resolver.resolvconf import DEFAULT_PATH, upstreams_from
    from resolver.transport import format_address

    given = data.get("server", {}).get("listen")
    if isinstance(given, list) and all(isinstance(item, str) for item in given):
        listening = [parse_address(item, 53, name="server.listen") for item in given]
    else:
        listening = list(ServerConfig().listen)
    path = path or DEFAULT_PATH
    taken, ours = upstreams_from(path, listening)
    log = logging.getLogger("resolver")
    shown = ", ".join(format_address(server) for server in taken)
    log.info("no upstream given: forwarding to the nameservers of %s: %s", path, shown)
    if ours:
        left = ", ".join(format_address(server) for server in ours)
        log.info("left out of %s (our own listening addresses): %s", path, left)
    return [format_address(server) for server in taken]


@main.command("check-config")
@click.argument("path", metavar="FILE", type=click.Path(path_type=Path))
def check_config(path: Path) -> None:
    """Check a TOML config file as 'resolver serve --config FILE' would read it (the hosts
    file, root hints, trust anchors and the policy's lists and RPZ zones included), without
    starting anything.

    \b
    Exit codes:
      0  the file is good ("FILE: ok" on stdout)
      2  usage error
      3  the file cannot be read, is not TOML, or has bad settings: one line
         on stderr for each bad setting, naming it and why
    """
    from resolver.config import config_from_mapping, config_problems, load_config

    try:
        problems = config_problems(load_config(path))
        if not problems:
            from resolver.daemon import local_answers
            from resolver.engine.hints import read_root_hints

            config = config_from_mapping(load_config(path))
            local_answers(config)
            if config.mode == "recursive":
                read_root_hints(config.recursion.root_hints)
            if config.dnssec.trust_anchors is not None:
                from resolver.engine.validation import read_trust_anchors

                read_trust_anchors(config.dnssec.trust_anchors)
            from resolver.policy import PolicyLoader

            PolicyLoader().load(config.policy)
    except ConfigError as exc:
        problems = [exc]
    for problem in problems:
        where = "" if problem.field == str(path) else f"{path}: "  # it names the file itself
        click.echo(f"resolver: {where}{problem}", err=True)
    if problems:
        sys.exit(EXIT_CONFIG)
    click.echo(f"{path}: ok")


def _supervise(config: Config, user: str | None, work: Callable[[WorkerArgs], int]) -> int:
    """``serve --workers N``: bind N sets of sockets, become ``user``, and run ``work`` in a
    worker process on each set until stopped; the exit code. Raises OSError when the sockets
    cannot be bound or the user not taken."""
    import logging

    from resolver.service import Notifier
    from resolver.workers import Supervisor, bind_sets

    sets = bind_sets(config.server)
    try:
        if user is not None:
            # Every module a worker runs is imported while the files of the installation
            # are surely readable: the user may not be allowed to read them (a Python under
            # /root); the workers are forked from here with them loaded.
            import resolver.daemon  # noqa: F401
            from resolver.engine.hints import read_root_hints

            if config.mode == "recursive" and config.recursion.root_hints is None:
                read_root_hints()  # the packaged file, kept for the workers

            _become(user)
            logging.getLogger("resolver").info("running as user %s", user)
    except BaseException:
        for listeners in sets:
            for listener in listeners:
                listener.close()
        raise
    notify = Notifier(os.environ.get("NOTIFY_SOCKET"))
    return Supervisor(sets, work, notify=notify).run()


def _become(user: str) -> None:
    """Drop privileges to ``user``. Raises OSError naming it when that is not allowed."""
    from resolver.service import drop_privileges

    try:
        drop_privileges(user)
    except PermissionError as exc:
        raise OSError(exc.errno, f"cannot become user {user}: {exc.strerror}") from exc


async def _serve(
    config: Config, load: Callable[[], Config], user: str | None, worker: WorkerArgs | None
) -> None:
    import asyncio
    import logging

    from resolver.daemon import Daemon
    from resolver.service import Notifier, ParentNotifier
    from resolver.transport import format_address

    notify: Callable[[str], None]
    if worker is None:
        notify, listeners = Notifier(os.environ.get("NOTIFY_SOCKET")), []
    else:  # the parent tells the service manager, and bound the sockets
        notify, listeners = ParentNotifier(worker.status), list(worker.listeners)
    try:
        daemon = Daemon(config, load=load, notify=notify, listeners=listeners)
    except BaseException:
        for listener in listeners:
            listener.close()
        raise
    # Before the start: a stop asked for while the daemon starts (or drops its privileges)
    # ends it cleanly once it has started, instead of killing it half made.
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, daemon.request_stop)
    loop.add_signal_handler(signal.SIGHUP, daemon.request_reload)
    loop.add_signal_handler(signal.SIGUSR1, daemon.request_statistics)
    await daemon.start()
    if user is not None:
        try:
            _become(user)
        except BaseException:
            await daemon.aclose()
            raise
        logging.getLogger("resolver").info("running as user %s", user)
    # What exists now (code, config, pools) lives as long as the daemon: move it out of the
    # collector's way, and collect young objects less often; a query's garbage is acyclic and
    # freed by reference counting, so the cyclic collector only costs time on the hot path.
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    if worker is not None:
        _watch_lifeline(loop, worker.lifeline, daemon.request_stop)
    listening = ", ".join(format_address(address) for address in daemon.addresses)
    logging.getLogger("resolver").info("serving on %s (udp and tcp)", listening)
    for kind, bound in (
        ("tls", daemon.server.tls_addresses),
        ("https", daemon.server.https_addresses),
    ):
        if bound:
            where = ", ".join(format_address(address) for address in bound)
            logging.getLogger("resolver").info("serving DNS over %s on %s", kind.upper(), where)
    if daemon.metrics is not None:
        where = format_address(daemon.metrics.address)
        logging.getLogger("resolver").info("metrics at http://%s/metrics", where)
    notify("READY=1")
    await daemon.serve_until_stopped()
    logging.getLogger("resolver").info("stopped")


def _watch_lifeline(loop: asyncio.AbstractEventLoop, fd: int, stop: Callable[[], None]) -> None:
    """A worker stops when its parent is gone: the parent alone holds the other end of the
    pipe ``fd``, so its end comes when the parent exits, even killed."""
    import logging

    os.set_blocking(fd, False)

    def readable() -> None:
        try:
            if os.read(fd, 64):
                return  # the parent writes nothing; ignored
        except BlockingIOError:
            return
        loop.remove_reader(fd)
        logging.getLogger("resolver").warning("the parent process is gone: stopping")
        stop()

    loop.add_reader(fd, readable)


@main.command()
@click.option(
    "--zone",
    "zones",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path),
    help="Zone file to serve (repeatable).",
)
@click.option("--listen", multiple=True, required=True, help="ADDR:PORT (repeatable).")
@click.option("--log-level", default="info", type=click.Choice(["debug", "info", "warning"]))
def authority(zones: tuple[Path, ...], listen: tuple[str, ...], log_level: str) -> None:
    """Serve zone files authoritatively (the fake authority for tests and the demo)."""
    from resolver.authority import serve_authority
    from resolver.config import parse_address

    try:
        listens = [parse_address(text, 53, name="--listen") for text in listen]
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    setup_logging(log_level)

    async def run() -> None:
        import asyncio

        task = asyncio.ensure_future(serve_authority(list(zones), listens))
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            if not task.cancelled():
                raise

    try:
        run_async(run)
    except ConfigError as exc:
        fail(f"bad zone: {exc}", EXIT_CONFIG)
    except OSError as exc:
        fail(f"cannot listen: {exc.strerror or exc}")


# ----------------------------------------------------------------------------- query

EXIT_BAD_SERVER = 10
EXIT_INTERRUPTED = 130


class _OneLineUsage(click.Command):
    """A command whose usage errors are one line on stderr (exit 2), not click's usage block."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            fail(f"{exc.format_message()} (see 'resolver {ctx.info_name} --help')", EXIT_USAGE)


@main.command(
    cls=_OneLineUsage,
    add_help_option=False,
    options_metavar="",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED, metavar="[@SERVER] [OPTIONS] NAME...")
@click.pass_context
def query(ctx: click.Context, args: tuple[str, ...]) -> None:
    """Ask DNS questions and print the replies as dig does, reading dig's arguments.

    \b
    Each NAME is a question; a TYPE or CLASS word after it applies to it,
    one before the first NAME to every question (default A, IN). @SERVER
    (an IP address, IP:PORT, [IPv6]:PORT or a host name) overrides
    $RESOLVER_SERVER, which overrides the first nameserver of /etc/resolv.conf.

    \b
    Options (dig's, plus long ones):
      -p PORT, --port PORT  server port (default 53, or the @SERVER's)
      -t TYPE, -c CLASS     the type and class of the question
      -x ADDR               reverse lookup of an IPv4 or IPv6 address
      -q NAME               a name that looks like a type or class
      -f FILE               questions from a file, one per line
      -4, -6                IPv4 or IPv6 only
      +[no]tcp (--tcp), +[no]ignore (keep a truncated reply)
      +[no]recurse (--norecurse), +[no]dnssec (--dnssec), +[no]cdflag,
      +[no]adflag, +[no]edns, +bufsize=N, +[no]nsid
      +time=SECONDS (--timeout), +tries=N (--tries), +retry=N
      +short (--short), --json (one object per question and line),
      +[no]all, +[no]comments, +[no]question,
      +[no]answer, +[no]authority, +[no]additional, +[no]stats,
      +[no]multiline, +[no]idnout, +[no]cmd (no banner is printed anyway)
      +[no]tls              over TLS (port 853 unless -p); as kdig, the
                            certificate is checked only with +tls-ca=FILE
                            (its chain) or +tls-hostname=NAME (its name)
      +https[=URL]          over HTTPS (HTTP/2 POST to URL's path, default
                            /dns-query; port 443 unless -p), checked so too
      +trace (--trace)      resolve from the root servers as recursive mode
                            does, printing each step: the server asked (on
                            port -p), the zone, the question, the time, the
                            outcome; then the answer. No @SERVER: the root
                            hints are --root-hints FILE (named.root format;
                            default IANA's, shipped with resolver); +tcp
                            asks every server over TCP, -4/-6 limit it.
                            Asked with DO, as dig +trace: each referral
                            shows its DS records or the NSEC proving none.
                            +dnssec validates too, from --trust-anchor
                            FILE (DS or DNSKEY records; default IANA's
                            root anchor): the DS and DNSKEY sets fetched
                            are steps, each DNSKEY set shows its keys, and
                            a verdict per zone (which DS matched which
                            key, or the proof of no DS) ends the trace
      -h, --help            this text

    \b
    Exit codes:
      0   a reply came for every question (whatever its rcode, NXDOMAIN too)
      1   any other failure
      2   usage error: bad option, bad name, bad -x address, bad -f file,
          bad --root-hints or --trust-anchor file
      9   no server replied (timeout, unreachable, unusable reply); with
          +trace, no answer was found
      10  unusable server address (not an IP or host name that resolves,
          port not 1-65535, multicast, broadcast, an unusable resolv.conf,
          no socket can be opened toward it)
    """
    from resolver.query_main import execute

    code = execute(args)
    if code is None:
        click.echo(ctx.get_help())
        return
    sys.exit(code)


# ----------------------------------------------------------------------------- demo


@main.command()
def demo() -> None:
    """Run a fake authority and the daemon on loopback and ask a few questions through them.

    Offline and without root: everything listens on 127.0.0.1 on free ports and is closed at
    the end. The zones come with the package, so it runs from any install and directory. Exit
    0 when every question got a reply (or the reader of the output went away), 1 otherwise.
    """
    import logging

    from resolver.demo import run_demo

    # The daemon's warnings (a bogus answer's validation failure) belong with the answers.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("    log: %(message)s"))
    logging.getLogger("resolver").addHandler(handler)
    try:
        failures = run_async(lambda: run_demo(click.echo))
    except BrokenPipeError:
        # `resolver demo | head -1`: the reader closing the pipe is a normal end of output.
        # The demo has closed what it started; stdout must not fail again at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return
    except ConfigError as exc:
        fail(str(exc))
    except (ResolverError, OSError) as exc:
        fail(f"demo failed: {exc}")
    except KeyboardInterrupt:
        fail("interrupted", EXIT_INTERRUPTED)
    if failures:
        fail(f"{failures} question(s) got no reply")
