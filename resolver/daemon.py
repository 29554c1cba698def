"""Assemble the daemon from a Config: the query engine, the listeners, their lifetimes.

The CLI builds a Config, makes a Daemon, and drives it; signals only call ``request_stop``,
``request_reload`` and ``request_statistics``, which set a flag for the daemon's own task.

A reload applies a new Config to the running daemon in one synchronous step, between two
events of the loop, so no query in flight sees half of it: the local answers (the hosts file
read again), the cache settings (without a flush), the server's allow list, TCP limits and
timeouts, the query log (opened again, for logrotate; the lines of queries in flight go to
the new file). A change to ``[forwarder]``, ``[transport]`` or ``[recursion]`` (upstreams,
domains, policy, timeouts, health, socket pools; in recursive mode the root hints, read
again, and the iteration's limits) makes a new engine: its sockets are opened while the
running engine serves, it takes over the cache, new queries go to it, and the old one answers
what it was asked and then closes (an upstream that cannot be used refuses the whole
reload). What belongs to the bound listeners
(``server.listen``, ``server.tcp``, the UDP buffers, ``metrics.listen``), ``mode`` and
``cache.enabled`` keep their running value, with a warning that they take a restart.

The response policy (``[policy]``: blocklists, RPZ zones) is read again at a reload, and also
when one of its files changes (looked at every ``policy.reload_interval`` seconds): only the
files that changed are read, in a thread, into a new policy beside the running one, which
then takes its place in one step; a file that cannot be read keeps the running policy whole.

With ``metrics.listen`` set, the daemon serves its statistics to Prometheus over HTTP on the
same loop (``resolver.metrics``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Sequence

from resolver.cache import Cache
from resolver.config import Address, Config
from resolver.engine import Engine
from resolver.engine.hints import RootHints, read_root_hints
from resolver.engine.local import LocalAnswers
from resolver.engine.policy import Policy
from resolver.errors import WireError
from resolver.hosts import HostsEntry, read_hosts
from resolver.metrics import CONTENT_TYPE, MetricsEndpoint, Readings, exposition
from resolver.policy import LoadReport, PolicyLoader
from resolver.querylog import QueryLog
from resolver.server import Listener, Server

__all__ = ["Daemon", "local_answers", "needs_restart"]

log = logging.getLogger(__name__)
_QUERY_LOG_FLUSH = 1.0  # seconds between writes of the query log's buffer
_SKIPPED_SHOWN = 5  # hosts-file lines named in the log; the rest are counted


def local_answers(config: Config) -> LocalAnswers:
    """The answers of our own ``config`` asks for, the hosts file read now (what a reload
    calls again and puts in ``Daemon.engine.local``). Raises ConfigError naming
    ``local.hosts`` when the hosts file cannot be read; logs the lines it skips."""
    entries: tuple[HostsEntry, ...] = ()
    path = config.local.hosts
    if path is not None:
        hosts = read_hosts(path)
        entries = hosts.entries
        if hosts.skipped:
            more = len(hosts.skipped) - _SKIPPED_SHOWN
            log.warning(
                "hosts file: %d line(s) skipped: %s%s",
                len(hosts.skipped),
                "; ".join(hosts.skipped[:_SKIPPED_SHOWN]),
                f"; and {more} more" if more > 0 else "",
            )
    forwarded = [domain.name for domain in config.forwarder.domains]
    return LocalAnswers.build(config.local, entries, forwarded=forwarded)


def _changed(section: str, old: object, new: object, names: tuple[str, ...]) -> list[str]:
    return [f"{section}.{n}" for n in names if getattr(old, n) != getattr(new, n)]


def _all_fields(instance: object) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(instance))  # type: ignore[arg-type]


def needs_restart(running: Config, new: Config) -> tuple[Config, list[str]]:
    """What a reload from ``running`` to ``new`` applies: ``new`` with every setting that
    takes a restart kept at its running value, and the names of those that differ."""
    changed = []
    if running.mode != new.mode:
        changed.append("mode")
    changed += _changed("server", running.server, new.server, Server.RESTART_FIELDS)
    changed += _changed("cache", running.cache, new.cache, ("enabled",))
    # A listener bound before --user dropped privileges may not be bound again after.
    changed += _changed("metrics", running.metrics, new.metrics, ("listen",))
    kept_server = {name: getattr(running.server, name) for name in Server.RESTART_FIELDS}
    # Raises ConfigError when the new upstreams would reach the running listeners.
    applied = dataclasses.replace(
        new,
        mode=running.mode,
        server=dataclasses.replace(new.server, **kept_server),
        cache=dataclasses.replace(new.cache, enabled=running.cache.enabled),
        metrics=running.metrics,
    )
    return applied, changed


class Daemon:
    """A DNS server built from ``config``: a forwarder, or in ``mode = "recursive"`` a
    recursive resolver from the root hints; local answers and the cache in front of either.

    ``start`` opens the upstream socket pools and binds the listeners before it returns;
    ``serve_until_stopped`` returns after ``request_stop`` once in-flight queries finished and
    every socket is closed. ``aclose`` is idempotent.

    ``load`` makes the Config a reload applies (the CLI re-reads its file and flags; it raises
    ConfigError for a file that no longer validates); ``notify`` is told the service manager's
    states (``READY=1``, ``RELOADING=1``, ``STOPPING=1``; see ``resolver.service``).
    ``listeners``, bound beforehand (a worker's, bound by its parent: ``resolver.workers``), are
    served instead of binding ``server.listen``; the daemon closes them.
    """

    def __init__(
        self,
        config: Config,
        *,
        load: Callable[[], Config] | None = None,
        notify: Callable[[str], None] | None = None,
        listeners: Sequence[Listener] = (),
    ) -> None:
        self.config = config
        cache = Cache(config.cache) if config.cache.enabled else None
        self._policy_loader = PolicyLoader()
        self._policy_lock = asyncio.Lock()  # one reading of the policy files at a time
        policy, report = self._policy_loader.load(config.policy)
        _log_report(report)
        self.engine = Engine(
            config.forwarder,
            config.transport,
            cache=cache,
            local=local_answers(config),
            response_policy=policy,
            recursion=config.recursion if config.mode == "recursive" else None,
        )
        self.server = Server(config.server, self.engine, listeners)
        if config.log.query_log is not None:
            self.server.query_log = QueryLog(config.log.query_log)
        self.metrics: MetricsEndpoint | None = None
        if config.metrics.listen is not None:
            self.metrics = MetricsEndpoint(
                config.metrics.listen, exposition(self.readings), content_type=CONTENT_TYPE
            )
        self._load = load
        self._notify = notify or (lambda state: None)
        self._closed = False
        self._wake = asyncio.Event()
        self._reload_requested = False
        self._statistics_requested = False
        self._retiring: dict[asyncio.Task[None], Engine] = {}  # replaced engines closing
        self.reloads = 0  # reloads applied
        self.failed_reloads = 0  # reloads refused: the running config was kept

    @property
    def addresses(self) -> list[Address]:
        return self.server.addresses

    async def start(self) -> None:
        """Open upstream pools (leaving out, with a warning, upstreams no socket can reach),
        then bind listeners (unless given), the metrics listener last. Raises OSError, or
        UpstreamError when no upstream can be used; whatever was opened (or given) is closed
        again then."""
        try:
            self._restore_cache()
            await self.engine.start()
            await self.server.start()
            if self.metrics is not None:
                await self.metrics.start()
        except BaseException:
            await self.aclose()
            raise

    def _restore_cache(self) -> None:
        """Warm the cache from ``cache.file``; a missing, unreadable or foreign file is one
        warning, and the cache starts empty."""
        cache, path = self.engine.cache, self.config.cache.file
        if cache is None or path is None:
            return
        try:
            count = cache.restore(path)
        except FileNotFoundError:
            log.info("cache file %s does not exist yet: the cache starts empty", path)
        except (OSError, WireError) as exc:
            log.warning("cache file not read, the cache starts empty: %s", exc)
        else:
            log.info("cache: %d answers read from %s", count, path)

    def _save_cache(self) -> None:
        """Write the cache to ``cache.file`` (a clean stop); a failure is one warning."""
        cache, path = self.engine.cache, self.config.cache.file
        if cache is None or path is None:
            return
        try:
            count = cache.save(path)
        except OSError as exc:
            log.warning("cache file not written: %s", exc)
        else:
            log.info("cache: %d answers written to %s", count, path)

    def request_stop(self) -> None:
        """Stop gracefully (SIGTERM, SIGINT); safe from a signal handler."""
        self.server.request_stop()

    def request_reload(self) -> None:
        """Reload the configuration soon (SIGHUP); safe from a signal handler."""
        self._reload_requested = True
        self._wake.set()

    def request_statistics(self) -> None:
        """Log the statistics soon (SIGUSR1); safe from a signal handler."""
        self._statistics_requested = True
        self._wake.set()

    async def serve_until_stopped(self) -> None:
        """Serve, doing requested reloads and statistics, until stopped; then close."""
        loop = asyncio.get_running_loop()
        chores = [loop.create_task(self._chores()), loop.create_task(self._watch_policy())]
        try:
            await self.server.serve_until_stopped()
        finally:
            self._notify("STOPPING=1")
            for chore in chores:
                chore.cancel()
            await asyncio.gather(*chores, return_exceptions=True)
            await self.aclose()
            self._save_cache()

    async def _watch_policy(self) -> None:
        """Load the policy again when one of its files changed (see the module)."""
        while True:
            await asyncio.sleep(self.config.policy.reload_interval)
            config = self.config.policy
            if not (config.lists or config.rpz):
                continue
            async with self._policy_lock:
                if not await asyncio.to_thread(self._policy_loader.changed, config):
                    continue
                try:
                    policy, report = await asyncio.to_thread(self._policy_loader.load, config)
                except Exception as exc:  # the root of a reload: the running policy serves on
                    self._policy_loader.forget()
                    log.error("policy reload failed, the running policy is kept: %s", exc)
                    continue
            if config is not self.config.policy:
                continue  # a reload of the whole configuration came first
            _log_report(report)
            self.engine.response_policy = policy
            cache = self.engine.cache
            if cache is not None:
                # The replies kept rendered for repeats were made under the old policy.
                cache.reconfigure(cache.config)
            log.info("policy reloaded: %r", policy)

    async def _chores(self) -> None:
        while True:
            query_log = self.server.query_log
            if query_log is None:
                await self._wake.wait()
            else:
                # Written at least once a second, so `tail -f` follows even a quiet daemon.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_QUERY_LOG_FLUSH):
                        await self._wake.wait()
                query_log.flush()
            self._wake.clear()
            if self._reload_requested:
                self._reload_requested = False
                await self.reload()
            if self._statistics_requested:
                self._statistics_requested = False
                self.log_statistics()

    async def reload(self) -> bool:
        """Load the configuration again and apply what can change in place (see the module);
        False, with the reason logged and the running configuration kept, when it does not
        load or validate (the hosts file included).

        The files are read and parsed in a thread, so that a long hosts file does not hold
        up the queries; what they make is then applied in one step on the loop."""
        if self._load is None:
            log.info("reload: no configuration to load again")
            return False
        self._notify("RELOADING=1")
        try:
            try:
                async with self._policy_lock:
                    applied, changed, local, query_log, hints, loaded = await asyncio.to_thread(
                        self._prepare, self.config
                    )
            except Exception as exc:  # the root of a reload: one bad file must not stop us
                self._policy_loader.forget()
                self.failed_reloads += 1
                log.error("reload failed, the running configuration is kept: %s", exc)
                return False
            engine = None
            if (applied.forwarder, applied.transport, applied.recursion) != (
                self.config.forwarder,
                self.config.transport,
                self.config.recursion,
            ):
                # New upstreams, domains, policy or pools: a new engine, its sockets opened
                # while the running one serves; it takes over the cache.
                engine = Engine(
                    applied.forwarder,
                    applied.transport,
                    cache=self.engine.cache,
                    local=local,
                    response_policy=loaded[0],
                    recursion=applied.recursion if applied.mode == "recursive" else None,
                    hints=hints,
                )
                try:
                    await engine.start()
                except BaseException as exc:  # the running engine serves on
                    if query_log is not None:
                        query_log.close()
                    if not isinstance(exc, Exception):  # cancelled: shutting down
                        await asyncio.shield(engine.aclose())
                        raise
                    self._policy_loader.forget()
                    self.failed_reloads += 1
                    log.error("reload failed, the running configuration is kept: %s", exc)
                    return False
            for name in changed:
                log.warning("reload: %s changed; it takes effect at the next restart", name)
            # One synchronous step: every query sees the old settings or the new ones.
            self.engine.local = local
            self.engine.response_policy = loaded[0]
            _log_report(loaded[1])
            if self.engine.cache is not None:
                self.engine.cache.reconfigure(applied.cache)
            self.server.reconfigure(applied.server, engine)
            if engine is not None:
                old, self.engine = self.engine, engine
                # Its questions in flight are answered where they are, then it closes.
                retiring = asyncio.get_running_loop().create_task(
                    old.retire(old.query_timeout + 1.0)
                )
                self._retiring[retiring] = old
                retiring.add_done_callback(self._retired)
                log.info("reload: new upstream settings; their counters start afresh")
            old_log, self.server.query_log = self.server.query_log, query_log
            if old_log is not None:
                # Queries in flight hold the old log: their lines go to the new one.
                old_log.hand_over(query_log)
            self.config = applied
            self.reloads += 1
            log.info("reloaded the configuration")
            return True
        finally:
            self._notify("READY=1")

    def _retired(self, task: asyncio.Task[None]) -> None:
        self._retiring.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("closing a replaced engine failed: %s", task.exception())

    def _prepare(
        self, running: Config
    ) -> tuple[
        Config,
        list[str],
        LocalAnswers,
        QueryLog | None,
        RootHints | None,
        tuple[Policy | None, LoadReport],
    ]:
        """What a reload applies, read from the files; in a worker thread, touching nothing
        that runs. Raises ConfigError (or any error of reading)."""
        assert self._load is not None
        applied, changed = needs_restart(running, self._load())
        local = local_answers(applied)
        hints = None
        if applied.mode == "recursive":
            hints = read_root_hints(applied.recursion.root_hints)
        loaded = self._policy_loader.load(applied.policy)
        # Opened again even at the same path: logrotate may have moved the file.
        path = applied.log.query_log
        query_log = QueryLog(path) if path is not None else None
        return applied, changed, local, query_log, hints, loaded

    def readings(self) -> Readings:
        """A snapshot of every statistic the metrics report."""
        return Readings(
            server=self.server.statistics(),
            replies=self.server.reply_counts(),
            engine=self.engine.statistics(),
            reloads=self.reloads,
            failed_reloads=self.failed_reloads,
        )

    def log_statistics(self) -> None:
        """Log the server's, the engine's, the cache's and each upstream's counters at info."""
        engine = self.engine.statistics()
        log.info("statistics: server %s", _fields(self.server.statistics()))
        log.info(
            "statistics: engine %s reloads=%d failed_reloads=%d",
            _fields(engine, skip=("upstreams", "cache", "servers")),
            self.reloads,
            self.failed_reloads,
        )
        if engine.cache is not None:
            log.info("statistics: cache %s", _fields(engine.cache))
        for upstream in engine.upstreams:
            log.info("statistics: upstream %s", _fields(upstream))
        if engine.servers is not None:
            log.info("statistics: authorities %s", _fields(engine.servers))
        if self.server.query_log is not None:
            self.server.query_log.flush()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.metrics is not None:
            await self.metrics.aclose()
        await self.server.aclose()
        await self.engine.aclose()
        for task, engine in list(self._retiring.items()):
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await engine.aclose()
        if self.server.query_log is not None:
            self.server.query_log.close()

    def __repr__(self) -> str:
        return f"<Daemon {self.server!r} {self.engine!r}>"


def _log_report(report: LoadReport) -> None:
    """Each policy file read, once per reading: its rules and its bad lines."""
    for line in report.lines:
        if " bad lines skipped" in line:
            log.warning("policy: %s", line)
        else:
            log.info("policy: %s", line)


def _fields(stats: object, skip: tuple[str, ...] = ()) -> str:
    """``name=value`` for each field of a statistics dataclass."""
    return " ".join(
        f"{name}={getattr(stats, name)}" for name in _all_fields(stats) if name not in skip
    )
