"""``python -m resolver``: the same as the ``resolver`` console script."""

from resolver.console import run

run()
