"""A retrain's plan: the pool of rows, one training set per recipe, the newest rows held out.

The recipes (``model_training.retrain_recipes``, all three by default — three trainings):
- ``newest``: the labelled rows of the current regime only — the newest run of passes that saw
  the newest pass's kind of change (an accuracy drop; or drift, a drop included), or the newest
  pass alone, extended back pass by pass until there are ``3 x min_samples_for_detection`` rows.
  Right when the concept changed: old rows teach the wrong answer.
- ``recency_weighted``: the reference and every kept labelled row, each weighted
  ``0.5 ** (age / half-life)`` in data time (``recency_half_life_hours``; by default the
  retraining cooldown — the span a retrained version must serve before the next may replace it;
  the reference counts as one interval older than the oldest kept pass). Between the two other
  bets: recent rows lead, old ones still fill in regions the recent ones do not cover.
- ``reference_plus_newest``: the reference and the current regime's rows, unweighted. Right
  when production moved to another region of the same concept (covariate shift).

The judge: the newest fifth of the current regime's rows (at least ``min_samples_for_detection``),
held out by time — none of the candidates trains on them, and the gate scores the champion on
the same rows. Without ``2 x min_samples_for_detection`` regime rows there is nothing to judge
on: the retrain then trains one model on the reference and every kept row with a random holdout,
as ``mlmedic run`` does. The regime's rows (holdout included), as production sent them, become
the new version's drift reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlmedic.core.config import Settings
from mlmedic.heal.candidates import RetrainPlan, TrainingSet
from mlmedic.heal.monitor import labelled as store


@dataclass
class Pool:
    """The rows a retrain may learn from (reference first, then the kept production rows in
    the order they were seen), and the plan over them (None: too few new rows to judge)."""

    frame: pd.DataFrame
    plan: RetrainPlan | None
    note: str = ""
    newest_rows: int = 0  # rows of the current regime
    production_rows: int = 0  # labelled production rows in the pool


def build(
    state_dir: object,
    reference: pd.DataFrame | None,
    *,
    columns: list[str],
    now: float,
    settings: Settings,
) -> Pool | None:
    """The pool and the plan for a retrain at ``now`` (None: nothing to learn from)."""
    monitoring = settings.self_healing.monitoring
    minimum = settings.self_healing.drift_detection.min_samples_for_detection
    oldest = now - monitoring.production_rows_max_age_days * 86_400 - 0.001
    kept = store.passes(state_dir, after=oldest)  # type: ignore[arg-type]
    parts = [pd.read_parquet(p.path) for p in kept]
    production = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    origin = np.repeat(np.arange(len(parts)), [len(p) for p in parts])  # each row's pass
    if len(production) > monitoring.production_rows_max:
        production = production.tail(monitoring.production_rows_max).reset_index(drop=True)
        origin = origin[-monitoring.production_rows_max :]
    reference = None if reference is None else reference[[c for c in columns if c in reference]]
    sources = [p for p in (reference, production) if p is not None and len(p)]
    if not sources:
        return None
    frame = pd.concat(
        [p[[c for c in columns if c in p.columns]] for p in sources], ignore_index=True
    )
    offset = 0 if reference is None else len(reference)
    seen = np.concatenate(
        [np.full(offset, np.nan), production[store.SEEN_AT].to_numpy(dtype=float)]
        if len(production)
        else [np.full(offset, np.nan)]
    )
    regime = _regime(kept, origin, minimum)
    if len(regime) < 2 * minimum:
        return Pool(
            frame,
            None,
            f"{len(regime):,} labelled rows of the current regime, fewer than "
            f"{2 * minimum:,} (2 x min_samples_for_detection) to judge candidates on: one model "
            "on the reference and every kept row",
            len(regime),
            len(production),
        )
    positions = offset + regime  # regime: positions within the production rows
    held = max(minimum, len(positions) // 5)
    holdout_at, newest_at = positions[-held:], positions[:-held]
    holdout = frame.iloc[holdout_at].reset_index(drop=True)
    current = frame.iloc[positions].reset_index(drop=True)
    training = np.setdiff1d(np.arange(len(frame)), holdout_at)
    sets: list[TrainingSet] = []
    skipped: list[tuple[str, str]] = []
    for recipe in settings.self_healing.model_training.retrain_recipes:
        if recipe == "newest":
            sets.append(
                TrainingSet(
                    recipe,
                    newest_at,
                    note=f"{len(newest_at):,} newest rows",
                    learns_reference=False,
                )
            )
        elif recipe == "recency_weighted":
            weights = recency_weights(seen[training], now, settings)
            sets.append(
                TrainingSet(recipe, training, weights, note=f"{len(training):,} rows by recency")
            )
        elif reference is None:
            skipped.append((recipe, "no reference training data"))
        else:
            rows = np.concatenate([np.arange(offset), newest_at])
            sets.append(TrainingSet(recipe, rows, note=f"reference + {len(newest_at):,} newest"))
    plan = RetrainPlan(sets, holdout, current, skipped)
    return Pool(frame, plan, newest_rows=len(positions), production_rows=len(production))


def _regime(kept: list[store.Pass], origin: np.ndarray, minimum: int) -> np.ndarray:
    """Positions (within the production rows, whose passes ``origin`` gives) of the current
    regime: the newest run of passes that saw a change (or the newest pass), extended back pass
    by pass to 3 x ``minimum`` rows."""
    if not kept or not len(origin):
        return np.empty(0, dtype=int)
    sizes = np.bincount(origin, minlength=len(kept))
    kind = kept[-1].mark
    same = ("drop",) if kind == "drop" else ("drop", "drift") if kind == "drift" else ()
    in_streak = bool(same)
    chosen, start = 0, len(kept)
    for index in range(len(kept) - 1, -1, -1):
        if index < len(kept) - 1:
            in_streak = in_streak and kept[index].mark in same
            if not in_streak and chosen >= 3 * minimum:
                break
        start = index
        chosen += int(sizes[index])
    return np.flatnonzero(origin >= start)


def recency_weights(seen: np.ndarray, now: float, settings: Settings) -> np.ndarray:
    """``0.5 ** (age / half-life)``; reference rows (no time) one interval older than the
    oldest kept row."""
    interval = settings.monitoring.monitoring_interval_hours * 3600.0
    half_life = settings.self_healing.model_training.recency_half_life_hours
    cooldown = settings.retraining_cooldown_hours * 3600.0
    half = half_life * 3600.0 if half_life is not None else (cooldown or interval)
    known = seen[np.isfinite(seen)]
    oldest = float(known.min()) if len(known) else now
    ages = np.where(np.isfinite(seen), now - seen, now - oldest + interval)
    return np.power(0.5, np.maximum(ages, 0.0) / half)
