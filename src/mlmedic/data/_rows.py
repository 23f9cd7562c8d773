"""Exact duplicate rows, found by hashing whole rows in vectorised passes and then verified.

``pandas.DataFrame.duplicated`` factorises every column and combines the codes; hashing each
column once into a 64-bit row hash and factorising that single array is several times faster on
wide numeric frames. Hash matches are then compared value by value, so the result is exact.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_SEED = np.uint64(0xCBF29CE484222325)


def _column_bits(series: pd.Series) -> np.ndarray:
    dtype = series.dtype
    if pd.api.types.is_float_dtype(dtype):
        values = series.to_numpy(dtype=np.float64, copy=True)
        values += 0.0  # -0.0 and 0.0 are the same value
        values[np.isnan(values)] = np.nan  # one NaN bit pattern
        return values.view(np.uint64)
    if pd.api.types.is_integer_dtype(dtype) and not isinstance(
        dtype, pd.api.extensions.ExtensionDtype
    ):
        return series.to_numpy().astype(np.int64, copy=False).view(np.uint64)
    if pd.api.types.is_bool_dtype(dtype) and not isinstance(
        dtype, pd.api.extensions.ExtensionDtype
    ):
        return series.to_numpy().astype(np.uint64)
    return pd.util.hash_array(series.astype(object).to_numpy(), categorize=True)


def row_hashes(frame: pd.DataFrame) -> np.ndarray:
    """One 64-bit hash per row over all columns (equal rows give equal hashes)."""
    hashes = np.full(len(frame), _SEED, dtype=np.uint64)
    for position in range(frame.shape[1]):
        bits = _column_bits(frame.iloc[:, position])
        hashes ^= bits
        hashes *= _MULTIPLIER
        hashes ^= hashes >> np.uint64(31)
    return hashes


def _same(left: pd.Series, right: pd.Series) -> np.ndarray:
    a, b = left.to_numpy(), right.to_numpy()
    equal = np.asarray(a == b, dtype=bool)
    both_missing = np.asarray(pd.isna(a) & pd.isna(b), dtype=bool)
    return equal | both_missing


def find_duplicates(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Positions of rows that repeat an earlier row exactly, and the position each repeats.

    Returns ``(duplicate_positions, first_positions)``, both sorted by the duplicate's position.
    """
    n = len(frame)
    if n < 2 or frame.shape[1] == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    codes, _ = pd.factorize(row_hashes(frame))
    # factorize numbers codes in order of first appearance: a code's first position is where
    # the running maximum of the codes grows.
    running = np.maximum.accumulate(codes)
    first_of_code = np.flatnonzero(np.diff(running, prepend=-1) > 0)
    is_first = np.zeros(n, dtype=bool)
    is_first[first_of_code] = True
    candidates = np.flatnonzero(~is_first)
    originals = first_of_code[codes[candidates]]
    if candidates.size:
        exact = np.ones(candidates.size, dtype=bool)
        for position in range(frame.shape[1]):
            column = frame.iloc[:, position]
            exact &= _same(column.iloc[candidates], column.iloc[originals])
        candidates, originals = candidates[exact], originals[exact]
    return candidates.astype(np.int64), originals.astype(np.int64)
