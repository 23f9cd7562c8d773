"""Benchmark: a 20M-row window of the prediction log profiled on Dask, against one process.

    python bench/bench_dask_profile.py [--rows 20000000] [--files 20] [--workers 2]

A prediction log of --rows rows of 20 features (14 numeric, 6 categorical; the last third of the
part files drifted in half of the features) in --files part files is summarised for drift, in
the same run, once each way:

- all of it on a Dask LocalCluster of --workers worker processes, each limited to 1 GiB
  (``monitor.distributed.summarise_window``: a task per part file, profiles merged in a tree);
  the peak memory of every worker is sampled while it runs;
- in one process, a 10 % sample (2,000,000 rows of 20,000,000: 10 % of each part file), read
  file by file, then ``compare`` (loading the whole window would need about 3.2 GB).

Then both reports are compared: drifted features, and each feature's statistics.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mlmedic.data.contract import DataContract
from mlmedic.data.drift import ReferenceProfile, compare
from mlmedic.heal.monitor.distributed import summarise_window
from mlmedic.model.training import model_features, model_frame
from mlmedic.store.logstore import Location, window_files

NUMERIC = 14
CATEGORICAL = 6


def table(rows: int, seed: int, drift: float = 0.0) -> pd.DataFrame:
    """20 features: 14 numeric (normal, skewed, counts) and 6 categorical (5 to 40 levels);
    ``drift`` shifts half of them."""
    rng = np.random.default_rng(seed)
    columns: dict[str, object] = {}
    for j in range(NUMERIC):
        shift = drift if j % 2 == 0 else 0.0
        if j % 3 == 0:
            columns[f"n{j}"] = rng.normal(shift, 1.0, rows)
        elif j % 3 == 1:
            columns[f"n{j}"] = rng.lognormal(shift, 0.5, rows)
        else:
            columns[f"n{j}"] = rng.poisson(3 + 3 * shift, rows).astype(np.int64)
    for j in range(CATEGORICAL):
        levels = np.array([f"c{j}_{k}" for k in range(5 + 7 * j)])
        weights = np.linspace(1.0, 2.0 + (drift * 4 if j % 2 == 0 else 0.0), len(levels))
        columns[f"c{j}"] = levels[rng.choice(len(levels), rows, p=weights / weights.sum())]
    frame = pd.DataFrame(columns)
    frame["label"] = (frame["n0"] + rng.normal(0, 1, rows) > 0).astype(int)
    return frame


def write_log(folder: Path, rows: int, files: int) -> int:
    """``files`` part files of the prediction log, one hour each; the last third drifted."""
    per_file = rows // files
    written = 0
    base = time.time() - files * 3600
    for index in range(files):
        drifted = index >= 2 * files // 3
        frame = table(per_file, seed=100 + index, drift=0.5 if drifted else 0.0)
        frame = frame.drop(columns=["label"])
        probability = np.random.default_rng(index).uniform(0.5, 1.0, per_file)
        frame["proba_0"], frame["proba_1"] = 1 - probability, probability
        frame["request_id"] = np.char.add(f"{index}-", np.arange(per_file).astype(str))
        frame["served_at"] = base + index * 3600 + np.linspace(0, 3599, per_file)
        hour = time.strftime("%Y-%m-%dT%H", time.gmtime(base + index * 3600))
        target = folder / f"hour={hour}"
        target.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(target / f"part-{time.time_ns()}-{index}-bench-1.parquet", index=False)
        written += len(frame)
    return written


def main() -> None:
    from distributed import Client, LocalCluster

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    reference = table(50_000, seed=7)
    contract = DataContract(target="label").fit(reference)
    kinds = {n: contract.columns_[n].kind for n in model_features(contract)}
    features = ReferenceProfile().fit(model_frame(reference, contract), kinds)
    features.calibrate(model_frame(reference, contract), 1000)
    predictions = ReferenceProfile().fit(
        pd.DataFrame({"probability": np.random.default_rng(1).uniform(0.5, 1.0, 5000)}),
        {"probability": "numeric"},
    )
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "predictions"
        started = time.perf_counter()
        rows = write_log(log, args.rows, args.files)
        print(
            f"wrote {rows:,} rows in {args.files} part files "
            f"in {time.perf_counter() - started:.0f} s"
        )

        with (
            LocalCluster(
                n_workers=args.workers,
                threads_per_worker=1,
                processes=True,
                memory_limit="1GiB",
                dashboard_address=None,
            ) as cluster,
            Client(cluster) as client,
        ):
            peaks: dict[str, int] = {}
            stop = threading.Event()

            def sample() -> None:
                import psutil

                while not stop.is_set():
                    for worker, rss in client.run(
                        lambda: psutil.Process().memory_info().rss
                    ).items():
                        peaks[worker] = max(peaks.get(worker, 0), int(rss))
                    time.sleep(0.2)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            started = time.perf_counter()
            summary = summarise_window(
                cluster.scheduler_address,
                log,
                since=None,
                until=None,
                features=features.to_dict(),
                predictions=predictions.to_dict(),
                contract=contract,
                target="label",
                labels=None,
            )
            on_dask = time.perf_counter() - started
            stop.set()
            sampler.join()
        assert summary is not None
        dask_report = compare(features, summary.features)

        # one process, on a sample of a tenth of the rows (what fits comfortably in memory):
        # the same part files in the same proportions, drifted and not
        started = time.perf_counter()
        where = Location(log)
        window = pd.concat(
            [
                where.read(path).sample(frac=0.1, random_state=0)
                for path in window_files(where, None, None)
            ],
            ignore_index=True,
        )
        local_report = compare(features, model_frame(window, contract))
        local = time.perf_counter() - started
        local_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    print(f"\n{summary.rows:,} rows, {args.files} part files, {args.workers} workers x 1 GiB")
    print("| | wall time | peak memory |")
    print("|---|---:|---:|")
    worst = max(peaks.values()) if peaks else 0
    print(
        f"| Dask ({args.workers} workers) | {on_dask:.1f} s "
        f"| {worst / 2**30:.2f} GiB per worker (max) |"
    )
    print(
        f"| one process, a {len(window):,}-row sample (10 % of each part file) "
        f"| {local:.1f} s | {local_peak / 2**30:.2f} GiB |"
    )
    same = dask_report.drifted_features == local_report.drifted_features
    print(
        f"\ndrifted features: Dask {dask_report.drifted_features}; one process "
        f"{local_report.drifted_features}; {'the same' if same else 'DIFFERENT'}"
    )
    print("| feature | test | statistic: Dask, all rows | statistic: one process, sample |")
    print("|---|---|---:|---:|")
    for a, b in zip(dask_report.features, local_report.features, strict=True):
        print(f"| {a.name} | {a.test} | {a.statistic:.4f} | {b.statistic:.4f} |")


if __name__ == "__main__":
    main()
