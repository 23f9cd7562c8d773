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

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial.distance import jensenshannon

from mlmedic.data.contract import category_keys
from mlmedic.parallel import pmap

PROFILE_FORMAT = 1
CURRENT_SAMPLE = 100_000
SEVERITY_CAP = 3.0  # a feature drifted further than this many thresholds counts as this many
_EPSILON = 1e-4  # smoothing of empty bins, as PSI implementations do


@dataclass
class NumericProfile:
    edges: list[float]  # interior cut points; len(edges) + 1 bins, the outer ones open-ended
    counts: list[int]
    n: int
    missing: int
    total: float
    total_sq: float
    minimum: float
    maximum: float
    sample: list[float]

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else float("nan")

    @property
    def std(self) -> float:
        if self.n < 2:
            return float("nan")
        variance = (self.total_sq - self.total**2 / self.n) / self.n
        return math.sqrt(max(variance, 0.0))


@dataclass
class CategoricalProfile:
    counts: dict[str, int]
    n: int
    missing: int


class ReferenceProfile:
    """Mergeable per-feature summaries of reference data (fit like an estimator)."""

    def __init__(self, *, bins: int = 20, sample_size: int = 10_000, seed: int = 0) -> None:
        self.bins = bins
        self.sample_size = sample_size
        self.seed = seed
        # per-feature effect-size thresholds calibrated on windows of the reference itself
        self.thresholds_: dict[str, float] = {}
        self.window_rows_: int | None = None

    # ------------------------------------------------------------------ fitting
    def fit(self, frame: pd.DataFrame, kinds: dict[str, str]) -> ReferenceProfile:
        """Learn bin edges and counts from ``frame``; ``kinds`` maps features to
        ``numeric``/``categorical``."""
        self.kinds_ = dict(kinds)
        self.edges_: dict[str, list[float]] = {}
        for name, kind in kinds.items():
            if kind == "numeric":
                values = _finite(frame[name])
                quantiles = (
                    np.quantile(values, np.linspace(0, 1, self.bins + 1)[1:-1])
                    if len(values)
                    else np.empty(0)
                )
                self.edges_[name] = sorted({float(q) for q in quantiles})
        self._count(frame)
        return self

    def partition(self, frame: pd.DataFrame) -> ReferenceProfile:
        """A profile of ``frame`` with this profile's bin edges (so the two can be merged)."""
        other = ReferenceProfile(bins=self.bins, sample_size=self.sample_size, seed=self.seed)
        other.kinds_ = dict(self.kinds_)
        other.edges_ = {k: list(v) for k, v in self.edges_.items()}
        other._count(frame)
        return other

    def _count(self, frame: pd.DataFrame) -> None:
        rng = np.random.default_rng(self.seed)
        self.numeric_: dict[str, NumericProfile] = {}
        self.categorical_: dict[str, CategoricalProfile] = {}
        for name, kind in self.kinds_.items():
            column = frame[name]
            if kind == "numeric":
                values = _finite(column)
                edges = np.asarray(self.edges_[name])
                counts = np.bincount(
                    np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1
                )
                take = min(self.sample_size, len(values))
                sample = rng.choice(values, size=take, replace=False) if take else values
                self.numeric_[name] = NumericProfile(
                    edges=[float(e) for e in edges],
                    counts=[int(c) for c in counts],
                    n=len(values),
                    missing=int(len(column) - len(values)),
                    total=float(values.sum()),
                    total_sq=float(np.square(values).sum()),
                    minimum=float(values.min()) if len(values) else float("nan"),
                    maximum=float(values.max()) if len(values) else float("nan"),
                    sample=[float(v) for v in np.sort(sample)],
                )
            else:
                keys = category_keys(column.dropna())
                counts_series = keys.value_counts()
                self.categorical_[name] = CategoricalProfile(
                    counts={str(k): int(v) for k, v in counts_series.items()},
                    n=len(keys),
                    missing=int(column.isna().sum()),
                )

    def rows(self) -> int:
        """How many rows the profile describes (present or missing, in any feature)."""
        counts = [p.n + p.missing for p in self.numeric_.values()]
        counts += [p.n + p.missing for p in self.categorical_.values()]
        return max(counts, default=0)

    def merge(self, other: ReferenceProfile) -> ReferenceProfile:
        """The profile of both partitions together (same features and bin edges required)."""
        if self.kinds_ != other.kinds_ or self.edges_ != other.edges_:
            raise ValueError("profiles with different features or bin edges cannot be merged")
        merged = ReferenceProfile(bins=self.bins, sample_size=self.sample_size, seed=self.seed)
        merged.kinds_ = dict(self.kinds_)
        merged.edges_ = {k: list(v) for k, v in self.edges_.items()}
        merged.numeric_ = {}
        merged.categorical_ = {}
        for name, a in self.numeric_.items():
            b = other.numeric_[name]
            n = a.n + b.n
            # a uniform sample of the union: from each side in proportion to the rows it stands
            # for, uniformly within it (each side's sample is uniform over its rows). A weighted
            # draw without replacement over the pooled values would over-represent the smaller
            # side, and one fixed seed for every merge would pick the same sorted positions at
            # each level of a merge tree.
            take = min(self.sample_size, len(a.sample) + len(b.sample))
            from_a = min(len(a.sample), round(take * a.n / n)) if n else 0
            from_b = min(len(b.sample), take - from_a)
            from_a = min(len(a.sample), take - from_b)
            rng = np.random.default_rng([self.seed, a.n, b.n, len(a.sample), len(b.sample)])
            chosen = np.concatenate(
                [
                    rng.choice(np.asarray(a.sample), size=from_a, replace=False),
                    rng.choice(np.asarray(b.sample), size=from_b, replace=False),
                ]
            )
            merged.numeric_[name] = NumericProfile(
                edges=list(a.edges),
                counts=[x + y for x, y in zip(a.counts, b.counts, strict=True)],
                n=n,
                missing=a.missing + b.missing,
                total=a.total + b.total,
                total_sq=a.total_sq + b.total_sq,
                minimum=float(np.nanmin([a.minimum, b.minimum])),
                maximum=float(np.nanmax([a.maximum, b.maximum])),
                sample=[float(v) for v in np.sort(chosen)],
            )
        for name, first in self.categorical_.items():
            second = other.categorical_[name]
            counts: dict[str, int] = dict(first.counts)
            for key, value in second.counts.items():
                counts[key] = counts.get(key, 0) + value
            merged.categorical_[name] = CategoricalProfile(
                counts=counts, n=first.n + second.n, missing=first.missing + second.missing
            )
        return merged

    # ------------------------------------------------------------------ calibration
    def calibrate(
        self,
        frame: pd.DataFrame,
        window_rows: int,
        *,
        numeric_threshold: float = 0.1,
        categorical_threshold: float = 0.1,
        max_windows: int = 40,
    ) -> ReferenceProfile:
        """Learn how far windows of the reference itself stray from it.

        ``frame`` (the reference, in its own row order: time order, when it has one) is cut into
        half-overlapping windows of ``window_rows`` (at most ``max_windows``); for each feature,
        the effect size of every window against the profile is computed (normalised
        Wasserstein, Jensen-Shannon), and the feature's threshold becomes the largest of the
        default, the largest window's effect and mean + 3 sigma of them (as NannyML derives
        thresholds from reference chunks). Seasons and other natural variation in the reference
        then never read as drift. Needs at least two windows; otherwise the profile stays
        uncalibrated.
        """
        n = len(frame)
        if window_rows < 1 or n < 2 * window_rows:
            return self
        # half-overlapping windows: a monitored window rarely starts where a calibration window
        # does, and one that straddles two of them must not look new (a seasonal reference
        # alarmed against itself on the rainfall table)
        starts = list(range(0, n - window_rows + 1, max(1, window_rows // 2)))
        if len(starts) > max_windows:
            starts = [starts[int(i)] for i in np.linspace(0, len(starts) - 1, max_windows)]
        rng = np.random.default_rng(self.seed)
        for name, kind in self.kinds_.items():
            if name not in frame.columns:
                continue
            effects = []
            for start in starts:
                window = frame[name].iloc[start : start + window_rows]
                if kind == "numeric":
                    effect = _wasserstein_norm(self.numeric_[name], _finite(window), rng)
                else:
                    effect = _jensen_shannon(self.categorical_[name], window)
                if effect is not None and math.isfinite(effect):
                    effects.append(effect)
            if len(effects) < 2:
                continue
            base = numeric_threshold if kind == "numeric" else categorical_threshold
            spread = float(np.mean(effects) + 3 * np.std(effects))
            self.thresholds_[name] = float(max(base, max(effects), spread))
        self.window_rows_ = window_rows
        return self

    def threshold(self, name: str, base: float, rows: int) -> float:
        """The effect-size threshold for ``name`` on a window of ``rows`` rows: the calibrated
        one (scaled up for windows smaller than the calibration's, whose sampling noise is
        larger), never below ``base``."""
        calibrated = self.thresholds_.get(name)
        if calibrated is None or not self.window_rows_:
            return base
        scale = math.sqrt(self.window_rows_ / rows) if 0 < rows < self.window_rows_ else 1.0
        return max(base, calibrated * scale)

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PROFILE_FORMAT,
            "params": {"bins": self.bins, "sample_size": self.sample_size, "seed": self.seed},
            "kinds": self.kinds_,
            "numeric": {k: asdict(v) for k, v in self.numeric_.items()},
            "categorical": {k: asdict(v) for k, v in self.categorical_.items()},
            "calibration": {"window_rows": self.window_rows_, "thresholds": self.thresholds_},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceProfile:
        profile = cls(**data["params"])
        profile.kinds_ = dict(data["kinds"])
        profile.numeric_ = {k: NumericProfile(**v) for k, v in data["numeric"].items()}
        profile.categorical_ = {k: CategoricalProfile(**v) for k, v in data["categorical"].items()}
        profile.edges_ = {k: list(v.edges) for k, v in profile.numeric_.items()}
        calibration = data.get("calibration") or {}
        profile.window_rows_ = calibration.get("window_rows")
        profile.thresholds_ = {
            k: float(v) for k, v in (calibration.get("thresholds") or {}).items()
        }
        return profile

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict()), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> ReferenceProfile:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def _wasserstein_norm(
    reference: NumericProfile, values: np.ndarray, rng: np.random.Generator
) -> float | None:
    """Normalised Wasserstein distance of ``values`` from the reference's reservoir sample."""
    if not len(values) or not reference.sample:
        return None
    if len(values) > CURRENT_SAMPLE:
        values = values[rng.integers(0, len(values), CURRENT_SAMPLE)]
    scale = reference.std if reference.std > 0 else 1.0
    return float(stats.wasserstein_distance(reference.sample, values) / scale)


def _jensen_shannon(reference: CategoricalProfile, column: pd.Series) -> float | None:
    keys = category_keys(column.dropna())
    if not len(keys) or not reference.counts:
        return None
    counts = keys.value_counts()
    categories = sorted(set(reference.counts) | {str(k) for k in counts.index})
    expected = np.array([reference.counts.get(c, 0) for c in categories], dtype=float)
    observed = np.array([int(counts.get(c, 0)) for c in categories], dtype=float)
    return float(jensenshannon(expected / expected.sum(), observed / observed.sum()))


def _finite(column: pd.Series) -> np.ndarray:
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
    return values[np.isfinite(values)]


# ---------------------------------------------------------------------- statistics
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
        values = _finite(column)
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
