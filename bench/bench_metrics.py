"""Benchmark: a /metrics scrape's cost as the event store grows.

    python bench/bench_metrics.py [--sizes 1000,20000,100000] [--repeats 20]

For each size, an event store with that many events (mixed kinds and outcomes) is scraped
``--repeats`` times through the same ``Metrics.render`` a server runs (off its event loop), beside
the way scrapes counted actions before issue #9 (twelve ``SELECT *`` queries, one per kind and
outcome, counted in Python), in the same run and the same number of times. Target: <= 50 ms at
100,000 events.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from mlmedic.serving.metrics import _EVENT_KINDS, Metrics
from mlmedic.store.events import EventStore

KINDS = ["data_fix", "rollback", "retrain", "recovery", "deploy", "alert", "drift_check", "monitor"]


def fill(store: EventStore, count: int) -> None:
    rng = random.Random(7)
    rows = []
    now = time.time()
    for i in range(count):
        kind = rng.choice(KINDS)
        outcome = rng.choice(["success", "success", "failure", "warning"])
        rows.append((kind, "bench", outcome, now - i, now - i, 0.0, "1", "x", "{}"))
    store._insert(rows)


def old_way(store: EventStore) -> int:
    return sum(
        len(store.query(kind=kind, outcome=outcome))
        for kind in _EVENT_KINDS
        for outcome in ("success", "failure")
    )


def timed(fn, repeats: int) -> list[float]:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,20000,100000")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    metrics = Metrics()
    print("| events | /metrics scrape, median (p95) | before #9: 12 x SELECT *, median | ")
    print("|---:|---:|---:|")
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as folder:
            store = EventStore(Path(folder) / "events.db")
            fill(store, size)
            now = timed(lambda s=store: metrics.render(s), args.repeats)
            before = timed(lambda s=store: old_way(s), args.repeats)
            store.close()
        p95 = sorted(now)[int(0.95 * (len(now) - 1))]
        print(
            f"| {size:,} | {statistics.median(now) * 1000:.1f} ms ({p95 * 1000:.1f} ms) | "
            f"{statistics.median(before) * 1000:.1f} ms |"
        )


if __name__ == "__main__":
    main()
