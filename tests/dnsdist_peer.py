"""dnsdist as an encrypted peer on loopback: a DoT frontend and a DoH frontend (``/dns-query``)
in front of one plain backend, and its counters (per frontend: queries, TLS sessions; per DoH
frontend: HTTP connections and queries by HTTP version and method) through its HTTP API.

Without dnsdist the tests that use it fail; they never skip.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support import dns_query, free_port
from tls_support import Issued

STARTUP = 15.0
API_KEY = "interop"  # the API listens on loopback only, for the test's own reads


@dataclass
class DnsdistPeer:
    """A running dnsdist: its ports (plain, DoT, DoH, API)."""

    plain: int
    tls: int
    https: int
    api: int
    process: subprocess.Popen[str]

    def _state(self) -> dict[str, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.api}/api/v1/servers/localhost",
            headers={"X-API-Key": API_KEY},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            state: dict[str, Any] = json.load(response)
        return state

    def tls_frontend(self) -> dict[str, Any]:
        """The DoT frontend's counters: ``queries``, ``tlsNewSessions``, ``tlsResumptions``..."""
        for frontend in self._state()["frontends"]:
            if frontend["address"] == f"127.0.0.1:{self.tls}":
                found: dict[str, Any] = frontend
                return found
        raise AssertionError(f"dnsdist has no frontend on port {self.tls}")

    def https_frontend(self) -> dict[str, Any]:
        """The DoH frontend's counters: ``http-connects``, ``http2-queries``, ``post-queries``..."""
        for frontend in self._state()["dohFrontends"]:
            if frontend["address"] == f"127.0.0.1:{self.https}":
                found: dict[str, Any] = frontend
                return found
        raise AssertionError(f"dnsdist has no DoH frontend on port {self.https}")


def dnsdist_conf(issued: Issued, backend: int, plain: int, tls: int, https: int, api: int) -> str:
    return f"""-- No security polling: it would ask the outside world.
setSecurityPollSuffix("")
setLocal("127.0.0.1:{plain}")
setACL({{"127.0.0.0/8"}})
-- The health check asks a name the backend holds, so nothing is asked beyond it.
newServer({{address="127.0.0.1:{backend}", checkName="n1.example.", checkInterval=1}})
-- Queries read ahead and answered as they come: in its default, one at a time, dnsdist 1.7.3
-- sometimes leaves the last query of a pipelined burst unanswered until more bytes arrive.
addTLSLocal("127.0.0.1:{tls}", "{issued.cert}", "{issued.key}", {{maxInFlight=64}})
-- A client connection idle for 2 s (the default) is closed; the tests count connections.
setTCPRecvTimeout(30)
addDOHLocal("127.0.0.1:{https}", "{issued.cert}", "{issued.key}", "/dns-query")
webserver("127.0.0.1:{api}")
setWebserverConfig({{apiKey="{API_KEY}", acl="127.0.0.0/8"}})
"""


@contextlib.contextmanager
def running_dnsdist(tmp_path: Path, issued: Issued, backend: int) -> Iterator[DnsdistPeer]:
    """dnsdist with the certificate ``issued`` on free ports, forwarding to ``backend``."""
    binary = shutil.which("dnsdist")
    if binary is None:
        pytest.fail("dnsdist is not installed: apt-get install dnsdist (.ci/run does)")
    home = tmp_path / "dnsdist"
    home.mkdir()
    plain, tls, https, api = free_port(), free_port(), free_port(), free_port()
    conf = home / "dnsdist.conf"
    conf.write_text(dnsdist_conf(issued, backend, plain, tls, https, api))
    process = subprocess.Popen(
        [binary, "--supervised", "--disable-syslog", "-C", str(conf)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    peer = DnsdistPeer(plain, tls, https, api, process)
    try:
        deadline = time.monotonic() + STARTUP
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                out, _ = process.communicate(timeout=10)
                pytest.fail(f"dnsdist did not start:\n{out}")
            try:
                dns_query(plain, "n1.example.", timeout=0.2)
                peer.tls_frontend()
                peer.https_frontend()
            except OSError:
                time.sleep(0.05)
                continue
            break
        yield peer
    finally:
        process.terminate()
        try:
            process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate(timeout=10)
