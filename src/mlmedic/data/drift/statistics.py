"""Drift statistics: a window against a reference profile, feature by feature (KS or
chi-square on small windows, normalised Wasserstein or Jensen-Shannon on large ones, PSI beside
them), and the dataset's drift score weighted by importance and severity."""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial.distance import jensenshannon

from mlmedic.core.parallel import pmap
from mlmedic.data.contract import category_keys
from mlmedic.data.drift.profile import (
    CURRENT_SAMPLE,
    CategoricalProfile,
    NumericProfile,
    ReferenceProfile,
    finite,
)

SEVERITY_CAP = 3.0  # a feature drifted further than this many thresholds counts as this many
_EPSILON = 1e-4  # smoothing of empty bins, as PSI implementations do


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two count (or share) vectors over the same bins."""
    p = np.asarray(expected, dtype=float)
    q = np.asarray(actual, dtype=float)
    p = np.maximum(p / p.sum(), _EPSILON)
    q = np.maximum(q / q.sum(), _EPSILON)
    return float(np.sum((q - p) * np.log(q / p)))


@dataclass
class FeatureDrift:
    """One feature's verdict and the numbers behind it."""

    name: str
    kind: str
    n_reference: int
    n_current: int
    test: str
    statistic: float | None
    threshold: float
    drifted: bool | None  # None: insufficient data
    psi: float | None = None
    jensen_shannon: float | None = None
    wasserstein_norm: float | None = None
    p_value: float | None = None
    weight: float = 1.0
    severity: float | None = None  # effect size / threshold (None: not tested)
    # the two distributions side by side, for a person: {"bins", "reference", "current"} (shares)
    histogram: dict[str, list[Any]] | None = None


@dataclass
class DriftReport:
    """Per-feature results and the dataset's drift score."""

    features: list[FeatureDrift]
    score: float | None
    threshold: float
    drift: bool
    weighted: bool
    n_current: int
    insufficient: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def drifted_features(self) -> list[str]:
        return [f.name for f in self.features if f.drifted]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        if self.insufficient or self.score is None:
            return f"insufficient data ({self.n_current} rows)"
        weighting = "importance-weighted " if self.weighted else ""
        return (
            f"{weighting}drift score {self.score:.2f} ({len(self.drifted_features)} of "
            f"{len([f for f in self.features if f.drifted is not None])} features drifted) "
            f"{'>' if self.drift else '<='} {self.threshold}"
        )


def compare(
    profile: ReferenceProfile,
    batch: pd.DataFrame | ReferenceProfile,
    *,
    threshold: float = 0.5,
    min_samples: int = 100,
    large_sample: int = 1000,
    numeric_threshold: float = 0.1,
    categorical_threshold: float = 0.1,
    p_value: float = 0.05,
    weights: dict[str, float] | None = None,
) -> DriftReport:
    """Compare ``batch`` with the reference profile, feature by feature. ``batch`` is the
    window's rows, or the window's profile (``profile.partition`` of each part, merged: what a
    Dask cluster computes for a window too big for one process)."""

    def column(name: str, kind: str) -> Any:
        if isinstance(batch, ReferenceProfile):
            return batch.numeric_[name] if kind == "numeric" else batch.categorical_[name]
        return batch[name]

    def one(item: tuple[str, str]) -> FeatureDrift:
        name, kind = item
        if kind == "numeric":
            result = _numeric(
                name,
                profile.numeric_[name],
                column(name, kind),
                min_samples,
                large_sample,
                numeric_threshold,
                p_value,
            )
        else:
            result = _categorical(
                name,
                profile.categorical_[name],
                column(name, kind),
                min_samples,
                large_sample,
                categorical_threshold,
                p_value,
            )
        result.weight = max(0.0, float(weights.get(name, 0.0))) if weights else 1.0
        base = numeric_threshold if kind == "numeric" else categorical_threshold
        limit = profile.threshold(name, base, result.n_current)
        effect = result.wasserstein_norm if kind == "numeric" else result.jensen_shannon
        if profile.thresholds_.get(name) is not None and result.drifted:
            # beyond what windows of the reference itself show, or not drift at all
            if effect is not None and effect <= limit:
                result.drifted = False
            if result.test in ("wasserstein_norm", "jensen_shannon"):
                result.threshold = limit
        if result.drifted is not None:
            size = (effect or 0.0) / limit if limit > 0 else SEVERITY_CAP
            result.severity = float(max(1.0, size) if result.drifted else size)
        return result

    if isinstance(batch, ReferenceProfile):
        names, rows = set(batch.kinds_), batch.rows()
        present = [(n, k) for n, k in profile.kinds_.items() if n in names]
        results = [one(item) for item in present]  # counts only: no data to spread
    else:
        rows = len(batch)
        present = [(n, k) for n, k in profile.kinds_.items() if n in batch.columns]
        results = pmap(one, present, rows=rows)  # columns on two threads for large batches
    tested = [r for r in results if r.drifted is not None]
    weighted = bool(weights) and sum(r.weight for r in tested) > 0
    if not tested:
        return DriftReport(results, None, threshold, False, weighted, rows, insufficient=True)
    if not weighted:
        for r in results:
            r.weight = 1.0
    score = _score(tested)
    return DriftReport(results, score, threshold, score > threshold, weighted, rows)


def _score(tested: list[FeatureDrift]) -> float:
    """The weighted, magnitude-aware drift score of the tested features (module docstring)."""
    total = sum(r.weight for r in tested)
    moved = sum(r.weight * min(SEVERITY_CAP, r.severity or 1.0) for r in tested if r.drifted)
    return float(min(1.0, moved / total)) if total > 0 else 0.0


def _numeric(
    name: str,
    reference: NumericProfile,
    column: pd.Series | NumericProfile,
    min_samples: int,
    large_sample: int,
    threshold: float,
    alpha: float,
) -> FeatureDrift:
    """One numeric feature: from the window's values, or from its profile (merged from
    partitions: the bin counts are exact, the distance and KS use its reservoir sample)."""
    if isinstance(column, NumericProfile):
        n = column.n
        current = np.asarray(column.counts)
        subset = ks_values = np.asarray(column.sample)
    else:
        values = finite(column)
        n = len(values)
        edges = np.asarray(reference.edges)
        current = np.bincount(
            np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1
        )
        # Wasserstein from samples: the reference's reservoir (all of it when it is small)
        # against at most CURRENT_SAMPLE current values. Bin-based estimates overstate heavy
        # tails badly.
        subset = ks_values = values
        if n > CURRENT_SAMPLE:
            subset = values[np.random.default_rng(0).integers(0, n, CURRENT_SAMPLE)]
    base = FeatureDrift(name, "numeric", reference.n, n, "", None, threshold, None)
    if n < min_samples or reference.n == 0:
        base.test = "insufficient data"
        return base
    expected = np.asarray(reference.counts, dtype=float)
    base.histogram = _shares(_bin_labels(reference.edges), expected, current)
    base.psi = psi(expected, current)
    base.jensen_shannon = float(jensenshannon(expected / expected.sum(), current / current.sum()))
    scale = reference.std if reference.std > 0 else 1.0
    distance = stats.wasserstein_distance(reference.sample, subset)
    base.wasserstein_norm = float(distance / scale)
    if n < large_sample:
        test = stats.ks_2samp(reference.sample, ks_values)
        base.test, base.statistic, base.p_value = "ks", float(test.statistic), float(test.pvalue)
        base.threshold = alpha
        base.drifted = bool(test.pvalue < alpha)
    else:
        base.test, base.statistic = "wasserstein_norm", base.wasserstein_norm
        base.drifted = bool(base.wasserstein_norm > threshold)
    return base


def _categorical(
    name: str,
    reference: CategoricalProfile,
    column: pd.Series | CategoricalProfile,
    min_samples: int,
    large_sample: int,
    threshold: float,
    alpha: float,
) -> FeatureDrift:
    if isinstance(column, CategoricalProfile):
        n, current_counts = column.n, dict(column.counts)
    else:
        keys = category_keys(column.dropna())
        n = len(keys)
        current_counts = {str(k): int(v) for k, v in keys.value_counts().items()}
    base = FeatureDrift(name, "categorical", reference.n, n, "", None, threshold, None)
    if n < min_samples or reference.n == 0:
        base.test = "insufficient data"
        return base
    categories = sorted(set(reference.counts) | set(current_counts))
    expected = np.array([reference.counts.get(c, 0) for c in categories], dtype=float)
    observed = np.array([current_counts.get(c, 0) for c in categories], dtype=float)
    base.histogram = _category_shares(categories, expected, observed)
    base.psi = psi(expected, observed)
    base.jensen_shannon = float(jensenshannon(expected / expected.sum(), observed / observed.sum()))
    if n < large_sample:
        shares = np.maximum(expected / expected.sum(), _EPSILON)
        shares = shares / shares.sum()
        test = stats.chisquare(observed, shares * n)
        base.test, base.statistic, base.p_value = (
            "chi_square",
            float(test.statistic),
            float(test.pvalue),
        )
        base.threshold = alpha
        base.drifted = bool(test.pvalue < alpha)
    else:
        base.test, base.statistic = "jensen_shannon", base.jensen_shannon
        base.drifted = bool(base.jensen_shannon > threshold)
    return base


HISTOGRAM_CATEGORIES = 12  # the most frequent in either window; the rest are "other"


def _bin_labels(edges: list[float]) -> list[str]:
    cuts = [f"{e:.3g}" for e in edges]
    if not cuts:
        return ["all"]
    inner = (f"{a} to {b}" for a, b in itertools.pairwise(cuts))
    return [f"< {cuts[0]}", *inner, f"≥ {cuts[-1]}"]


def _shares(labels: list[str], reference: np.ndarray, current: np.ndarray) -> dict[str, list[Any]]:
    def norm(counts: np.ndarray) -> list[float]:
        total = float(np.sum(counts))
        return [round(float(c) / total, 4) if total else 0.0 for c in counts]

    return {"bins": labels, "reference": norm(reference), "current": norm(current)}


def _category_shares(
    categories: list[str], reference: np.ndarray, current: np.ndarray
) -> dict[str, list[Any]]:
    order = np.argsort(-(reference / max(reference.sum(), 1) + current / max(current.sum(), 1)))
    keep, rest = order[:HISTOGRAM_CATEGORIES], order[HISTOGRAM_CATEGORIES:]
    labels = [categories[i] for i in keep] + (["other"] if len(rest) else [])
    pick = [*keep, *([] if not len(rest) else [None])]

    def take(counts: np.ndarray) -> np.ndarray:
        return np.array([counts[rest].sum() if i is None else counts[i] for i in pick])

    return _shares(labels, take(reference), take(current))
