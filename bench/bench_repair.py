"""Benchmark: stage 1 (check + repair) against the plain pandas approach, in the same run.

Data: 1,000,000 rows x 20 numeric columns with 2 % missing cells, 0.1 % outlier cells and 1 %
duplicate rows. mlmedic checks the batch against a contract learned from a clean 100,000-row
reference (learned once, timed separately), repairs it, and re-checks the result. The baseline is
what a pandas user writes: drop_duplicates, then per column an IQR clip and a median fillna on the
batch itself.

    python bench/bench_repair.py [--rows 1000000] [--repeat 3]

Prints wall times (best of --repeat), the speed-up, and peak traced memory as a multiple of the
input frame's size. Figures are recorded in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import gc
import platform
import time
import tracemalloc
from collections.abc import Callable

import numpy as np
import pandas as pd

from mlmedic.data.checks import run_checks
from mlmedic.data.contract import DataContract
from mlmedic.data.repair import Repairer


def make_batch(rows: int, columns: int, seed: int, layout: str = "columns") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    values = rng.normal(50.0, 10.0, size=(rows, columns))
    outliers = rng.uniform(size=values.shape) < 0.001
    values[outliers] *= rng.choice([-100.0, 100.0], size=int(outliers.sum()))
    values[rng.uniform(size=values.shape) < 0.02] = np.nan
    copies = rng.choice(rows, size=rows // 100, replace=False)
    values[copies] = values[rng.choice(rows, size=copies.size, replace=False)]
    if layout == "rows":  # one row-major block: every column is a strided view
        return pd.DataFrame(values, columns=[f"f{i:02d}" for i in range(columns)])
    return _frame(values)


def _frame(values: np.ndarray) -> pd.DataFrame:
    """Column-contiguous, as read_csv and read_parquet return them (a row-major 2-D array would
    give strided columns, slow for every column-wise tool alike)."""
    return pd.DataFrame({f"f{i:02d}": values[:, i].copy() for i in range(values.shape[1])})


def make_reference(rows: int, columns: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return _frame(rng.normal(50.0, 10.0, size=(rows, columns)))


def pandas_baseline(frame: pd.DataFrame, k: float = 3.0) -> pd.DataFrame:
    out = frame.drop_duplicates().copy()
    for column in out.columns:
        q1, q3 = out[column].quantile([0.25, 0.75])
        iqr = q3 - q1
        out[column] = out[column].clip(q1 - k * iqr, q3 + k * iqr)
        out[column] = out[column].fillna(out[column].median())
    return out


def mlmedic_stage1(frame: pd.DataFrame, contract: DataContract) -> pd.DataFrame:
    before = run_checks(frame, contract)
    assert not before.passed
    result = Repairer().fit(contract).transform(frame)
    after = run_checks(result.data, contract)
    assert after.passed, after.failures
    return result.data


def best_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def peak_memory(fn: Callable[[], object]) -> int:
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    fn()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--columns", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--layout",
        choices=["columns", "rows"],
        default="columns",
        help="columns: contiguous columns (as read_csv gives); rows: one row-major block",
    )
    args = parser.parse_args()

    batch = make_batch(args.rows, args.columns, seed=1, layout=args.layout)
    reference = make_reference(100_000, args.columns, seed=2)
    size = batch.memory_usage(index=True, deep=True).sum()
    print(
        f"machine: {platform.machine()}, python {platform.python_version()}, "
        f"pandas {pd.__version__}, numpy {np.__version__}"
    )
    print(
        f"input: {len(batch):,} rows x {batch.shape[1]} columns, {size / 2**20:.0f} MiB, "
        f"{args.layout} layout"
    )

    start = time.perf_counter()
    contract = DataContract().fit(reference)
    fit_s = time.perf_counter() - start

    ours = best_time(lambda: mlmedic_stage1(batch, contract), args.repeat)
    check_repair = best_time(
        lambda: (run_checks(batch, contract), Repairer().fit(contract).transform(batch)),
        args.repeat,
    )
    check_only = best_time(lambda: run_checks(batch, contract), args.repeat)
    baseline = best_time(lambda: pandas_baseline(batch), args.repeat)
    ours_peak = peak_memory(lambda: mlmedic_stage1(batch, contract))
    base_peak = peak_memory(lambda: pandas_baseline(batch))

    print(f"contract fit on 100,000 reference rows (once per model): {fit_s:6.2f} s")
    print(f"mlmedic check only:                                      {check_only:6.2f} s")
    print(f"mlmedic check + repair:                                  {check_repair:6.2f} s")
    print(f"mlmedic check + repair + re-check (the whole stage 1):   {ours:6.2f} s")
    print(f"pandas baseline (drop_duplicates, IQR clip, fillna):     {baseline:6.2f} s")
    print(
        f"speed-up, check + repair:                                {baseline / check_repair:6.1f} x"
    )
    print(f"speed-up, whole stage 1 with the re-check:               {baseline / ours:6.1f} x")
    print(f"peak memory, mlmedic:  {ours_peak / 2**20:7.0f} MiB = {ours_peak / size:.2f} x input")
    print(f"peak memory, baseline: {base_peak / 2**20:7.0f} MiB = {base_peak / size:.2f} x input")


if __name__ == "__main__":
    main()
