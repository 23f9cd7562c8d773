"""The prediction log and the feedback log: Parquet files under ``.mlmedic/``.

Predictions are buffered and flushed every ``flush_seconds`` (a crash loses at most that much) to
``predictions/hour=YYYY-MM-DDTHH/part-<pid>-<n>.parquet``: the production data that monitoring
reads. Feedback (true labels by request id) is written at once to ``feedback/``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger("mlmedic.serving")
RECENT_IDS = 100_000  # request ids each worker remembers, to check feedback without the disk

META_COLUMNS = [
    "prediction",
    "probability",
    "model_version",
    "request_id",
    "served_at",
]


class PredictionLog:
    """Buffers served rows and writes them as hourly-partitioned Parquet."""

    def __init__(
        self, folder: Path, *, flush_seconds: float = 1.0, max_pending_rows: int = 200_000
    ) -> None:
        self.folder = Path(folder)
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
        import pyarrow.parquet as pq

        oldest = time.strftime("%Y-%m-%dT%H", time.gmtime(time.time() - days * 86_400))
        wanted = set(missing)
        for folder in sorted(self.folder.glob("hour=*"), reverse=True):
            if folder.name[5:] < oldest:
                break
            for path in folder.glob("part-*.parquet"):
                try:
                    column = pq.read_table(path, columns=["request_id"]).column(0)
                except (OSError, ValueError, KeyError):
                    continue
                wanted.difference_update(column.to_pylist())
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
        import pyarrow.parquet as pq

        groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        for entry in pending:
            groups.setdefault(tuple(entry[0]), []).append(entry)
        frame = pd.concat([self._frame(group) for group in groups.values()], ignore_index=True)
        hours = pd.to_datetime(frame["served_at"], unit="s", utc=True).dt.strftime("%Y-%m-%dT%H")
        for hour, part in frame.groupby(hours):
            folder = self.folder / f"hour={hour}"
            folder.mkdir(parents=True, exist_ok=True)
            self._sequence += 1
            name = f"part-{os.getpid()}-{time.time_ns()}-{self._sequence}.parquet"
            table = pa.Table.from_pandas(part.reset_index(drop=True), preserve_index=False)
            temporary = folder / f".{name}"
            try:
                pq.write_table(table, temporary)
            except BaseException:
                temporary.unlink(missing_ok=True)
                raise
            temporary.rename(folder / name)
        return len(frame)

    def close(self) -> None:
        self._stop.set()
        self.flush()


class FeedbackLog:
    """True labels by request id, one Parquet file per write."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def write(self, rows: list[dict[str, str]]) -> int:
        if not rows:
            return 0
        frame = pd.DataFrame(rows, columns=["request_id", "label"])
        frame["received_at"] = time.time()
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"part-{os.getpid()}-{time.time_ns()}.parquet"
        temporary = self.folder / f".{name}"
        frame.to_parquet(temporary, index=False)
        temporary.rename(self.folder / name)
        return len(frame)


def _hour(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H", time.gmtime(ts))


def _part_ns(path: Path) -> int:
    """The write time (ns) in a part file's name ``part-<pid>-<ns>-<seq>.parquet``."""
    try:
        return int(path.stem.split("-")[2])
    except (IndexError, ValueError):
        return 0


def _hour_files(folder: Path) -> list[Path]:
    """The files that make up one hour: its compacted file (if any), and the parts written after
    it. Parts the compaction already holds are skipped, so a reader racing a compaction never
    counts a row twice."""
    compacted = sorted(folder.glob("compact-upto-*.parquet"))
    covered = max((int(p.stem.rsplit("-", 1)[-1]) for p in compacted), default=-1)
    parts = [p for p in sorted(folder.glob("part-*.parquet")) if _part_ns(p) > covered]
    return compacted[-1:] + parts


def read_predictions(
    folder: Path, *, since: float | None = None, until: float | None = None
) -> pd.DataFrame:
    """Logged predictions served in [since, until) (all when not given), reading only the hourly
    partitions that overlap the window (empty frame if none)."""
    frames = []
    low = _hour(since) if since is not None else None
    high = _hour(until) if until is not None else None
    for hour in sorted(Path(folder).glob("hour=*")):
        name = hour.name[5:]
        if (low is not None and name < low) or (high is not None and name > high):
            continue
        for path in _hour_files(hour):
            try:
                frames.append(pd.read_parquet(path))
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


def compact(folder: Path, *, now: float | None = None, grace_seconds: float = 120.0) -> int:
    """Merge each closed hour's part files into one Parquet file; returns the hours compacted.

    An hour is closed ``grace_seconds`` after it ends (a worker may still be flushing its last
    rows). The merged file is named for the newest part it holds, written atomically, and only
    then are the parts removed; readers skip parts a merged file holds (``_hour_files``). One
    compactor at a time (a ``flock``); a second returns at once."""
    import fcntl

    folder = Path(folder)
    if not folder.exists():
        return 0
    now = time.time() if now is None else now
    closed_before = _hour(now - 3600.0 - grace_seconds)
    done = 0
    with open(folder / ".compact.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0
        for hour in sorted(folder.glob("hour=*")):
            if hour.name[5:] > closed_before:
                continue
            files = _hour_files(hour)
            parts = [p for p in files if p.name.startswith("part-")]
            if not parts or len(files) == 1:
                continue  # nothing new since the last compaction, or already one file
            frame = pd.concat((pd.read_parquet(p) for p in files), ignore_index=True)
            upto = max(_part_ns(p) for p in parts)
            target = hour / f"compact-upto-{upto}.parquet"
            temporary = hour / f".{target.name}"
            frame.to_parquet(temporary, index=False)
            temporary.rename(target)
            for path in files:
                if path != target:
                    path.unlink(missing_ok=True)
            done += 1
    return done


def read_feedback(folder: Path) -> pd.DataFrame:
    files = sorted(Path(folder).glob("part-*.parquet"))
    if not files:
        return pd.DataFrame(columns=["request_id", "label", "received_at"])
    return pd.concat((pd.read_parquet(f) for f in files), ignore_index=True)
