"""Benchmark: a drift report on N rows x 20 numeric features, mlmedic against Evidently 0.7.

    python bench/bench_drift.py --evidently-python /path/to/venv/bin/python [--rows 1000000]

Evidently 0.7.23 pins pandas < 3 and more, so it runs in its own virtualenv
(`python -m venv ev && ev/bin/pip install "evidently==0.7.*"`); both tools read the same Parquet
files in the same run. mlmedic's reference profile is computed once (as it is when a version is
registered) and timed apart; both sides are timed best of --repeats (3) in the same run, and the
speed-up is given for mlmedic's report alone and for profile + report. Ten features are shifted by
0.02 to 0.5 standard deviations, ten are not. All 20 per-column verdicts are listed, with the
agreement over all of them and over those whose Evidently statistic is not within +/-20 % of its
threshold.

Also: the time from a drifted 100,000-row batch arriving at the monitor to the retrained model
being served by a running `mlmedic serve` (--swap).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mlmedic.data.drift import ReferenceProfile, compare

SHIFTS = [0.0] * 10 + [0.02, 0.05, 0.08, 0.09, 0.11, 0.13, 0.2, 0.3, 0.4, 0.5]

EVIDENTLY = r"""
import json, sys, time
import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset
reference = pd.read_parquet(sys.argv[1])
current = pd.read_parquet(sys.argv[2])
repeats = int(sys.argv[3])
seconds = float("inf")
for _ in range(repeats):  # best of N, as mlmedic is timed
    start = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(current_data=current, reference_data=reference)
    seconds = min(seconds, time.perf_counter() - start)
columns = {}
for metric in snapshot.dict()["metrics"]:
    name = metric.get("metric_name") or metric.get("metric_id") or ""
    if name.startswith("ValueDrift("):
        columns[name] = float(metric["value"])
print(json.dumps({"seconds": seconds, "columns": columns}))
"""


def make(rows: int, seed: int, shifted: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            f"f{i:02d}": rng.normal(shift if shifted else 0.0, 1.0, rows)
            for i, shift in enumerate(SHIFTS)
        }
    )


def run_evidently(python: str, reference: Path, current: Path, repeats: int) -> dict:
    done = subprocess.run(
        [python, "-c", EVIDENTLY, str(reference), str(current), str(repeats)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit("Evidently failed:\n" + done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def parse(metric_id: str) -> tuple[str, str, float]:
    match = re.match(r"ValueDrift\(column=([^,]+),method=([^,]+),threshold=([\d.]+)\)", metric_id)
    if not match:
        raise ValueError(metric_id)
    return match.group(1), match.group(2), float(match.group(3))


def swap_time(rows: int) -> None:
    """From a drifted batch reaching the monitor to the retrained model serving."""
    import urllib.request

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_serve import serve, stop

    from mlmedic.data.datasets import TARGET, make_churn
    from mlmedic.heal.monitor import Monitor
    from mlmedic.heal.pipeline import run_pipeline
    from mlmedic.model.project import Project

    folder = Path(tempfile.mkdtemp(prefix="bench-swap-"))
    root = folder / "served"
    root.mkdir()
    make_churn(rows, seed=1).to_parquet(folder / "reference.parquet")
    project = Project(root)
    run_pipeline(project, folder / "reference.parquet", target=TARGET)
    server, url = serve(root, folder / "serve.log")
    try:
        drifted = make_churn(rows, seed=2, drift=1.0)
        started = time.perf_counter()
        result = Monitor(project, reference_data=folder / "reference.parquet").run_batch(drifted)
        decided = time.perf_counter()
        champion = project.registry.champion()
        while True:
            with urllib.request.urlopen(url + "/model", timeout=5) as answer:
                if json.loads(answer.read())["version"] == champion.version:  # type: ignore[union-attr]
                    break
            time.sleep(0.05)
        served = time.perf_counter()
        print(
            f"drift -> retrain -> served on {rows:,} rows: {result.decision.action}, {result.acted}"
        )
        print(
            f"  monitor pass incl. retrain: {decided - started:.2f} s; "
            f"until the server answers with v{champion.version}: {served - started:.2f} s"
        )  # type: ignore[union-attr]
    finally:
        stop(server)
        project.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--evidently-python", default=None)
    parser.add_argument("--swap", type=int, default=0, help="also time drift -> served on N rows")
    parser.add_argument("--repeats", type=int, default=3, help="best of N, on both sides")
    args = parser.parse_args()
    if args.swap:
        swap_time(args.swap)
    folder = Path(tempfile.mkdtemp(prefix="bench-drift-"))
    reference, current = make(args.rows, 1, False), make(args.rows, 2, True)
    reference.to_parquet(folder / "reference.parquet")
    current.to_parquet(folder / "current.parquet")
    kinds = {c: "numeric" for c in reference.columns}
    print(f"data: {args.rows:,} rows x {len(kinds)} numeric features, reference of the same size")

    repeats = args.repeats
    profile_seconds = best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        profile = ReferenceProfile().fit(reference, kinds)
        profile_seconds = min(profile_seconds, time.perf_counter() - start)
        start = time.perf_counter()
        report = compare(profile, current)
        best = min(best, time.perf_counter() - start)
    print(
        f"mlmedic reference profile (best of {repeats}, once per version): {profile_seconds:6.2f} s"
    )
    print(f"mlmedic drift report alone (best of {repeats}):             {best:6.2f} s")
    print(
        f"mlmedic profile + report:                             {profile_seconds + best:6.2f} s"
        f"  -> {report.summary()}"
    )

    if not args.evidently_python:
        print("Evidently: skipped (pass --evidently-python)")
        return
    evidently = run_evidently(
        args.evidently_python, folder / "reference.parquet", folder / "current.parquet", repeats
    )
    seconds = evidently["seconds"]
    print(f"Evidently 0.7 DataDriftPreset (best of {repeats}):          {seconds:6.2f} s")
    print(f"speed-up, report alone:                               {seconds / best:6.0f} x")
    print(
        f"speed-up, profile + report (Evidently has no profile): "
        f"{seconds / (profile_seconds + best):6.0f} x"
    )
    ours = {f.name: f for f in report.features}
    compared = agreed = agreed_all = 0
    rows = []
    for metric_id, value in evidently["columns"].items():
        column, method, threshold = parse(metric_id)
        p_value = "p_value" in method.lower() or "test" in method.lower()
        drifted = value < threshold if p_value else value > threshold
        near = abs(value - threshold) <= 0.2 * threshold
        mine = ours[column]
        rows.append((column, method, value, threshold, drifted, mine.statistic, mine.drifted, near))
        agreed_all += drifted == mine.drifted
        if not near:
            compared += 1
            agreed += drifted == mine.drifted
    print(f"per-column agreement, all columns:                     {agreed_all}/{len(rows)}")
    print(f"per-column agreement away from the threshold (+/-20 %): {agreed}/{compared}")
    print("every verdict (shift in standard deviations; the truth is 'drifted' when shift > 0):")
    shifts = {f"f{i:02d}": shift for i, shift in enumerate(SHIFTS)}
    for column, method, value, _, drifted, statistic, mine, near in rows:
        flag = "  (near threshold)" if near else ""
        print(
            f"  {column} (shift {shifts.get(column, 0.0):.2f}): Evidently {method} {value:.4f} "
            f"-> {drifted}; mlmedic {statistic:.4f} -> {mine}{flag}"
        )


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    sys.exit(main())
