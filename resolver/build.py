"""Which build of the package runs: the pure-Python reference or the one compiled with mypyc.

This module is in the compiled build's list (setup.py), so it answers by looking at itself: a
compiled module is loaded from an extension module, not from a ``.py`` file.
"""

__all__ = ["build_name"]


def build_name() -> str:
    """``"compiled with mypyc"`` when this package's compiled build runs, else
    ``"pure Python"``."""
    if __file__.endswith(".py"):
        return "pure Python"
    return "compiled with mypyc"
