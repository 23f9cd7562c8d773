"""Reference profiles: mergeable per-feature summaries of a version's reference data (quantile
bins, moments, a reservoir sample; category counts), fitted like an estimator, merged across
partitions, and calibrated on windows of the reference itself."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial.distance import jensenshannon

from mlmedic.data.contract import category_keys

PROFILE_FORMAT = 1
CURRENT_SAMPLE = 100_000


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
                values = finite(frame[name])
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
                values = finite(column)
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
                    effect = _wasserstein_norm(self.numeric_[name], finite(window), rng)
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


def finite(column: pd.Series) -> np.ndarray:
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
    return values[np.isfinite(values)]


# ---------------------------------------------------------------------- statistics
