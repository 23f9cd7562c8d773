"""A history cut into windows in data time: by a time column (``every``), file by file from a
folder, or in row order (``window_rows``), each with its rows' data times — what ``mlmedic
replay`` passes through the loop, one monitoring pass per window, at its newest row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mlmedic.core.clock import data_times
from mlmedic.core.errors import UsageError
from mlmedic.data.io import read_table


@dataclass
class Window:
    """One window of the history: its rows, the data-time span they cover, and each row's
    data time (the pass happens at the newest)."""

    index: int
    start: float
    end: float
    rows: pd.DataFrame
    times: np.ndarray = field(default_factory=lambda: np.empty(0))

    def __post_init__(self) -> None:
        if len(self.times) != len(self.rows):  # rows in order, spread over (start, end]
            n = len(self.rows)
            self.times = self.start + (self.end - self.start) * np.arange(1, n + 1) / max(n, 1)

    @property
    def at(self) -> float:
        """When the window's pass runs: at its newest row."""
        return float(self.times.max()) if len(self.times) else self.end


def windows_of(
    history: str | Path | pd.DataFrame,
    *,
    time_column: str | None,
    every_seconds: float,
    window_rows: int,
    start: float,
) -> list[Window]:
    """The history cut into windows (see the module docstring)."""
    if isinstance(history, pd.DataFrame):
        return _by_rows_or_time(history, time_column, every_seconds, window_rows, start)
    path = Path(history)
    if path.is_dir() and time_column is None:
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise UsageError(f"{path}: no files to replay")
        found = []
        for position, file in enumerate(files):
            frame = read_table(file)
            found.append(
                Window(
                    position,
                    start + position * every_seconds,
                    start + (position + 1) * every_seconds,
                    frame.reset_index(drop=True),
                )
            )
        return found
    return _by_rows_or_time(read_table(path), time_column, every_seconds, window_rows, start)


def _by_rows_or_time(
    frame: pd.DataFrame,
    time_column: str | None,
    every_seconds: float,
    window_rows: int,
    start: float,
) -> list[Window]:
    if time_column is not None:
        if time_column not in frame.columns:
            raise UsageError(f"--time-column {time_column}: no such column in the history")
        try:
            seconds = data_times(frame[time_column], what=f"--time-column {time_column}")
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        order = np.argsort(seconds, kind="stable")
        frame, seconds = frame.iloc[order].reset_index(drop=True), seconds[order]
        first = float(seconds[0])
        slot = ((seconds - first) // every_seconds).astype(int)
        found = []
        for position, number in enumerate(np.unique(slot)):
            inside = np.flatnonzero(slot == number)
            begin = first + int(number) * every_seconds
            found.append(
                Window(
                    position,
                    begin,
                    begin + every_seconds,
                    frame.iloc[inside].reset_index(drop=True),
                    seconds[inside],
                )
            )
        return found
    if window_rows < 1:
        raise UsageError("--window-rows must be at least 1")
    found = []
    for position, begin in enumerate(range(0, len(frame), window_rows)):
        rows = frame.iloc[begin : begin + window_rows].reset_index(drop=True)
        t0 = start + position * every_seconds
        found.append(Window(position, t0, t0 + every_seconds, rows))
    return found


def prepare(
    history: str | Path | pd.DataFrame,
    target: str,
    reference: str | Path | pd.DataFrame | None,
    time_column: str | None,
    every_seconds: float,
    window_rows: int,
) -> tuple[list[Window], pd.DataFrame]:
    """The windows to replay and the reference the first model learns from (the windows
    holding the first fifth of the history when no reference is given)."""
    start = 1_600_000_000.0  # data time of a history without a time column
    windows = windows_of(
        history,
        time_column=time_column,
        every_seconds=every_seconds,
        window_rows=window_rows,
        start=start,
    )
    if reference is None and any(target not in w.rows.columns for w in windows):
        raise UsageError(f"--target {target}: not a column of every window of the history")
    for window in windows:  # a history without labels (a reference gave the first model)
        if target not in window.rows.columns:
            window.rows = window.rows.assign(**{target: np.nan})
    if reference is None and len(windows) < 2:
        raise UsageError(
            f"the history holds {len(windows)} window(s): at least 2 are needed (the first model "
            "learns from the first); cut it finer with --window-rows or --every, or pass "
            "--reference"
        )
    if reference is None:
        total = sum(len(w.rows) for w in windows)
        taken, rows = 0, 0
        while taken < len(windows) - 1 and rows < total / 5:
            rows += len(windows[taken].rows)
            taken += 1
        reference_frame = pd.concat([w.rows for w in windows[:taken]], ignore_index=True)
        reference_frame = reference_frame[reference_frame[target].notna()]
        windows = windows[taken:]
        if not len(reference_frame):
            raise UsageError(
                "the first fifth of the history has no labels to train the first model on; "
                "pass a labelled --reference"
            )
    else:
        reference_frame = (
            reference if isinstance(reference, pd.DataFrame) else read_table(Path(reference))
        )
    if not windows:
        raise UsageError("the history holds no window to replay after the reference")
    drop = [c for c in (time_column,) if c]
    reference_frame = reference_frame.drop(columns=[c for c in drop if c in reference_frame])
    for window in windows:
        window.rows = window.rows.drop(columns=[c for c in drop if c in window.rows])
    return windows, reference_frame.reset_index(drop=True)


def data_time(frame: pd.DataFrame, time_column: str | None, known: str | None) -> float | None:
    """The newest time of a batch's time column (``--time-column``, else ``known``, the
    contract's time column, when the batch has it), or None; ``UsageError`` for a column that
    is not there or does not read as times."""

    what = f"--time-column {time_column}"
    if time_column is None:
        if known is None or known not in frame.columns:
            return None
        time_column, what = known, f"the time column {known} (data_quality.time_column)"
    if time_column not in frame.columns:
        raise UsageError(f"{what}: no such column in the batch")
    if not len(frame):
        return None
    try:
        return float(data_times(frame[time_column], what=what).max())
    except ValueError as exc:
        raise UsageError(str(exc)) from None
