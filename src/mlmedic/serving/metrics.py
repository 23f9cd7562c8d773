"""Prometheus metrics of a server: requests, latency, predictions by class, model version, and
counters of fixes, rollbacks, retrains and recoveries read from the event store at scrape time —
with what the dashboard shows (``mlmedic.views.dashboard``): the six figures, overall health and its
parts, the last pass's drift score and time, and the recovery times as a histogram (MTTR).

With several workers, ``PROMETHEUS_MULTIPROC_DIR`` (set by the supervisor) makes every worker's
counts add up, whichever worker answers the scrape.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Summary,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from mlmedic.core.errors import EventStoreError
from mlmedic.store.events import EventLog

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_EVENT_KINDS = ("data_fix", "rollback", "retrain", "recovery", "deploy", "alert")
_ENDPOINTS = (
    "/predict",
    "/invocations",
    "/v2/infer",
    "/feedback",
    "/metrics",
    "/ready",
    "/health",
    "/model",
    "/admin/reload",
)


def endpoint_of(path: str) -> str:
    """The ``endpoint`` label of a request path: one of ``_ENDPOINTS`` (every Open Inference
    Protocol ``.../infer`` path is ``/v2/infer``), else ``other`` — a bounded set of labels."""
    if path.startswith("/v2/models/") and path.endswith("/infer"):
        return "/v2/infer"
    return path if path in _ENDPOINTS else "other"


def share_between_workers(directory: Path) -> None:
    """Make every worker forked from now on count into ``directory``, so their counts add up.
    prometheus_client picks in-memory or file-backed values when it is first imported, which in
    the supervisor happens before the directory is known: pick again now."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    from prometheus_client import values

    values.ValueClass = values.get_value_class()


class _EventCounts:
    """Cumulative counts of actions from the event store (one aggregate query per scrape), and
    whether the store could be read; the prediction log writer's state beside them."""

    def __init__(
        self,
        events: EventLog,
        log_status: dict[str, Any] | None,
        board: Any = None,
    ) -> None:
        self.events = events
        self.log_status = log_status
        self.board = board  # a figures-only dashboard (``mlmedic.views.dashboard.build``), if given

    def describe(self) -> Iterator[Any]:
        """The metric names, without reading the store (``register`` would otherwise call
        ``collect``: a second aggregate query per scrape)."""
        yield CounterMetricFamily("mlmedic_actions", "", labels=["kind", "outcome"])
        yield GaugeMetricFamily("mlmedic_event_store_up", "")
        if self.board is not None:
            yield from _dashboard_metrics(self.board)
        if self.log_status is not None:
            yield GaugeMetricFamily("mlmedic_prediction_log_writing", "")
            yield GaugeMetricFamily("mlmedic_prediction_log_pending_rows", "")

    def collect(self) -> Iterator[Any]:
        actions = CounterMetricFamily(
            "mlmedic_actions",
            "Self-healing actions recorded in the event store, by kind and outcome",
            labels=["kind", "outcome"],
        )
        up = GaugeMetricFamily("mlmedic_event_store_up", "1 if the event store could be read")
        try:
            counts = self.events.counts()
        except EventStoreError:
            up.add_metric([], 0.0)
        else:
            up.add_metric([], 1.0)
            for kind in _EVENT_KINDS:
                for outcome in ("success", "failure"):
                    actions.add_metric([kind, outcome], counts.get((kind, outcome), 0))
        yield actions
        yield up
        if self.board is not None:
            yield from _dashboard_metrics(self.board)
        if self.log_status is not None:
            writing = GaugeMetricFamily(
                "mlmedic_prediction_log_writing", "1 while the prediction log is being written"
            )
            writing.add_metric([], 1.0 if self.log_status["writing"] else 0.0)
            pending = GaugeMetricFamily(
                "mlmedic_prediction_log_pending_rows", "Served rows not yet written to the log"
            )
            pending.add_metric([], float(self.log_status["pending_rows"]))
            yield writing
            yield pending


class Metrics:
    """One worker's metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        target = None if self.multiprocess else self.registry
        self.requests = Counter(
            "mlmedic_requests",
            "Requests by endpoint and status",
            ["endpoint", "status"],
            registry=target,
        )
        self.latency = Histogram(
            "mlmedic_request_seconds",
            "Prediction latency",
            buckets=_LATENCY_BUCKETS,
            registry=target,
        )
        self.predictions = Counter(
            "mlmedic_predictions",
            'Predicted rows by class (a regression\'s: label "value")',
            ["label"],
            registry=target,
        )
        self.values = Summary(  # a regression's predictions: their count and sum (the mean)
            "mlmedic_predicted_value", "A regression model's predicted values", registry=target
        )
        self.batch_rows = Histogram(
            "mlmedic_batch_rows",
            "Rows per model call",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=target,
        )
        self.client_gone = Counter(
            "mlmedic_client_disconnects",
            "Requests whose client left before the answer (not an error of the server)",
            ["endpoint"],
            registry=target,
        )
        self.swaps = Counter(
            "mlmedic_model_swaps", "Hot swaps by outcome", ["outcome"], registry=target
        )
        self.version = Gauge(
            "mlmedic_model_version",
            "Version of the champion being served",
            registry=target,
            multiprocess_mode="livemax",  # a dead worker's last version does not count
        )
        # a release (#24): requests by the version and role that scored them (champion,
        # canary: answered; shadow: scored beside, never returned), and what went wrong
        self.release = Counter(
            "mlmedic_release_requests",
            "Requests scored during a release, by version and role",
            ["version", "role"],
            registry=target,
        )
        self.release_failures = Counter(
            "mlmedic_release_failures",
            "Candidate calls that failed, timed out or were dropped, by version, role and why",
            ["version", "role", "why"],
            registry=target,
        )

    def predicted(
        self,
        labels: list[Any],
        seconds: float,
        endpoint: str = "/predict",
        *,
        values: bool = False,
    ) -> None:
        self.requests.labels(endpoint, "200").inc()
        self.latency.observe(seconds)
        if values:  # numbers, not classes: counted as "value", summed in a summary
            self.predictions.labels("value").inc(len(labels))
            for value in labels:
                self.values.observe(value)
            return
        for label in labels:
            self.predictions.labels(str(label)).inc()

    def failed(self, status: int, endpoint: str) -> None:
        self.requests.labels(endpoint_of(endpoint), str(status)).inc()

    def client_left(self, endpoint: str) -> None:
        self.client_gone.labels(endpoint_of(endpoint)).inc()

    def batch(self, rows: int) -> None:
        self.batch_rows.observe(rows)

    def swap(self, *, ok: bool) -> None:
        self.swaps.labels("success" if ok else "failure").inc()

    def released(self, version: int, role: str, requests: int = 1) -> None:
        self.release.labels(str(version), role).inc(requests)

    def release_failed(self, version: int, role: str, why: str, requests: int = 1) -> None:
        self.release_failures.labels(str(version), role, why).inc(requests)

    def model_version(self, version: int) -> None:
        self.version.set(version)

    def render(
        self,
        events: EventLog,
        log_status: dict[str, Any] | None = None,
        board: Any = None,
    ) -> tuple[str, str]:
        registry = self.registry
        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        counts = _EventCounts(events, log_status, board)
        registry.register(counts)
        try:
            return generate_latest(registry).decode(), CONTENT_TYPE_LATEST
        finally:
            registry.unregister(counts)


_MTTR_BUCKETS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


def _dashboard_metrics(board: Any) -> Iterator[Any]:
    """The dashboard's figures as gauges, and the recovery times as a histogram."""
    health = GaugeMetricFamily("mlmedic_health", "Overall health, 0..1 (the dashboard's formula)")
    value = board.figure("health").value
    if value is not None:
        health.add_metric([], float(value))
    yield health
    parts = GaugeMetricFamily(
        "mlmedic_health_part",
        "Each part of the overall health, 0..1 (absent: n/a)",
        labels=["part"],
    )
    for part in board.health_parts:
        if part.score is not None:
            parts.add_metric([part.name], float(part.score))
    yield parts
    fix = GaugeMetricFamily(
        "mlmedic_auto_fix_success_ratio", "Data-fix runs whose re-check passed / all, 30 days"
    )
    if board.figure("auto_fix").value is not None:
        fix.add_metric([], float(board.figure("auto_fix").value))
    yield fix
    for key, name, text in (
        ("rollbacks", "mlmedic_rollbacks_window", "Rollbacks in the dashboard's window (7 days)"),
        ("retrains", "mlmedic_retrains_window", "Auto-retrains in the window (30 days)"),
        ("recoveries", "mlmedic_recoveries_window", "Service recoveries in the window (30 days)"),
    ):
        gauge = GaugeMetricFamily(name, text)
        gauge.add_metric([], float(board.figure(key).value or 0.0))
        yield gauge
    last = board.last_pass or {}
    drift = GaugeMetricFamily("mlmedic_drift_score", "Drift score of the last monitoring pass")
    if last.get("drift_score") is not None:
        drift.add_metric([], float(last["drift_score"]))
    yield drift
    when = GaugeMetricFamily(
        "mlmedic_last_monitoring_pass_timestamp_seconds", "When the last monitoring pass ran"
    )
    if last.get("at") is not None:
        when.add_metric([], float(last["at"]))
    yield when
    accuracy = GaugeMetricFamily(
        "mlmedic_accuracy", "Accuracy of the last pass", labels=["measured"]
    )
    if last.get("accuracy") is not None:
        accuracy.add_metric(["false" if last.get("estimated") else "true"], float(last["accuracy"]))
    yield accuracy
    error = GaugeMetricFamily(
        "mlmedic_error", "A regression's MAE in the last pass", labels=["measured"]
    )
    if last.get("mae") is not None:
        error.add_metric(["false" if last.get("estimated") else "true"], float(last["mae"]))
    yield error
    durations = board.recovery_seconds
    buckets = [
        (str(bound), float(sum(1 for d in durations if d <= bound))) for bound in _MTTR_BUCKETS
    ]
    buckets.append(("+Inf", float(len(durations))))
    histogram = HistogramMetricFamily(
        "mlmedic_recovery_seconds", "Time from detection to ready of recoveries, 30 days"
    )
    histogram.add_metric([], buckets, sum_value=float(sum(durations)))
    yield histogram


def forget_worker(pid: int) -> None:
    """A dead worker's live gauges must not count (call in the supervisor when one dies)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
