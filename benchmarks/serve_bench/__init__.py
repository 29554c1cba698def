"""Serve benchmark: dnsperf against UDP forwarders in front of one fast upstream on loopback.

The servers under test, each alone on core 0 and forwarding to the same upstream:

* ``resolver serve`` (ours, uvloop, run from this checkout as ``sys.executable -m resolver``)
  with its answer cache off (``[cache] enabled = false`` in a TOML file written here);
* ``dnsmasq --cache-size=0``, a plain forwarder;
* the floor (floor.py): a minimal uvloop forwarder, the least Python can do per query;
* with ``--dnslib``, dnslib's ProxyResolver (``python -m dnslib.proxy``).

A further row, "upstream (ceiling)", is dnsperf straight at the upstream. Three workloads
(workloads.py):

* ``zone``: 11 names and types of fixtures/zones/example.com.zone, looped; identical questions
  are often in flight together, and ours and dnsmasq merge them (column ``up/q``);
* ``unique``: 2000 names under uniq.example.com, looped: every query is forwarded;
* ``distinct``: a new file per run of names under a wildcard zone that no earlier run asked,
  read once, so no question ever repeats.

``zone`` and ``unique`` go to a dnsmasq answering from local records; ``distinct`` goes to a
real authoritative server, NSD serving ``*.wild.test`` (nsd.py), started here on a free
loopback port. dnsperf and the upstream share core 1. Every server runs for the whole
benchmark; each round runs each server once per workload, in a rotated order; tables show
medians over rounds, and the ratios are medians of the same round's ratios.

Targets: on ``distinct``, ours at least 0.6x dnsmasq's queries per CPU-second with 0 lost (the
floor's ratios printed beside); on ``zone``, at least 1.0x dnsmasq's qps, with the share of
client queries coalescing answered beside. They are printed as VERDICT lines with the other
measure's ratio beside them; the exit status is 0 whatever they say (2
when setup fails). ``--max-uses 1,4,8,100`` instead runs ours alone on ``distinct``, one daemon
per ``[transport.pool] max_uses`` value: the cost of fresh source ports.

Traffic goes to 127.0.0.1 only; every dnsperf run is bounded (``-l``, and ``-n 1`` on
``distinct``); every process this starts is in its own process group and is killed on exit,
also on SIGTERM and Ctrl-C.

The package: servers.py and nsd.py make the processes, workloads.py makes the queries,
report.py builds the tables and verdicts, main.py drives the rounds, floor.py is the floor
forwarder. What the other benchmarks use too lives beside it in benchmarks/: processes.py
(starting and stopping them, waiting for an answer), ports.py, cpu.py, dnsperf.py (one
measurement, run and parsed), report.py (rows, medians, ratios), harness.py and daemon.py.

Run from the repository root (see benchmarks/README.md, section "Serve")::

    python -m benchmarks.serve_bench                      # ~5 minutes
    python -m benchmarks.serve_bench --quick              # ~1 minute, one round of 3 s
    python -m benchmarks.serve_bench --max-uses 1,4,8,100
"""
