"""The dashboard (issue 12): each figure from a hand-built event store with known answers, the
terminal/JSON/HTML views, bad input, and the page in a real headless Chromium."""

from __future__ import annotations

import json
import re
import sqlite3
import sys
from pathlib import Path

import pytest

from mlmedic.core.clock import SimulatedClock
from mlmedic.core.config import Settings
from mlmedic.store.events import EventStore
from mlmedic.views.dashboard import DAY, build
from mlmedic.views.page import page

NOW = 1_800_000_000.0


def _at(store: EventStore, days_ago: float, kind: str, action: str, outcome: str, **kw) -> None:  # type: ignore[no-untyped-def]
    started = NOW - days_ago * DAY
    store.record(
        kind,
        action,
        outcome,
        started_at=started,
        ended_at=started + kw.pop("duration", 0.0),
        **kw,
    )


@pytest.fixture
def store(tmp_path: Path) -> EventStore:
    events = EventStore(tmp_path / "events.db", clock=SimulatedClock(start=NOW))
    # auto-fix: 3 passed + 1 failed in 30 days; one more 40 days ago (outside)
    for outcome in ("success", "success", "success", "failure"):
        _at(events, 2, "data_fix", "auto-fix", outcome)
    _at(events, 40, "data_fix", "auto-fix", "failure")
    # rollbacks in 7 days: monitor + supervisor (automatic), a person, the gate keeping the
    # champion (automatic); the gate with no champion (not a rollback); one 10 days ago
    _at(events, 1, "rollback", "rollback", "success", details={"by": "monitor", "reason": "x"})
    _at(events, 1, "rollback", "rollback", "success", details={"by": "supervisor", "reason": "y"})
    _at(events, 2, "rollback", "rollback", "success", details={"by": "person", "reason": "z"})
    _at(events, 3, "rollback", "auto-rollback", "success")
    _at(events, 3, "rollback", "auto-rollback", "skipped")
    _at(events, 10, "rollback", "rollback", "success", details={"by": "monitor", "reason": "old"})
    # retrains in 30 days: 2 deployed, 1 refused
    for outcome in ("success", "success", "failure"):
        _at(events, 5, "retrain", "retrain", outcome)
    # recoveries: 4 recovered (1, 2, 3, 10 s), 1 not; one other-action recovery event
    for seconds in (1.0, 2.0, 3.0, 10.0):
        _at(events, 4, "recovery", "service", "success", duration=seconds)
    _at(events, 4, "recovery", "service", "failure", duration=60.0)
    _at(events, 4, "recovery", "reload-model", "success", duration=99.0)
    # the last monitoring pass, one hour ago: no drift, measured accuracy 0.9
    _at(
        events,
        1 / 24,
        "drift_check",
        "features",
        "success",
        details={
            "score": 0.2,
            "threshold": 0.5,
            "drifted": [],
            "features": [{"name": "age", "drifted": False, "statistic": 0.02}],
        },
    )
    _at(
        events,
        1 / 24,
        "performance_check",
        "measure",
        "success",
        details={"accuracy": 0.9, "estimated": False, "rows": 500},
    )
    _at(events, 1 / 24, "monitor", "pass", "success", details={"rows": 500, "action": "none"})
    yield events
    events.close()


def test_each_figure_from_a_store_with_known_answers(store: EventStore) -> None:
    board = build(store, now=NOW, settings=Settings())
    auto_fix = board.figure("auto_fix")
    assert auto_fix.value == pytest.approx(0.75) and auto_fix.shown == "75 %"
    assert auto_fix.detail == "3 of 4 re-checks passed" and auto_fix.window == "30 days"
    rollbacks = board.figure("rollbacks")
    assert rollbacks.value == 4 and rollbacks.detail == "3 automatic · 1 manual"
    assert rollbacks.window == "7 days"
    retrains = board.figure("retrains")
    assert retrains.value == 3 and retrains.detail == "2 deployed · 1 refused by the gate"
    recoveries = board.figure("recoveries")
    assert recoveries.value == 4 and recoveries.detail == "1 not recovered"
    mttr = board.figure("mttr")
    assert mttr.value == pytest.approx(4.0) and mttr.shown == "4.0 s"
    assert mttr.detail == "median 2.5 s · p95 8.9 s · 4 recoveries"
    health = board.figure("health")
    parts = {p.name: p.score for p in board.health_parts}
    # serving and the prediction log do not apply (nothing serves); a recovery failed
    assert parts == {
        "serving": None,
        "accuracy": 1.0,
        "drift": 1.0,
        "monitoring": 1.0,
        "recoveries": 0.0,
        "prediction log": None,
    }
    assert health.value == pytest.approx(0.75) and health.shown == "75 %"
    assert board.last_pass is not None and board.last_pass["accuracy"] == 0.9
    assert len(board.drift) == 1 and board.heatmap[0]["features"][0]["name"] == "age"


def test_windows_can_be_changed_and_events_outside_them_do_not_count(store: EventStore) -> None:
    board = build(store, now=NOW, settings=Settings(), window_days=1.5)
    assert board.figure("auto_fix").value is None  # the fixes were 2 days ago
    assert board.figure("rollbacks").value == 2
    assert board.figure("rollbacks").window == "1.5 days"
    wide = build(store, now=NOW, settings=Settings(), window_days=60)
    assert wide.figure("auto_fix").detail == "3 of 5 re-checks passed"


def test_an_empty_store_and_a_store_of_failures(tmp_path: Path) -> None:
    with EventStore(tmp_path / "empty.db") as empty:
        board = build(empty, now=NOW)
    assert board.empty and board.figure("health").shown == "no data yet"
    assert board.figure("auto_fix").shown == "no data yet"
    assert board.figure("mttr").shown == "no data yet"
    with EventStore(tmp_path / "bad.db", clock=SimulatedClock(start=NOW)) as bad:
        for _ in range(3):
            _at(bad, 1, "data_fix", "auto-fix", "failure")
            _at(bad, 1, "retrain", "retrain", "failure")
        board = build(bad, now=NOW)
    assert board.figure("auto_fix").shown == "0 %"
    assert board.figure("retrains").detail == "0 deployed · 3 refused by the gate"


def test_the_page_is_self_contained_and_shows_the_figures(store: EventStore) -> None:
    board = build(store, now=NOW, settings=Settings())
    html = page(board)
    assert "<script" not in html and "@import" not in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # nothing from the network
    for figure in board.figures:
        assert f'id="tile-{figure.key}" data-value="{figure.shown}"' in html
    assert "threshold 0.5" in html and "per-feature drift" in html


def _cli(args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    from mlmedic.cli import main

    monkeypatch.setattr(sys, "argv", ["mlmedic", *args])
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as done:
        main()
    captured = capsys.readouterr()
    return done.value.code, captured.out, captured.err


def test_the_command_on_an_empty_project_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "empty"
    project.mkdir()
    code, out, _ = _cli(["dashboard", "-C", str(project)], monkeypatch, capsys)
    assert code == 0 and "no data yet" in out and "auto-fix success rate" in out
    assert "data-fix runs whose re-check passed" in out  # definitions on the screen
    assert list(project.iterdir()) == []
    code, out, _ = _cli(["dashboard", "--json", "-C", str(project)], monkeypatch, capsys)
    data = json.loads(out)
    assert code == 0 and data["empty"] and len(data["figures"]) == 6
    code, _, err = _cli(["dashboard", "--window", "soon", "-C", str(project)], monkeypatch, capsys)
    assert code == 2 and err.count("\n") == 1 and "--window" in err


def test_a_corrupt_or_locked_store_is_one_line_exit_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / ".mlmedic"
    state.mkdir()
    (state / "events.db").write_bytes(b"this is not a database" * 100)
    code, _, err = _cli(["dashboard", "-C", str(tmp_path)], monkeypatch, capsys)
    assert code == 3 and err.count("\n") == 1, err
    (state / "events.db").unlink()
    EventStore(state / "events.db").close()
    blocker = sqlite3.connect(state / "events.db", isolation_level=None)
    blocker.execute("PRAGMA locking_mode = EXCLUSIVE")
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        code, _, err = _cli(["dashboard", "-C", str(tmp_path)], monkeypatch, capsys)
    finally:
        blocker.execute("COMMIT")
        blocker.close()
    assert code == 3 and err.count("\n") == 1, err


@pytest.mark.slow
def test_the_html_file_in_a_real_browser(store: EventStore, tmp_path: Path) -> None:
    from browser import distinct_pixels, load

    board = build(store, now=NOW, settings=Settings())
    target = tmp_path / "dashboard.html"
    target.write_text(page(board), encoding="utf-8")
    loaded = load(target.as_uri(), tmp_path)
    assert loaded.console == []
    assert loaded.requests_off_machine == []
    shown = dict(re.findall(r'id="tile-(\w+)" data-value="([^"]*)"', loaded.dom))
    assert shown == {f.key: f.shown for f in board.figures}
    assert distinct_pixels(loaded.screenshot) > 20  # not a blank page
