"""Prometheus metrics of the API (each app gets its own registry).

With several worker processes (``omniroute serve --workers N``), ``serve`` sets
``PROMETHEUS_MULTIPROC_DIR`` before the workers start: prometheus-client then keeps
every value in a file there, and ``/metrics`` of any worker adds up all processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.request_latency = Histogram(
            "omniroute_http_request_duration_seconds",
            "Time from request start to response end, per route template and status.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.routes = Counter(
            "omniroute_routes_total",
            "Route requests by outcome (filled, partial, unfilled, quote, replayed, rejected, busy).",
            ["outcome"],
            registry=self.registry,
        )
        self.reservations = Counter(
            "omniroute_reservations_total",
            "Reservations by lifecycle step (reserved, committed, released, expired).",
            ["outcome"],
            registry=self.registry,
        )

        self.rejections = Counter(
            "omniroute_rejections_total",
            "Lines rejected or short-picked by a node, by kind and outcome (rerouted, "
            "partial, unfilled); replays are not counted.",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.returns = Counter(
            "omniroute_returned_units_total",
            "Returned units by step: expected (return recorded), sellable and unsellable "
            "(received).",
            ["step"],
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        """The text exposition of ``/metrics``: this process, or all workers' sum."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


def count_route(metrics: Metrics, result) -> None:
    """Count one answered route request and the reservations it made."""
    if result.replayed:
        metrics.routes.labels("replayed").inc()
        return
    if result.quote_only:
        metrics.routes.labels("quote").inc()
        return
    metrics.routes.labels(result.status).inc()
    made = sum(1 for line in result.lines for a in line.allocations if a.reservation_id)
    if made:
        metrics.reservations.labels("reserved").inc(made)


def count_closed(metrics: Metrics, action: str, count: int) -> None:
    outcome = {"commit": "committed", "release": "released", "expire": "expired"}[action]
    if count:
        metrics.reservations.labels(outcome).inc(count)
