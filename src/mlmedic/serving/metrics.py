"""Prometheus metrics of a server: requests, latency, predictions by class, model version, and
counters of fixes, rollbacks, retrains and recoveries read from the event store at scrape time.

With several workers, ``PROMETHEUS_MULTIPROC_DIR`` (set by the supervisor) makes every worker's
counts add up, whichever worker answers the scrape.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily

from mlmedic.events import EventStore

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_EVENT_KINDS = ("data_fix", "rollback", "retrain", "recovery", "deploy", "alert")


class _EventCounts:
    """Counts of actions from the event store, as Prometheus gauges."""

    def __init__(self, events: EventStore) -> None:
        self.events = events

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "mlmedic_actions",
            "Self-healing actions recorded in the event store, by kind and outcome",
            labels=["kind", "outcome"],
        )
        for kind in _EVENT_KINDS:
            for outcome in ("success", "failure"):
                count = len(self.events.query(kind=kind, outcome=outcome))
                family.add_metric([kind, outcome], count)
        yield family


class Metrics:
    """One worker's metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        target = None if self.multiprocess else self.registry
        self.requests = Counter(
            "mlmedic_requests", "Prediction requests by status", ["status"], registry=target
        )
        self.latency = Histogram(
            "mlmedic_request_seconds",
            "Prediction latency",
            buckets=_LATENCY_BUCKETS,
            registry=target,
        )
        self.predictions = Counter(
            "mlmedic_predictions", "Predicted rows by class", ["label"], registry=target
        )
        self.batch_rows = Histogram(
            "mlmedic_batch_rows",
            "Rows per model call",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=target,
        )
        self.swaps = Counter(
            "mlmedic_model_swaps", "Hot swaps by outcome", ["outcome"], registry=target
        )
        self.version = Gauge(
            "mlmedic_model_version",
            "Version of the champion being served",
            registry=target,
            multiprocess_mode="max",
        )

    def predicted(self, labels: list[Any], seconds: float) -> None:
        self.requests.labels("200").inc()
        self.latency.observe(seconds)
        for label in labels:
            self.predictions.labels(str(label)).inc()

    def failed(self, status: int) -> None:
        self.requests.labels(str(status)).inc()

    def batch(self, rows: int) -> None:
        self.batch_rows.observe(rows)

    def swap(self, *, ok: bool) -> None:
        self.swaps.labels("success" if ok else "failure").inc()

    def model_version(self, version: int) -> None:
        self.version.set(version)

    def render(self, events: EventStore) -> tuple[str, str]:
        registry = self.registry
        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        registry.register(_EventCounts(events))
        try:
            return generate_latest(registry).decode(), CONTENT_TYPE_LATEST
        finally:
            registry.unregister(_unregister_target(registry))


def _unregister_target(registry: CollectorRegistry) -> Any:
    for collector in list(registry._collector_to_names):
        if isinstance(collector, _EventCounts):
            return collector
    return None
