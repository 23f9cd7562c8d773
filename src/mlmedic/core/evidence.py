"""Evidence has a size: the significance tests behind every automatic action.

Two questions recur in the loop, and each gets one test here:
- *Is this window's accuracy below what the model showed at validation?* — a one-sided test of
  two proportions (the window's labelled rows against the validation holdout, Agresti-Caffo
  adjusted), used by the policy for a drop (``drop``).
- *Is model A better than model B on the same rows?* — McNemar's exact test on the rows where
  exactly one of them is right (``paired``), used by the gate (a candidate against the champion),
  by the choice between retraining recipes, and to undo a heal that hurts.

A result is significant when its one-sided p-value is below ``1 - confidence``
(``model_validation.evidence_confidence``, 0.95). An effect size (``performance_degradation_
threshold``) is a floor beside the test, never the test itself: on 50 rows a 5-point drop is
noise, on 5,000 a 3-point drop is not.

Examples:
    >>> drop(0.89, 5000, 0.92, 10000, confidence=0.95).significant
    True
    >>> drop(0.89, 50, 0.92, 10000, confidence=0.95).significant
    False
    >>> import numpy as np
    >>> a = np.array([1] * 90 + [0] * 10, dtype=bool)
    >>> b = np.array([1] * 70 + [0] * 30, dtype=bool)
    >>> paired(a, b, confidence=0.95).better
    True
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Shortfall:
    """A window's score against validation's, in the direction that hurts (an accuracy
    below, a regression's MAE above): the one-sided p, and the size of the harm — accuracy
    points, or the MAE's rise as a share of validation's (``tasks.regression.rise``)."""

    observed: float
    rows: int
    expected: float
    expected_rows: int
    p_value: float
    significant: bool
    size: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def drop(
    observed: float, rows: int, expected: float, expected_rows: int, *, confidence: float
) -> Shortfall:
    """Whether ``observed`` (accuracy on ``rows`` labelled rows) is significantly below
    ``expected`` (on ``expected_rows`` validation rows; 0: taken as exact): a one-sided z-test of
    two proportions, Agresti-Caffo adjusted (one right and one wrong row added to each side), so
    that a proportion measured at 1.0 on a few rows keeps its uncertainty — a retrained
    version's validation can rest on a small holdout of the newest rows."""
    if rows <= 0 or not math.isfinite(observed) or not math.isfinite(expected):
        return Shortfall(observed, rows, expected, expected_rows, 1.0, False, expected - observed)
    seen = (observed * rows + 1) / (rows + 2)
    variance = seen * (1 - seen) / (rows + 2)
    wanted = expected
    if expected_rows > 0:
        wanted = (expected * expected_rows + 1) / (expected_rows + 2)
        variance += wanted * (1 - wanted) / (expected_rows + 2)
    gap = wanted - seen
    p = float(stats.norm.sf(gap / math.sqrt(variance)))
    significant = p < 1.0 - confidence
    return Shortfall(observed, rows, expected, expected_rows, p, significant, expected - observed)


class OneSided:
    """What a paired comparison of A and B answers, whatever it tested: A significantly better,
    significantly worse (from its ``p_a_better``, ``p_b_better`` and ``confidence``)."""

    p_a_better: float
    p_b_better: float
    confidence: float

    @property
    def difference(self) -> float:
        raise NotImplementedError

    def summary(self, a: str = "A", b: str = "B") -> str:
        """One line of the numbers, naming A and B."""
        raise NotImplementedError

    @property
    def better(self) -> bool:
        """A is significantly better than B."""
        return self.p_a_better < 1.0 - self.confidence

    @property
    def worse(self) -> bool:
        """A is significantly worse than B."""
        return self.p_b_better < 1.0 - self.confidence

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "difference": self.difference}  # type: ignore[call-overload]


@dataclass(frozen=True)
class Paired(OneSided):
    """Two models on the same rows: accuracies, the discordant counts, and one-sided p-values
    of McNemar's exact test in each direction."""

    rows: int
    accuracy_a: float
    accuracy_b: float
    a_only: int  # rows A gets right and B wrong
    b_only: int  # rows B gets right and A wrong
    p_a_better: float
    p_b_better: float
    confidence: float

    @property
    def difference(self) -> float:
        return self.accuracy_a - self.accuracy_b

    def summary(self, a: str = "A", b: str = "B") -> str:
        return (
            f"{a} {self.accuracy_a:.3f} vs {b} {self.accuracy_b:.3f} on the same {self.rows:,} "
            f"rows ({self.a_only:,} only {a} gets right, {self.b_only:,} only {b}; "
            f"p = {min(self.p_a_better, self.p_b_better):.3g})"
        )


def paired(correct_a: np.ndarray, correct_b: np.ndarray, *, confidence: float) -> Paired:
    """McNemar's exact test of ``correct_a`` against ``correct_b`` (per-row correctness of two
    models on the same rows)."""
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError("paired() needs the two models' correctness on the same rows")
    rows = len(a)
    a_only = int(np.sum(a & ~b))
    b_only = int(np.sum(~a & b))
    discordant = a_only + b_only
    if discordant == 0:
        p_a = p_b = 1.0
    else:
        p_a = float(stats.binomtest(a_only, discordant, 0.5, alternative="greater").pvalue)
        p_b = float(stats.binomtest(b_only, discordant, 0.5, alternative="greater").pvalue)
    return Paired(
        rows=rows,
        accuracy_a=float(a.mean()) if rows else float("nan"),
        accuracy_b=float(b.mean()) if rows else float("nan"),
        a_only=a_only,
        b_only=b_only,
        p_a_better=p_a,
        p_b_better=p_b,
        confidence=confidence,
    )
