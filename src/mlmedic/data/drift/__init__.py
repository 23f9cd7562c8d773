"""Drift: a reference profile per model version, and per-feature statistics of a batch against it.

The profile (fitted on a version's training data) holds, per numeric feature, the counts in
quantile bins of the reference, its moments and range, and a fixed-size reservoir sample; per
categorical feature, the counts of each category. Profiles with the same bin edges merge by
adding counts, so a large reference can be profiled partition by partition.

A batch is compared feature by feature, the way the field does it (Evidently's defaults): below
``large_sample`` rows, a test of significance (KS for numbers, chi-square for categories,
p < 0.05); from ``large_sample`` rows on, an effect size with a threshold (normalised Wasserstein
0.1 for numbers, Jensen-Shannon distance 0.1 for categories) — bare p-values flag every tiny
shift on large samples. PSI is reported beside them. Below ``min_samples`` rows the answer is
"insufficient data", not drift.

The dataset drift score weighs each drifted feature by its size and by its importance to the
model: ``score = sum(w_i * s_i over drifted features) / sum(w_i)``, capped at 1, where ``w_i`` is
the feature's permutation importance (equal weights when the version stored none) and ``s_i``
its severity — its effect size over its (calibrated) threshold, at least 1 for a drifted feature
and at most ``SEVERITY_CAP`` (3). The batch drifts when the score exceeds ``drift_threshold``
(0.5): *half of what the model relies on drifted just past its thresholds*, or a sixth of it
three times as far. Two strongly drifted features of eight with equal weights score 0.75, not
the 0.25 a share of features would give; drift in features the model ignores scores nothing.

Examples:
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> reference = pd.DataFrame({"x": rng.normal(size=5000)})
    >>> profile = ReferenceProfile().fit(reference, {"x": "numeric"})
    >>> report = compare(profile, pd.DataFrame({"x": rng.normal(1.0, size=5000)}))
    >>> report.features[0].drifted, report.score
    (True, 1.0)
"""

from __future__ import annotations

from mlmedic.data.drift.profile import (
    CURRENT_SAMPLE,
    PROFILE_FORMAT,
    CategoricalProfile,
    NumericProfile,
    ReferenceProfile,
)
from mlmedic.data.drift.statistics import SEVERITY_CAP, DriftReport, FeatureDrift, compare, psi

__all__ = [
    "CURRENT_SAMPLE",
    "PROFILE_FORMAT",
    "SEVERITY_CAP",
    "CategoricalProfile",
    "DriftReport",
    "FeatureDrift",
    "NumericProfile",
    "ReferenceProfile",
    "compare",
    "psi",
]
