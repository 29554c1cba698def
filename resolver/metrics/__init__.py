"""Prometheus metrics: the statistics the daemon keeps anyway, read at scrape time as metric
families (``collector``), and the HTTP listener that serves them on the daemon's loop
(``endpoint``)."""

from resolver.metrics.collector import CONTENT_TYPE, Readings, ResolverCollector, exposition
from resolver.metrics.endpoint import MetricsEndpoint

__all__ = ["CONTENT_TYPE", "MetricsEndpoint", "Readings", "ResolverCollector", "exposition"]
