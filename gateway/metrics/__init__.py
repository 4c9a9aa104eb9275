"""Prometheus metrics of one gateway process, served on their own HTTP listener
(127.0.0.1:9464 by default, ``[metrics]`` in the TOML).

Owns: the hot-path-safe counters the router sink and the session status listener feed
(`GatewayMetrics`, `MetricsSink`, `LatencyHistogram`), the scrape-time collector that turns
them and the sessions' own per-message counters (``SessionStatus.msgs_in`` / ``msgs_out``,
kept by `gateway.fix.application`) into metric families, and the HTTP listener
(`MetricsServer`).

Why not prometheus_client's Counter/Histogram: their methods take a lock, and the FIX callback
threads that produce most figures are the latency hot path (measured in µs). Here every figure
is a plain int in a dict or list with one writer thread per key (or an ``itertools.count``, whose
``next()`` is atomic, where several threads write one key); prometheus_client only runs at
scrape time, in `GatewayMetrics.collect`, on the HTTP server's thread, with a private
`CollectorRegistry` (the global one would also export process-wide defaults nobody asked for).

May import: gateway.fix, gateway.routing, gateway.orders, gateway.risk, gateway.listen (and
prometheus_client).
Nothing imports it except gateway.server and gateway.cli.
"""

from gateway.metrics.collector import (
    LATENCY_BUCKETS_S,
    GatewayMetrics,
    LatencyHistogram,
    MetricsSink,
    SubscriberStats,
)
from gateway.metrics.server import MetricsServer

__all__ = ["LATENCY_BUCKETS_S", "GatewayMetrics", "LatencyHistogram", "MetricsServer",
           "MetricsSink", "SubscriberStats"]
