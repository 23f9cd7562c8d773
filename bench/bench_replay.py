"""Benchmark: the speed of a monitoring pass, from the CLI and inside ``mlmedic replay``.

    python bench/bench_replay.py [--windows 40] [--rows 5000] [--repeats 3]

1. ``mlmedic monitor --batch`` of 5,000 rows as a fresh process, on a project whose champion is
   trained (target: <= 1.5 s on a quiet machine), best of --repeats; beside it, the bare start of
   ``python -c "import mlflow, sklearn, pandas"`` (what any Python tool on this stack pays), and
   the floor of a pass that reads the champion from the local copies without MLflow: importing
   pandas, pyarrow, scikit-learn and skops.
2. ``replay`` of --windows windows x --rows rows of stable data (no retrain), monitoring only
   (target: <= 0.3 s per window), and with the two baselines (one training per window more).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from mlmedic.data.datasets import TARGET, make_churn


def fresh(command: list[str], cwd: Path, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
        took = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")
        best = min(best, took)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=40)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-replay-"))
    make_churn(20_000, seed=1).to_parquet(folder / "train.parquet")
    make_churn(args.rows, seed=2).to_parquet(folder / "batch.parquet")
    mlmedic = [sys.executable, "-m", "mlmedic"]
    subprocess.run(
        [*mlmedic, "run", "train.parquet", "-t", TARGET],
        cwd=folder,
        check=True,
        capture_output=True,
    )
    # the first pass exports the champion; the timed ones find it where a running service would
    subprocess.run(
        [*mlmedic, "monitor", "--batch", "batch.parquet"],
        cwd=folder,
        check=True,
        capture_output=True,
    )
    cli = fresh([*mlmedic, "monitor", "--batch", "batch.parquet"], folder, args.repeats)
    # the same pass without logging it to the champion's MLflow monitoring run
    (folder / "self_healing_config.json").write_text('{"monitoring": {"mlflow_reports": false}}')
    quiet = fresh([*mlmedic, "monitor", "--batch", "batch.parquet"], folder, args.repeats)
    imports = fresh([sys.executable, "-c", "import mlflow, sklearn, pandas"], folder, args.repeats)
    print(
        f"mlmedic monitor --batch ({args.rows:,} rows), fresh process, best of {args.repeats}: "
        f"{cli:.2f} s with the pass logged to MLflow, {quiet:.2f} s without "
        "(monitoring.mlflow_reports: false)  (target <= 1.5 s)"
    )
    print(
        f"python -c 'import mlflow, sklearn, pandas', best of {args.repeats}:      {imports:.2f} s"
    )

    from mlmedic.heal.replay import replay

    history = pd.concat(
        [make_churn(args.rows, seed=100 + i) for i in range(args.windows)], ignore_index=True
    )
    reference = make_churn(20_000, seed=1)
    for baselines in (False, True):
        result = replay(
            history,
            target=TARGET,
            reference=reference,
            window_rows=args.rows,
            baselines=baselines,
        )
        retrains = result.summaries[0].retrains
        label = "with both baselines" if baselines else "monitoring only    "
        print(
            f"replay {args.windows} x {args.rows:,} rows, {label}: {result.seconds:6.1f} s in all, "
            f"{result.seconds_per_window:.3f} s per window ({retrains} retrains; target <= 0.3 s)"
        )


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    sys.exit(main())
