"""mlmedic's label-free error estimate against NannyML's DLE, on the same windows.

Usage:
    python bench/bench_dle.py --nannyml-python /path/to/venv/bin/python [--chunk-rows 6000]

NannyML's synthetic car-price data (``regression_synthetic_*.csv``, shipped inside the
``nannyml`` wheel; read as files here, nannyml never imported in this process): a reference
period of 60,000 rows with the model's predictions and prices, an analysis period of 60,000
whose prices arrive separately. Both estimators get the same reference (features, prediction,
price) and estimate the MAE of the same predictions on the same analysis windows (chunks of
``--chunk-rows``) without their prices; each estimate is compared with the MAE measured from the
prices. NannyML runs in its own virtualenv (``python -m venv nm && nm/bin/pip install
"nannyml==0.13.*" statsmodels "pandas<3"``); both sides fit once and estimate every window
once, timed the same way.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

FEATURES = [
    "car_age",
    "km_driven",
    "price_new",
    "accident_count",
    "door_count",
    "fuel",
    "transmission",
]

NANNYML = """
import json, sys, time
import pandas as pd
import nannyml as nml
reference = pd.read_csv(sys.argv[1])
analysis = pd.read_csv(sys.argv[2])
started = time.perf_counter()
estimator = nml.DLE(
    feature_column_names=json.loads(sys.argv[3]),
    y_pred="y_pred",
    y_true="y_true",
    metrics=["mae"],
    chunk_size=int(sys.argv[4]),
    tune_hyperparameters=False,
)
estimator.fit(reference)
found = estimator.estimate(analysis).filter(period="analysis").to_df()
seconds = time.perf_counter() - started
values = found[("mae", "value")].tolist()
print(json.dumps({"estimates": values, "seconds": seconds}))
"""


def data_folder() -> Path:
    spec = importlib.util.find_spec("nannyml")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("nannyml is not installed here: its wheel ships the data (pip install nannyml)")
    return Path(next(iter(spec.submodule_search_locations)), "datasets", "data")


def load() -> tuple[pd.DataFrame, pd.DataFrame]:
    folder = data_folder()
    reference = pd.read_csv(folder / "regression_synthetic_reference.csv")
    analysis = pd.read_csv(folder / "regression_synthetic_analysis.csv")
    targets = pd.read_csv(folder / "regression_synthetic_analysis_targets.csv")
    analysis = analysis.merge(targets, on="id")
    return reference, analysis


def mlmedic_estimates(
    reference: pd.DataFrame, analysis: pd.DataFrame, chunk: int
) -> tuple[list[float], float]:
    from mlmedic.model.tasks.regression import ErrorModel

    def features(frame: pd.DataFrame) -> pd.DataFrame:
        found = frame[FEATURES].copy()
        for name in ("fuel", "transmission"):
            found[name] = found[name].astype(str).astype(object)
        return found

    started = time.perf_counter()
    model = ErrorModel.fit(
        features(reference), reference["y_pred"].to_numpy(), reference["y_true"].to_numpy()
    )
    estimates = []
    for start in range(0, len(analysis), chunk):
        part = analysis.iloc[start : start + chunk]
        estimates.append(float(model.errors(features(part), part["y_pred"].to_numpy()).mean()))
    return estimates, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nannyml-python", required=True)
    parser.add_argument("--chunk-rows", type=int, default=6000)
    args = parser.parse_args()
    reference, analysis = load()
    chunk = args.chunk_rows
    truth = [
        float(np.mean(np.abs(part["y_pred"] - part["y_true"])))
        for part in (analysis.iloc[s : s + chunk] for s in range(0, len(analysis), chunk))
    ]
    ours, our_seconds = mlmedic_estimates(reference, analysis, chunk)
    with tempfile.TemporaryDirectory() as folder:
        ref_path, ana_path = Path(folder, "reference.csv"), Path(folder, "analysis.csv")
        reference.to_csv(ref_path, index=False)
        analysis.drop(columns=["y_true"]).to_csv(ana_path, index=False)
        done = subprocess.run(
            [
                args.nannyml_python,
                "-c",
                NANNYML,
                ref_path,
                ana_path,
                json.dumps(FEATURES),
                str(chunk),
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode:
            sys.exit(f"NannyML failed: {done.stderr.strip().splitlines()[-1:]}")
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    rows = [
        {"window": i, "measured": t, "mlmedic": o, "nannyml_dle": n}
        for i, (t, o, n) in enumerate(zip(truth, ours, theirs["estimates"], strict=True))
    ]
    ours_error = float(np.mean([abs(r["mlmedic"] - r["measured"]) for r in rows]))
    theirs_error = float(np.mean([abs(r["nannyml_dle"] - r["measured"]) for r in rows]))
    print("| window | measured MAE | mlmedic estimate | NannyML DLE estimate |")
    print("|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['window']} | {r['measured']:.1f} | {r['mlmedic']:.1f} | {r['nannyml_dle']:.1f} |"
        )
    print(
        f"\nMAE of the estimate over {len(rows)} windows of {chunk:,} rows: mlmedic "
        f"{ours_error:.2f} ({our_seconds:.1f} s), NannyML DLE {theirs_error:.2f} "
        f"({theirs['seconds']:.1f} s); mlmedic / DLE = {ours_error / theirs_error:.2f}"
    )


if __name__ == "__main__":
    main()
