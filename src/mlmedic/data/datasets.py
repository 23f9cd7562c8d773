"""Built-in demo data: a customer-churn table with knobs for drift and for defects.

Mixed numeric and categorical features, a time column, and a binary target that depends on the
features non-linearly (a gradient-boosted model learns it to about 0.85 accuracy). ``drift``
shifts the feature distributions the way a changing customer base would; ``inject_defects``
adds what real feeds bring: missing values, outliers, duplicate rows, wrongly typed values,
unseen categories and missing labels. Everything is seeded, nothing is downloaded.

Examples:
    >>> frame = make_churn(1000, seed=1)
    >>> frame.shape
    (1000, 11)
    >>> dirty = inject_defects(frame, Defects(missing_rate=0.05), seed=1, target=TARGET)
    >>> bool(dirty.isna().any().any())
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

TARGET = "churned"
TIME_COLUMN = "signup_at"
NUMERIC = [
    "tenure_months",
    "monthly_charges",
    "total_charges",
    "age",
    "support_calls",
    "data_usage_gb",
]
CATEGORICAL = ["contract_type", "payment_method", "region"]
_CONTRACTS = ["month-to-month", "one-year", "two-year"]
_PAYMENTS = ["card", "bank-transfer", "electronic-check", "mailed-check"]
_REGIONS = ["north", "south", "east", "west"]


@dataclass(frozen=True)
class Defects:
    """How much of each defect to inject (shares of cells or rows, 0 to 1)."""

    missing_rate: float = 0.0
    outlier_rate: float = 0.0
    duplicate_rate: float = 0.0
    bad_type_rate: float = 0.0
    unseen_category_rate: float = 0.0
    missing_target_rate: float = 0.0


def make_churn(
    n_rows: int = 5000,
    *,
    seed: int = 0,
    drift: float = 0.0,
    start: str = "2026-01-01",
    hours: float = 24.0 * 30,
) -> pd.DataFrame:
    """A clean churn table of ``n_rows``; ``drift`` (0 = none, 1 = strong) shifts the inputs."""
    rng = np.random.default_rng(seed)
    n = n_rows
    contract_p = np.array([0.55, 0.25, 0.20]) * (1 - drift) + np.array([0.8, 0.12, 0.08]) * drift
    contract = rng.choice(_CONTRACTS, size=n, p=contract_p / contract_p.sum())
    payment = rng.choice(_PAYMENTS, size=n, p=[0.3, 0.25, 0.3, 0.15])
    region = rng.choice(_REGIONS, size=n, p=[0.3, 0.25, 0.25, 0.2])
    tenure = np.clip(np.round(rng.gamma(2.0, 12.0 * (1 - 0.4 * drift), n)), 0, 72).astype(int)
    monthly = np.round(
        np.clip(rng.normal(70 + 15 * drift, 25, n) + 10 * (contract == "month-to-month"), 18, 140),
        2,
    )
    total = np.round(monthly * np.maximum(tenure, 1) * rng.uniform(0.95, 1.05, n), 2)
    age = np.clip(np.round(rng.normal(45 - 6 * drift, 14, n)), 18, 90).astype(int)
    calls = rng.poisson(1.5 + 1.5 * drift, n)
    usage = np.round(rng.lognormal(2.5 + 0.5 * drift, 0.6, n), 2)
    offsets = np.sort(rng.uniform(0, hours * 3600, n))
    times = pd.Timestamp(start) + pd.to_timedelta(offsets, unit="s")

    logit = (
        -1.3
        + 2.6 * (contract == "month-to-month")
        - 1.2 * (contract == "two-year")
        - 0.09 * tenure
        + 0.035 * (monthly - 70)
        + 0.75 * np.maximum(calls - 2, 0)
        + 0.9 * (payment == "electronic-check")
        - 0.5 * ((age > 30) & (age < 60))
        + 1.4 * ((tenure < 6) & (monthly > 85))
    )
    churned = (rng.uniform(size=n) < 1 / (1 + np.exp(-2.2 * logit))).astype(int)
    return pd.DataFrame(
        {
            "tenure_months": tenure,
            "monthly_charges": monthly,
            "total_charges": total,
            "age": age,
            "support_calls": calls,
            "data_usage_gb": usage,
            "contract_type": contract,
            "payment_method": payment,
            "region": region,
            TIME_COLUMN: times.round("s"),
            TARGET: churned,
        }
    )


def inject_defects(
    frame: pd.DataFrame, defects: Defects, *, seed: int = 0, target: str | None = TARGET
) -> pd.DataFrame:
    """A copy of ``frame`` with defects injected; numeric columns with bad types become text."""
    rng = np.random.default_rng(seed)
    out = frame.copy()
    n = len(out)
    features = [c for c in out.columns if c != target]
    numeric = [c for c in features if pd.api.types.is_numeric_dtype(out[c])]
    categorical = [
        c
        for c in features
        if pd.api.types.is_object_dtype(out[c])
        or pd.api.types.is_string_dtype(out[c])
        or isinstance(out[c].dtype, pd.CategoricalDtype)
    ]

    for column in numeric:
        hit = rng.uniform(size=n) < defects.outlier_rate
        if hit.any():
            values = out[column].astype(float)
            spread = float(values.std()) or 1.0
            sign = rng.choice([-1.0, 1.0], size=int(hit.sum()))
            values[hit] = float(values.median()) + sign * spread * rng.uniform(15, 40, hit.sum())
            out[column] = values
    for column in categorical:
        hit = rng.uniform(size=n) < defects.unseen_category_rate
        if hit.any():
            out[column] = out[column].astype(object)
            out.loc[hit, column] = [f"new-{column}-{i % 3}" for i in range(int(hit.sum()))]
    for column in features:
        hit = rng.uniform(size=n) < defects.missing_rate
        if hit.any():
            if not pd.api.types.is_float_dtype(out[column]) and column in numeric:
                out[column] = out[column].astype(float)
            out.loc[hit, column] = None
    if target is not None and target in out.columns and defects.missing_target_rate > 0:
        hit = rng.uniform(size=n) < defects.missing_target_rate
        out[target] = out[target].astype(float)
        out.loc[hit, target] = np.nan
    for column in numeric:
        hit = (rng.uniform(size=n) < defects.bad_type_rate) & out[column].notna().to_numpy()
        if hit.any():
            text = out[column].astype(object)
            garbage = rng.uniform(size=n) < 0.2
            text[hit & ~garbage] = [f" {v} " for v in out[column][hit & ~garbage]]
            text[hit & garbage] = "#VALUE!"
            out[column] = text
    if defects.duplicate_rate > 0:
        k = round(n * defects.duplicate_rate)
        picks = rng.choice(n, size=k, replace=True)
        positions = rng.integers(0, n + 1, size=k) - 0.5  # each copy goes before that row
        order = np.argsort(np.concatenate([np.arange(n, dtype=float), positions]), kind="stable")
        out = pd.concat([out, out.iloc[picks]]).iloc[order]
    return out.reset_index(drop=True)
