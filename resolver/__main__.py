"""``python -m resolver``: the same as the ``resolver`` console script."""

from resolver.cli import run

run()
