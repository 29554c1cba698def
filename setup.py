"""Build hook beside pyproject.toml: the optional compiled build.

``pip install .`` builds the pure-Python package, the reference, and needs no C compiler.
With ``RESOLVER_COMPILE=1`` in the environment, the modules in ``COMPILED`` are compiled with
mypyc, which comes with mypy; a C compiler is then needed:

    RESOLVER_COMPILE=1 python3 -m pip wheel --no-deps -w dist .

In pip's isolated build environment mypy is asked for as a build requirement (setuptools
passes ``setup_requires`` on to pip); with ``--no-build-isolation`` it must be installed.
Everything else in pyproject.toml holds for both builds.
"""

import os

from setuptools import setup

# The modules on the query path, compiled when RESOLVER_COMPILE=1: the one list to change when
# a module is added, moved or split. Paths from the repository root. resolver/build.py reports
# which build runs by looking at itself, so it stays in the list.
COMPILED = [
    "resolver/build.py",
    "resolver/wire/message.py",
    "resolver/wire/options.py",
    "resolver/wire/query.py",
    "resolver/wire/raw.py",
    "resolver/wire/records.py",
    "resolver/wire/ttl.py",
    "resolver/wire/view.py",
    "resolver/cache.py",
    "resolver/rrsets.py",
    "resolver/engine/actions.py",
    "resolver/engine/delegations.py",
    "resolver/engine/driver.py",
    "resolver/engine/forwarding.py",
    "resolver/engine/hints.py",
    "resolver/engine/iteration.py",
    "resolver/engine/local.py",
    "resolver/engine/policy.py",
    "resolver/engine/rtt.py",
    "resolver/engine/selection.py",
    "resolver/transport/addresses.py",
    "resolver/transport/connection.py",
    "resolver/transport/encrypted.py",
    "resolver/transport/exchange.py",
    "resolver/transport/exchanges.py",
    "resolver/transport/https.py",
    "resolver/transport/ids.py",
    "resolver/transport/readiness.py",
    "resolver/transport/servers.py",
    "resolver/transport/stream.py",
    "resolver/transport/sweep.py",
    "resolver/transport/tcp.py",
    "resolver/transport/tls.py",
    "resolver/transport/udp.py",
    "resolver/transport/upstream.py",
    "resolver/server/access.py",
    "resolver/server/connections.py",
    "resolver/server/https.py",
    "resolver/server/listeners.py",
    "resolver/server/server.py",
    "resolver/histogram.py",
    "resolver/pool.py",
    "resolver/triage.py",
]


def _compile_requested() -> bool:
    value = os.environ.get("RESOLVER_COMPILE", "")
    if value not in ("", "0", "1"):
        raise SystemExit(f"RESOLVER_COMPILE must be 0 or 1, not {value!r}")
    return value == "1"


# What the compiled build asks pip for when mypyc is not importable yet.
MYPY = "mypy>=1.10"


def main() -> None:
    if not _compile_requested():
        setup()
        return
    try:
        from mypyc.build import mypycify
    except ImportError:
        # pip asks setuptools for the build's requirements before building (PEP 517
        # get_requires_for_build_wheel): this run only names mypy; the build proper, run in an
        # environment that has it, compiles.
        setup(setup_requires=[MYPY])
        return
    # group_name puts mypyc's shared runtime module inside the package
    # (resolver/_native__mypyc.*.so), so a copy of resolver/ alone carries everything it needs.
    setup(ext_modules=mypycify(COMPILED, opt_level="3", group_name="resolver._native"))


main()
