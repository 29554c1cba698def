"""The exception tree of resolver. Imports nothing of ours.

DNS response codes (NXDOMAIN, SERVFAIL, REFUSED) are answers, never exceptions: a query that
every attempt failed to resolve is answered SERVFAIL (with an Extended DNS Error saying why)
by the daemon, ends in ``Trace.failure`` for ``+trace``, and raises the last try's
UpstreamError in the one-server query client. No error stands for "resolution failed".
"""

from __future__ import annotations

__all__ = [
    "BadResponse",
    "CaseMismatch",
    "ConfigError",
    "GuardReleased",
    "LocalError",
    "PoolClosed",
    "PoolError",
    "PoolTimeout",
    "ResolverError",
    "UpstreamError",
    "UpstreamTimeout",
    "UpstreamUnreachable",
    "WireError",
]


class ResolverError(Exception):
    """Base of every error raised by resolver."""


class ConfigError(ResolverError, ValueError):
    """A configuration value is invalid; the message names the field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class PoolError(ResolverError):
    """Base of the pool's errors."""


class PoolClosed(PoolError):
    """The pool is closed (or closing) and hands out nothing more."""


class PoolTimeout(PoolError, TimeoutError):
    """No object became free before the acquire timeout."""


class GuardReleased(PoolError):
    """The guard was already released or discarded; its object is no longer yours."""


class WireError(ResolverError):
    """Bytes that are not a well-formed DNS message."""


class UpstreamError(ResolverError):
    """One exchange with one upstream server failed."""

    def __init__(self, server: str, reason: str) -> None:
        super().__init__(f"{server}: {reason}")
        self.server = server
        self.reason = reason


class UpstreamTimeout(UpstreamError, TimeoutError):
    """The upstream did not send a matching reply before the deadline."""


class UpstreamUnreachable(UpstreamError):
    """The upstream could not be reached (ICMP unreachable, connection refused)."""


class BadResponse(UpstreamError):
    """The upstream replied with something unusable (malformed, wrong question, truncated TCP)."""


class CaseMismatch(UpstreamError):
    """The server's reply matched our 0x20 query in everything but the case of the name: the
    server may not echo the question's case (ask again without 0x20 and compare), or the reply
    is forged by someone who guessed the ID but not the case."""


class LocalError(ResolverError):
    """Our side could not send a query (no free socket in time, out of descriptors, shutting
    down). Not the upstream's fault: it does not count against the upstream's health."""
