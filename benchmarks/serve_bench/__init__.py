"""Serve benchmark: dnsperf against three UDP forwarders in front of one fast upstream.

The servers under test all forward to the same upstream on loopback, a dnsmasq that answers
from local records (the fastest of the candidates; ``--compare-upstreams`` measures them):

* ``resolver serve`` (ours, uvloop, answer cache disabled through ``[cache] enabled = false``),
* ``dnsmasq`` as a plain forwarder (``--cache-size=0``),
* dnslib's ProxyResolver (``python -m dnslib.proxy``).

A fourth row, "upstream (ceiling)", is dnsperf straight at the upstream: no forwarder can be
faster than that. Core layout on the 2-core machine: the server under test alone on core 0;
dnsperf and the upstream together on core 1, so the upstream's work never competes with the
server under test (whose cost is what is measured). Every server runs for the whole benchmark;
each round runs every server once, in a rotated order, and the table shows medians.

Two workloads (query files in benchmarks/queries/):

* ``zone``: 11 names and types from fixtures/zones/example.com.zone (A, AAAA, CNAME, TXT, SRV,
  MX). With ~100 queries outstanding the same question is often in flight more than once, and
  both ours and dnsmasq merge identical in-flight questions into one upstream query; the
  ``up/q`` column (upstream queries per client query, from the upstream's own counters) shows it.
* ``unique``: 2000 distinct names under uniq.example.com (A), so no two questions in flight are
  the same and every client query is forwarded.

Targets: ours at least 0.75x dnsmasq's qps and at least 10x dnslib's, with 0 lost queries. They
are printed as VERDICT lines; the exit status is 0 whatever they say (2 when setup fails).

Traffic goes to 127.0.0.1 only; every dnsperf run is bounded (``-l``); every process this
starts is in its own process group and is killed on exit.

The package: servers.py starts and stops the processes, dnsperf.py runs and parses one
measurement, report.py builds the tables and verdicts, main.py drives the rounds.

Run from the repository root (see benchmarks/README.md, section "Serve")::

    python -m benchmarks.serve_bench              # ~3 minutes
    python -m benchmarks.serve_bench --quick      # ~30 seconds, one round of 3 s
"""
