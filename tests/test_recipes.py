"""A retrain's plan (issue 19): the current regime, the newest rows held out, one training set
per recipe, recency weights in data time — built from the labelled rows kept by the passes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlmedic.core.config import Settings
from mlmedic.heal.monitor import labelled
from mlmedic.heal.monitor.recipes import build, recency_weights
from mlmedic.model.performance import shift_allowance

HOUR = 3600.0
T0 = 1_700_000_000.0


def _keep(state: Path, passes: list[tuple[int, str]], rows: int = 100) -> None:
    """One labelled pass every 6 h: (its label value, its mark)."""
    for index, (value, mark) in enumerate(passes):
        frame = pd.DataFrame({"x": np.arange(rows) + 1000 * index, "y": value})
        labelled.keep(state, frame, now=T0 + index * 6 * HOUR, version=1, mark=mark)


def _settings(minimum: int = 50) -> Settings:
    settings = Settings()
    settings.self_healing.drift_detection.min_samples_for_detection = minimum
    return settings


def test_the_current_regime_is_the_newest_run_of_the_newest_kind_of_change(
    tmp_path: Path,
) -> None:
    # drift, drift, drop, drop: the regime is the two drop passes (300 rows >= 3 x 50 = 150)
    _keep(tmp_path, [(0, ""), (0, "drift"), (0, "drift"), (1, "drop"), (1, "drop")], rows=150)
    reference = pd.DataFrame({"x": np.arange(400), "y": 0})
    now = T0 + 4 * 6 * HOUR
    pool = build(tmp_path, reference, columns=["x", "y"], now=now, settings=_settings())
    assert pool is not None and pool.plan is not None
    assert pool.newest_rows == 300 and pool.production_rows == 750
    plan = pool.plan
    # the newest fifth of the regime held out, by time: the last 60 rows of the last pass
    assert len(plan.holdout) == 60
    assert plan.holdout["x"].tolist() == list(range(4090, 4150))
    assert plan.current is not None and len(plan.current) == 300
    assert plan.current["y"].eq(1).all()
    sets = {s.recipe: s for s in plan.sets}
    newest = pool.frame.iloc[sets["newest"].rows]
    assert len(newest) == 240 and newest["y"].eq(1).all() and not sets["newest"].learns_reference
    weighted = sets["recency_weighted"]
    assert len(weighted.rows) == len(pool.frame) - 60 and weighted.weights is not None
    both = pool.frame.iloc[sets["reference_plus_newest"].rows]
    assert len(both) == 400 + 240
    held = set(pool.frame.iloc[: len(pool.frame)].index[-60:])
    assert not held & set(newest.index) and not held & set(both.index)


def test_a_regime_of_drift_includes_the_drops_and_a_short_one_extends_back(tmp_path: Path) -> None:
    _keep(tmp_path, [(0, ""), (0, ""), (0, ""), (0, "drop"), (0, "drift")], rows=40)
    pool = build(
        tmp_path, None, columns=["x", "y"], now=T0 + 4 * 6 * HOUR, settings=_settings(minimum=50)
    )
    assert pool is not None
    # a drop, then drift: 80 rows, fewer than 3 x 50: extended pass by pass to 160, no further
    assert pool.newest_rows == 160 and pool.production_rows == 200
    # enough to judge on (>= 2 x 50): a plan, without the reference
    assert pool.plan is not None and len(pool.plan.holdout) == 50
    assert [s.recipe for s in pool.plan.sets] == ["newest", "recency_weighted"]
    assert pool.plan.skipped == [("reference_plus_newest", "no reference training data")]


def test_too_few_rows_of_the_regime_means_one_model_and_no_plan(tmp_path: Path) -> None:
    _keep(tmp_path, [(0, "drop")], rows=60)
    pool = build(tmp_path, None, columns=["x", "y"], now=T0, settings=_settings(minimum=50))
    assert pool is not None and pool.plan is None
    assert "fewer than 100 (2 x min_samples_for_detection)" in pool.note


def test_recency_weights_halve_every_half_life_and_the_reference_is_oldest() -> None:
    settings = Settings()  # half-life: the 24 h retraining cooldown
    now = T0 + 48 * HOUR
    seen = np.array([np.nan, T0, T0 + 24 * HOUR, now])
    weights = recency_weights(seen, now, settings)
    assert weights[1:].tolist() == pytest.approx([0.25, 0.5, 1.0])
    # the reference: one monitoring interval (6 h) older than the oldest kept row
    assert weights[0] == pytest.approx(0.5 ** (54 / 24))
    settings.self_healing.model_training.recency_half_life_hours = 6.0
    assert recency_weights(seen, now, settings)[2] == pytest.approx(0.5**4)


def test_the_shift_allowance_reads_the_newest_errors_only() -> None:
    # newest first: an old large error (the seventh) no longer widens the interval
    errors = [0.01, -0.02, 0.0, 0.01, 0.0, 0.01, 0.30]
    assert shift_allowance(errors) == pytest.approx(0.02)
    assert shift_allowance(errors, moved=0.05, drifted=False) == pytest.approx(0.02)
    assert shift_allowance(errors, moved=-0.05, drifted=True) == pytest.approx(0.05)


class _Fixed:
    """A fake model that answers class 1 on ``right`` rows of the holdout from ``start`` on and
    0 elsewhere (the holdout's labels are all 1)."""

    classes_ = np.array([0, 1])

    def __init__(self, right: int, start: int = 0) -> None:
        self.right, self.start = right, start

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        rows = np.arange(len(frame))
        return ((rows >= self.start) & (rows < self.start + self.right)).astype(int)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        ones = self.predict(frame).astype(float)
        return np.column_stack([1 - ones, ones])


def _candidate(recipe: str, right: int, *, keeps: bool, start: int = 0):  # type: ignore[no-untyped-def]
    from mlmedic.heal.candidates import Candidate
    from mlmedic.model.training import TrainResult, evaluate

    holdout = pd.DataFrame({"x": np.arange(400), "y": 1})
    model = _Fixed(right, start)
    result = TrainResult(model, evaluate(model, holdout, "y"), ["x"], holdout, 1000, "t", 0.0)
    return Candidate(recipe, 1000, False, learns_reference=keeps, result=result)


def test_forgetting_the_reference_needs_significance() -> None:
    from mlmedic.heal.candidates import choose

    kept = _candidate("recency_weighted", 300, keeps=True)
    # right on 26 rows the other is not, wrong on 20 it gets: not evidence
    close = _candidate("newest", 306, keeps=False, start=20)
    assert close.accuracy > kept.accuracy  # type: ignore[operator]
    assert choose([close, kept], target="y", confidence=0.95).recipe == "recency_weighted"
    clear = _candidate("newest", 340, keeps=False, start=10)  # 50 against 10: evidence
    assert choose([clear, kept], target="y", confidence=0.95).recipe == "newest"
    # among candidates that keep the reference, the best simply wins (the first on a tie)
    other = _candidate("reference_plus_newest", 301, keeps=True)
    assert choose([kept, other], target="y", confidence=0.95).recipe == "reference_plus_newest"
    assert choose([kept, _candidate("x", 300, keeps=True)], target="y", confidence=0.95) is kept


def test_refusals_in_a_row_are_counted_since_the_last_deployment(tmp_path: Path) -> None:
    from mlmedic.heal.monitor.history import refused_in_a_row
    from mlmedic.store.events import EventStore

    with EventStore(tmp_path / "events.db") as events:
        assert refused_in_a_row(events) == 0
        for outcome in ("failure", "failure", "success", "failure", "failure"):
            events.record("retrain", "retrain", outcome)
        assert refused_in_a_row(events) == 2
        events.record("retrain", "retrain", "success")
        assert refused_in_a_row(events) == 0
