"""Retraining candidates: one model per recipe, the best on the newest labelled rows.

A monitor's retrain does not know whether production moved to another region of the same
concept (covariate shift: every labelled row still teaches the truth) or the concept itself
changed (old rows now teach the wrong answer). Each recipe bets on one of these — the newest
rows only, every row weighted by recency, the reference plus the newest rows
(``mlmedic.heal.monitor.recipes`` builds them) — and the newest labelled rows, which none of
them trained on, decide. Which recipe wins is itself a signal, recorded with the version.

Each candidate is one training of the project's trainer on every row of its set (no random
split: the time-ordered holdout is the judge); a recipe that cannot be trained (too few rows, a
single class, a trainer that takes no weights) is skipped with an event, and the others go on.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlmedic.core.errors import TrainingError
from mlmedic.data.contract import DataContract
from mlmedic.model.training import TrainResult, scored, train
from mlmedic.store.events import EventKind, EventLog, Outcome


@dataclass
class TrainingSet:
    """A recipe's rows: positions in the pool handed to ``run_pipeline`` (and their weights)."""

    recipe: str
    rows: np.ndarray
    weights: np.ndarray | None = None
    note: str = ""
    # whether the set holds the rows the champion was trained for (the reference and older
    # regimes): a model of it knows those regimes too, so their drift profiles stay known
    learns_reference: bool = True


@dataclass
class Candidate:
    """A recipe's model and its score on the holdout, or why it could not be trained."""

    recipe: str
    rows: int
    weighted: bool
    note: str = ""
    learns_reference: bool = True
    result: TrainResult | None = field(default=None, repr=False)
    error: str | None = None

    @property
    def accuracy(self) -> float | None:
        return None if self.result is None else self.result.metrics.get("accuracy")

    @property
    def score(self) -> float | None:
        """Higher is better: the accuracy, or a regression's MAE negated."""
        if self.result is None:
            return None
        found = self.result.metrics
        return -found["mae"] if "mae" in found else found.get("accuracy")

    def headline(self) -> str:
        found = self.result.metrics if self.result is not None else {}
        if "mae" in found:
            return f"MAE {found['mae']:.4g}"
        return f"accuracy {found.get('accuracy', float('nan')):.3f}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe,
            "rows": self.rows,
            "weighted": self.weighted,
            "note": self.note,
            "metrics": None if self.result is None else self.result.metrics,
            "error": self.error,
        }


def train_candidates(
    healed: pd.DataFrame,
    sets: list[TrainingSet],
    holdout: pd.DataFrame,
    contract: DataContract,
    *,
    trainer: str | None,
    retries: int,
    events: EventLog,
    say: Callable[[str], None],
    merged: list[tuple[Any, Any]] | None = None,
) -> list[Candidate]:
    """Train one candidate per set on the rows of ``healed`` (the pool after stage 1) it names,
    each scored on ``holdout``. ``merged``: (row, the row it duplicates) for the rows stage 1
    removed as duplicates — a set keeps its rows through their twins, and a weighted set adds
    their weights to the twin's (the newest recipe must not lose a row because the reference
    holds an identical one)."""
    twin = {row: first for row, first in merged or []}
    found = []
    for chosen in sets:
        rows = np.asarray([twin.get(int(r), int(r)) for r in chosen.rows], dtype=np.int64)
        present = healed.index.to_numpy()
        keep = np.isin(present, rows)
        frame = healed.loc[keep]
        weights = None
        if chosen.weights is not None:
            summed = pd.Series(chosen.weights, index=rows).groupby(level=0).sum()
            weights = summed.reindex(frame.index).fillna(0.0).to_numpy(dtype=float)
        candidate = Candidate(
            chosen.recipe, len(frame), weights is not None, chosen.note, chosen.learns_reference
        )
        with events.span(EventKind.TRAIN, f"train:{chosen.recipe}") as span:
            try:
                candidate.result = train(
                    frame,
                    contract,
                    trainer=trainer,
                    retries=retries,
                    holdout=holdout,
                    sample_weight=weights,
                )
            except TrainingError as exc:
                candidate.error = str(exc)
                span.outcome = Outcome.SKIPPED
                span.message = f"recipe {chosen.recipe} skipped: {exc}"
            else:
                span.message = (
                    f"recipe {chosen.recipe}: trained on {len(frame):,} rows"
                    + (" weighted by recency" if weights is not None else "")
                    + f", {candidate.headline()} on the {len(holdout):,} newest rows"
                )
            span.details = candidate.to_dict()
        say(f"  candidate {span.message}")
        found.append(candidate)
    return found


def choose(candidates: list[Candidate], *, target: str, confidence: float) -> Candidate:
    """The candidate with the best accuracy on the holdout (the first listed on a tie) — but
    forgetting needs evidence: a candidate that dropped the reference (``newest``) wins only
    when it is significantly better, on the same rows, than the best one that kept it (one
    window of a region or a season looks like a new concept on its own newest rows).
    TrainingError when none could be trained."""
    trained = [c for c in candidates if c.result is not None]
    if not trained:
        reasons = "; ".join(f"{c.recipe}: {c.error}" for c in candidates)
        raise TrainingError(f"no retraining recipe could be trained ({reasons})")
    best = _best(trained)
    keeping = [c for c in trained if c.learns_reference]
    if best.learns_reference or not keeping:
        return best
    kept = _best(keeping)
    assert best.result is not None and kept.result is not None
    found = best.result.task.versus(
        _correct(best.result, target), _correct(kept.result, target), confidence=confidence
    )
    best.note = f"{best.note}; against {kept.recipe}: {found.summary(best.recipe, kept.recipe)}"
    return best if found.better else kept


def _best(candidates: list[Candidate]) -> Candidate:
    best = candidates[0]
    for candidate in candidates[1:]:
        if _or_least(candidate.score) > _or_least(best.score):
            best = candidate
    return best


def _or_least(score: float | None) -> float:
    return -math.inf if score is None or score != score else score


def _correct(result: TrainResult, target: str) -> np.ndarray:
    return scored(result.model, result.holdout, target, task=result.task, naive=result.naive)[1]


@dataclass
class RetrainPlan:
    """What a monitor's retrain hands ``run_pipeline``: the training sets drawn from the pool
    (positions in it), the newest labelled rows none of them trains on (the judge), and the rows
    that show the distribution the new version will see (its drift reference)."""

    sets: list[TrainingSet]
    holdout: pd.DataFrame
    current: pd.DataFrame | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (recipe, why)
    # drift profiles of the earlier regimes the champion was trained for (newest first): kept
    # by a new version whose training set holds them too (``TrainingSet.learns_reference``)
    known: list[dict[str, Any]] = field(default_factory=list)
