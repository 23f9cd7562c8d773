"""Benchmark: the dashboard and a /metrics scrape on a large event store.

    python bench/bench_dashboard.py [--events 100000] [--repeats 10]

An event store of --events events over 90 days (every kind; drift and performance checks and
monitor passes every 6 h with their detail fields; recoveries with durations) is shown --repeats
times each way: the figures and timelines (``dashboard.build``), the terminal view (Rich, to a
null console), the HTML page, and a ``/metrics`` render with the dashboard's gauges, as a server
scrapes it. Beside them, in the same run and as many times, the naive way: load every event and
count in Python. Targets: dashboard <= 1 s (terminal and HTML); /metrics <= 50 ms.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console

from mlmedic.core.config import Settings
from mlmedic.serving.metrics import Metrics
from mlmedic.store.events import EventStore
from mlmedic.views.dashboard import build
from mlmedic.views.page import page
from mlmedic.views.terminal import dashboard_view

NOW = time.time()


def fill(store: EventStore, count: int) -> None:
    rng = random.Random(7)
    rows = []
    passes = 90 * 4
    for i in range(passes):  # a monitoring pass every 6 h: drift, performance, monitor
        at = NOW - i * 6 * 3600
        features = [
            {"name": f"f{j}", "drifted": rng.random() < 0.1, "statistic": rng.random() / 5}
            for j in range(12)
        ]
        drift = {"score": rng.random() * 0.6, "threshold": 0.5, "drifted": [], "features": features}
        rows.append(
            ("drift_check", "features", "success", at, at, 0.0, "3", "d", json.dumps(drift))
        )
        perf = {"accuracy": 0.8 + rng.random() / 10, "estimated": rng.random() < 0.5, "rows": 900}
        rows.append(
            ("performance_check", "measure", "success", at, at, 0.0, "3", "p", json.dumps(perf))
        )
        rows.append(
            (
                "monitor",
                "pass",
                "success",
                at,
                at,
                0.0,
                "3",
                "m",
                json.dumps({"rows": 900, "action": "none"}),
            )
        )
    kinds = ["data_fix", "rollback", "retrain", "recovery", "deploy", "alert", "data_check"]
    for _ in range(count - 3 * passes):
        kind = rng.choice(kinds)
        at = NOW - rng.random() * 90 * 86_400
        action = "service" if kind == "recovery" else ("deploy" if kind == "deploy" else kind)
        duration = rng.random() * 5 if kind == "recovery" else 0.0
        outcome = rng.choice(["success", "success", "success", "failure"])
        rows.append(
            (
                kind,
                action,
                outcome,
                at,
                at + duration,
                duration,
                "2",
                "x",
                json.dumps({"by": rng.choice(["person", "monitor"])}),
            )
        )
    store._insert(rows)


def naive(store: EventStore) -> dict[str, int]:
    """Every event loaded, counted in Python (what the figures must not do)."""
    counts: dict[str, int] = {}
    for event in store.query():
        counts[f"{event.kind}/{event.outcome}"] = counts.get(f"{event.kind}/{event.outcome}", 0) + 1
    return counts


def timed(fn, repeats: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), sorted(times)[int(0.95 * (len(times) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    settings = Settings()
    with tempfile.TemporaryDirectory() as folder:
        store = EventStore(Path(folder) / "events.db")
        fill(store, args.events)
        console = Console(file=io.StringIO(), width=120)

        def board():  # type: ignore[no-untyped-def]
            return build(store, now=NOW, settings=settings, state_dir=Path(folder))

        def terminal() -> None:
            console.print(dashboard_view(board()))

        def html() -> None:
            page(board())

        metrics = Metrics()

        def scrape() -> None:
            figures = build(store, now=NOW, settings=settings, timelines=False)
            metrics.render(store, None, figures)

        rows = [
            ("figures + timelines (build)", timed(board, args.repeats)),
            ("terminal dashboard", timed(terminal, args.repeats)),
            ("HTML page", timed(html, args.repeats)),
            ("/metrics with the dashboard's gauges", timed(scrape, args.repeats)),
            ("naive: load every event, count in Python", timed(lambda: naive(store), args.repeats)),
        ]
        store.close()
    print(f"{args.events:,} events, {args.repeats} runs each")
    print("| | median | p95 |")
    print("|---|---:|---:|")
    for name, (median, p95) in rows:
        print(f"| {name} | {median * 1000:.0f} ms | {p95 * 1000:.0f} ms |")


if __name__ == "__main__":
    main()
