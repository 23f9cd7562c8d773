"""Benchmark: the quality of healing decisions, by replay (``mlmedic.replay``), on real public data
with known drift and on standard synthetic drift streams.

    pip install --no-deps "nannyml==0.13.*" "vega_datasets==0.9.*"   # their data files only
    python bench/bench_healing.py [--only census,weather] [--policy impact]

Real data, read from files shipped inside those wheels (nothing is downloaded at run time, and
neither package is imported — only its data folder is read):
- census: NannyML's US Census (ACS) employment table of Massachusetts, 2015 (reference) then
  2016-2018: integer-coded answers, drift over the years;
- housing: NannyML's California housing classification table, reference then an analysis period
  with covariate shift;
- weather: Vega's Seattle weather 2012-2015 (the weather type from temperatures, rain and wind),
  whose seasons drift by nature.
Synthetic streams (generated here, seeded): SEA (abrupt concept switches, then recurring),
rotating hyperplane (gradual), Agrawal (abrupt function switch).

For each: windows of harmful drift (the first model's accuracy below its validation accuracy
minus ``performance_degradation_threshold``), alerts and retrains on harmless windows, delay from
the first harmful window to the first action, and the accuracy of the model in force against
*never heal* and *retrain every window*, with retrains, all from one replay per dataset.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from mlmedic.replay import ReplayResult, replay


def _package_data(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            f"{package} is not installed: pip install --no-deps {package} (its data files only)"
        )
    return Path(next(iter(spec.submodule_search_locations)), *parts)


# ---------------------------------------------------------------- real data


def census() -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    folder = _package_data("nannyml", "datasets", "data")
    reference = pd.read_parquet(folder / "employment_MA_reference.pq")
    analysis = pd.read_parquet(folder / "employment_MA_analysis.pq")
    target = pd.read_parquet(folder / "employment_MA_analysis_target.pq")
    analysis = analysis.merge(target, on="id")
    drop = ["id", "prediction", "predicted_probability", "year"]
    history = analysis.drop(columns=drop).astype({"AGEP": float})
    ref = reference.drop(columns=drop).astype({"AGEP": float})
    return ref.iloc[:20_000], history, {"target": "employed", "window_rows": 10_000}


def housing() -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    folder = _package_data("nannyml", "datasets", "data")
    reference = pd.read_csv(folder / "california_housing_reference.csv")
    analysis = pd.read_csv(folder / "california_housing_analysis.csv").merge(
        pd.read_csv(folder / "california_housing_analysis_gt.csv"), on="id"
    )
    drop = ["id", "timestamp", "y_pred_proba", "y_pred"]
    return (
        reference.drop(columns=drop),
        analysis.drop(columns=drop),
        {"target": "clf_target", "window_rows": 1000},
    )


def weather() -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    frame = pd.read_csv(_package_data("vega_datasets", "_data", "seattle-weather.csv"))
    frame["rainy"] = frame.pop("weather").isin(["rain", "drizzle", "snow"]).astype(int)
    frame = frame.drop(columns=["date"])
    # the first year is the reference; then two-month windows: the seasons come and go
    return frame.iloc[:365], frame.iloc[365:], {"target": "rainy", "window_rows": 61}


# ---------------------------------------------------------------- synthetic streams


def sea(windows: int = 24, rows: int = 1000, seed: int = 1) -> pd.DataFrame:
    """SEA concepts: y = x1 + x2 <= theta; theta 8 -> 9 -> 7 -> 9.5 -> 8 (recurring), 10 % noise."""
    rng = np.random.default_rng(seed)
    thetas = [8.0] * 8 + [9.0] * 4 + [7.0] * 4 + [9.5] * 4 + [8.0] * 4
    parts = []
    for window in range(windows):
        x = rng.uniform(0, 10, (rows, 3))
        y = (x[:, 0] + x[:, 1] <= thetas[window]).astype(int)
        flip = rng.uniform(size=rows) < 0.1
        parts.append(pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "x3": x[:, 2], "y": y ^ flip}))
    return pd.concat(parts, ignore_index=True)


def hyperplane(windows: int = 24, rows: int = 1000, seed: int = 2) -> pd.DataFrame:
    """A rotating hyperplane in 10 dimensions: from window 8, 2 weights drift a little each
    window (gradual), 5 % noise."""
    rng = np.random.default_rng(seed)
    weights = rng.uniform(0, 1, 10)
    parts = []
    for window in range(windows):
        if window >= 8:
            weights[:2] += 0.35 * np.array([1.0, -1.0])
        x = rng.uniform(0, 1, (rows, 10))
        y = (x @ weights >= weights.sum() / 2).astype(int)
        flip = rng.uniform(size=rows) < 0.05
        frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(10)])
        frame["y"] = y ^ flip
        parts.append(frame)
    return pd.concat(parts, ignore_index=True)


def agrawal(windows: int = 24, rows: int = 1000, seed: int = 3) -> pd.DataFrame:
    """Agrawal's loan-applicant generator: function 1 (age bands) then, from window 12, function
    2 (age and salary bands), an abrupt switch; 5 % noise."""
    rng = np.random.default_rng(seed)
    parts = []
    for window in range(windows):
        salary = rng.uniform(20_000, 150_000, rows)
        commission = np.where(salary >= 75_000, 0.0, rng.uniform(10_000, 75_000, rows))
        age = rng.integers(20, 81, rows)
        elevel = rng.integers(0, 5, rows)
        car = rng.integers(1, 21, rows)
        zipcode = rng.integers(0, 9, rows)
        hvalue = (9 - zipcode) * 100_000 * rng.uniform(0.5, 1.5, rows)
        hyears = rng.integers(1, 31, rows)
        loan = rng.uniform(0, 500_000, rows)
        if window < 12:
            group = (age < 40) | (age >= 60)
        else:
            group = (
                ((age < 40) & (salary >= 50_000) & (salary <= 100_000))
                | ((age >= 40) & (age < 60) & (salary >= 75_000) & (salary <= 125_000))
                | ((age >= 60) & (salary >= 25_000) & (salary <= 75_000))
            )
        y = group.astype(int) ^ (rng.uniform(size=rows) < 0.05)
        parts.append(
            pd.DataFrame(
                {
                    "salary": salary,
                    "commission": commission,
                    "age": age,
                    "elevel": elevel,
                    "car": car,
                    "zipcode": zipcode,
                    "hvalue": hvalue,
                    "hyears": hyears,
                    "loan": loan,
                    "y": y,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def synthetic(make) -> tuple[pd.DataFrame, pd.DataFrame, dict]:  # type: ignore[no-untyped-def]
    frame = make()
    return frame.iloc[:4000], frame.iloc[4000:], {"target": "y", "window_rows": 1000}


DATASETS = {
    "census": census,
    "housing": housing,
    "weather": weather,
    "sea": lambda: synthetic(sea),
    "hyperplane": lambda: synthetic(hyperplane),
    "agrawal": lambda: synthetic(agrawal),
}


# ---------------------------------------------------------------- scoring a replay


def score(result: ReplayResult, allowed_drop: float) -> dict:
    """The figures of the issue from one replay."""
    validation = result.validation_accuracy or 0.0
    floor = validation - allowed_drop
    harmful = [
        w.index
        for w in result.windows
        if w.never_heal_accuracy is not None and w.never_heal_accuracy < floor
    ]
    harmless = [w for w in result.windows if w.index not in harmful]
    acted = [w.index for w in result.windows if w.action in ("retrain", "rollback")]
    delay = None
    if harmful:
        after = [i for i in acted if i >= harmful[0]]
        delay = (after[0] - harmful[0]) if after else None
    first_action = acted[0] if acted else None
    tail = [w for w in result.windows if first_action is not None and w.index > first_action]

    def mean(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return float(np.mean(known)) if known else None

    mlmedic = result.summaries[0]
    return {
        "windows": len(result.windows),
        "harmful_windows": len(harmful),
        "alerts_on_harmless_windows": sum(1 for w in harmless if w.alerts),
        "retrains_on_harmless_windows": sum(1 for w in harmless if w.action == "retrain"),
        "harmless_windows": len(harmless),
        "delay_windows": delay,
        "retrains": mlmedic.retrains,
        "rollbacks": mlmedic.rollbacks,
        "accuracy_mlmedic": mlmedic.mean_accuracy,
        "accuracy_never_heal": result.summaries[1].mean_accuracy,
        "accuracy_retrain_every_window": result.summaries[2].mean_accuracy
        if len(result.summaries) > 2
        else None,
        "after_action_mlmedic": mean([w.accuracy for w in tail]),
        "after_action_retrain_every_window": mean([w.retrain_every_window_accuracy for w in tail]),
        "retrains_every_window": len(result.windows),
        "seconds_per_window": result.seconds_per_window,
        "seconds": result.seconds,
    }


def reference_alarms(reference: pd.DataFrame, target: str, window_rows: int) -> tuple[int, int]:
    """(alarming windows, windows) when windows of the reference itself are monitored."""
    result = replay(
        reference,
        target=target,
        reference=reference,
        window_rows=window_rows,
        baselines=False,
    )
    return sum(1 for w in result.windows if w.alerts), len(result.windows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(DATASETS))
    parser.add_argument("--policy", default="impact", choices=["impact", "drift"])
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    from mlmedic.config import Settings

    allowed = Settings().self_healing.model_validation.performance_degradation_threshold
    rows = {}
    for name in args.only.split(","):
        reference, history, options = DATASETS[name]()
        folder = Path(tempfile.mkdtemp(prefix=f"bench-healing-{name}-"))
        if name == "weather":  # two-month windows hold ~61 rows: detect from 50
            (folder / "self_healing_config.json").write_text(
                json.dumps({"drift_detection": {"min_samples_for_detection": 50}})
            )
        result = replay(
            history,
            target=options["target"],
            reference=reference,
            window_rows=options["window_rows"],
            policy=args.policy,
            settings_from=folder,
        )
        figures = score(result, allowed)
        alarms, windows = reference_alarms(reference, options["target"], options["window_rows"])
        figures["reference_windows_alarming"] = f"{alarms}/{windows}"
        rows[name] = figures
        print(f"{name}: {json.dumps(figures)}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    print()
    print(
        "| data | windows (harmful) | alerts / retrains on harmless windows | delay to action "
        "| retrains | accuracy: mlmedic / never heal / retrain every window | after the action: "
        "mlmedic / every window | reference windows alarming | s per pass |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")

    def f(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    for name, r in rows.items():
        print(
            f"| {name} | {r['windows']} ({r['harmful_windows']}) | "
            f"{r['alerts_on_harmless_windows']} / {r['retrains_on_harmless_windows']} "
            f"of {r['harmless_windows']} | "
            f"{'-' if r['delay_windows'] is None else r['delay_windows']} | {r['retrains']} | "
            f"{f(r['accuracy_mlmedic'])} / {f(r['accuracy_never_heal'])} / "
            f"{f(r['accuracy_retrain_every_window'])} | {f(r['after_action_mlmedic'])} / "
            f"{f(r['after_action_retrain_every_window'])} | {r['reference_windows_alarming']} | "
            f"{r['seconds_per_window']:.2f} |"
        )


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    sys.exit(main())
