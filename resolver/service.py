"""Running under a service manager: readiness notification and dropping privileges.

``Notifier`` speaks systemd's sd_notify protocol: one datagram per state change (``READY=1``,
``RELOADING=1``, ``STOPPING=1``) to the AF_UNIX socket named by ``$NOTIFY_SOCKET``, which the
CLI reads and passes in (an address starting with ``@`` is in the abstract namespace). It is
a few lines, so no library is needed; without a socket it does nothing. A worker process
(``resolver.workers``) tells its parent instead, with a ``ParentNotifier``, and the parent
alone speaks to the service manager.

``drop_privileges`` switches a process started as root to an unprivileged user once its
listeners are bound, as dnsmasq and Unbound do.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import socket
import time

from resolver.errors import ConfigError

__all__ = ["Notifier", "ParentNotifier", "drop_privileges", "lookup_user"]


class Notifier:
    """Tells the service manager at ``address`` (``$NOTIFY_SOCKET``) what the daemon does.

    Sending never raises: a manager that went away must not stop the daemon."""

    def __init__(self, address: str | None) -> None:
        self.address = address or None
        self.sent: list[str] = []  # what was sent, for tests and the repr

    def __call__(self, state: str) -> None:
        if self.address is None:
            return
        if state == "RELOADING=1":
            # Type=notify-reload (systemd 253) wants the monotonic time of the reload too.
            state += f"\nMONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"
        target = self.address
        if target.startswith("@"):
            target = "\0" + target[1:]
        with (
            contextlib.suppress(OSError),
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock,
        ):
            sock.sendto(state.encode(), target)
            self.sent.append(state)

    def __repr__(self) -> str:
        return f"<Notifier {self.address!r} sent={len(self.sent)}>"


class ParentNotifier:
    """Tells the parent of a worker process its states, one line each (``READY=1\\n``), over
    the pipe ``fd`` it inherited; the same calls as a :class:`Notifier`.

    Sending never raises or blocks: a parent that went away or stopped reading must not stop
    the worker (it notices a gone parent by its lifeline; see ``resolver.workers``)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)
        self.sent: list[str] = []

    def __call__(self, state: str) -> None:
        try:
            os.write(self.fd, state.encode() + b"\n")  # a few bytes: one atomic write
        except OSError:
            return
        self.sent.append(state)

    def __repr__(self) -> str:
        return f"<ParentNotifier fd={self.fd} sent={len(self.sent)}>"


def lookup_user(name: str) -> pwd.struct_passwd:
    """The password entry of user ``name``. Raises ConfigError naming ``--user``."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise ConfigError("--user", f"no user named {name!r}") from None


def drop_privileges(name: str) -> None:
    """Become user ``name``: its groups, its group, then its user id, for good (the saved
    ids too, so root cannot be taken back). Nothing to do when the process already runs as
    that user. Raises ConfigError for an unknown user, PermissionError when the process may
    not switch (not root), and checks that root cannot be regained."""
    entry = lookup_user(name)
    if os.getuid() == entry.pw_uid and os.geteuid() == entry.pw_uid:
        return
    os.setgroups(os.getgrouplist(entry.pw_name, entry.pw_gid))
    os.setresgid(entry.pw_gid, entry.pw_gid, entry.pw_gid)
    os.setresuid(entry.pw_uid, entry.pw_uid, entry.pw_uid)
    if entry.pw_uid != 0:
        try:
            os.setuid(0)
        except PermissionError:
            return
        raise PermissionError(f"could still become root after switching to {name}")
