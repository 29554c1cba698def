"""The ``resolver`` console script and ``python -m resolver``.

``resolver query`` is a one-shot command whose start-up is most of its cost, so it runs
(:mod:`resolver.query_main`) before click and the daemon's modules are imported; every other
command, and ``resolver query --help``, goes to the click commands of :mod:`resolver.cli`.
"""

from __future__ import annotations

import sys

__all__ = ["run"]


def run() -> None:
    """Dispatch on the first argument; exits the process with the command's code."""
    if sys.argv[1:2] == ["query"]:
        from resolver.query_main import run as run_query

        run_query(sys.argv[2:])  # returns only when help is asked: click prints it
    from resolver.cli import run as run_cli

    run_cli()
