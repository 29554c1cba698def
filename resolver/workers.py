"""Worker processes: ``server.workers`` daemons answering on sockets their parent bound.

The parent binds one set of listening sockets per worker (UDP, and TCP, on every listen
address; TCP on every TLS and HTTPS one) with SO_REUSEPORT, so that the kernel spreads clients
over the sets by their address and port; then it drops privileges (``--user``) and forks a
worker per set. A worker is the ordinary daemon, with its own event loop, engine and cache, on
the set it was given (it loads the TLS certificate and key itself, at its start and at each
SIGHUP); it closes whatever else of its parent's it inherited.

Forking without exec is safe here because the parent never runs an event loop or a thread:
it is a plain loop around ``select`` (asserted at each fork). It also spares each worker an
interpreter start, keeps every worker on the code the parent loaded (even after an upgrade on
disk), and lets a worker start again when privileges are gone (an exec would need the
interpreter and the package readable by the unprivileged user).

The parent keeps every set open, so a worker that dies is started again on the same sockets:
no bind, no privilege, and the queries that reach its sockets meanwhile wait in their buffers.
A worker that exits within ``stable_after`` seconds of its start, again and again, is started
after longer and longer pauses (:class:`Backoff`), and at last the parent gives up: one line at
error, the other workers stopped, exit 1.

Signals only write to the parent's wakeup pipe; its loop passes SIGHUP and SIGUSR1 on to the
workers (one still starting gets SIGHUP once it is ready: until then it has no handler, and
the default action would end it), SIGTERM and SIGINT too (as SIGTERM), after which it closes
its copies of the sockets and waits for every worker to finish its queries and exit.

Each worker reports its service states (``READY=1``, ``RELOADING=1``, ``STOPPING=1``) over a
pipe, and the parent alone speaks to the service manager: ``READY=1`` once every worker is
ready, ``RELOADING=1`` at SIGHUP and ``READY=1`` when every worker has reloaded, ``STOPPING=1``
at shutdown. A worker holds the read end of a second pipe, its lifeline, whose write end only
the parent has: when the parent is gone, even killed, the worker reads its end and stops.

Linux only (SO_REUSEPORT spreading, pidfds).
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NoReturn

from resolver.config import ServerConfig
from resolver.server import Listener, bind_listeners
from resolver.transport import format_address

__all__ = ["Backoff", "Supervisor", "SupervisorStatistics", "WorkerArgs", "bind_sets"]

log = logging.getLogger(__name__)

# Pauses before starting again a worker that exited within STABLE_AFTER seconds of its start,
# the first time, the second... After as many such exits in a row as pauses, the parent gives
# up. A worker that lived longer starts again at once, its count reset.
DELAYS = (0.0, 0.25, 0.5, 1.0, 2.0)
STABLE_AFTER = 10.0
_FORWARDED = {signal.SIGHUP, signal.SIGUSR1, signal.SIGTERM, signal.SIGINT}


@dataclass(slots=True)
class Backoff:
    """When a worker that exited is started again: a plain decision, without processes."""

    delays: tuple[float, ...] = DELAYS
    stable_after: float = STABLE_AFTER
    quick_exits: int = 0  # exits in a row, each within stable_after of its start

    def after_exit(self, lived: float) -> float | None:
        """The pause before the next start of a worker that lived ``lived`` seconds, or None
        to give up."""
        if lived >= self.stable_after:
            self.quick_exits = 0
        if self.quick_exits >= len(self.delays):
            return None
        delay = self.delays[self.quick_exits]
        self.quick_exits += 1
        return delay


@dataclass(frozen=True, slots=True)
class WorkerArgs:
    """What a worker is given: its number (1 to ``server.workers``, for its log lines), the
    pipe it reports its states on (see ``resolver.service.ParentNotifier``), its lifeline
    (readable at its end when the parent is gone), its listening sockets, and whether it is
    started again (then it reads its configuration again, as a reload would: the parent's
    may be older than what the workers reloaded since)."""

    number: int
    status: int
    lifeline: int
    listeners: tuple[Listener, ...]
    again: bool


def bind_sets(config: ServerConfig) -> list[list[Listener]]:
    """``config.workers`` sets of listening sockets on the same addresses, SO_REUSEPORT on
    each (port 0 is picked once, for all). Raises OSError, after closing what it had bound."""
    sets = [bind_listeners(config, reuse_port=True)]
    try:
        while len(sets) < config.workers:
            sets.append(bind_listeners(config, reuse_port=True, like=sets[0]))
    except BaseException:
        for listeners in sets:
            for listener in listeners:
                listener.close()
        raise
    return sets


def _ended(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


def _ignore(signum: int, frame: object) -> None:
    """A signal's number reaches the loop through the wakeup pipe; the handler only keeps the
    default action (ending the process) from happening."""


@dataclass(frozen=True, slots=True)
class SupervisorStatistics:
    workers: int
    running: int  # processes (ready or starting)
    ready: int
    restarts: int  # starts after the first, of every worker


@dataclass(eq=False)
class _Worker:
    number: int
    listeners: list[Listener]
    backoff: Backoff = field(default_factory=Backoff)
    pid: int = 0  # while its process runs, or has exited and is not yet waited for
    starts: int = 0
    started: float = 0.0
    pidfd: int = -1
    status: int = -1  # read end of its status pipe
    lifeline: int = -1  # write end of its lifeline
    pending: bytes = b""  # a status line not yet whole
    ready: bool = False
    reload_owed: bool = False  # SIGHUP came before it could take one
    reload_pending: bool = False  # told to reload; not yet READY after its RELOADING
    reloading_seen: bool = False
    restart_at: float | None = None


class Supervisor:
    """Runs a worker process per set of ``listeners`` (their owner from now on: it closes
    them) and watches over them until stopped (see the module).

    ``work`` is what a worker does, in the forked process: serve until stopped, and return
    (or raise SystemExit with) the worker's exit code; whatever it does, the forked process
    exits then and never comes back into the parent's code. ``notify`` is told the service
    manager's states. ``run`` is the whole life of the parent.
    """

    def __init__(
        self,
        listeners: Sequence[list[Listener]],
        work: Callable[[WorkerArgs], int],
        *,
        notify: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._workers = [_Worker(n, list(sockets)) for n, sockets in enumerate(listeners, 1)]
        self._work = work
        self._notify = notify
        self._clock = clock
        self._selector = selectors.DefaultSelector()
        self._wakeup: tuple[int, ...] = ()  # the pipe through which signals wake the loop
        self._handlers: dict[int, signal._HANDLER] = {}  # the signal handlers before run
        self._all_started = False
        self._ready_sent = False
        self._reloading = False
        self._stopping = False
        self._code = 0
        self.restarts = 0

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The plain DNS listen addresses (as ``Server.addresses``; not the TLS and HTTPS ones)."""
        return [w.address for w in self._workers[0].listeners if w.kind == "dns"]

    def run(self) -> int:
        """Start the workers (the first alone, so that a start that fails is told once, by
        it) and watch over them until SIGTERM or SIGINT; the exit code: 0 once every worker
        finished, a worker's own when one fails to start, 1 when one keeps dying. Every
        worker has exited and every socket is closed when it returns; if it raises, the
        workers stop by themselves (their lifelines end)."""
        wake_read, wake_write = self._wakeup = os.pipe()
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        self._handlers = {signum: signal.signal(signum, _ignore) for signum in _FORWARDED}
        previous_wakeup = signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        self._selector.register(wake_read, selectors.EVENT_READ, lambda: self._signals(wake_read))
        try:
            self._start(self._workers[0])
            while not self._stopping or any(w.pid for w in self._workers):
                for key, _ in self._selector.select(self._timeout()):
                    key.data()
                self._restart_due()
        finally:
            signal.set_wakeup_fd(previous_wakeup)
            for signum, handler in self._handlers.items():
                signal.signal(signum, handler)
            for worker in self._workers:
                self._forget(worker)
            self._selector.close()
            os.close(wake_read)
            os.close(wake_write)
            self._close_listeners()
        return self._code

    def statistics(self) -> SupervisorStatistics:
        running = [w for w in self._workers if w.pid]
        return SupervisorStatistics(
            workers=len(self._workers),
            running=len(running),
            ready=sum(w.ready for w in running),
            restarts=self.restarts,
        )

    def __repr__(self) -> str:
        s = self.statistics()
        return f"<Supervisor workers={s.workers} running={s.running} restarts={s.restarts}>"

    # ----------------------------------------------------------------- processes

    def _start(self, worker: _Worker) -> None:
        """Fork ``worker``'s process. Raises OSError when it cannot be made."""
        # A fork copies the calling thread alone; no event loop runs here to be copied.
        assert threading.active_count() == 1, "a parent of workers runs no threads"
        status_read, status_write = os.pipe()
        lifeline_read, lifeline_write = os.pipe()
        for stream in (sys.stdout, sys.stderr):  # nothing buffered is written twice
            stream.flush()
        # Blocked until the child has its own handlers: a signal meant for the child must not
        # reach the parent's wakeup pipe through the handlers it inherited.
        signal.pthread_sigmask(signal.SIG_BLOCK, _FORWARDED)
        try:
            pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORWARDED)
            for fd in (status_read, status_write, lifeline_read, lifeline_write):
                os.close(fd)
            raise
        if pid == 0:
            os.close(status_read)
            os.close(lifeline_write)
            args = WorkerArgs(
                worker.number,
                status_write,
                lifeline_read,
                tuple(worker.listeners),
                again=worker.starts > 0,
            )
            self._become(worker, args)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORWARDED)
        os.close(status_write)
        os.close(lifeline_read)
        worker.pid = pid
        worker.starts += 1
        worker.started = self._clock()
        worker.status, worker.lifeline = status_read, lifeline_write
        worker.pidfd = os.pidfd_open(pid)
        os.set_blocking(status_read, False)
        self._selector.register(worker.pidfd, selectors.EVENT_READ, lambda: self._exited(worker))
        self._selector.register(status_read, selectors.EVENT_READ, lambda: self._read(worker))
        log.debug("worker %d started (pid %d)", worker.number, pid)

    def _become(self, worker: _Worker, args: WorkerArgs) -> NoReturn:
        """In the forked process: let go of all that is the parent's but ``worker``'s own
        sockets and pipes, work, and exit with the code that comes of it."""
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            for signum, handler in self._handlers.items():
                signal.signal(signum, handler)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORWARDED)
            self._selector.close()  # closes our copy alone: the parent's registrations stay
            for fd in self._wakeup:
                os.close(fd)
            for other in self._workers:
                if other is not worker:
                    for listener in other.listeners:
                        listener.close()
                for fd in (other.pidfd, other.status, other.lifeline):
                    if fd >= 0:
                        os.close(fd)
            code = self._work(args)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
        except BaseException as exc:  # the root of the worker: never back into the parent
            log.error("worker %d: %s: %s", worker.number, type(exc).__name__, exc)
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os._exit(code)

    def _forget(self, worker: _Worker) -> None:
        """Close what the parent held for ``worker``'s process (which has exited)."""
        for name in ("pidfd", "status", "lifeline"):
            fd = getattr(worker, name)
            if fd < 0:
                continue
            if name != "lifeline":
                self._selector.unregister(fd)
            os.close(fd)
            setattr(worker, name, -1)
        worker.pid = 0
        worker.pending = b""
        worker.ready = worker.reload_owed = worker.reload_pending = False

    def _close_listeners(self) -> None:
        for worker in self._workers:
            for listener in worker.listeners:
                listener.close()

    def _send(self, worker: _Worker, signum: int) -> None:
        if worker.pidfd >= 0:  # its pid is its own until it is waited for, exited or not
            signal.pidfd_send_signal(worker.pidfd, signum)

    def _timeout(self) -> float | None:
        due = [w.restart_at for w in self._workers if w.restart_at is not None]
        return max(0.0, min(due) - self._clock()) if due else None

    def _restart_due(self) -> None:
        now = self._clock()
        for worker in self._workers:
            if worker.restart_at is None or worker.restart_at > now or self._stopping:
                continue
            worker.restart_at = None
            self.restarts += 1
            try:
                self._start(worker)
            except OSError as exc:
                self._after_exit(worker, 0.0, f"could not be started again ({exc})")

    # ----------------------------------------------------------------- events

    def _exited(self, worker: _Worker) -> None:
        self._read(worker)  # what it said before it went (READY=1 and exit 1 at once)
        _, status = os.waitpid(worker.pid, 0)
        returncode = os.waitstatus_to_exitcode(status)
        pid, lived, was_ready = worker.pid, self._clock() - worker.started, worker.ready
        self._forget(worker)
        if self._stopping:
            if returncode not in (0, -signal.SIGTERM):
                log.warning("worker %d (pid %d) %s", worker.number, pid, _ended(returncode))
                self._code = self._code or 1
            return
        if not self._ready_sent:
            # The start failed: the worker said why in its own line (exit 1 or 3), unless a
            # signal ended it.
            if returncode <= 0 or was_ready:
                log.error(
                    "worker %d (pid %d) %s while starting", worker.number, pid, _ended(returncode)
                )
            self._stop(returncode if returncode > 0 else 1)
            return
        self._after_exit(worker, lived, f"(pid {pid}) {_ended(returncode)}")
        self._reloaded()

    def _after_exit(self, worker: _Worker, lived: float, how: str) -> None:
        backoff = worker.backoff
        delay = backoff.after_exit(lived)
        if delay is None:
            log.error(
                "worker %d %s: %d exits in a row, each within %g s of its start; giving up",
                worker.number,
                how,
                backoff.quick_exits + 1,
                backoff.stable_after,
            )
            self._stop(1)
            return
        log.warning(
            "worker %d %s; starting it again%s",
            worker.number,
            how,
            f" in {delay:g} s" if delay else "",
        )
        worker.restart_at = self._clock() + delay

    def _read(self, worker: _Worker) -> None:
        """The states ``worker`` reported, one per line."""
        if worker.status < 0:
            return
        try:
            data = os.read(worker.status, 4096)
        except BlockingIOError:
            return
        if not data:  # it closed its end: it is exiting, and its pidfd will say so
            self._selector.unregister(worker.status)
            os.close(worker.status)
            worker.status = -1
            return
        *lines, worker.pending = (worker.pending + data).split(b"\n")
        for line in lines:
            if line == b"READY=1":
                self._ready(worker)
            elif line == b"RELOADING=1" and worker.reload_pending:
                worker.reloading_seen = True

    def _ready(self, worker: _Worker) -> None:
        first = not worker.ready
        worker.ready = True
        if not first and worker.reload_pending and worker.reloading_seen:
            worker.reload_pending = False
        if worker.reload_owed and not self._stopping:
            worker.reload_owed = False
            self._hangup(worker)
        if first and self._ready_sent:
            log.info("worker %d (pid %d) is ready again", worker.number, worker.pid)
        if not self._all_started and not self._stopping:
            self._all_started = True
            for other in self._workers[1:]:
                self._start(other)
        if not (self._ready_sent or self._stopping) and all(w.ready for w in self._workers):
            self._ready_sent = True
            listening = ", ".join(format_address(a) for a in self.addresses)
            pids = ", ".join(str(w.pid) for w in self._workers)
            log.info("serving on %s with %d workers (pids %s)", listening, len(self._workers), pids)
            self._notify("READY=1")
        self._reloaded()

    def _hangup(self, worker: _Worker) -> None:
        worker.reload_pending = True
        worker.reloading_seen = False
        self._send(worker, signal.SIGHUP)

    def _reloaded(self) -> None:
        """READY=1 for the service manager once every running worker has reloaded."""
        if not self._reloading:
            return
        running = [w for w in self._workers if w.pid]
        if not any(w.reload_pending or w.reload_owed for w in running):
            self._reloading = False
            self._notify("READY=1")

    def _signals(self, wake_read: int) -> None:
        try:
            data = os.read(wake_read, 512)
        except BlockingIOError:
            return
        for signum in data:
            if signum in (signal.SIGTERM, signal.SIGINT):
                self._stop(0)
            elif signum == signal.SIGHUP:
                self._reload()
            elif signum == signal.SIGUSR1:
                self._log_statistics()

    def _reload(self) -> None:
        if self._stopping:
            return
        if self._ready_sent and not self._reloading:
            self._reloading = True
            self._notify("RELOADING=1")
        for worker in self._workers:
            if worker.ready:
                self._hangup(worker)
            elif worker.pid:
                worker.reload_owed = True
        self._reloaded()

    def _log_statistics(self) -> None:
        s = self.statistics()
        pids = ",".join(str(w.pid) for w in self._workers if w.pid)
        log.info(
            "statistics: supervisor workers=%d running=%d ready=%d restarts=%d pids=%s",
            s.workers,
            s.running,
            s.ready,
            s.restarts,
            pids or "-",
        )
        for worker in self._workers:
            if worker.ready:
                self._send(worker, signal.SIGUSR1)

    def _stop(self, code: int) -> None:
        """Stop every worker (again, if asked again) and exit with ``code`` once they have:
        the parent's copies of the sockets close first, so that a worker closing its own
        really stops listening."""
        if not self._stopping:
            self._stopping = True
            self._code = code
            self._notify("STOPPING=1")
            self._close_listeners()
            for worker in self._workers:
                worker.restart_at = None
        for worker in self._workers:
            self._send(worker, signal.SIGTERM)
