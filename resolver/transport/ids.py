"""Random message IDs for our queries (RFC 5452 section 9.2)."""

from __future__ import annotations

import os
import secrets

__all__ = ["RandomIds", "random_ids"]


class RandomIds:
    """Message IDs from the OS's CSPRNG, drawn 2 KiB at a time: one urandom call per thousand
    queries instead of one per query."""

    __slots__ = ("_ids",)

    def __init__(self) -> None:
        self._ids: list[int] = []

    def next(self) -> int:
        if not self._ids:
            self._ids = list(memoryview(secrets.token_bytes(2048)).cast("H"))
        return self._ids.pop()

    def forget(self) -> None:
        """Drop the IDs drawn and not used yet."""
        self._ids = []


# The IDs every exchange of this process draws from.
random_ids = RandomIds()
# A forked process (a worker of `serve --workers`) draws IDs of its own: the ones left of its
# parent's draw would be the same in every worker, and one worker's IDs would give away another's.
os.register_at_fork(after_in_child=random_ids.forget)
