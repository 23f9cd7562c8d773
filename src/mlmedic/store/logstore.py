"""The prediction log and the feedback log: Parquet files under ``.mlmedic/``, or under any
fsspec URL (``serving.prediction_log_url``: a shared directory, ``s3://bucket/prefix``).

Predictions are buffered and flushed every ``flush_seconds`` (a crash loses at most that much) to
``predictions/hour=YYYY-MM-DDTHH/part-<ns>-<seq>-<host>-<pid>.parquet``: the production data that
monitoring reads. Each replica writes its own part files (host and pid in the name), so replicas
sharing one location never write the same file, and the monitor reads them all. Feedback (true
labels by request id) is written at once to ``feedback/``. On a local disk a file appears by an
atomic rename; on an object store by one PUT (also atomic).
"""

from __future__ import annotations

import contextlib
import logging
import os
import posixpath
import socket
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pandas as pd
from fsspec.implementations.local import LocalFileSystem

from mlmedic.core.labels import label_key

log = logging.getLogger("mlmedic.serving")
RECENT_IDS = 100_000  # request ids each worker remembers, to check feedback without the disk

META_COLUMNS = [
    "prediction",
    "probability",
    "model_version",
    "request_id",
    "served_at",
]


def log_location(url: str | None, state_dir: Path, name: str) -> str | Path:
    """Where ``predictions`` or ``feedback`` lives: under ``serving.prediction_log_url`` when
    it is set, else in the project's state folder."""
    return f"{url.rstrip('/')}/{name}" if url else state_dir / name


class Location:
    """A folder on a filesystem: a local path or an fsspec URL (``file://``, ``s3://``,
    ``memory://``)."""

    def __init__(self, where: str | Path | Location) -> None:
        if isinstance(where, Location):
            self.fs: Any = where.fs
            self.root: str = where.root
            self.url: str = where.url
            return
        self.url = str(where)
        self.fs, self.root = fsspec.core.url_to_fs(self.url)
        self.root = self.root.rstrip("/") or "/"

    @property
    def local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    def child(self, name: str) -> Location:
        found = Location(self)
        found.root = posixpath.join(self.root, name)
        found.url = self.url.rstrip("/") + "/" + name
        return found

    def path(self, *names: str) -> str:
        return posixpath.join(self.root, *names)

    def files(self, pattern: str, under: str | None = None) -> list[str]:
        """Sorted paths matching ``pattern`` in this folder (or its subfolder ``under``)."""
        base = self.root if under is None else under
        try:
            return sorted(self.fs.glob(posixpath.join(base, pattern)))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def exists(self) -> bool:
        return bool(self.fs.exists(self.root))

    def read(self, path: str, columns: list[str] | None = None) -> pd.DataFrame:
        with self.fs.open(path, "rb") as handle:
            return pd.read_parquet(handle, columns=columns)

    def write(self, folder: str, name: str, table: Any) -> None:
        """Write a pyarrow table as ``folder/name`` so that no reader sees half a file."""
        import pyarrow.parquet as pq

        self.fs.makedirs(folder, exist_ok=True)
        target = posixpath.join(folder, name)
        if not self.local:  # one PUT: the object appears whole or not at all
            with self.fs.open(target, "wb") as handle:
                pq.write_table(table, handle)
            return
        temporary = posixpath.join(folder, f".{name}")
        try:
            pq.write_table(table, temporary)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        os.replace(temporary, target)

    def remove(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(path)


def _part_name(sequence: int) -> str:
    """``part-<ns>-<seq>-<host>-<pid>.parquet``: unique across the replicas of a shared log."""
    host = socket.gethostname().replace("-", "_") or "host"
    return f"part-{time.time_ns()}-{sequence}-{host}-{os.getpid()}.parquet"


class PredictionLog:
    """Buffers served rows and writes them as hourly-partitioned Parquet."""

    def __init__(
        self,
        folder: str | Path | Location,
        *,
        flush_seconds: float = 1.0,
        max_pending_rows: int = 200_000,
    ) -> None:
        self.folder = Location(folder)
        self.flush_seconds = flush_seconds
        self.max_pending_rows = max_pending_rows
        self.last_error: str | None = None
        self.last_write_at: float | None = None
        self.dropped_rows = 0
        self.set_aside_rows = 0
        self._recent: deque[str] = deque()
        self._recent_set: set[str] = set()
        self._buffer: list[tuple[Any, ...]] = []
        self._lock = threading.Lock()
        self._sequence = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="prediction-log", daemon=True)
        self._thread.start()

    def append(
        self,
        columns: dict[str, list[Any]],
        predictions: list[Any],
        probabilities: np.ndarray,
        model_version: int,
        request_id: str,
    ) -> None:
        """Buffer one request's rows (cheap: the frame is built at flush time)."""
        entry = (columns, predictions, probabilities, model_version, request_id, time.time())
        with self._lock:
            self._buffer.append(entry)
            if len(self._recent) >= RECENT_IDS:
                self._recent_set.discard(self._recent.popleft())
            self._recent.append(request_id)
            self._recent_set.add(request_id)

    def unknown_ids(self, ids: list[str], *, days: float = 7.0) -> list[str]:
        """The ids among ``ids`` that no logged prediction carries: this worker's recent ones
        first, then the ``request_id`` column of the last ``days`` of partitions on disk."""
        with self._lock:
            missing = [i for i in dict.fromkeys(ids) if i not in self._recent_set]
        if not missing:
            return []
        oldest = time.strftime("%Y-%m-%dT%H", time.gmtime(time.time() - days * 86_400))
        wanted = set(missing)
        for folder in reversed(self.folder.files("hour=*")):
            if posixpath.basename(folder)[5:] < oldest:
                break
            for path in _hour_files(self.folder, folder):
                try:
                    column = self.folder.read(path, columns=["request_id"])["request_id"]
                except (OSError, ValueError, KeyError):
                    continue
                wanted.difference_update(column.astype(str).tolist())
                if not wanted:
                    return []
        return [i for i in missing if i in wanted]

    @staticmethod
    def _frame(pending: list[tuple[Any, ...]]) -> pd.DataFrame:
        """One frame from many buffered requests: lists are joined, then built once."""
        names = list(pending[0][0])
        columns: dict[str, list[Any]] = {name: [] for name in names}
        predictions: list[str] = []
        versions: list[int] = []
        request_ids: list[str] = []
        served: list[float] = []
        for features, labels, _, version, request_id, served_at in pending:
            if list(features) != names:  # a swap changed the features: log it separately
                continue
            for name in names:
                columns[name].extend(features[name])
            predictions.extend(str(label) for label in labels)
            count = len(labels)
            versions.extend([version] * count)
            request_ids.extend([request_id] * count)
            served.extend([served_at] * count)
        kept = [e for e in pending if list(e[0]) == names]
        probabilities = np.vstack([e[2] for e in kept])
        frame = pd.DataFrame(columns)
        frame["prediction"] = predictions
        frame["probability"] = probabilities.max(axis=1)
        for position in range(probabilities.shape[1]):
            frame[f"proba_{position}"] = probabilities[:, position]
        frame["model_version"] = versions
        frame["request_id"] = request_ids
        frame["served_at"] = served
        return frame

    def _loop(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            try:
                self.flush()
            except Exception:  # the writer must never die
                log.exception("prediction-log flush failed")

    def status(self) -> dict[str, Any]:
        """For ``/ready``: is the writer alive and writing, and what it could not write."""
        with self._lock:
            pending = sum(len(entry[1]) for entry in self._buffer)
        return {
            "alive": self._thread.is_alive(),
            "writing": self.last_error is None,
            "last_error": self.last_error,
            "last_write_at": self.last_write_at,
            "pending_rows": pending,
            "dropped_rows": self.dropped_rows,
            "set_aside_rows": self.set_aside_rows,
        }

    def flush(self) -> int:
        """Write what is buffered. A request whose rows cannot be written is set aside (counted);
        when the disk refuses every write, rows stay buffered (up to ``max_pending_rows``, the
        oldest dropped beyond) and are written when it accepts them again."""
        with self._lock:
            pending, self._buffer = self._buffer, []
        if not pending:
            return 0
        try:
            written = self._write(pending)
        except Exception as exc:
            written = self._write_each(pending, exc)
        else:
            self.last_error = None
        if written:
            self.last_write_at = time.time()
        return written

    def _write_each(self, pending: list[tuple[Any, ...]], first: Exception) -> int:
        written, retry = 0, []
        for entry in pending:
            try:
                written += self._write([entry])
            except OSError as exc:  # the disk, not the data: keep the rows for the next flush
                retry.append(entry)
                self.last_error = f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # these rows cannot be written at all: set them aside
                self.set_aside_rows += len(entry[1])
                self.last_error = f"rows set aside: {type(exc).__name__}: {exc}"
        if retry:
            with self._lock:
                self._buffer[:0] = retry
                rows = sum(len(entry[1]) for entry in self._buffer)
                while rows > self.max_pending_rows and self._buffer:
                    rows -= len(self._buffer[0][1])
                    self.dropped_rows += len(self._buffer.pop(0)[1])
        elif written:
            self.last_error = None
        log.warning("prediction log: %s (first error: %s)", self.last_error, first)
        return written

    def _write(self, pending: list[tuple[Any, ...]]) -> int:
        import pyarrow as pa

        groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        for entry in pending:
            groups.setdefault(tuple(entry[0]), []).append(entry)
        frame = pd.concat([self._frame(group) for group in groups.values()], ignore_index=True)
        hours = pd.to_datetime(frame["served_at"], unit="s", utc=True).dt.strftime("%Y-%m-%dT%H")
        for hour, part in frame.groupby(hours):
            self._sequence += 1
            table = pa.Table.from_pandas(part.reset_index(drop=True), preserve_index=False)
            self.folder.write(self.folder.path(f"hour={hour}"), _part_name(self._sequence), table)
        return len(frame)

    def close(self) -> None:
        self._stop.set()
        self.flush()


class FeedbackLog:
    """True labels by request id, one Parquet file per write."""

    def __init__(self, folder: str | Path | Location) -> None:
        self.folder = Location(folder)

    def write(self, rows: list[dict[str, str]]) -> int:
        import pyarrow as pa

        if not rows:
            return 0
        frame = pd.DataFrame(rows, columns=["request_id", "label"])
        frame["received_at"] = time.time()
        table = pa.Table.from_pandas(frame, preserve_index=False)
        self.folder.write(self.folder.root, _part_name(0), table)
        return len(frame)


def record_feedback(log: FeedbackLog, frame: pd.DataFrame) -> tuple[int, int]:
    """``mlmedic feedback``: the rows of ``frame`` with a ``request_id`` and a ``label``, written
    to ``log`` (labels in their canonical text); (rows written, rows left out for lacking one).
    ``ValueError`` naming what is missing when no row can be used."""
    missing = [c for c in ("request_id", "label") if c not in frame.columns]
    if missing:
        raise ValueError(f"missing column(s) {', '.join(missing)}")
    rows, unusable = [], 0
    for request_id, value in zip(frame["request_id"], frame["label"], strict=True):
        key = label_key(value)
        if key is None or request_id is None or str(request_id).strip() == "":
            unusable += 1
            continue
        rows.append({"request_id": str(request_id), "label": key})
    if not rows:
        raise ValueError("no row has both a request_id and a label")
    return log.write(rows), unusable


def hour_of(ts: float) -> str:
    """The hourly partition (``hour=YYYY-MM-DDTHH``) a time in seconds falls in."""
    return time.strftime("%Y-%m-%dT%H", time.gmtime(ts))


def _part_ns(path: str) -> int:
    """The write time (ns) in a file's name: ``part-<ns>-<seq>-<host>-<pid>``,
    ``compact-upto-<ns>``, or an earlier version's ``part-<pid>-<ns>-<seq>``."""
    fields = posixpath.basename(str(path)).split(".")[0].split("-")
    try:
        if fields[0] == "compact":
            return int(fields[-1])
        return int(fields[2] if len(fields) == 4 else fields[1])
    except (IndexError, ValueError):
        return 0


def _hour_files(where: Location, folder: str) -> list[str]:
    """The files that make up one hour: its compacted file (if any), and the parts written after
    it. Parts the compaction already holds are skipped, so a reader racing a compaction never
    counts a row twice."""
    compacted = where.files("compact-upto-*.parquet", folder)
    covered = max((_part_ns(p) for p in compacted), default=-1)
    parts = [p for p in where.files("part-*.parquet", folder) if _part_ns(p) > covered]
    return compacted[-1:] + parts


def newest_write(folder: str | Path | Location) -> float | None:
    """When the newest part of the log was written (from its name: any filesystem), or None."""
    where = Location(folder)
    for hour in reversed(where.files("hour=*")):
        files = _hour_files(where, hour)
        if files:
            return max(_part_ns(p) for p in files) / 1e9
    return None


def window_files(where: Location, since: float | None, until: float | None) -> list[str]:
    """The files of the hourly partitions that overlap [since, until)."""
    low = hour_of(since) if since is not None else None
    high = hour_of(until) if until is not None else None
    found = []
    for hour in where.files("hour=*"):
        name = posixpath.basename(hour)[5:]
        if (low is not None and name < low) or (high is not None and name > high):
            continue
        found.extend(_hour_files(where, hour))
    return found


def read_predictions(
    folder: str | Path | Location, *, since: float | None = None, until: float | None = None
) -> pd.DataFrame:
    """Logged predictions served in [since, until) (all when not given) by every replica writing
    to ``folder``, reading only the hourly partitions that overlap the window (empty frame if
    none)."""
    where = Location(folder)
    frames = []
    for path in window_files(where, since, until):
        try:
            frames.append(where.read(path))
        except FileNotFoundError:
            continue  # a part removed by a compaction that this listing saw already
    if not frames:
        return pd.DataFrame(columns=META_COLUMNS)
    logged = pd.concat(frames, ignore_index=True)
    if since is not None:
        logged = logged[logged["served_at"] >= since]
    if until is not None:
        logged = logged[logged["served_at"] < until]
    return logged.reset_index(drop=True)


def compact(
    folder: str | Path | Location,
    *,
    now: float | None = None,
    grace_seconds: float = 120.0,
    claim: Any = None,
) -> int:
    """Merge each closed hour's part files into one Parquet file; returns the hours compacted.

    An hour is closed ``grace_seconds`` after it ends (a worker may still be flushing its last
    rows). The merged file is named for the newest part it holds, written atomically, and only
    then are the parts removed; readers skip parts a merged file holds (``_hour_files``). One
    compactor at a time: a ``flock`` on a local disk; on shared storage, ``claim()`` (the event
    store's, so one replica among all); a second returns at once."""
    import fcntl

    import pyarrow as pa

    where = Location(folder)
    if not where.exists():
        return 0
    now = time.time() if now is None else now
    closed_before = hour_of(now - 3600.0 - grace_seconds)
    if not where.local:
        if claim is not None and not claim():
            return 0
        return _compact_hours(where, closed_before, pa)
    with open(Path(where.root) / ".compact.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0
        return _compact_hours(where, closed_before, pa)


def _compact_hours(where: Location, closed_before: str, pa: Any) -> int:
    done = 0
    for hour in where.files("hour=*"):
        if posixpath.basename(hour)[5:] > closed_before:
            continue
        files = _hour_files(where, hour)
        parts = [p for p in files if posixpath.basename(p).startswith("part-")]
        if not parts or len(files) == 1:
            continue  # nothing new since the last compaction, or already one file
        frame = pd.concat((where.read(p) for p in files), ignore_index=True)
        upto = max(_part_ns(p) for p in parts)
        name = f"compact-upto-{upto}.parquet"
        where.write(hour, name, pa.Table.from_pandas(frame, preserve_index=False))
        for path in files:
            if posixpath.basename(path) != name:
                where.remove(path)
        done += 1
    return done


def read_feedback(folder: str | Path | Location) -> pd.DataFrame:
    """Every label received, by every replica writing to ``folder``."""
    where = Location(folder)
    files = sorted(where.files("part-*.parquet"), key=_part_ns)  # later labels win
    if not files:
        return pd.DataFrame(columns=["request_id", "label", "received_at"])
    return pd.concat((where.read(f) for f in files), ignore_index=True)
