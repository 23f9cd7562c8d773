"""A window of the prediction log summarised on a Dask cluster, for a log too big for one process.

Each part file of the window is one task: it reads the file (from a local folder or any fsspec
URL the workers can reach), keeps the rows served inside the window, and returns

- the profile of the model's features and of the served probability, with the champion's bin
  edges (``ReferenceProfile.partition``): exact bin and category counts, a reservoir sample;
- the rows that carry a label (feedback joined by request id): few, kept whole;
- a small sample of rows, for the performance estimate when no label arrived.

The profiles are merged pairwise on the cluster (``ReferenceProfile.merge``) and only the merged
profile, the labelled rows and the sample come back: the monitor's memory does not grow with the
log. ``compare`` then reads the merged profile exactly as it reads rows: the same drifted
features, the counts-based statistics exact, the distances within the sampling tolerance.

The workers need mlmedic installed (the same version as the monitor).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mlmedic.core.errors import UsageError
from mlmedic.data.drift import ReferenceProfile
from mlmedic.model.training import model_features, model_frame
from mlmedic.store.logstore import Location, window_files

SAMPLE_ROWS = 50_000  # rows of the window kept for the performance estimate
BATCH_ROWS = 200_000  # rows of a part file profiled at once on a worker
CONNECT_SECONDS = 10.0  # how long to try reaching the scheduler


@dataclass
class WindowSummary:
    """What the cluster returns for one window."""

    rows: int
    features: ReferenceProfile
    predictions: ReferenceProfile
    frame: pd.DataFrame  # the labelled rows, or (none labelled) a sample of the window


def _summarise(
    location: str,
    path: str,
    since: float | None,
    until: float | None,
    features: dict[str, Any],
    predictions: dict[str, Any],
    contract: Any,
    target: str | None,
    labels: pd.Series | None,
    sample_rows: int,
    batch_rows: int = BATCH_ROWS,
) -> tuple[int, ReferenceProfile, ReferenceProfile, pd.DataFrame, pd.DataFrame]:
    """One part file, streamed ``batch_rows`` rows at a time (a compacted hour can be millions
    of rows; a worker's memory is bounded by the batch, not the file): (rows, feature profile,
    prediction profile, labelled rows, sample)."""
    import pyarrow.parquet as pq

    where = Location(location)
    feature_reference = ReferenceProfile.from_dict(features)
    prediction_reference = ReferenceProfile.from_dict(predictions)
    summary: tuple[int, ReferenceProfile, ReferenceProfile, pd.DataFrame, pd.DataFrame] | None = (
        None
    )
    with where.fs.open(path, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        names = parquet.schema_arrow.names
        wanted = set(model_features(contract)) | {"served_at", "probability"}
        if labels is not None:
            wanted.add("request_id")
        columns = [n for n in names if n in wanted or n.startswith("proba_")]
        total = max(parquet.metadata.num_rows, 1)
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=columns):
            frame = batch.to_pandas()
            if since is not None:
                frame = frame[frame["served_at"] >= since]
            if until is not None:
                frame = frame[frame["served_at"] < until]
            frame = frame.reset_index(drop=True)
            feature_profile = feature_reference.partition(model_frame(frame, contract))
            probability = frame.filter(regex=r"^proba_\d+$").to_numpy(dtype=float)
            served = pd.DataFrame(
                {
                    "probability": probability.max(axis=1)
                    if probability.size
                    else frame.get("probability")
                }
            )
            prediction_profile = prediction_reference.partition(served)
            labelled = frame.iloc[0:0]
            if labels is not None and target is not None and len(frame):
                joined = frame["request_id"].map(labels)
                labelled = frame.assign(**{target: joined})[joined.notna().to_numpy()]
            share = max(1, round(sample_rows * len(batch) / total))
            sample = frame.sample(n=min(len(frame), share), random_state=0)
            part = (len(frame), feature_profile, prediction_profile, labelled, sample)
            summary = part if summary is None else _merge(summary, part, sample_rows)
    if summary is None:  # a file without rows
        empty = pd.DataFrame(columns=columns)
        return (
            0,
            feature_reference.partition(model_frame(empty, contract)),
            prediction_reference.partition(pd.DataFrame({"probability": pd.Series(dtype=float)})),
            empty,
            empty,
        )
    return summary


def _merge(
    a: tuple[int, ReferenceProfile, ReferenceProfile, pd.DataFrame, pd.DataFrame],
    b: tuple[int, ReferenceProfile, ReferenceProfile, pd.DataFrame, pd.DataFrame],
    sample_rows: int,
) -> tuple[int, ReferenceProfile, ReferenceProfile, pd.DataFrame, pd.DataFrame]:
    rows = a[0] + b[0]
    sample = pd.concat([a[4], b[4]], ignore_index=True)
    if len(sample) > sample_rows:
        sample = sample.sample(n=sample_rows, random_state=0)
    return (
        rows,
        a[1].merge(b[1]),
        a[2].merge(b[2]),
        pd.concat([a[3], b[3]], ignore_index=True),
        sample,
    )


def summarise_window(
    scheduler: str,
    location: str | Path,
    *,
    since: float | None,
    until: float | None,
    features: dict[str, Any],
    predictions: dict[str, Any],
    contract: Any,
    target: str | None,
    labels: pd.Series | None,
    sample_rows: int = SAMPLE_ROWS,
    batch_rows: int = BATCH_ROWS,
) -> WindowSummary | None:
    """The window [since, until) of the log at ``location``, summarised on the Dask cluster at
    ``scheduler`` (``tcp://host:8786``); None when the window holds no part file."""
    try:
        import dask
        from distributed import Client
    except ImportError:
        raise UsageError(
            "--dask needs Dask's distributed scheduler: pip install 'mlmedic[dask]'"
        ) from None

    where = Location(location)
    paths = window_files(where, since, until)
    if not paths:
        return None
    per_task = max(1, sample_rows // len(paths))
    task = dask.delayed(_summarise, pure=True)
    merge = dask.delayed(_merge, pure=True)
    parts = [
        task(
            where.url,
            path,
            since,
            until,
            features,
            predictions,
            contract,
            target,
            labels,
            per_task,
            batch_rows,
        )
        for path in paths
    ]
    while len(parts) > 1:  # a tree: no task ever holds more than two profiles
        paired = [merge(a, b, sample_rows) for a, b in zip(parts[::2], parts[1::2], strict=False)]
        parts = paired + ([parts[-1]] if len(parts) % 2 else [])
    try:
        client = Client(scheduler, timeout=f"{CONNECT_SECONDS}s", set_as_default=False)
    except OSError as exc:
        raise UsageError(f"--dask {scheduler}: cannot reach the scheduler ({exc})") from None
    try:
        rows, feature_profile, prediction_profile, labelled, sample = client.compute(
            parts[0]
        ).result()
    finally:
        client.close()
    frame = labelled if len(labelled) else sample
    return WindowSummary(rows, feature_profile, prediction_profile, frame.reset_index(drop=True))
