"""The command line: the only importer of click and uvloop, and the only caller of asyncio.run."""

from __future__ import annotations

import click

from resolver import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="resolver")
def main() -> None:
    """resolver: a caching DNS forwarder on an async pool of pre-bound UDP sockets."""
