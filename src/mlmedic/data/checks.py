"""Vectorised checks of a batch against a data contract.

Checks: empty input, missing and extra columns, type mismatches, missing values above the
reference's rate, outliers beyond the reference's IQR fences, exact duplicate rows, and unseen
categories. Each result carries counts and example row indices (the batch's own row numbers).

Examples:
    >>> import pandas as pd
    >>> from mlmedic.data.contract import DataContract
    >>> contract = DataContract().fit(pd.DataFrame({"x": [1.5, 2.5, 3.5, 4.5] * 3}))
    >>> report = run_checks(pd.DataFrame({"x": [1.0, None, 99.0]}), contract)
    >>> [(r.check, r.count) for r in report.failures]
    [('missing', 1), ('outliers', 1)]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlmedic.core.errors import SchemaError
from mlmedic.core.jsonvalues import plain
from mlmedic.core.parallel import background
from mlmedic.data._rows import find_duplicates, first_positions
from mlmedic.data.contract import (
    UNSEEN,
    ColumnSpec,
    DataContract,
    allowed_count,
    category_keys,
    to_datetime,
    to_numeric,
)

MAX_EXAMPLES = 5


@dataclass
class CheckResult:
    """One check on one column (or on the whole table when ``column`` is None)."""

    check: str
    column: str | None
    passed: bool
    count: int
    allowed: int = 0
    examples: list[Any] = field(default_factory=list)
    message: str = ""
    detail: str = ""


@dataclass
class CheckReport:
    """All check results for one batch."""

    n_rows: int
    n_columns: int
    reference: str
    results: list[CheckResult]

    @property
    def passed(self) -> bool:
        return all(result.passed for result in self.results)

    @property
    def failures(self) -> list[CheckResult]:
        return [result for result in self.results if not result.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "n_rows": self.n_rows,
            "n_columns": self.n_columns,
            "reference": self.reference,
            "n_checks": len(self.results),
            "n_failed": len(self.failures),
            "results": [asdict(result) for result in self.results],
        }

    def summary(self) -> str:
        if self.passed:
            return f"all {len(self.results)} checks passed on {self.n_rows:,} rows"
        names = sorted({f.check for f in self.failures})
        return (
            f"{len(self.failures)} of {len(self.results)} checks failed on {self.n_rows:,} rows "
            f"({', '.join(names)})"
        )


def _examples(index: pd.Index, mask: np.ndarray) -> list[Any]:
    positions = first_positions(mask, MAX_EXAMPLES)
    return [plain(value) for value in index[positions]]


def _result(
    check: str,
    column: str | None,
    mask: np.ndarray,
    index: pd.Index,
    allowed: int,
    what: str,
    detail: str = "",
) -> CheckResult:
    count = int(np.count_nonzero(mask))
    passed = count <= allowed
    where = f"column '{column}': " if column is not None else ""
    if count == 0:
        message = f"{where}no {what}"
    else:
        share = f"{count:,} of {len(mask):,} rows"
        limit = f", {allowed:,} expected at most" if allowed else ""
        message = f"{where}{what}: {share}{limit}"
        if detail:
            message += f" ({detail})"
    examples = _examples(index, mask) if count else []
    return CheckResult(check, column, passed, count, allowed, examples, message, detail)


def check_schema(frame: pd.DataFrame, contract: DataContract) -> list[CheckResult]:
    """Missing and extra columns; raises ``SchemaError`` when nothing is in common."""
    expected = list(contract.columns_)
    present = [str(c) for c in frame.columns]
    common = set(expected) & set(present)
    if not common:
        raise SchemaError(
            f"the data and the contract have no column in common (data: "
            f"{', '.join(present[:6])}{'…' if len(present) > 6 else ''}; contract from "
            f"{contract.describe_source()}: {', '.join(expected[:6])}"
            f"{'…' if len(expected) > 6 else ''}); is this the right reference?"
        )
    missing = [c for c in expected if c not in common]
    extra = [c for c in present if c not in set(expected)]
    return [
        CheckResult(
            "missing_columns",
            None,
            not missing,
            len(missing),
            examples=missing[:MAX_EXAMPLES],
            message=f"missing columns: {', '.join(missing)}" if missing else "no missing columns",
            detail=", ".join(missing),
        ),
        CheckResult(
            "extra_columns",
            None,
            not extra,
            len(extra),
            examples=extra[:MAX_EXAMPLES],
            message=f"columns not in the contract: {', '.join(extra)}"
            if extra
            else "no extra columns",
            detail=", ".join(extra),
        ),
    ]


def _numbers(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(values as floats, mask of non-missing values that are not numbers)."""
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        values = np.ascontiguousarray(series.to_numpy())  # a strided column is copied once
        if values.dtype.kind != "f":  # integers, or a nullable extension type
            values = series.to_numpy(dtype=float, na_value=np.nan)
        return values, np.zeros(len(values), dtype=bool)
    parsed = to_numeric(series).to_numpy(dtype=float)
    return parsed, series.notna().to_numpy() & np.isnan(parsed)


EXTREME_SPANS = 10.0


def _far_beyond(values: np.ndarray, spec: ColumnSpec) -> np.ndarray:
    """Values more than ``EXTREME_SPANS`` fence widths beyond the reference's range."""
    if spec.lower_fence is None or spec.upper_fence is None:
        return np.zeros(len(values), dtype=bool)
    span = max(spec.upper_fence - spec.lower_fence, 1e-12)
    top = max(spec.upper_fence, spec.max if spec.max is not None else spec.upper_fence)
    bottom = min(spec.lower_fence, spec.min if spec.min is not None else spec.lower_fence)
    with np.errstate(invalid="ignore"):
        return (values > top + EXTREME_SPANS * span) | (values < bottom - EXTREME_SPANS * span)


def _check_column(series: pd.Series, spec: ColumnSpec) -> list[CheckResult]:
    n, index, name = len(series), series.index, spec.name
    results: list[CheckResult] = []
    if spec.kind == "numeric":
        values, bad_type = _numbers(series)
        raw_missing = np.isnan(values) & ~bad_type
        results.append(_result("types", name, bad_type, index, 0, "values that are not a number"))
    else:
        raw_missing = series.isna().to_numpy()
    if spec.kind == "datetime":
        bad_type = (~raw_missing) & to_datetime(series).isna().to_numpy()
        results.append(
            _result("types", name, bad_type, index, 0, "values that are not a date/time")
        )
    allowed = allowed_count(n, spec.missing_rate)
    results.append(_result("missing", name, raw_missing, index, allowed, "missing values"))
    if spec.kind == "numeric" and not spec.is_target and not spec.codes:
        low, high = spec.lower_fence, spec.upper_fence
        outside = (values < low) | (values > high)
        allowed = allowed_count(n, spec.outlier_rate)
        fences = f"outside [{low:g}, {high:g}]"
        # the reference's own mild outliers allow as many here, but never a value far beyond
        # anything the reference holds (1e12 where it peaks at 500)
        far = _far_beyond(values, spec)
        if far.any():
            allowed = 0
            fences += f"; {int(far.sum()):,} far beyond the reference's range"
        results.append(_result("outliers", name, outside, index, allowed, "outliers", fences))
    elif spec.kind == "categorical":
        keys = category_keys(series)
        known = set(spec.categories) | ({UNSEEN} if not spec.is_target else set())
        unseen = (~raw_missing) & ~keys.isin(known).to_numpy()
        what = "labels not seen in the reference" if spec.is_target else "unseen categories"
        detail = ""
        if unseen.any():
            values_seen = pd.unique(series[unseen].astype(str))[:MAX_EXAMPLES]
            detail = f"e.g. {', '.join(repr(v) for v in values_seen)}"
        results.append(_result("unseen_categories", name, unseen, index, 0, what, detail))
    return results


def run_checks(frame: pd.DataFrame, contract: DataContract) -> CheckReport:
    """Run every check of ``contract`` on ``frame``; never modifies ``frame``."""
    reference = contract.describe_source()
    if len(frame) == 0:
        empty = CheckResult("empty", None, False, 0, message="the batch has no rows")
        return CheckReport(0, frame.shape[1], reference, [empty])
    results = check_schema(frame, contract)
    duplicates = background(lambda: find_duplicates(frame), rows=len(frame))
    for name, spec in contract.columns_.items():
        if name in frame.columns:
            results.extend(_check_column(frame[name], spec))
    dup_positions, _ = duplicates()
    mask = np.zeros(len(frame), dtype=bool)
    mask[dup_positions] = True
    allowed = allowed_count(len(frame), contract.duplicate_rate_)
    results.append(_result("duplicates", None, mask, frame.index, allowed, "exact duplicate rows"))
    return CheckReport(len(frame), frame.shape[1], reference, results)
