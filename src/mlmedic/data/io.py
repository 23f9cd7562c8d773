"""Reading and writing tables (CSV or Parquet, by suffix) with one-line errors for bad files.

Writes are atomic (a temporary file renamed into place), and a write never targets the input.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections import Counter
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlmedic.errors import DataFileError, ProjectError

CSV_SUFFIXES = {".csv", ".txt", ".tsv"}
PARQUET_SUFFIXES = {".parquet", ".pq"}


def table_format(path: Path) -> str:
    """'csv' or 'parquet' by the file's suffix; anything else is a ``DataFileError``."""
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    raise DataFileError(path, f"unsupported file type '{suffix or '(none)'}'; use .csv or .parquet")


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet file into a frame with a 0-based row index (the source row number).

    Raises ``DataFileError`` with one line naming the problem: missing, empty, header-only,
    unreadable or corrupt.
    """
    path = Path(path)
    if path.is_dir():
        return _read_folder(path)
    fmt = table_format(path)
    if not path.exists():
        raise DataFileError(path, "file not found")
    if path.stat().st_size == 0:
        raise DataFileError(path, "file is empty (0 bytes)")
    frame = _read_parquet(path) if fmt == "parquet" else _read_csv(path)
    if frame.shape[1] == 0:
        raise DataFileError(path, "has no columns")
    if len(frame) == 0:
        raise DataFileError(path, "has no data rows (header only)")
    return frame.reset_index(drop=True)


def _read_folder(path: Path) -> pd.DataFrame:
    """Every CSV or Parquet file directly in a folder, in name order, as one table."""
    files = sorted(
        p
        for p in path.iterdir()
        if p.is_file() and p.suffix.lower() in (*CSV_SUFFIXES, *PARQUET_SUFFIXES)
    )
    if not files:
        raise DataFileError(path, "is a directory with no CSV or Parquet files in it")
    frames = [read_table(p) for p in files]
    columns = list(frames[0].columns)
    for file, frame in zip(files[1:], frames[1:], strict=True):
        if list(frame.columns) != columns:
            raise DataFileError(file, f"has other columns than {files[0].name}; cannot join them")
    return pd.concat(frames, ignore_index=True)


def _read_csv(path: Path) -> pd.DataFrame:
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        with path.open("rb") as handle:
            head = handle.read(8192)
        if b"\x00" in head:
            raise DataFileError(path, "is binary, not a text CSV file")
        head.decode("utf-8")  # quick check; a multi-byte char cut at 8 KiB is tolerated below
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:
            raise DataFileError(path, "is not UTF-8 text; save it as UTF-8 CSV") from exc
    _check_csv_shape(path, sep)
    try:
        if _PANDAS_MAJOR < 3:
            return pd.read_csv(path, sep=sep, low_memory=False, float_precision="round_trip")
        return pd.read_csv(path, sep=sep, low_memory=False)
    except pd.errors.EmptyDataError as exc:
        raise DataFileError(path, "file is empty (no header)") from exc
    except pd.errors.ParserError as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unparseable"
        raise DataFileError(path, f"not a readable CSV file: {detail}") from exc
    except UnicodeDecodeError as exc:
        raise DataFileError(path, "is not UTF-8 text; save it as UTF-8 CSV") from exc
    except (csv.Error, ValueError) as exc:
        raise DataFileError(path, f"not a readable CSV file: {exc}") from exc


def _check_csv_shape(path: Path, sep: str) -> None:
    """What pandas would silently paper over: duplicate column names (renamed ``a.1``) and a file
    cut mid-row (its last row read with missing values)."""
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            header = next(csv.reader(handle, delimiter=sep), [])
    except (UnicodeDecodeError, csv.Error):
        return  # pandas says what is wrong with it
    counts = Counter(name.strip() for name in header)
    repeated = sorted(name for name, count in counts.items() if count > 1)
    if repeated:
        raise DataFileError(path, f"duplicate column name(s): {', '.join(repeated)}")
    size = path.stat().st_size
    with path.open("rb") as handle:
        handle.seek(max(0, size - 65536))
        tail = handle.read()
    if tail.endswith(b"\n") or tail.endswith(b"\r"):
        return
    last = tail.rsplit(b"\n", 1)[-1].decode("utf-8", errors="replace")
    try:
        fields = next(csv.reader([last], delimiter=sep), [])
    except csv.Error:
        return
    if header and len(fields) < len(header) and last.count('"') % 2 == 0:
        raise DataFileError(
            path,
            f"the last row is cut short ({len(fields)} of {len(header)} fields, and no line end): "
            "the file looks truncated",
        )


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataFileError(path, f"not a valid Parquet file ({first_line})") from exc
    return table.to_pandas()


# floats read back exactly as written: pandas 3 does it by default (and deprecates the option)
_PANDAS_MAJOR = int(pd.__version__.split(".")[0])


def _stringify_mixed(frame: pd.DataFrame) -> pd.DataFrame:
    """Make object columns that mix types Parquet-safe by turning their values into strings."""
    out = frame
    for column in frame.columns:
        series = frame[column]
        if series.dtype == object:
            kinds = {type(v) for v in series.dropna().to_numpy()[:100_000]}
            if len(kinds) > 1 or (kinds and not kinds <= {str}):
                if out is frame:
                    out = frame.copy()
                out[column] = series.map(lambda v: v if pd.isna(v) else str(v)).astype(object)
    return out


def _temporary_beside(path: Path) -> tuple[int, str]:
    """A temporary file in ``path``'s folder (created if needed); a user's mistake (a folder
    that is a file, no permission) is a ``ProjectError``, not a crash."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise ProjectError(f"{path}: cannot write there ({exc.strerror or exc})") from None


def check_writable(path: str | Path) -> None:
    """Fail now, before any work, if ``path`` cannot be written."""
    handle, name = _temporary_beside(Path(path))
    os.close(handle)
    Path(name).unlink(missing_ok=True)


def write_table(frame: pd.DataFrame, path: str | Path, *, protect: tuple[Path, ...] = ()) -> Path:
    """Write ``frame`` as CSV or Parquet (by suffix) atomically, without the index.

    ``protect`` lists files that must never be overwritten (the input of a repair).
    """
    path = Path(path)
    fmt = table_format(path)
    for guarded in protect:
        if path.resolve() == Path(guarded).resolve():
            raise ProjectError(f"{path}: refusing to overwrite the input file; choose another -o")
    handle, temp_name = _temporary_beside(path)
    os.close(handle)
    try:
        if fmt == "csv":
            frame.to_csv(temp_name, index=False, sep="\t" if path.suffix == ".tsv" else ",")
        else:
            _stringify_mixed(frame).to_parquet(temp_name, index=False)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return path
