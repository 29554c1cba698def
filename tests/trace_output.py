"""Reading what ``resolver query +trace +dnssec`` prints, for the tests that run it: here (on the
path through ``pythonpath`` in pyproject.toml) and in the compose suite, whose image copies this
file beside it (Dockerfile, target ``tests``)."""

from __future__ import annotations

import re

_VERDICT = re.compile(r"^;;   (\S+) +(.+)$")


def chain(stdout: str) -> dict[str, str]:
    """The verdict lines after ``;; chain of trust, zone by zone:``, by zone."""
    lines = stdout.splitlines()
    start = lines.index(";; chain of trust, zone by zone:")
    verdicts = {}
    for line in lines[start + 1 :]:
        match = _VERDICT.match(line)
        if match is None:
            break
        verdicts[match[1]] = match[2]
    return verdicts
