"""The peer servers the DoT and DoH benchmarks start beside ours: Unbound and dnsdist, their
configuration files' common parts and their command lines (in the foreground, on loopback)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.processes import HOST


def unbound_conf(home: Path, name: str, server: str, clauses: str = "") -> str:
    """unbound.conf for a benchmark: one thread, IPv4 only, no user switch or chroot, state in
    ``home`` (pid file NAME.pid), no logging, loopback clients, room for many TCP connections,
    authorities on loopback allowed; then the ``server`` clause's own lines (indented), the
    other ``clauses``, and no remote control."""
    return f"""server:
    do-ip6: no
    num-threads: 1
    username: ""
    chroot: ""
    directory: "{home}"
    pidfile: "{home}/{name}.pid"
    use-syslog: no
    logfile: ""
    verbosity: 0
    access-control: 127.0.0.0/8 allow
    incoming-num-tcp: 1024
    outgoing-num-tcp: 64
    do-not-query-localhost: no
{server}{clauses}remote-control:
    control-enable: no
"""


def unbound_argv(conf: Path) -> list[str]:
    """Unbound in the foreground with ``conf``."""
    return ["unbound", "-d", "-c", str(conf)]


def dnsdist_conf(listen: int, rest: str) -> str:
    """dnsdist's configuration: no security polling (nothing leaves loopback), plain DNS on
    HOST:``listen``, loopback clients; then ``rest`` (backends, frontends, cache, API)."""
    return f"""setSecurityPollSuffix("")
setLocal("{HOST}:{listen}")
setACL({{"127.0.0.0/8"}})
{rest}"""


def dnsdist_argv(conf: Path) -> list[str]:
    """dnsdist in the foreground (supervised, no syslog) with ``conf``."""
    return ["dnsdist", "--supervised", "--disable-syslog", "-C", str(conf)]
