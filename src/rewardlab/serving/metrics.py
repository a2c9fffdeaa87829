"""Prometheus metrics of one server (its own registry, so several apps in one process do not collide)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

disable_created_metrics()  # the *_created series only add noise to a scrape

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ServerMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, queue_depth: Callable[[], float]):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("rewardlab_requests", "HTTP requests by route and status.", ["route", "status"],
                                registry=r)  # fmt: skip
        self.latency = Histogram("rewardlab_request_seconds", "Request latency by route.", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.items = Counter("rewardlab_scored_responses", "Responses scored.", registry=r)
        self.batch_size = Histogram("rewardlab_batch_size", "Responses per model call.", buckets=SIZE_BUCKETS,
                                    registry=r)  # fmt: skip
        self.batch_seconds = Histogram("rewardlab_batch_seconds", "Seconds per model call.",
                                       buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.queue = Gauge("rewardlab_queue_responses", "Responses admitted and not yet scored.", registry=r)
        self.queue.set_function(queue_depth)

    def observe_batch(self, n: int, seconds: float) -> None:
        self.items.inc(n)
        self.batch_size.observe(n)
        self.batch_seconds.observe(seconds)

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
