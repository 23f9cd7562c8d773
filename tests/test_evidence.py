"""The significance tests behind every automatic action (issue 19: evidence has a size)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mlmedic.core.evidence import drop, paired


def test_a_drop_counts_the_validation_holdouts_own_error() -> None:
    exact = drop(0.90, 2000, 0.92, 0, confidence=0.95)  # validation taken as exact
    noisy = drop(0.90, 2000, 0.92, 500, confidence=0.95)  # ... or measured on 500 rows
    assert exact.significant and not noisy.significant
    assert exact.p_value < noisy.p_value
    assert exact.size == pytest.approx(0.02)


def test_a_drop_is_one_sided_and_its_p_value_is_the_z_test() -> None:
    up = drop(0.95, 5000, 0.92, 10_000, confidence=0.95)
    assert not up.significant and up.p_value > 0.5  # better than validation: never a drop
    found = drop(0.89, 5000, 0.92, 10_000, confidence=0.95)
    a, b = (0.89 * 5000 + 1) / 5002, (0.92 * 10_000 + 1) / 10_002  # Agresti-Caffo
    se = np.sqrt(a * (1 - a) / 5002 + b * (1 - b) / 10_002)
    assert found.p_value == pytest.approx(stats.norm.sf((b - a) / se))
    assert drop(0.89, 0, 0.92, 100, confidence=0.95).p_value == 1.0  # no rows: no evidence
    assert drop(1.0, 50, 1.0, 0, confidence=0.95).significant is False
    # a validation of 1.0 on 25 rows is not exact: 0.95 on 61 rows is no evidence of a drop
    assert not drop(0.951, 61, 1.0, 25, confidence=0.95).significant


def test_paired_is_mcnemar_in_both_directions() -> None:
    a = np.array([1] * 30 + [0] * 10 + [1] * 50 + [0] * 10, dtype=bool)
    b = np.array([0] * 30 + [1] * 10 + [1] * 50 + [0] * 10, dtype=bool)
    result = paired(a, b, confidence=0.95)
    assert (result.a_only, result.b_only) == (30, 10)
    assert result.p_a_better == pytest.approx(
        stats.binomtest(30, 40, 0.5, alternative="greater").pvalue
    )
    assert result.better and not result.worse
    swapped = paired(b, a, confidence=0.95)
    assert swapped.worse and not swapped.better
    assert swapped.difference == pytest.approx(-result.difference)
    same = paired(a, a, confidence=0.95)
    assert not same.better and not same.worse and same.p_a_better == 1.0
    with pytest.raises(ValueError, match="same rows"):
        paired(a, b[:-1], confidence=0.95)


def test_the_confidence_level_decides() -> None:
    a = np.array([1] * 16 + [0] * 8 + [1] * 70, dtype=bool)
    b = np.array([0] * 16 + [1] * 8 + [1] * 70, dtype=bool)
    p = paired(a, b, confidence=0.95).p_a_better
    assert 0.05 < p < 0.1
    assert paired(a, b, confidence=0.90).better and not paired(a, b, confidence=0.95).better
