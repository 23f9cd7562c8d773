"""A release is one state machine (#31): every end goes through ``transition``, which re-reads
the record under the release lock and takes the one end claim every host shares, so an ended
release never moves again — the interleavings that once promoted a crashed candidate, made
deterministic here — and a release's limits hold whatever its labels say."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

import mlmedic.heal.releases.judge as judged
from mlmedic.core.clock import SimulatedClock
from mlmedic.core.config import DeploymentConfig, load_settings
from mlmedic.heal.releases.judge import Action, ReleaseVerdict, judge, tend
from mlmedic.heal.releases.states import (
    Mode,
    Move,
    Release,
    ReleaseStateError,
    State,
    end_locally,
    read_release,
    sync_release,
    transition,
    write_release,
)
from mlmedic.store.events import EventKind, EventStore


class _Registry:
    """What an end asks of the registry, recorded (the registry itself is tested elsewhere)."""

    model_name = "churn"

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.aliases = SimpleNamespace(set_alias=lambda *a: self.calls.append(("alias", *a)))

    def promote(self, version: int, reason: str) -> None:
        self.calls.append(("promote", version))

    def reject(self, version: int, reason: str) -> None:
        self.calls.append(("reject", version))

    def alias_version(self, name: str) -> int | None:
        return {"champion": 1, "challenger": 2}.get(name)

    def set_tags(self, version: int, tags: dict[str, str]) -> None:
        self.calls.append(("tags", version))

    def info(self, version: int) -> Any:
        return SimpleNamespace(tags={"mlmedic.task": "classification"}, metrics={})


def _project(root: Path, events: EventStore | None = None) -> Any:
    state = root / ".mlmedic"
    state.mkdir(parents=True, exist_ok=True)
    return SimpleNamespace(
        state_dir=state,
        events=events or EventStore(state / "events.db", clock=SimulatedClock(1_000.0)),
        registry=_Registry(),
        settings=load_settings(root),
    )


def _running(project: Any) -> Release:
    release = Release(
        id="v2-1000",
        version=2,
        champion=1,
        mode=Mode.CANARY,
        share=0.1,
        started_at=1_000.0,
        model_name="churn",
    )
    write_release(project.state_dir, release)
    return release


def _promote_verdict(release: Release) -> ReleaseVerdict:
    return ReleaseVerdict(release, Action.PROMOTE, "significantly better (made up)")


def test_a_crash_abort_between_the_look_and_the_end_is_never_promoted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = _project(tmp_path)
    release = _running(project)

    def look_then_the_server_aborts(project: Any, release: Release) -> ReleaseVerdict:
        verdict = _promote_verdict(release)  # the look says promote ...
        assert end_locally(project.state_dir, project.events, release, "SIGSEGV")  # ... then
        return verdict

    monkeypatch.setattr(judged, "judge", look_then_the_server_aborts)
    said: list[str] = []
    assert tend(project, said.append) is not None
    assert ("promote", 2) not in project.registry.calls
    ended = read_release(project.state_dir)
    assert ended is not None and ended.state is State.ABORTED and not ended.synced
    assert any("already ended aborted" in line for line in said)
    with pytest.raises(ReleaseStateError, match="already ended aborted"):
        transition(project.state_dir, project.events, release, Move.PROMOTE, "a person")
    sync_release(project)  # the watcher carries the abort to the registry: rejected
    assert ("reject", 2) in project.registry.calls
    assert ("promote", 2) not in project.registry.calls
    assert read_release(project.state_dir).synced  # type: ignore[union-attr]
    ends = [e for e in project.events.query(kind=EventKind.RELEASE) if e.action != "verdict"]
    assert [(e.action, e.details["by"]) for e in ends] == [("abort", "server")]


def test_a_promotion_first_leaves_nothing_for_a_late_abort(tmp_path: Path) -> None:
    project = _project(tmp_path)
    release = _running(project)
    judged.end_release(project, release, Move.PROMOTE, "better")
    assert ("promote", 2) in project.registry.calls
    assert not end_locally(project.state_dir, project.events, release, "crashed after")
    ended = read_release(project.state_dir)
    assert ended is not None and ended.state is State.PROMOTED and ended.synced
    assert ("reject", 2) not in project.registry.calls


def test_one_end_per_release_across_hosts_sharing_the_event_store(tmp_path: Path) -> None:
    """Two hosts (two state folders, one store): a server's abort on one and the monitor's
    promotion on the other take the same claim, so only the first happens."""
    store = EventStore(tmp_path / "shared.db", clock=SimulatedClock(1_000.0))
    one, two = _project(tmp_path / "one", store), _project(tmp_path / "two", store)
    release = _running(one)
    _running(two)
    assert end_locally(one.state_dir, store, release, "crashed on host one")
    with pytest.raises(ReleaseStateError, match="ended by another process"):
        transition(two.state_dir, store, release, Move.PROMOTE, "better on host two")
    still = read_release(two.state_dir)
    assert still is not None and still.running  # host two follows the end from the registry


def test_every_illegal_move_is_refused(tmp_path: Path) -> None:
    project = _project(tmp_path)
    release = _running(project)
    with pytest.raises(ValueError, match="start_release"):
        transition(project.state_dir, project.events, release, Move.START, "again")
    other = Release(**{**release.to_dict(), "id": "v9-1"})
    with pytest.raises(ReleaseStateError, match="not the one this host runs"):
        transition(project.state_dir, project.events, other, Move.ABORT, "which?")
    transition(project.state_dir, project.events, release, Move.RETIRE, "worse")
    for move in (Move.PROMOTE, Move.ABORT, Move.RETIRE, Move.EXPIRE):
        with pytest.raises(ReleaseStateError, match="already ended retired"):
            transition(project.state_dir, project.events, release, move, "late")
    assert [m.to for m in Move] == [
        State.RUNNING,
        State.PROMOTED,
        State.RETIRED,
        State.ABORTED,
        State.RETIRED,
    ]


# ---------------------------------------------------------------------- limits before labels
def _labelled_equal(rows: int = 1000) -> pd.DataFrame:
    """``rows`` labelled pairs on which the two models agree but for 20 rows, split evenly:
    no significant difference, and a lower bound of -0.0074."""
    right = ["1"] * (rows - 20 - 80)
    candidate = right + ["1"] * 10 + ["0"] * 10 + ["0"] * 80
    champion = right + ["0"] * 10 + ["1"] * 10 + ["0"] * 80
    return pd.DataFrame({"candidate": candidate, "champion": champion, "label": "1"})


@pytest.mark.parametrize(
    ("hours", "action", "expired"),
    [(0.5, Action.WAIT, False), (1.01, Action.RETIRE, True), (10_000.0, Action.RETIRE, True)],
)
def test_max_duration_ends_a_release_even_with_labels_arriving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hours: float, action: Action, expired: bool
) -> None:
    """#31's defect 1: 1,000 labelled pairs, no difference, ``not_worse_margin`` 0.005 and
    ``max_duration_hours`` 1 waited at 0.5 h, 100 h and 10,000 h alike."""
    project = _project(tmp_path)
    project.settings.self_healing.deployment = DeploymentConfig(
        not_worse_margin=0.005, max_duration_hours=1
    )
    release = _running(project)
    monkeypatch.setattr(judged, "pairs_of", lambda *_: (_labelled_equal(), 1_000))
    found = judge(project, release, now=release.started_at + hours * 3600)
    assert found.labelled == 1_000
    assert (found.action, found.expired) == (action, expired), found.why
    assert found.move is (Move.EXPIRE if expired else None)


def test_max_requests_ends_a_release_even_with_labels_arriving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = _project(tmp_path)
    project.settings.self_healing.deployment = DeploymentConfig(
        not_worse_margin=0.005, max_requests=999
    )
    release = _running(project)
    monkeypatch.setattr(judged, "pairs_of", lambda *_: (_labelled_equal(), 1_000))
    found = judge(project, release, now=release.started_at + 60)
    assert (found.action, found.move) == (Action.RETIRE, Move.EXPIRE)
    assert "deployment.max_requests" in found.why
    monkeypatch.setattr(judged, "pairs_of", lambda *_: (_labelled_equal(), 999))
    assert judge(project, release, now=release.started_at + 60).action is Action.WAIT


def test_decide_without_labels_is_what_lets_agreement_promote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unlabelled pairs that agree on 99.5 % of 2,000 rows promote only with the key on."""
    project = _project(tmp_path)
    release = _running(project)
    pairs = pd.DataFrame(
        {"candidate": ["1"] * 2000, "champion": ["1"] * 1990 + ["0"] * 10, "label": None}
    )
    monkeypatch.setattr(judged, "pairs_of", lambda *_: (pairs, 2_000))
    for on, action in ((False, Action.WAIT), (True, Action.PROMOTE)):
        project.settings.self_healing.deployment = DeploymentConfig(decide_without_labels=on)
        found = judge(project, release, now=release.started_at + 60)
        assert found.action is action, found.why


# ---------------------------------------------------------------------- the wire
def test_the_wire_round_trips_every_message_and_refuses_every_malformed_line() -> None:
    import numpy as np

    from mlmedic.serving.releases.wire import (
        CanaryAnswer,
        CanaryAsk,
        ShadowRows,
        WireError,
        encode,
        parse_answer,
        parse_request,
    )

    rows = ShadowRows(["a", "b"], [1, 2], {"age": [np.int64(30), 40, 50]})
    assert parse_request(encode(rows)) == ShadowRows(["a", "b"], [1, 2], {"age": [30, 40, 50]})
    ask = CanaryAsk(3, {"age": [30]})
    assert parse_request(encode(ask)) == ask
    answer = CanaryAnswer(3, True, [1], [[0.2, 0.8]], [0, 1])
    assert parse_answer(encode(answer)) == answer
    failed = parse_answer(encode(CanaryAnswer(4, False, error="ValueError: no")))
    assert (failed.ok, failed.error) == (False, "ValueError: no")
    bad_requests = {
        b"not json\n": "not JSON",
        b"[1]\n": "JSON object",
        b'{"t": "c", "n": 1, "columns": {}}\n': "wire version None",
        b'{"v": 2, "t": "c", "n": 1, "columns": {}}\n': "wire version 2",
        b'{"v": 1, "t": "x"}\n': "unknown type 'x'",
        b'{"v": 1, "t": "c", "n": true, "columns": {}}\n': "'n' must be a whole number",
        b'{"v": 1, "t": "c", "n": 1, "columns": []}\n': "'columns' must be an object",
        b'{"v": 1, "t": "s", "ids": ["a"], "rows": [1, 2], "columns": {}}\n': "one string id",
        b'{"v": 1, "t": "s", "ids": ["a"], "rows": [-1], "columns": {}}\n': "whole numbers",
        b'{"v": 1, "t": "s", "ids": ["a"], "rows": [2], "columns": {"x": [1]}}\n': "per row",
    }
    for line, problem in bad_requests.items():
        with pytest.raises(WireError, match=problem):
            parse_request(line)
    with pytest.raises(WireError, match="one output row per label"):
        parse_answer(b'{"v": 1, "n": 1, "ok": true, "labels": [1], "outputs": []}\n')
    with pytest.raises(WireError, match="'ok' must be true or false"):
        parse_answer(b'{"v": 1, "n": 1, "ok": 1}\n')


def test_the_release_hosts_hang_limit_widens_on_a_starved_host_as_the_supervisors() -> None:
    from mlmedic.serving.marks import HangLimit

    limit = HangLimit(2.0)
    assert limit.tick(100.0) is None
    assert limit.tick(100.1) == 2.0  # a quiet host: the configured limit
    assert limit.tick(103.1) == pytest.approx(6.0)  # the watcher itself waited 3 s
    assert limit.tick(113.2) == pytest.approx(20.2)  # the 3 s gap is over 10 s old: forgotten
    assert limit.tick(113.3) == pytest.approx(20.2)
    limit.mark(200.0)  # a wait of its own: the 86.7 s since the last tick is no starvation
    assert limit.tick(200.1) == 2.0
