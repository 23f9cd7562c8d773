"""Stage 1 end to end in the library: check -> repair -> re-check, with events and files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_wine

from mlmedic.core.config import DataQualityConfig
from mlmedic.core.errors import ProjectError
from mlmedic.data.contract import DataContract
from mlmedic.data.datasets import TARGET, make_churn
from mlmedic.data.io import read_table
from mlmedic.data.stage import fix_file, heal_data, output_paths, resolve_contract
from mlmedic.store.events import EventStore


@pytest.fixture
def events(tmp_path: Path) -> EventStore:
    with EventStore(tmp_path / "events.db") as store:
        yield store


def test_clean_data_passes_without_repair(reference: pd.DataFrame, events: EventStore) -> None:
    contract = DataContract(target=TARGET).fit(reference)
    result = heal_data(make_churn(800, seed=99), contract, events=events)
    assert result.passed and not result.repaired
    assert [(e.kind, e.outcome) for e in events.query()] == [("data_check", "success")]


def test_failing_data_is_repaired_and_rechecked(
    reference: pd.DataFrame, dirty: pd.DataFrame, events: EventStore
) -> None:
    contract = DataContract(target=TARGET).fit(reference)
    before = dirty.copy()
    result = heal_data(dirty, contract, events=events, source="batch")
    assert result.passed and result.repaired
    assert not result.first_report.passed and result.final_report.passed
    pd.testing.assert_frame_equal(dirty, before)  # the input frame is never modified
    kinds = [(e.kind, e.outcome) for e in events.query()]
    assert kinds == [("data_check", "failure"), ("data_fix", "success"), ("data_check", "success")]
    fix = events.last("data_fix")
    assert fix is not None
    assert fix.details["rows"]["input_rows"] == len(dirty)
    assert "missing values imputed" in fix.message


def test_auto_fix_disabled_stops_with_the_report(
    reference: pd.DataFrame, dirty: pd.DataFrame
) -> None:
    contract = DataContract(target=TARGET).fit(reference)
    result = heal_data(dirty, contract, config=DataQualityConfig(auto_fix_enabled=False))
    assert not result.passed and not result.repaired
    assert result.data is dirty


def test_unrepairable_schema_stays_failed(reference: pd.DataFrame, events: EventStore) -> None:
    contract = DataContract(target=TARGET).fit(reference)
    batch = make_churn(200, seed=3).drop(columns=["age"])
    result = heal_data(batch, contract, events=events)
    assert result.repaired and not result.passed
    assert [f.check for f in result.final_report.failures] == ["missing_columns"]
    last_fix = events.last("data_fix")
    assert last_fix is not None and last_fix.outcome == "failure"


def test_resolve_contract_sources(tmp_path: Path, reference: pd.DataFrame) -> None:
    reference.to_csv(tmp_path / "ref.csv", index=False)
    batch = make_churn(100, seed=4)
    from_file = resolve_contract(batch, reference=tmp_path / "ref.csv", target=TARGET)
    assert from_file.source.endswith("ref.csv") and not from_file.self_reference
    saved = from_file.save(tmp_path / "contract.json")
    assert resolve_contract(batch, contract=saved).to_dict() == from_file.to_dict()
    own = resolve_contract(batch, target=TARGET, batch_name="b.csv")
    assert own.self_reference and "its own reference" in own.describe_source()
    with pytest.raises(ProjectError, match="not both"):
        resolve_contract(batch, reference=tmp_path / "ref.csv", contract=saved)
    with pytest.raises(ProjectError, match="target is 'churned', not 'other'"):
        resolve_contract(batch, contract=saved, target="other")


def test_fix_file_writes_output_quarantine_and_audit(files: dict[str, Path]) -> None:
    raw = files["batch"].read_bytes()
    out = files["batch"].parent / "fixed.parquet"
    result, paths = fix_file(files["batch"], out, reference=files["reference"], target=TARGET)
    assert paths == output_paths(out)
    assert files["batch"].read_bytes() == raw  # input untouched
    fixed = read_table(paths.data)
    quarantine = read_table(paths.quarantine) if len(result.repair.quarantine) else None
    audit = json.loads(paths.audit.read_text())
    rows = audit["rows"]
    assert rows["output_rows"] == len(fixed)
    assert (
        rows["input_rows"]
        == rows["output_rows"] + rows["quarantined_rows"] + rows["removed_duplicate_rows"]
    )
    assert quarantine is not None and len(quarantine) == rows["quarantined_rows"]
    assert {"_source_row", "_reason"} <= set(quarantine.columns)
    assert audit["checks_before"]["passed"] is False and audit["checks_after"]["passed"] is True
    assert {r["rule"] for r in audit["rules"]} >= {"impute_missing", "cap_outliers"}
    assert "fill_values" in audit["repair_statistics"]
    contract = DataContract.load(
        DataContract(target=TARGET)
        .fit(read_table(files["reference"]))
        .save(files["batch"].parent / "c.json")
    )
    from mlmedic.data.checks import run_checks

    assert run_checks(fixed, contract).passed  # the written file passes, not just the frame


def test_fix_file_refuses_to_overwrite_its_input(files: dict[str, Path]) -> None:
    raw = files["batch"].read_bytes()
    with pytest.raises(ProjectError, match="refusing to overwrite the input"):
        fix_file(files["batch"], files["batch"])
    assert files["batch"].read_bytes() == raw


# ------------------------------------------------------------------ data we did not generate
def _corrupt(frame: pd.DataFrame, seed: int, target: str) -> pd.DataFrame:
    """Real defects on real data: blanks, a unit slip (x1000), a typo'd value, a re-sent row."""
    rng = np.random.default_rng(seed)
    out = frame.copy()
    features = [c for c in out.columns if c != target]
    for column in features[:5]:
        out.loc[rng.choice(len(out), 8, replace=False), column] = np.nan
    out.loc[rng.choice(len(out), 3, replace=False), features[0]] *= 1000
    out[features[1]] = out[features[1]].astype(object)
    out.loc[int(rng.integers(len(out))), features[1]] = "1,25"
    return pd.concat([out, out.iloc[[3, 4]]], ignore_index=True)


@pytest.mark.parametrize("loader", [load_breast_cancer, load_wine])
def test_real_datasets_heal_through_csv_files(tmp_path: Path, loader) -> None:  # type: ignore[no-untyped-def]
    """scikit-learn's bundled copies of the UCI breast-cancer and wine data (no download)."""
    frame = loader(as_frame=True).frame.sample(
        frac=1.0, random_state=0
    )  # files are sorted by class
    half = len(frame) // 2
    reference = frame.iloc[:half]
    batch = _corrupt(frame.iloc[half:].reset_index(drop=True), 1, "target")
    reference.to_csv(tmp_path / "ref.csv", index=False)
    batch.to_csv(tmp_path / "batch.csv", index=False)
    result, paths = fix_file(
        tmp_path / "batch.csv",
        tmp_path / "out.csv",
        reference=tmp_path / "ref.csv",
        target="target",
    )
    assert not result.first_report.passed
    assert result.passed
    audit = json.loads(paths.audit.read_text())
    assert audit["rows"]["removed_duplicate_rows"] == 2
    assert audit["rows"]["quarantined_rows"] == 1  # the '1,25' value cannot be parsed safely
    assert len(read_table(tmp_path / "out.csv")) == len(batch) - 3
