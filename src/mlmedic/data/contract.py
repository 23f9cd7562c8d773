"""The data contract: what good data looks like, learned from reference data.

Per column: its kind (numeric, categorical, datetime, text), missing rate, quantiles and IQR
fences of numeric columns, the category set of categorical ones. Fitted like a scikit-learn
estimator (parameters in the constructor, learned state in ``*_`` attributes after ``fit``) and
saved as JSON, so a model version can carry the contract it was trained under.

Examples:
    >>> import pandas as pd
    >>> reference = pd.DataFrame({"x": [1.0, 2, 3, 4] * 3, "y": [0, 1, 0, 1] * 3})
    >>> contract = DataContract(target="y").fit(reference)
    >>> contract.columns_["x"].kind, contract.columns_["y"].categories
    ('numeric', ['0', '1'])
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from mlmedic.core.errors import ContractError
from mlmedic.core.jsonvalues import plain
from mlmedic.core.labels import label_key

Kind = Literal["numeric", "categorical", "datetime", "text"]
CONTRACT_FORMAT = 1
# keys contracts saved before #20 carry and nothing reads (category and code frequencies, a
# date column's range): accepted on load and dropped
_RETIRED = frozenset({"frequencies", "earliest", "latest"})
UNSEEN = "__unseen__"
TEXT_MISSING = "__missing__"
MIN_CONTRACT_ROWS = 10  # fewer rows say nothing about ranges, categories or missing rates
_MIXED_SHARE = 0.2  # a measurement column this numeric, and no more, is a broken column
_PARSE_SHARE = 0.9  # share of non-null values that must parse for a column to take that type


@dataclass
class ColumnSpec:
    """What the contract knows of one column."""

    name: str
    kind: Kind
    dtype: str
    missing_rate: float
    is_target: bool = False
    integer: bool = False
    codes: bool = False  # integers with few distinct values: coded answers, never outliers
    # numeric
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    quantiles: dict[str, float] = field(default_factory=dict)
    lower_fence: float | None = None
    upper_fence: float | None = None
    outlier_rate: float = 0.0
    # categorical / text
    categories: list[str] = field(default_factory=list)
    mode: Any = None
    # datetime (ISO string)
    median_time: str | None = None

    @property
    def median(self) -> float | None:
        return self.quantiles.get("0.5")


# an integer column with at most this many distinct values is a code (answers of a survey, a
# rating, a class number): its values are never outliers, and identical rows can be natural
CODE_LEVELS = 20


def allowed_count(n_rows: int, rate: float) -> int:
    """How many hits a batch of ``n_rows`` may have at a reference ``rate`` (3-sigma binomial)."""
    if rate <= 0.0 or n_rows == 0:
        return 0
    expected = n_rows * rate
    return math.floor(expected + 3.0 * math.sqrt(expected * (1.0 - min(rate, 1.0))))


def category_keys(series: pd.Series) -> pd.Series:
    """Comparable string keys for category values, by the one rule of ``labels.label_key``:
    1, 1.0 and '1' all become '1'; True stays 'True'; missing values stay missing. Blank text,
    which names no label, is a category of its own here (``""``), as the reference saw it.

    >>> category_keys(pd.Series([1, "1.0", True, " a ", ""])).tolist()
    ['1', '1', 'True', 'a', '']
    """
    return series.map(_category_key, na_action="ignore")


def _category_key(value: Any) -> str | None:
    key = label_key(value)
    return "" if key is None and isinstance(value, str) else key


def to_numeric(series: pd.Series) -> pd.Series:
    """Numbers from a column that may hold numeric strings; what does not parse becomes NaN."""
    if pd.api.types.is_bool_dtype(series):
        return series.astype(float)
    if pd.api.types.is_numeric_dtype(series):
        return series if series.dtype == np.float64 else series.astype(float)
    text = series.astype(object).map(lambda v: v.strip() if isinstance(v, str) else v)
    return pd.to_numeric(text, errors="coerce").astype(float)


def to_datetime(series: pd.Series) -> pd.Series:
    """Timestamps (UTC-naive) from a column of ISO-8601 strings or datetimes; failures are NaT."""
    if pd.api.types.is_datetime64_any_dtype(series):
        parsed = series
    else:
        parsed = pd.to_datetime(series, errors="coerce", format="ISO8601", utc=True)
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed


def _infer_kind(series: pd.Series, *, max_categories: int) -> Kind:
    if pd.api.types.is_bool_dtype(series):
        return "categorical"
    if pd.api.types.is_numeric_dtype(series):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "datetime"
    values = series.dropna()
    if len(values) == 0:
        return "categorical"
    numbers = to_numeric(values)
    share = float(numbers.notna().mean())
    if share >= _PARSE_SHARE:
        return "numeric"
    if share >= _MIXED_SHARE and numbers.nunique() > 20:
        raise ContractError(
            f"column '{series.name}' mixes numbers ({share:.0%} of its values, e.g. "
            f"{numbers.dropna().iloc[0]!r}) and text ({1 - share:.0%}, e.g. "
            f"{values[numbers.isna()].iloc[0]!r}): fix the source, or make the column one "
            "type, before mlmedic can learn a contract from it"
        )
    sample = values.iloc[:2000]
    if sample.map(lambda v: isinstance(v, str) and any(c.isdigit() for c in v)).mean() >= 0.5:
        try:
            parsed_share = to_datetime(sample).notna().mean()
        except (ValueError, TypeError, OverflowError):
            parsed_share = 0.0
        if parsed_share >= _PARSE_SHARE:
            return "datetime"
    n_unique = values.nunique()
    if n_unique > max_categories or (n_unique > 20 and n_unique > 0.5 * len(values)):
        return "text"
    return "categorical"


class DataContract:
    """What good data looks like, learned from a reference frame.

    Parameters are stored as given; ``fit`` learns ``columns_``, ``n_rows_`` and
    ``duplicate_rate_``. ``self_reference=True`` is for a batch that is its own reference: its
    statistics are robust (quantiles, modes) but its own missing, outlier and duplicate rates are
    not taken as normal, so the checks hold it to a clean standard.
    """

    def __init__(
        self,
        *,
        target: str | None = None,
        outlier_threshold_iqr: float = 3.0,
        max_categories: int = 1000,
        self_reference: bool = False,
        source: str = "",
        time_column: str | None = None,
        task: str = "classification",
        target_kind: Kind = "categorical",
    ) -> None:
        self.target = target
        # the task's name (``mlmedic.model.tasks``), and what its target holds: class labels
        # ("categorical") or quantities ("numeric": profiled as a number, never capped,
        # repaired or matched to classes) — the task object says which (``Task.target_kind``)
        self.task = task
        self.target_kind: Kind = target_kind
        # the column holding each row's time (data_quality.time_column): never a model feature;
        # a monitoring pass over a batch happens at its newest value
        self.time_column = time_column
        self.outlier_threshold_iqr = outlier_threshold_iqr
        self.max_categories = max_categories
        self.self_reference = self_reference
        self.source = source

    # ------------------------------------------------------------------ learning
    def fit(self, frame: pd.DataFrame) -> DataContract:
        """Learn the contract from ``frame``; returns ``self``."""
        where = self.source or "reference data"
        if len(frame) < MIN_CONTRACT_ROWS:
            raise ContractError(
                f"{where}: {len(frame)} row(s) are too few to learn a data contract from "
                f"(at least {MIN_CONTRACT_ROWS}); pass a larger --reference"
            )
        if self.target is not None and self.target not in frame.columns:
            raise ContractError(
                f"{where}: target column '{self.target}' not found "
                f"(columns: {', '.join(map(str, frame.columns[:10]))})"
            )
        names = [str(c) for c in frame.columns]
        if len(set(names)) != len(names):
            raise ContractError(f"{where}: duplicate column names")
        columns: dict[str, ColumnSpec] = {}
        for name in frame.columns:
            series = frame[name]
            if series.isna().all():
                raise ContractError(
                    f"{where}: column '{name}' has no values (all missing); "
                    "drop it or use a reference where it has values"
                )
            columns[str(name)] = self._fit_column(str(name), series)
        self.columns_ = columns
        self.n_rows_ = len(frame)
        observed = float(frame.duplicated().mean())
        if self.self_reference:
            # a batch that is its own reference holds repeated rows to a clean standard, unless
            # its rows can repeat naturally: every feature is a category or a code (a survey's
            # answers: identical people are not a duplicated ingestion)
            self.duplicate_rate_ = observed if self._rows_can_repeat() else 0.0
        else:
            self.duplicate_rate_ = observed
        return self

    def _rows_can_repeat(self) -> bool:
        features = [spec for spec in self.columns_.values() if not spec.is_target]
        return bool(features) and all(spec.kind == "categorical" or spec.codes for spec in features)

    def _fit_column(self, name: str, series: pd.Series) -> ColumnSpec:
        is_target = name == self.target
        kind: Kind = (
            self.target_kind
            if is_target
            else _infer_kind(series, max_categories=self.max_categories)
        )
        missing_rate = 0.0 if (self.self_reference or is_target) else float(series.isna().mean())
        spec = ColumnSpec(
            name=name,
            kind=kind,
            dtype=str(series.dtype),
            missing_rate=missing_rate,
            is_target=is_target,
        )
        if kind == "numeric":
            self._fit_numeric(spec, to_numeric(series))
        elif kind == "datetime":
            times = to_datetime(series).dropna()
            spec.median_time = times.sort_values().iloc[len(times) // 2].isoformat()
        else:
            keys = category_keys(series.dropna())
            counts = keys.value_counts()
            spec.mode = plain(series.dropna()[keys == counts.index[0]].iloc[0])
            if kind == "categorical":
                spec.categories = sorted(counts.index.tolist())
        return spec

    def _fit_numeric(self, spec: ColumnSpec, values: pd.Series) -> None:
        finite = values.to_numpy(dtype=float)
        finite = finite[np.isfinite(finite)]
        if finite.size == 0:
            raise ContractError(f"column '{spec.name}': no finite numeric values to learn from")
        probs = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
        quantiles = np.quantile(finite, probs)
        spec.quantiles = {str(p): float(q) for p, q in zip(probs, quantiles, strict=True)}
        spec.min, spec.max = float(finite.min()), float(finite.max())
        spec.mean, spec.std = float(finite.mean()), float(finite.std())
        spec.integer = bool(np.all(finite == np.round(finite)))
        if spec.integer:
            levels = np.unique(finite)
            if len(levels) <= CODE_LEVELS:
                spec.codes = True
        q1, q3 = spec.quantiles["0.25"], spec.quantiles["0.75"]
        iqr = q3 - q1
        if iqr > 0:
            low, high = q1 - self.outlier_threshold_iqr * iqr, q3 + self.outlier_threshold_iqr * iqr
        else:  # a (nearly) constant column: anything inside the observed range is normal
            low, high = spec.min, spec.max
        if spec.integer:
            low, high = math.ceil(low), math.floor(high)
        spec.lower_fence, spec.upper_fence = float(low), float(high)
        if not self.self_reference:
            spec.outlier_rate = float(np.mean((finite < low) | (finite > high)))

    # ------------------------------------------------------------------ use
    def _check_fitted(self) -> None:
        if not hasattr(self, "columns_"):
            raise ContractError("this data contract is not fitted yet; call fit() or load() first")

    @property
    def feature_columns(self) -> list[str]:
        self._check_fitted()
        return [name for name, spec in self.columns_.items() if not spec.is_target]

    def describe_source(self) -> str:
        if self.self_reference:
            return f"{self.source or 'the batch'} (its own reference: robust statistics)"
        return self.source or "reference data"

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        self._check_fitted()
        return {
            "format": CONTRACT_FORMAT,
            "params": {
                "target": self.target,
                "outlier_threshold_iqr": self.outlier_threshold_iqr,
                "max_categories": self.max_categories,
                "self_reference": self.self_reference,
                "source": self.source,
                "time_column": self.time_column,
                "task": self.task,
                "target_kind": self.target_kind,
            },
            "n_rows": self.n_rows_,
            "duplicate_rate": self.duplicate_rate_,
            "columns": [asdict(spec) for spec in self.columns_.values()],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "contract") -> DataContract:
        try:
            if data.get("format") != CONTRACT_FORMAT:
                raise ContractError(
                    f"{where}: unsupported contract format {data.get('format')!r} "
                    f"(expected {CONTRACT_FORMAT})"
                )
            contract = cls(**data["params"])
            contract.columns_ = {
                c["name"]: ColumnSpec(**{k: v for k, v in c.items() if k not in _RETIRED})
                for c in data["columns"]
            }
            contract.n_rows_ = int(data["n_rows"])
            contract.duplicate_rate_ = float(data["duplicate_rate"])
        except (KeyError, TypeError) as exc:
            raise ContractError(f"{where}: not a valid mlmedic data contract ({exc})") from exc
        return contract

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> DataContract:
        path = Path(path)
        if not path.exists():
            raise ContractError(f"{path}: contract file not found")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ContractError(f"{path}: not a JSON data contract ({exc})") from exc
        if not isinstance(data, dict):
            raise ContractError(f"{path}: not a valid mlmedic data contract")
        return cls.from_dict(data, where=str(path))
