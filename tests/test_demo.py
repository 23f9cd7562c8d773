from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# servers, supervisors and commands in their own processes: not in the fast tier
pytestmark = pytest.mark.slow


def test_mlmedic_demo_runs_as_a_command_and_cleans_up(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = dict(os.environ, TMPDIR=str(scratch), MLFLOW_DISABLE_TELEMETRY="true", COLUMNS="200")
    result = subprocess.run(
        [sys.executable, "-m", "mlmedic", "demo", "--rows", "600"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = result.stdout
    assert "FAIL" in text and "PASS all" in text
    assert "batch.csv untouched" in text
    assert "deploy: v1 is now champion" in text
    assert "auto-rollback: v2 rejected" in text and "champion stays v1" in text
    assert "200 answered by v1" in text
    assert "killed by SIGKILL" in text
    assert "[18h] drifted traffic: importance-weighted drift score" in text
    assert "[24h] drifted traffic" in text and "data drift continues" in text  # told once
    assert "[30h] the north behaves differently" in text and "accuracy drop" in text
    assert "(recipe newest) deployed" in text
    assert "the running server swapped to v3" in text
    assert "[36h] the south follows the north" in text
    assert "cooldown active, next retrain allowed at" in text
    assert "a heal that hurts" in text and "rolled back v3 -> v1" in text
    assert "stage 1 healed" in text
    assert "stages 2-3 good model deployed, bad one refused" in text
    assert "stage 6 recovered (MTTR" in text
    assert "stages 4-5" in text and "cooldown respected" in text
    assert list(scratch.iterdir()) == []  # the temporary project is removed
    # the finale: the dashboard, printed and kept as a page where the demo says it is
    assert "auto-fix success rate" in text and "overall health" in text
    page = Path("mlmedic-demo-dashboard.html").resolve()
    assert f"the same dashboard as a page: {page}" in text.replace("\n", "")
    assert 'id="tile-rollbacks"' in page.read_text()
    import re

    ages = re.findall(r"last pass (-?[\d.]+)", page.read_text())  # #22: nothing dated ahead
    assert ages and all(not age.startswith("-") for age in ages), ages
    assert "logs/" not in text  # no announcement of files inside the removed project
