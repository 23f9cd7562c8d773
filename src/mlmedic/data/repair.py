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
    >>> reference = pd.DataFrame({"x": [0.5 + i for i in range(10)], "y": list(range(10))})
    >>> contract = DataContract().fit(reference)
    >>> batch = pd.DataFrame({"x": ["2", None, 99.0], "y": [1.0, 2.0, 3.0]})
    >>> Repairer().fit(contract).transform(batch).data["x"].tolist()  # parsed, filled, capped
    [2.0, 5.0, 20.75]
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from mlmedic.core.config import DataQualityConfig
from mlmedic.core.errors import ContractError, SchemaError
from mlmedic.core.jsonvalues import plain
from mlmedic.core.parallel import pmap
from mlmedic.data._rows import find_duplicates, first_positions
from mlmedic.data.contract import (
    TEXT_MISSING,
    UNSEEN,
    DataContract,
    allowed_count,
    category_keys,
    to_datetime,
    to_numeric,
)

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
                {"row": plain(row), "reason": reason}
                for row, reason in zip(
                    self.quarantine[SOURCE_ROW], self.quarantine[REASON], strict=True
                )
            ],
            "removed_duplicates": [
                {"row": plain(row), "duplicate_of": plain(first)}
                for row, first in self.removed_duplicates
            ],
        }


def _examples(index: pd.Index, mask: np.ndarray) -> list[Any]:
    return [plain(v) for v in index[first_positions(mask, MAX_EXAMPLES)]]


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
                if not spec.codes:  # a coded answer is never capped
                    self.fences_[name] = (spec.lower_fence, spec.upper_fence)
            elif spec.kind == "datetime":
                assert spec.median_time is not None
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
            "fill_values": {k: plain(v) for k, v in self.fill_values_.items()},
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
        work = _Work(frame, names)
        for column in (str(c) for c in frame.columns if c not in contract.columns_):
            work.rules.append(
                RuleAudit("drop_extra_column", column, len(frame), after={"dropped": True})
            )
        if self.fix_types:
            for name in names:
                self._coerce(work, name)
        self._quarantine_rows(work)
        for rules in pmap(partial(self._repair_column, work), names, rows=len(frame)):
            work.rules.extend(rules)
        removed = self._drop_duplicates(work) if self.fix_duplicates else []
        data = work.assemble()
        for name in names:
            self._restore_integers(data, name)
        return RepairResult(data, work.quarantined(frame), removed, work.rules, len(frame))

    def _repair_column(self, work: _Work, name: str) -> list[RuleAudit]:
        """Impute, cap and map one column; returns its audits (columns may run on threads)."""
        rules: list[RuleAudit] = []
        if self.fix_missing_values:
            self._impute(work, name, rules)
        if self.fix_outliers:
            self._cap(work, name, rules)
        if self.fix_unseen_categories:
            self._map_unseen(work, name, rules)
        return rules

    def _coerce(self, work: _Work, name: str) -> None:
        spec = self.contract_.columns_[name]
        values = work.columns[name]
        if spec.kind == "numeric" and values.dtype.kind not in "iuf":
            parsed = to_numeric(pd.Series(values)).to_numpy(dtype=float)
            expected = "number"
        elif spec.kind == "datetime" and values.dtype.kind != "M":
            parsed = to_datetime(pd.Series(values)).to_numpy()
            expected = "date/time"
        else:
            return
        present = ~_isna(values)
        ok = ~_isna(parsed)
        bad = present & ~ok
        converted = present & ok
        if bad.any():
            work.quarantine(bad, f"column '{name}': value is not a {expected}")
        if converted.any() or bad.any():
            work.rules.append(
                RuleAudit(
                    "coerce_type",
                    name,
                    int(np.count_nonzero(converted)),
                    _examples(work.index, converted),
                    before={"dtype": str(values.dtype), "unparseable": int(np.count_nonzero(bad))},
                    after={"dtype": str(parsed.dtype)},
                )
            )
        work.replace(name, parsed)

    def _quarantine_rows(self, work: _Work) -> None:
        target = self.contract_.target
        if target is not None and target in work.columns:
            labels = work.columns[target]
            missing = _isna(labels)
            work.quarantine(missing, f"missing target '{target}'")
            if self.contract_.columns_[target].kind == "categorical":  # a regression's is a number
                known = category_keys(pd.Series(labels)).isin(self.categories_[target]).to_numpy()
                work.quarantine(
                    ~missing & ~known, f"target '{target}' has a label not seen in the reference"
                )
        features = [c for c in work.columns if c != target]
        if features:
            missing_count = np.zeros(work.n, dtype=np.int32)
            for name in features:
                missing_count += work.isna(name)
            limit = self.max_missing_fraction_per_row
            work.quarantine(
                missing_count > limit * len(features),
                f"more than {limit:.0%} of its values missing",
            )

    def _impute(self, work: _Work, name: str, rules: list[RuleAudit]) -> None:
        if name not in self.fill_values_:
            return
        values = work.columns[name]
        missing = work.isna(name)
        hits = work.live(missing)
        if not hits.any():
            return
        fill = self.fill_values_[name]
        if (values.dtype.kind == "f" and not isinstance(fill, str)) or values.dtype.kind == "M":
            filled = values if name in work.owned else values.copy()
        else:
            filled = (
                values if values.dtype == object and name in work.owned else values.astype(object)
            )
        filled[missing] = fill
        count = int(np.count_nonzero(hits))
        rules.append(
            RuleAudit(
                "impute_missing",
                name,
                count,
                _examples(work.index, hits),
                before={"missing": count},
                after={"filled_with": plain(fill)},
            )
        )
        work.replace(name, filled)

    def _cap(self, work: _Work, name: str, rules: list[RuleAudit]) -> None:
        if name not in self.fences_:
            return
        low, high = self.fences_[name]
        values = work.columns[name]
        if values.dtype.kind not in "iuf":
            return
        outside = work.live((values < low) | (values > high))
        if not outside.any():
            return
        hits = values[outside]
        if name in work.owned and values.dtype.kind == "f":
            capped = np.clip(values, low, high, out=values)
        else:
            capped = np.clip(values, low, high)
        rules.append(
            RuleAudit(
                "cap_outliers",
                name,
                int(np.count_nonzero(outside)),
                _examples(work.index, outside),
                before={"min": float(hits.min()), "max": float(hits.max())},
                after={"lower_fence": low, "upper_fence": high},
            )
        )
        work.replace(name, capped)

    def _map_unseen(self, work: _Work, name: str, rules: list[RuleAudit]) -> None:
        spec = self.contract_.columns_[name]
        if spec.kind != "categorical" or spec.is_target:
            return
        values = work.columns[name]
        series = pd.Series(values)
        known = category_keys(series).isin(self.categories_[name]).to_numpy()
        unseen = ~_isna(values) & ~known
        hits = work.live(unseen)
        if not hits.any():
            return
        seen_values = [str(v) for v in pd.unique(series[hits].astype(str))[:MAX_EXAMPLES]]
        mapped = values.astype(object)
        mapped[unseen] = UNSEEN
        rules.append(
            RuleAudit(
                "map_unseen_category",
                name,
                int(np.count_nonzero(hits)),
                _examples(work.index, hits),
                before={"values": seen_values},
                after={"mapped_to": UNSEEN},
            )
        )
        work.replace(name, mapped)

    def _drop_duplicates(self, work: _Work) -> list[tuple[Any, Any]]:
        rows = None if work.keep.all() else np.flatnonzero(work.keep)
        dups, firsts = find_duplicates(list(work.columns.values()), rows=rows)
        kept = len(rows) if rows is not None else work.n
        # repeated rows are a defect only beyond the rate the reference itself shows: within
        # it, none is removed; beyond it, the latest repeats go until the natural count is left
        rate = self.contract_.duplicate_rate_
        if dups.size <= allowed_count(kept, rate):
            return []
        natural = math.floor(kept * rate)
        if natural:
            order = np.argsort(dups, kind="stable")
            chosen = np.sort(order[natural:])
            dups, firsts = dups[chosen], firsts[chosen]
        if not dups.size:
            return []
        index = work.index
        work.rules.append(
            RuleAudit(
                "drop_duplicates",
                None,
                int(dups.size),
                [plain(v) for v in index[dups[:MAX_EXAMPLES]]],
                before={"rows": kept},
                after={"rows": kept - int(dups.size)},
            )
        )
        work.keep[dups] = False
        return list(zip(index[dups].tolist(), index[firsts].tolist(), strict=True))

    def _restore_integers(self, data: pd.DataFrame, name: str) -> None:
        spec = self.contract_.columns_[name]
        series = data[name]
        integral = spec.integer if spec.kind == "numeric" else spec.dtype.startswith("int")
        if integral and pd.api.types.is_float_dtype(series) and len(series):
            values = series.to_numpy()
            if np.isfinite(values).all() and (values == np.round(values)).all():
                data[name] = values.astype(np.int64)


def _isna(values: np.ndarray) -> np.ndarray:
    kind = values.dtype.kind
    if kind == "f":
        return np.isnan(values)
    if kind in "iub":
        return np.zeros(len(values), dtype=bool)
    return np.asarray(pd.isna(values), dtype=bool)


class _Work:
    """The batch being repaired, as one array per column, plus which rows are still kept.

    Columns start as views of the input; a rule that changes a column replaces its array, so the
    input frame is never written to. Quarantined rows stay in the arrays (rules skip them in
    their counts) and all removed rows are dropped in one final take.
    """

    def __init__(self, frame: pd.DataFrame, names: list[str]) -> None:
        self.index = frame.index
        self.n = len(frame)
        self.columns: dict[str, np.ndarray] = {
            name: np.ascontiguousarray(frame[name].to_numpy()) for name in names
        }
        self.owned: set[str] = set()
        self._missing: dict[str, np.ndarray] = {}
        self.keep = np.ones(self.n, dtype=bool)
        self.reasons: np.ndarray | None = None
        self.rules: list[RuleAudit] = []

    def replace(self, name: str, values: np.ndarray) -> None:
        if not values.flags.writeable:  # pandas 3 hands out read-only views (copy-on-write)
            values = values.copy()
        self.columns[name] = values
        self.owned.add(name)
        self._missing.pop(name, None)

    def isna(self, name: str) -> np.ndarray:
        """Missing-value mask of a column (cached until the column is replaced)."""
        if name not in self._missing:
            self._missing[name] = _isna(self.columns[name])
        return self._missing[name]

    def quarantine(self, mask: np.ndarray, reason: str) -> None:
        fresh = mask & self.keep
        if not fresh.any():
            return
        if self.reasons is None:
            self.reasons = np.full(self.n, None, dtype=object)
        self.reasons[fresh] = reason
        self.keep &= ~fresh

    def live(self, mask: np.ndarray) -> np.ndarray:
        """``mask`` restricted to rows not quarantined."""
        return mask if self.reasons is None else mask & self.keep

    def quarantined(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The raw input rows in quarantine, with their source row and reason first."""
        if self.reasons is None:
            out, reasons = frame.iloc[0:0].copy(), np.empty(0, dtype=object)
        else:
            mask = np.asarray(pd.notna(self.reasons), dtype=bool)
            out, reasons = frame.loc[mask].copy(), self.reasons[mask]
        out.insert(0, REASON, reasons.astype(str).astype(object))
        out.insert(0, SOURCE_ROW, out.index)
        return out.reset_index(drop=True)

    def assemble(self) -> pd.DataFrame:
        """The kept rows as a new frame (index: the original row numbers)."""
        if self.keep.all():
            positions = None
            index = self.index
        else:
            positions = np.flatnonzero(self.keep)
            index = self.index[positions]
        data: dict[str, np.ndarray] = {}
        for name, values in self.columns.items():
            if positions is None:
                data[name] = values if name in self.owned else values.copy()
            elif name in self.owned:  # compact in place: no second full-size allocation
                count = positions.size
                values[:count] = values[positions]
                data[name] = values[:count]
            else:
                data[name] = values[positions]
        return pd.DataFrame(data, index=index, copy=False)
