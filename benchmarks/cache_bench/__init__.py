"""Cache benchmark: dnsperf with a workload of cache hits only, against three UDP servers.

* ``resolver serve`` (ours, uvloop) with its default config: the answer cache is on;
* ``dnsmasq --cache-size=10000`` forwarding to the same upstream;
* a trivial Python responder on uvloop (trivial.py): one precomputed answer, only the ID
  patched, no parsing: the ceiling for a Python UDP server.

The workload, benchmarks/queries/hits.txt, is 15 questions for names of
fixtures/zones/example.com.zone (A, AAAA, CNAME chains, SRV; no TXT or MX, which dnsmasq 2.90
does not cache by default). The upstream is serve_bench's dnsmasq with local records plus the
names it lacks, at TTL 3600 so nothing expires or is prefetched during a run. One sequential
pass of every question warms each cache; then every measured query must be a hit: the
upstream's own counters (SIGUSR1) must not move during the measured runs, which a CHECK line
reports. Core layout: the server under test alone on core 0, dnsperf (and the idle upstream) on
core 1. Each round runs every server once, in rotated order; the table shows medians.

Targets: ours at least 1.0x dnsmasq's qps and 0.9x the trivial responder's, 0 lost, printed as
VERDICT lines (exit status 0 whatever they say; 2 when setup fails). Traffic goes to 127.0.0.1
only; every dnsperf run is bounded (``-l``); every process started is in its own process group
and is killed on exit. The helpers (processes, dnsperf runs and parsing, reporting) are
benchmarks/'s shared modules; the upstream and its counter come from benchmarks.serve_bench.

    python -m benchmarks.cache_bench              # ~2 minutes: 5 rounds of 5 s
    python -m benchmarks.cache_bench --quick      # ~20 seconds
    python -m benchmarks.cache_bench.profile      # py-spy on ours under the same load
"""
