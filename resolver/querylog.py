"""The query log: one JSON object per answered query, one per line, in a file of its own.

Each line has ``time`` (Unix seconds, wall clock), ``client`` (address and port), ``transport``
(udp or tcp), ``name`` (as dig prints it), ``type``, ``rcode``, ``duration`` (seconds from the
query's arrival to its reply) and ``source``: ``local`` (our own answers and the hosts file),
``cache``, ``stale`` (served stale, RFC 8767), ``upstream`` (asked, or waited for a question
in flight), ``policy`` (made by the response policy: a blocklist or an RPZ zone; then
``policy`` names the list or zone and ``rule`` the rule that matched, unless the zone says
``log = false``) or ``server`` (refused, malformed or otherwise answered by the listener
itself).

Lines are buffered and written at least once a second while queries come, and at ``flush``
and ``close``; ``reopen`` starts a new file at the same path (after logrotate moved it).

A reload makes a new QueryLog while queries that began under the old one are still in flight
and hold it: ``hand_over`` closes the old file and sends their lines to the new log, so a
reload loses no line. A closed log with no successor (logging turned off by the reload, or
the daemon stopping) still takes the lines of such stragglers, appending each on its own.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from resolver.config import PeerAddress
from resolver.errors import ConfigError
from resolver.wire import qtype_name, rcode_name
from resolver.wire.raw import name_to_text

__all__ = ["QueryLog"]

_FLUSH_EVERY = 1.0  # seconds
_BUFFER = 64 * 1024


class QueryLog:
    """Appends query records to ``path``. Raises ConfigError naming ``log.query_log`` when the
    file cannot be opened."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._file: IO[str] | None = self._open()
        self._successor: QueryLog | None = None
        self._flushed = clock()
        self.records = 0

    def _open(self) -> IO[str]:
        try:
            return self.path.open("a", encoding="utf-8", buffering=_BUFFER)
        except OSError as exc:
            raise ConfigError("log.query_log", f"{self.path}: {exc.strerror or exc}") from exc

    def record(
        self,
        client: PeerAddress,
        transport: str,
        name: bytes,
        qtype: int,
        rcode: int,
        duration: float,
        source: str,
        policy: tuple[str, str] | None = None,
    ) -> None:
        """One answered query; ``name`` in wire form; ``policy`` the list or zone and the
        rule of a policy answer. Never raises for a full disk: the daemon answers on, the
        lines are lost."""
        if self._successor is not None:
            self._successor.record(client, transport, name, qtype, rcode, duration, source, policy)
            return
        now = self._clock()
        fields: dict[str, object] = {
            "time": round(now, 6),
            "client": f"{client[0]}#{client[1]}",
            "transport": transport,
            "name": name_to_text(name),
            "type": qtype_name(qtype),
            "rcode": rcode_name(rcode),
            "duration": round(duration, 6),
            "source": source,
        }
        if policy is not None:
            fields["policy"], fields["rule"] = policy
        line = json.dumps(fields, separators=(",", ":"))
        self.records += 1
        try:
            if self._file is None:  # closed: a query from before the close, rare
                with self.path.open("a", encoding="utf-8") as straggler:
                    straggler.write(line + "\n")
                return
            self._file.write(line + "\n")
            if now - self._flushed >= _FLUSH_EVERY:
                self._flushed = now
                self._file.flush()
        except OSError:
            pass

    def flush(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.flush()

    def reopen(self) -> None:
        """Close the file and open ``path`` again. Raises ConfigError (the old file is kept
        open then)."""
        new = self._open()
        self.close()
        self._file = new

    def hand_over(self, successor: QueryLog | None) -> None:
        """Close this log for a reload: the lines still recorded here (queries in flight)
        go to ``successor``, or, with None, are appended to ``path`` one at a time."""
        assert successor is not self
        self.close()
        self._successor = successor

    def close(self) -> None:
        """Flush and close. Idempotent; lines recorded after it are appended one at a time."""
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(OSError):
                file.close()

    def __repr__(self) -> str:
        return f"<QueryLog {str(self.path)!r} records={self.records}>"
