from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from mlmedic.demo import run_demo


def test_demo_heals_the_batch_and_keeps_its_directory(tmp_path: Path) -> None:
    console = Console(record=True, width=120)
    assert run_demo(console, directory=tmp_path / "demo", batch_rows=600)
    text = console.export_text()
    assert "FAIL" in text and "PASS all" in text
    assert "batch.csv untouched" in text
    assert "deploy: v1 is now champion" in text
    assert "auto-rollback: v2 rejected" in text and "champion stays v1" in text
    assert "good model deployed, bad one refused" in text
    assert "200 answered by v1" in text
    assert "killed by SIGKILL" in text and "stage 6 recovered (MTTR" in text
    assert "[18h] drifted traffic: drift score" in text
    assert "the running server swapped to v3" in text
    assert "cooldown active, next retrain allowed at" in text
    assert "[42h] the north behaves differently" in text
    assert "accuracy drop" in text
    logs = json.loads((tmp_path / "demo" / "logs" / "data_fix_log.json").read_text())
    assert logs[0]["outcome"] == "success"
    rollbacks = json.loads((tmp_path / "demo" / "logs" / "rollback_log.json").read_text())
    assert rollbacks[0]["action"] == "auto-rollback"  # the refused, label-shuffled candidate
    assert {r["action"] for r in rollbacks} <= {"auto-rollback", "rollback"}  # + the policy's
    assert (tmp_path / "demo" / "fixed.parquet").exists()


def test_mlmedic_demo_runs_as_a_command_and_cleans_up(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = dict(os.environ, TMPDIR=str(scratch), MLFLOW_DISABLE_TELEMETRY="true")
    result = subprocess.run(
        [sys.executable, "-m", "mlmedic", "demo"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "stage 1 healed" in result.stdout
    assert "stages 2-3 good model deployed, bad one refused" in result.stdout
    assert "stage 6 recovered" in result.stdout
    assert "stages 4-5" in result.stdout and "cooldown respected" in result.stdout
    assert list(scratch.iterdir()) == []  # the temporary project is removed
