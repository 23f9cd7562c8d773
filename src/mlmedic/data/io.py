"""Reading and writing tables with one-line errors for bad files.

Read: CSV/TSV (also compressed: ``.gz``, ``.bz2``, ``.xz``, ``.zst``), Parquet, JSON Lines
(``.jsonl``, ``.ndjson``), Arrow/Feather (``.feather``, ``.arrow``), a folder of them as one table
(Parquet folders may be hive-partitioned, ``hour=…/part.parquet``), from a local path or any
fsspec URL (``s3://``, ``gs://``, ``file://``, ``memory://``). Write: CSV or Parquet, by suffix.
Writes are atomic (a temporary file renamed into place), and a write never targets the input.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections import Counter
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlmedic.core.errors import DataFileError, ProjectError

CSV_SUFFIXES = {".csv", ".txt", ".tsv"}
PARQUET_SUFFIXES = {".parquet", ".pq"}
JSONL_SUFFIXES = {".jsonl", ".ndjson"}
ARROW_SUFFIXES = {".feather", ".arrow", ".ipc"}
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd", ".zstd": "zstd"}
_READABLE = ".csv, .tsv (optionally .gz/.bz2/.xz/.zst), .parquet, .jsonl, .feather or .arrow"


def input_format(name: str) -> tuple[str, str | None]:
    """(format, compression) of a file to read, from its name: 'csv', 'parquet', 'jsonl' or
    'arrow'; compression for CSV and JSON Lines only.

    >>> input_format("batch.csv.gz")
    ('csv', 'gzip')
    >>> input_format("s3://bucket/day=1/part-0.parquet")
    ('parquet', None)
    """
    lowered = name.lower().rsplit("/", 1)[-1]
    stem, dot, last = lowered.rpartition(".")
    compression = COMPRESSIONS.get(f".{last}") if dot else None
    if compression is not None:
        lowered = stem
    suffix = "." + lowered.rpartition(".")[2] if "." in lowered else ""
    if suffix in CSV_SUFFIXES:
        return "csv", compression
    if suffix in JSONL_SUFFIXES:
        return "jsonl", compression
    if compression is None and suffix in PARQUET_SUFFIXES:
        return "parquet", None
    if compression is None and suffix in ARROW_SUFFIXES:
        return "arrow", None
    shown = suffix + (f".{last}" if compression else "")
    raise DataFileError(name, f"unsupported file type '{shown or '(none)'}'; read: {_READABLE}")


def table_format(path: Path) -> str:
    """'csv' or 'parquet' by the file's suffix; anything else is a ``DataFileError``."""
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    raise DataFileError(path, f"unsupported file type '{suffix or '(none)'}'; use .csv or .parquet")


def is_url(source: str | Path) -> bool:
    return isinstance(source, str) and "://" in source


def read_table(path: str | Path, columns: Collection[str] | None = None) -> pd.DataFrame:
    """Read a table (see the module docstring for the forms) into a frame with a 0-based row
    index (the source row number).

    ``columns``: only these are needed (the others, and absent names, are left out). Parquet
    files and folders read only those columns from disk, and CSV parses only them; the other
    forms are read whole and then narrowed.

    Raises ``DataFileError`` with one line naming the problem: missing, empty, header-only,
    unreadable, corrupt, or a URL whose filesystem is not installed.
    """
    wanted = None if columns is None else set(columns)
    if is_url(path):
        frame = _read_url(str(path))
    else:
        path = Path(path)
        if path.is_dir():
            frame = _narrow(_read_folder(path, wanted), wanted)
            if frame.shape[1] == 0:
                raise DataFileError(path, "has none of the columns needed")
            return frame
        fmt, compression = input_format(str(path))
        if not path.exists():
            raise DataFileError(path, "file not found")
        if path.stat().st_size == 0:
            raise DataFileError(path, "file is empty (0 bytes)")
        frame = _read_local(path, fmt, compression, wanted)
    frame = _narrow(frame, wanted)
    if frame.shape[1] == 0 and wanted:
        shown = ", ".join(sorted(wanted)[:5]) + (", ..." if len(wanted) > 5 else "")
        raise DataFileError(path, f"has none of the columns needed ({shown})")
    if frame.shape[1] == 0:
        raise DataFileError(path, "has no columns")
    if len(frame) == 0:
        raise DataFileError(path, "has no data rows (header only)")
    return frame.reset_index(drop=True)


def _narrow(frame: pd.DataFrame, wanted: set[str] | None) -> pd.DataFrame:
    if wanted is None or set(frame.columns) <= wanted:
        return frame
    return frame[[c for c in frame.columns if c in wanted]]


def _read_local(
    path: Path, fmt: str, compression: str | None, wanted: set[str] | None = None
) -> pd.DataFrame:
    if fmt == "parquet":
        return _read_parquet(path, wanted)
    if fmt == "arrow":
        return _read_arrow(path, path)
    if fmt == "jsonl":
        return _read_jsonl(path, path, compression)
    if compression is not None:
        return _read_csv_stream(path, path, compression)
    return _read_csv(path, wanted)


def _read_url(url: str) -> pd.DataFrame:
    """A file or a folder at an fsspec URL."""
    import fsspec

    try:
        fs, where = fsspec.core.url_to_fs(url)
    except ImportError as exc:
        scheme = url.split("://", 1)[0]
        raise DataFileError(url, f"reading {scheme}:// URLs needs a package: {exc}") from None
    except ValueError as exc:
        raise DataFileError(url, f"not a URL mlmedic can read ({exc})") from None
    try:
        if fs.isdir(where):
            return _read_url_folder(url, fs, where)
        fmt, compression = input_format(where)
        if not fs.exists(where):
            raise DataFileError(url, "file not found")
        if fs.size(where) == 0:
            raise DataFileError(url, "file is empty (0 bytes)")
        with fs.open(where, "rb") as handle:
            return _read_handle(url, handle, fmt, compression)
    except DataFileError:
        raise
    except (OSError, ValueError) as exc:
        raise DataFileError(url, f"cannot be read ({type(exc).__name__}: {exc})") from None


def _read_handle(shown: str | Path, handle: Any, fmt: str, compression: str | None) -> pd.DataFrame:
    if fmt == "parquet":
        try:
            return pq.read_table(handle).to_pandas()
        except (pa.ArrowException, OSError) as exc:
            raise DataFileError(shown, f"not a valid Parquet file ({_first_line(exc)})") from exc
    if fmt == "arrow":
        return _read_arrow(shown, handle)
    if fmt == "jsonl":
        return _read_jsonl(shown, handle, compression)
    return _read_csv_stream(shown, handle, compression)


def _read_url_folder(url: str, fs: Any, where: str) -> pd.DataFrame:
    """Every readable file under a folder URL (recursively: hive partitions), as one table."""
    files = sorted(f for f in fs.find(where) if not f.rsplit("/", 1)[-1].startswith((".", "_")))
    readable = []
    for name in files:
        try:
            readable.append((name, input_format(name)))
        except DataFileError:
            continue
    if not readable:
        raise DataFileError(url, "is a folder with no file mlmedic can read in it")
    frames = []
    for name, (fmt, compression) in readable:
        with fs.open(name, "rb") as handle:
            frames.append(_read_handle(f"{url.split('://')[0]}://{name}", handle, fmt, compression))
    return _join(url, [n for n, _ in readable], frames)


def _join(shown: str | Path, names: list[str], frames: list[pd.DataFrame]) -> pd.DataFrame:
    columns = list(frames[0].columns)
    for name, frame in zip(names[1:], frames[1:], strict=True):
        if list(frame.columns) != columns:
            raise DataFileError(
                name, f"has other columns than {names[0].rsplit('/', 1)[-1]}; cannot join them"
            )
    return pd.concat(frames, ignore_index=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _read_arrow(shown: str | Path, source: Any) -> pd.DataFrame:
    import pyarrow.feather as feather

    try:
        return feather.read_table(source).to_pandas()
    except (pa.ArrowException, OSError) as exc:
        raise DataFileError(shown, f"not a valid Arrow/Feather file ({_first_line(exc)})") from exc


def _read_jsonl(shown: str | Path, source: Any, compression: Any) -> pd.DataFrame:
    try:
        return pd.read_json(source, lines=True, compression=compression)
    except ImportError as exc:
        raise DataFileError(shown, f"needs a package to decompress: {exc}") from None
    except (ValueError, OSError, EOFError) as exc:
        raise DataFileError(shown, f"not valid JSON Lines ({_first_line(exc)})") from exc


def _read_csv_stream(shown: str | Path, source: Any, compression: Any) -> pd.DataFrame:
    """A CSV that cannot be checked in place (compressed, or at a URL): read as a stream."""
    sep = "\t" if ".tsv" in str(shown).lower() else ","
    try:
        frame = pd.read_csv(source, sep=sep, low_memory=False, compression=compression)
    except ImportError as exc:
        raise DataFileError(shown, f"needs a package to decompress: {exc}") from None
    except pd.errors.EmptyDataError as exc:
        raise DataFileError(shown, "file is empty (no header)") from exc
    except pd.errors.ParserError as exc:
        raise DataFileError(shown, f"not a readable CSV file: {_first_line(exc)}") from exc
    except UnicodeDecodeError as exc:
        raise DataFileError(shown, "is not UTF-8 text; save it as UTF-8 CSV") from exc
    except (csv.Error, ValueError, OSError, EOFError) as exc:
        raise DataFileError(shown, f"not a readable CSV file ({_first_line(exc)})") from exc
    repeated = sorted({str(c).rsplit(".", 1)[0] for c in frame.columns if _renamed(c, frame)})
    if repeated:
        raise DataFileError(shown, f"duplicate column name(s): {', '.join(repeated)}")
    return frame


def _renamed(column: Any, frame: pd.DataFrame) -> bool:
    """pandas renames a repeated header ``a`` to ``a.1``: was this column one of those?"""
    base, dot, number = str(column).rpartition(".")
    return bool(dot) and number.isdigit() and base in frame.columns


def _read_folder(path: Path, wanted: set[str] | None = None) -> pd.DataFrame:
    """Every readable file in a folder, in name order, as one table; a folder of Parquet files
    nested in partitions (``hour=…/``) is read as one Parquet dataset."""
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith((".", "_")))
    readable = []
    for file in files:
        try:
            readable.append((file, input_format(str(file))))
        except DataFileError:
            continue
    if not readable:
        nested = sorted(path.rglob("*.parquet"))
        if nested:
            return _read_parquet_dataset(path, wanted)
        raise DataFileError(path, "is a directory with no file mlmedic can read in it")
    frames = [read_table(p, wanted) for p, _ in readable]
    return _join(path, [str(p) for p, _ in readable], frames)


def _read_parquet_dataset(path: Path, wanted: set[str] | None = None) -> pd.DataFrame:
    import pyarrow.dataset as ds

    try:
        dataset = ds.dataset(path, format="parquet", partitioning="hive")
        names = dataset.schema.names
        table = dataset.to_table(
            columns=None if wanted is None else [n for n in names if n in wanted] or names[:1]
        )
    except (pa.ArrowException, OSError) as exc:
        raise DataFileError(path, f"not a readable Parquet dataset ({_first_line(exc)})") from exc
    if table.num_rows == 0:
        raise DataFileError(path, "has no data rows")
    return table.to_pandas().reset_index(drop=True)


def _read_csv(path: Path, wanted: set[str] | None = None) -> pd.DataFrame:
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
        keep = None if wanted is None else (lambda name: name in wanted)
        if _PANDAS_MAJOR < 3:
            return pd.read_csv(
                path, sep=sep, low_memory=False, float_precision="round_trip", usecols=keep
            )
        return pd.read_csv(path, sep=sep, low_memory=False, usecols=keep)
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


def _read_parquet(path: Path, wanted: set[str] | None = None) -> pd.DataFrame:
    try:
        if wanted is not None:
            names = pq.read_schema(path).names
            table = pq.read_table(path, columns=[n for n in names if n in wanted] or names[:1])
        else:
            table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataFileError(path, f"not a valid Parquet file ({_first_line(exc)})") from exc
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
