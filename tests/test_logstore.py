"""The prediction log on disk: hourly partitions, window reads, compaction of closed hours."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

from mlmedic.store.logstore import compact, read_predictions

HOUR = 3600.0


def _part(folder: Path, served_at: float, ids: list[str], ns: int) -> Path:
    hour = folder / f"hour={time.strftime('%Y-%m-%dT%H', time.gmtime(served_at))}"
    hour.mkdir(parents=True, exist_ok=True)
    path = hour / f"part-1-{ns}-1.parquet"
    pd.DataFrame(
        {"x": [1.0] * len(ids), "request_id": ids, "served_at": [served_at] * len(ids)}
    ).to_parquet(path, index=False)
    return path


def test_compaction_merges_closed_hours_and_reads_stay_the_same(tmp_path: Path) -> None:
    now = 1_800_000_000.0  # 2027-01-15T08:00 UTC
    folder = tmp_path / "predictions"
    for n in range(30):  # 30 flushes, three hours ago
        _part(folder, now - 3 * HOUR + n, [f"old-{n}"], ns=1000 + n)
    _part(folder, now - 60, ["current"], ns=5000)  # the current hour stays as it is
    before = read_predictions(folder).sort_values("request_id").reset_index(drop=True)
    assert compact(folder, now=now) == 1
    old_hour = next(p for p in folder.iterdir() if p.name.endswith("T05"))
    assert [p.name for p in old_hour.glob("*.parquet")] == ["compact-upto-1029.parquet"]
    after = read_predictions(folder).sort_values("request_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(before, after)
    assert compact(folder, now=now) == 0  # nothing new


def test_a_late_part_is_read_and_covered_parts_are_never_counted_twice(tmp_path: Path) -> None:
    now = 1_800_000_000.0
    folder = tmp_path / "predictions"
    first = _part(folder, now - 3 * HOUR, ["a"], ns=10)
    _part(folder, now - 3 * HOUR + 1, ["b"], ns=20)
    compact(folder, now=now)
    # a reader that listed the parts before they were removed must not count them again
    first.parent.joinpath(first.name).write_bytes(b"")  # a stale listing entry, now empty
    late = _part(folder, now - 3 * HOUR + 2, ["c"], ns=30)
    rows = read_predictions(folder)
    assert sorted(rows["request_id"]) == ["a", "b", "c"]
    assert late.exists()


def test_a_window_reads_only_its_partitions(tmp_path: Path) -> None:
    now = 1_800_000_000.0
    folder = tmp_path / "predictions"
    _part(folder, now - 30 * 24 * HOUR, ["month-old"], ns=1)
    broken = folder / "hour=2000-01-01T00"
    broken.mkdir()
    (broken / "part-1-2-1.parquet").write_bytes(b"not parquet")  # outside: never opened
    _part(folder, now - 10, ["recent"], ns=3)
    window = read_predictions(folder, since=now - HOUR, until=now)
    assert window["request_id"].tolist() == ["recent"]


def test_replicas_on_an_fsspec_url_write_their_own_parts_and_read_as_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two replicas (two host names) log to one memory:// location; the reader sees both, a
    compaction on shared storage runs only with the claim, and later labels win."""
    import numpy as np

    from mlmedic.store.logstore import FeedbackLog, PredictionLog, read_feedback

    url = f"memory://shared-{time.time_ns()}"
    for host, ids in (("replica-a", ["a1", "a2"]), ("replica-b", ["b1"])):
        monkeypatch.setattr("socket.gethostname", lambda host=host: host)
        log = PredictionLog(f"{url}/predictions", flush_seconds=60)
        for request_id in ids:
            log.append({"x": [1.0]}, [1], np.array([[0.3, 0.7]]), 1, request_id)
        assert log.flush() == len(ids)
        log.close()
    rows = read_predictions(f"{url}/predictions")
    assert sorted(rows["request_id"]) == ["a1", "a2", "b1"]
    import fsspec

    names = [p.rsplit("/", 1)[-1] for p in fsspec.filesystem("memory").find(url)]
    assert {n.split("-")[3] for n in names} == {"replica_a", "replica_b"}
    later = time.time() + 3 * HOUR
    assert compact(f"{url}/predictions", now=later, claim=lambda: False) == 0
    assert compact(f"{url}/predictions", now=later, claim=lambda: True) == 1
    assert sorted(read_predictions(f"{url}/predictions")["request_id"]) == ["a1", "a2", "b1"]
    feedback = FeedbackLog(f"{url}/feedback")
    feedback.write([{"request_id": "a1", "label": "0"}])
    feedback.write([{"request_id": "a1", "label": "1"}])
    labels = read_feedback(f"{url}/feedback").drop_duplicates("request_id", keep="last")
    assert labels["label"].tolist() == ["1"]
