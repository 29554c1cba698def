"""Workers benchmark: ``resolver serve`` with one worker process against two
(``--workers 2``), under dnsperf on loopback.

Two loads, the servers and upstreams of the other benchmarks:

* ``hits`` (benchmarks/cache_bench): the 15 questions of queries/hits.txt, looped, answered
  from the cache (default config, cache on) once warmed; the upstream is cache_bench's dnsmasq
  with local records, and its counter must not move during the measured runs;
* ``distinct`` (benchmarks/serve_bench): names never asked before, read once, forwarded to NSD
  serving a wildcard zone, with the cache off as in serve_bench.

Three daemons per load, started once and measured in a rotated order each round:

* ``1 worker, core 0``: the layout of the other benchmarks (``taskset -c 0``);
* ``1 worker, cores 0-1``: the same daemon allowed both cores;
* ``2 workers, cores 0-1``: ``--workers 2``, allowed both cores.

dnsperf and the upstream stay on core 1, so on this 2-core machine a second worker shares
that core with them: what it adds is what the load side leaves. dnsperf asks from
``--clients`` sockets (64): SO_REUSEPORT spreads clients over the workers by source port, and
one socket's queries would all reach one worker. The server CPU is the whole process group's
(parent and workers), as a share of one core; the table also gives each worker's share, the
upstream's CPU, and how much of the machine (both cores, /proc/stat) stayed idle during the
run: a second worker can only use what the load side and the other tenants leave.

Traffic goes to 127.0.0.1 only; every dnsperf run is bounded; every process started is in its
own process group and is stopped on exit, also on SIGTERM and Ctrl-C.

    python -m benchmarks.workers_bench            # ~5 minutes: 3 rounds of 6 s
    python -m benchmarks.workers_bench --quick    # ~1 minute: 1 round of 3 s
"""
