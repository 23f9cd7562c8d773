"""Exact duplicate rows, found by hashing whole rows in vectorised passes and then verified.

``pandas.DataFrame.duplicated`` factorises every column and combines the codes; hashing each
column once into a 64-bit row hash and factorising that single array is several times faster on
wide numeric frames. Hash matches are then compared value by value, so the result is exact.
Columns are plain 1-D arrays (or Series), so the repairer can hash the columns it has just built
without first assembling a DataFrame.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import numpy as np
import pandas as pd

from mlmedic.core.parallel import pmap

_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_SEED = np.uint64(0xCBF29CE484222325)
_SHIFT = np.uint64(31)

Column: TypeAlias = np.ndarray | pd.Series


def _column_bits(column: Column) -> np.ndarray:
    """64 bits per value such that equal values (NaN with NaN, 0.0 with -0.0) get equal bits."""
    values = column.to_numpy() if isinstance(column, pd.Series) else column
    kind = values.dtype.kind
    if kind == "f":
        canonical = np.add(values, 0.0, dtype=np.float64)  # a fresh array; -0.0 becomes 0.0
        missing = np.isnan(canonical)
        if missing.any():
            canonical[missing] = np.nan  # one NaN bit pattern
        return canonical.view(np.uint64)
    if kind in "iub":
        return values.astype(np.int64, copy=False).view(np.uint64)
    if kind in "mM":
        return values.view(np.int64).view(np.uint64)
    return pd.util.hash_array(np.asarray(values, dtype=object), categorize=True)


_CHUNK = 65_536  # rows hashed at a time, so the running hash stays in cache


def row_hashes(columns: Sequence[Column]) -> np.ndarray:
    """One 64-bit hash per row over all columns (equal rows give equal hashes)."""
    arrays = [
        np.ascontiguousarray(c.to_numpy() if isinstance(c, pd.Series) else c) for c in columns
    ]
    n = len(arrays[0]) if arrays else 0
    hashes = np.full(n, _SEED, dtype=np.uint64)

    def hash_rows(bounds: tuple[int, int]) -> None:
        shifted = np.empty(_CHUNK, dtype=np.uint64)
        for start in range(bounds[0], bounds[1], _CHUNK):
            stop = min(start + _CHUNK, bounds[1])
            chunk, spare = hashes[start:stop], shifted[: stop - start]
            for values in arrays:
                chunk ^= _column_bits(values[start:stop])
                chunk *= _MULTIPLIER
                np.right_shift(chunk, _SHIFT, out=spare)
                chunk ^= spare

    middle = (n // 2 // _CHUNK) * _CHUNK
    pmap(hash_rows, [(0, middle), (middle, n)], rows=n)
    return hashes


def _same(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    equal = np.asarray(left == right, dtype=bool)
    return equal | np.asarray(pd.isna(left) & pd.isna(right), dtype=bool)


def find_duplicates(
    columns: Sequence[Column] | pd.DataFrame, rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Rows that repeat an earlier row exactly, and the row each repeats.

    ``rows`` limits the search to those positions (in order). Returns positions
    ``(duplicates, originals)``, sorted by the duplicate's position.
    """
    if isinstance(columns, pd.DataFrame):
        columns = [columns.iloc[:, i] for i in range(columns.shape[1])]
    arrays = [c.to_numpy() if isinstance(c, pd.Series) else c for c in columns]
    empty = np.empty(0, dtype=np.int64)
    total = len(arrays[0]) if arrays else 0
    positions = np.arange(total) if rows is None else np.asarray(rows, dtype=np.int64)
    if positions.size < 2 or not arrays:
        return empty, empty
    hashes = row_hashes(arrays)
    if rows is not None:
        hashes = hashes[positions]
    series = pd.Series(hashes, copy=False)
    repeats = series.duplicated(keep="first").to_numpy()
    if not repeats.any():
        return empty, empty
    involved = np.flatnonzero(series.isin(np.unique(hashes[repeats])).to_numpy())
    # Only the rows whose hash repeats: number their hashes in order of first appearance; a
    # code's first row is where the running maximum of the codes grows.
    codes, _ = pd.factorize(hashes[involved])
    first_of_code = np.flatnonzero(np.diff(np.maximum.accumulate(codes), prepend=-1) > 0)
    is_first = np.zeros(involved.size, dtype=bool)
    is_first[first_of_code] = True
    candidates = involved[~is_first]
    originals = involved[first_of_code[codes[~is_first]]]
    duplicates, firsts = positions[candidates], positions[originals]
    if duplicates.size:
        exact = np.ones(duplicates.size, dtype=bool)
        for values in arrays:
            exact &= _same(values[duplicates], values[firsts])
        duplicates, firsts = duplicates[exact], firsts[exact]
    return duplicates.astype(np.int64), firsts.astype(np.int64)


def first_positions(mask: np.ndarray, count: int) -> np.ndarray:
    """The first ``count`` positions where ``mask`` is true, scanning only as far as needed."""
    start, block = 0, 65_536
    found: list[np.ndarray] = []
    total = 0
    while start < mask.size and total < count:
        hits = np.flatnonzero(mask[start : start + block])[: count - total] + start
        found.append(hits)
        total += hits.size
        start += block
        block *= 4
    return np.concatenate(found) if found else np.empty(0, dtype=np.int64)
