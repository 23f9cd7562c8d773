"""Repairs fitted on the reference statistics, never on the dirty batch.

Rules, in order: drop columns the contract does not know, coerce numeric and date strings
losslessly, quarantine rows that cannot be repaired (missing or unknown target, most values
missing, a value that does not parse), impute missing values (reference median or most frequent
value), cap outliers at the reference fences, map unseen categories to one sentinel, drop exact
duplicates (last, so rows that repair made equal are caught too).

Every input row ends up in exactly one place: the repaired data, the quarantine, or the list of
removed duplicates, always under its original row index. Each rule is audited per column.

Examples:
    >>> import pandas as pd
    >>> from mlmedic.data.contract import DataContract
    >>> contract = DataContract().fit(pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0]}))
    >>> result = Repairer().fit(contract).transform(pd.DataFrame({"x": ["2", None, 99.0]}))
    >>> result.data["x"].tolist()
    [2.0, 2.5, 8.5]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlmedic.config import DataQualityConfig
from mlmedic.data._rows import find_duplicates
from mlmedic.data.contract import (
    TEXT_MISSING,
    UNSEEN,
    DataContract,
    category_keys,
    to_datetime,
    to_numeric,
)
from mlmedic.errors import ContractError, SchemaError

MAX_EXAMPLES = 5
SOURCE_ROW = "_source_row"
REASON = "_reason"


@dataclass
class RuleAudit:
    """What one rule did to one column (``column`` None: the whole table)."""

    rule: str
    column: str | None
    rows_touched: int
    examples: list[Any] = field(default_factory=list)
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)


@dataclass
class RepairResult:
    """The repaired data (index = original row numbers), the quarantine, and the audit."""

    data: pd.DataFrame
    quarantine: pd.DataFrame
    removed_duplicates: list[tuple[Any, Any]]
    rules: list[RuleAudit]
    input_rows: int

    @property
    def changed(self) -> bool:
        return bool(self.rules)

    def accounting(self) -> dict[str, int]:
        return {
            "input_rows": self.input_rows,
            "output_rows": len(self.data),
            "quarantined_rows": len(self.quarantine),
            "removed_duplicate_rows": len(self.removed_duplicates),
        }

    def audit(self) -> dict[str, Any]:
        """The JSON audit: row accounting, every rule per column, quarantine and duplicates."""
        return {
            "rows": self.accounting(),
            "row_order": "output rows keep input order; their original row numbers are the input "
            "row numbers minus those in 'quarantined' and 'removed_duplicates'",
            "rules": [asdict(rule) for rule in self.rules],
            "quarantined": [
                {"row": _plain(row), "reason": reason}
                for row, reason in zip(
                    self.quarantine[SOURCE_ROW], self.quarantine[REASON], strict=True
                )
            ],
            "removed_duplicates": [
                {"row": _plain(row), "duplicate_of": _plain(first)}
                for row, first in self.removed_duplicates
            ],
        }


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def _examples(index: pd.Index, mask: np.ndarray) -> list[Any]:
    return [_plain(v) for v in index[np.flatnonzero(mask)[:MAX_EXAMPLES]]]


class Repairer:
    """Repairs a batch with statistics learned from a ``DataContract`` (never from the batch).

    The constructor stores which rules run; ``fit(contract)`` learns the fill values, fences and
    category sets (``fill_values_``, ``fences_``, ``categories_``); ``transform(frame)`` repairs.
    """

    def __init__(
        self,
        *,
        fix_types: bool = True,
        fix_missing_values: bool = True,
        fix_outliers: bool = True,
        fix_unseen_categories: bool = True,
        fix_duplicates: bool = True,
        max_missing_fraction_per_row: float = 0.5,
    ) -> None:
        self.fix_types = fix_types
        self.fix_missing_values = fix_missing_values
        self.fix_outliers = fix_outliers
        self.fix_unseen_categories = fix_unseen_categories
        self.fix_duplicates = fix_duplicates
        self.max_missing_fraction_per_row = max_missing_fraction_per_row

    @classmethod
    def from_config(cls, config: DataQualityConfig) -> Repairer:
        return cls(
            fix_types=config.fix_types,
            fix_missing_values=config.fix_missing_values,
            fix_outliers=config.fix_outliers,
            fix_unseen_categories=config.fix_unseen_categories,
            fix_duplicates=config.fix_duplicates,
            max_missing_fraction_per_row=config.max_missing_fraction_per_row,
        )

    def fit(self, contract: DataContract) -> Repairer:
        if not hasattr(contract, "columns_"):
            raise ContractError("the repairer needs a fitted data contract")
        self.contract_ = contract
        self.fill_values_: dict[str, Any] = {}
        self.fences_: dict[str, tuple[float, float]] = {}
        self.categories_: dict[str, set[str]] = {}
        for name, spec in contract.columns_.items():
            if spec.is_target:
                self.categories_[name] = set(spec.categories)
                continue
            if spec.kind == "numeric":
                assert spec.median is not None
                median = spec.median
                self.fill_values_[name] = float(round(median)) if spec.integer else median
                assert spec.lower_fence is not None and spec.upper_fence is not None
                self.fences_[name] = (spec.lower_fence, spec.upper_fence)
            elif spec.kind == "datetime":
                self.fill_values_[name] = pd.Timestamp(spec.median_time)
            elif spec.kind == "categorical":
                self.fill_values_[name] = spec.mode
                self.categories_[name] = set(spec.categories) | {UNSEEN}
            else:
                self.fill_values_[name] = TEXT_MISSING
        return self

    def statistics(self) -> dict[str, Any]:
        """The fitted repair statistics, JSON-ready (stored beside a model version)."""
        return {
            "rules": {
                "fix_types": self.fix_types,
                "fix_missing_values": self.fix_missing_values,
                "fix_outliers": self.fix_outliers,
                "fix_unseen_categories": self.fix_unseen_categories,
                "fix_duplicates": self.fix_duplicates,
                "max_missing_fraction_per_row": self.max_missing_fraction_per_row,
            },
            "fill_values": {k: _plain(v) for k, v in self.fill_values_.items()},
            "fences": {k: list(v) for k, v in self.fences_.items()},
            "unseen_sentinel": UNSEEN,
        }

    # ------------------------------------------------------------------ repair
    def transform(self, frame: pd.DataFrame) -> RepairResult:
        """Repair ``frame`` (left untouched) and account for every row."""
        contract = self.contract_
        names = [c for c in contract.columns_ if c in frame.columns]
        if not names:
            raise SchemaError(
                "the data and the contract have no column in common; is this the right reference?"
            )
        rules: list[RuleAudit] = []
        extra = [str(c) for c in frame.columns if c not in contract.columns_]
        for column in extra:
            rules.append(
                RuleAudit("drop_extra_column", column, len(frame), after={"dropped": True})
            )
        work = frame[names].copy()
        reasons = np.full(len(work), None, dtype=object)

        def quarantine(mask: np.ndarray, reason: str) -> None:
            fresh = mask & pd.isna(reasons)
            reasons[fresh] = reason

        if self.fix_types:
            for name in names:
                self._coerce(work, name, rules, quarantine)
        self._quarantine_rows(work, quarantine)

        keep = pd.isna(reasons)
        quarantined = frame.loc[~keep].copy()
        quarantined.insert(0, REASON, reasons[~keep].astype(str))
        quarantined.insert(0, SOURCE_ROW, frame.index[~keep])
        quarantined = quarantined.reset_index(drop=True)
        work = work.loc[keep]

        for name in names:
            if self.fix_missing_values:
                self._impute(work, name, rules)
            if self.fix_outliers:
                self._cap(work, name, rules)
            if self.fix_unseen_categories:
                self._map_unseen(work, name, rules)
            self._restore_integers(work, name)

        removed: list[tuple[Any, Any]] = []
        if self.fix_duplicates:
            dups, firsts = find_duplicates(work)
            if dups.size:
                index = work.index
                removed = list(zip(index[dups].tolist(), index[firsts].tolist(), strict=True))
                rules.append(
                    RuleAudit(
                        "drop_duplicates",
                        None,
                        int(dups.size),
                        [_plain(v) for v in index[dups[:MAX_EXAMPLES]]],
                        before={"rows": len(work)},
                        after={"rows": len(work) - int(dups.size)},
                    )
                )
                drop = np.zeros(len(work), dtype=bool)
                drop[dups] = True
                work = work.loc[~drop]
        return RepairResult(work, quarantined, removed, rules, len(frame))

    def _coerce(self, work: pd.DataFrame, name: str, rules: list[RuleAudit], quarantine) -> None:
        spec = self.contract_.columns_[name]
        series = work[name]
        if spec.kind == "numeric" and not pd.api.types.is_numeric_dtype(series):
            parsed = to_numeric(series)
            expected = "number"
        elif spec.kind == "datetime" and not pd.api.types.is_datetime64_dtype(series):
            parsed = to_datetime(series)
            expected = "date/time"
        else:
            return
        present = series.notna().to_numpy()
        ok = parsed.notna().to_numpy()
        bad = present & ~ok
        converted = present & ok
        if bad.any():
            quarantine(bad, f"column '{name}': value is not a {expected}")
        if converted.any() or bad.any():
            rules.append(
                RuleAudit(
                    "coerce_type",
                    name,
                    int(converted.sum()),
                    _examples(work.index, converted),
                    before={"dtype": str(series.dtype), "unparseable": int(bad.sum())},
                    after={"dtype": str(parsed.dtype)},
                )
            )
        work[name] = parsed

    def _quarantine_rows(self, work: pd.DataFrame, quarantine) -> None:
        contract = self.contract_
        target = contract.target
        if target is not None and target in work.columns:
            labels = work[target]
            missing = labels.isna().to_numpy()
            quarantine(missing, f"missing target '{target}'")
            unknown = ~missing & ~category_keys(labels).isin(self.categories_[target]).to_numpy()
            quarantine(unknown, f"target '{target}' has a label not seen in the reference")
        features = [c for c in work.columns if c != target]
        if features:
            missing_share = work[features].isna().to_numpy().mean(axis=1)
            limit = self.max_missing_fraction_per_row
            quarantine(missing_share > limit, f"more than {limit:.0%} of its values missing")

    def _impute(self, work: pd.DataFrame, name: str, rules: list[RuleAudit]) -> None:
        if name not in self.fill_values_:
            return
        series = work[name]
        missing = series.isna().to_numpy()
        if not missing.any():
            return
        fill = self.fill_values_[name]
        if series.dtype == object or isinstance(fill, str):
            work[name] = series.astype(object).where(~missing, fill)
        else:
            work[name] = series.fillna(fill)
        rules.append(
            RuleAudit(
                "impute_missing",
                name,
                int(missing.sum()),
                _examples(work.index, missing),
                before={"missing": int(missing.sum())},
                after={"filled_with": _plain(fill)},
            )
        )

    def _cap(self, work: pd.DataFrame, name: str, rules: list[RuleAudit]) -> None:
        if name not in self.fences_:
            return
        low, high = self.fences_[name]
        values = work[name].to_numpy(dtype=float)
        with np.errstate(invalid="ignore"):
            outside = (values < low) | (values > high)
        if not outside.any():
            return
        hits = values[outside]
        work[name] = np.clip(values, low, high)
        rules.append(
            RuleAudit(
                "cap_outliers",
                name,
                int(outside.sum()),
                _examples(work.index, outside),
                before={"min": float(hits.min()), "max": float(hits.max())},
                after={"lower_fence": low, "upper_fence": high},
            )
        )

    def _map_unseen(self, work: pd.DataFrame, name: str, rules: list[RuleAudit]) -> None:
        spec = self.contract_.columns_[name]
        if spec.kind != "categorical" or spec.is_target:
            return
        series = work[name]
        present = series.notna().to_numpy()
        unseen = present & ~category_keys(series).isin(self.categories_[name]).to_numpy()
        if not unseen.any():
            return
        values = [str(v) for v in pd.unique(series[unseen].astype(str))[:MAX_EXAMPLES]]
        work[name] = series.astype(object).where(~unseen, UNSEEN)
        rules.append(
            RuleAudit(
                "map_unseen_category",
                name,
                int(unseen.sum()),
                _examples(work.index, unseen),
                before={"values": values},
                after={"mapped_to": UNSEEN},
            )
        )

    def _restore_integers(self, work: pd.DataFrame, name: str) -> None:
        spec = self.contract_.columns_[name]
        series = work[name]
        integral = spec.integer if spec.kind == "numeric" else spec.dtype.startswith("int")
        if integral and pd.api.types.is_float_dtype(series) and len(series):
            values = series.to_numpy()
            if np.isfinite(values).all() and (values == np.round(values)).all():
                work[name] = values.astype(np.int64)
