"""The strategies a replay compares mlmedic with, scored on the same windows.

- ``never heal``: the first model throughout;
- ``retrain every window``: before each window, a model of the reference and every label known
  by then;
- each retraining recipe alone (``newest``, ``recency_weighted``, ``reference_plus_newest``,
  as ``mlmedic.heal.monitor.recipes`` defines them), retrained before every window;
- ``oracle``: on each window, the best of all of the above in hindsight — what a policy that
  always picked the right recipe at the right time would have scored.

An action that scores like *never heal* is not healing, whatever threshold it passed; a policy
close to the oracle with a fraction of the retrains is.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import pandas as pd

from mlmedic.core.config import Settings
from mlmedic.core.errors import TrainingError
from mlmedic.data.contract import DataContract
from mlmedic.heal.monitor.recipes import recency_weights
from mlmedic.model.tasks import task_of
from mlmedic.model.training import train

NEVER = "never heal"
EVERY = "retrain every window"
ORACLE = "oracle"
RECIPES = ("newest", "recency_weighted", "reference_plus_newest")


class Baselines:
    """The baseline models in force for the next window, retrained as labels arrive."""

    def __init__(
        self,
        first: Any,
        reference: pd.DataFrame,
        contract: DataContract,
        settings: Settings,
        *,
        recipes: bool,
    ) -> None:
        self.reference = reference
        self.contract = contract
        self.settings = settings
        self.names = [NEVER, EVERY, *(RECIPES if recipes else ())]
        self.models = {name: first for name in self.names}

    def score(self, window: pd.DataFrame, accuracy: Any) -> dict[str, float | None]:
        """Each strategy's accuracy on ``window`` (``accuracy(model, rows)``), and the oracle's."""
        scores = {name: accuracy(model, window) for name, model in self.models.items()}
        known = [v for v in scores.values() if v is not None]
        # the best in hindsight: the highest accuracy, or a regression's lowest error
        scores[ORACLE] = task_of(self.contract.task).best(known) if known else None
        return scores

    def learn(self, known: pd.DataFrame, seen: np.ndarray, now: float) -> None:
        """Retrain every baseline but *never heal* on the labels ``known`` by ``now`` (seen at
        ``seen``, oldest first)."""

        minimum = self.settings.self_healing.drift_detection.min_samples_for_detection
        newest = _newest(seen, 3 * minimum)
        sets: dict[str, tuple[pd.DataFrame, np.ndarray | None]] = {
            EVERY: (pd.concat([self.reference, known], ignore_index=True), None)
        }
        if len(self.names) > 2:
            everything = pd.concat([self.reference, known], ignore_index=True)
            times = np.concatenate([np.full(len(self.reference), np.nan), seen])
            sets["newest"] = (known.iloc[newest], None)
            sets["recency_weighted"] = (everything, recency_weights(times, now, self.settings))
            sets["reference_plus_newest"] = (
                pd.concat([self.reference, known.iloc[newest]], ignore_index=True),
                None,
            )
        target = self.contract.target
        for name, (frame, weights) in sets.items():
            labelled = frame[target].notna().to_numpy()  # a row without its label teaches nothing
            frame = frame.loc[labelled]
            weights = None if weights is None else weights[labelled]
            # too few rows yet (or one class): the model in force stays
            with contextlib.suppress(TrainingError):
                self.models[name] = train(
                    frame, self.contract, retries=0, sample_weight=weights
                ).model


def _newest(seen: np.ndarray, rows: int) -> np.ndarray:
    """Positions of the newest passes' rows (whole passes) until there are ``rows`` of them."""
    if not len(seen):
        return np.empty(0, dtype=int)
    moments = np.unique(seen)[::-1]
    chosen = 0
    first = moments[0]
    for moment in moments:
        first = moment
        chosen += int(np.sum(seen == moment))
        if chosen >= rows:
            break
    return np.flatnonzero(seen >= first)
