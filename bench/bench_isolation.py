"""Benchmark: what isolating a champion's model calls in a helper process would cost (#21 item 3).

    python bench/bench_isolation.py [--repeats 2000]

A champion that crashed its worker once could have its model calls run in a forked helper
process, so that a second crash kills the helper (failing only the batch that caused it) instead
of the worker and every request in flight on it. The cost is one round trip per batch: the
request columns sent over a pipe, the labels and probabilities sent back. This measures it beside
the same model call in the worker, for a 1-row and a 64-row batch of the 20-feature bench model,
the same number of repetitions on both sides. Prints a table of medians and p99s in microseconds.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_train import make_training

from mlmedic.data.datasets import TARGET
from mlmedic.heal.pipeline import run_pipeline
from mlmedic.model.local import cache_path, load_local
from mlmedic.model.project import Project


def _helper(connection, folder: str, version: int) -> None:  # type: ignore[no-untyped-def]
    """The isolated side: the same model, loaded once, answering batches until told to stop."""
    model = load_local(Path(folder), version)
    while True:
        parts = connection.recv()
        if parts is None:
            return
        connection.send(model.predict_columns(parts))


def _times(call, parts, repeats: int) -> list[float]:  # type: ignore[no-untyped-def]
    found = []
    for _ in range(repeats):
        started = time.perf_counter_ns()
        call(parts)
        found.append((time.perf_counter_ns() - started) / 1000.0)
    return found


def _row(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return f"{statistics.median(values):9.1f} | {p99:9.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = Project(Path(tmp) / "p")
        frame = make_training(4000, seed=1)
        assert run_pipeline(project, frame, target=TARGET, say=lambda _: None).deployed
        version = 1
        folder = cache_path(project.state_dir, version)
        project.close()
        model = load_local(folder, version)
        rows = frame.drop(columns=[TARGET])[model.features]
        batches = {n: [{c: rows[c].head(n).tolist() for c in model.features}] for n in (1, 64)}
        context = multiprocessing.get_context("spawn")  # no fork of a threaded process
        ours, theirs = context.Pipe()
        helper = context.Process(target=_helper, args=(theirs, str(folder), version))
        helper.start()

        def isolated(parts):  # type: ignore[no-untyped-def]
            ours.send(parts)
            return ours.recv()

        print(f"model call, {args.repeats} repetitions each side (µs)")
        print("| batch | where | median | p99 |")
        print("| --- | --- | ---: | ---: |")
        for n, parts in batches.items():
            isolated(parts)  # warm both sides
            model.predict_columns(parts)
            inline = _times(model.predict_columns, parts, args.repeats)
            helped = _times(isolated, parts, args.repeats)
            print(f"| {n} rows | in the worker | {_row(inline)} |")
            print(f"| {n} rows | in a helper process | {_row(helped)} |")
        ours.send(None)
        helper.join(10)


if __name__ == "__main__":
    main()
