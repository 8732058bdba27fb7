"""Prometheus metrics of one server: requests by route and status, latency, queue depth, batch sizes.

Each app has its own registry, so several apps (tests) never share counters.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
ROW_BUCKETS = tuple(2 ** i for i in range(13))  # 1 .. 4096 rows
TOKEN_BUCKETS = tuple(2 ** i for i in range(4, 21))  # 16 .. 1M padded tokens


class Metrics:
    """The server's counters, gauges and histograms, in a registry of its own."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("bertforge_requests", "HTTP requests answered, by route and status code",
                                ["route", "status"], registry=r)
        self.latency = Histogram("bertforge_request_seconds", "time from a request's arrival to its answer",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.inputs = Counter("bertforge_inputs", "inputs answered (a request may hold many)", ["route"], registry=r)
        self.queue_depth = Gauge("bertforge_queue_depth", "requests admitted and not yet answered (queued or "
                                 "running)", registry=r)
        self.batch_rows = Histogram("bertforge_batch_rows", "model inputs per forward pass", ["op"],
                                    buckets=ROW_BUCKETS, registry=r)
        self.batch_tokens = Histogram("bertforge_batch_tokens", "padded tokens per forward pass (rows x longest)",
                                      ["op"], buckets=TOKEN_BUCKETS, registry=r)
        self.batch_seconds = Histogram("bertforge_batch_seconds", "time of one forward pass", ["op"],
                                       buckets=LATENCY_BUCKETS, registry=r)

    def request(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def batch(self, op: str, rows: int, padded_tokens: int, seconds: float) -> None:
        self.batch_rows.labels(op).observe(rows)
        self.batch_tokens.labels(op).observe(padded_tokens)
        self.batch_seconds.labels(op).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
