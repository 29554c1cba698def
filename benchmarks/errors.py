"""The one error of the benchmarks' own making."""

from __future__ import annotations


class SetupError(Exception):
    """A server did not start or answered wrongly, or a tool is missing or failed: the
    benchmark cannot run."""
