"""Releases judged on live traffic (#24), as real processes: a shadow scored beside the champion
and promoted on labelled feedback, a canary answering its share and aborted when it crashes, a
hanging shadow that never delays an answer; and the bad input a release gets."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mlmedic.data.datasets import TARGET, make_churn
from mlmedic.heal.monitor import Monitor
from mlmedic.heal.pipeline import run_pipeline
from mlmedic.heal.releases.judge import pairs_of
from mlmedic.heal.releases.states import read_release, routes_to_canary
from mlmedic.model.faults import TRIGGER_AGE, write_trainer
from mlmedic.model.project import Project
from mlmedic.store.events import EventStore
from mlmedic.store.logstore import read_predictions
from served import get_json, post_json, serving, wait_until

pytestmark = pytest.mark.slow  # servers and commands in their own processes

FEATURES = [c for c in make_churn(1).columns if c not in (TARGET, "signup_at")]


def _project(root: Path, **deployment: Any) -> Project:
    """A project whose floors let a weak first champion pass (the shallow trainer), with the
    release settings given."""
    root.mkdir(parents=True, exist_ok=True)
    config = {
        "model_validation": {"min_f1_threshold": 0.2},
        "service_recovery": {"health_check_interval_seconds": 0.5},
        "serving": {"registry_poll_seconds": 0.5},
        "monitoring": {"mlflow_reports": False},  # a pass judges the release; no MLflow run
        "deployment": {"min_labelled_requests": 100, **deployment},
    }
    (root / "self_healing_config.json").write_text(json.dumps(config))
    return Project(root)


def _records(rows: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in record.items()}
        for record in rows[FEATURES].to_dict("records")
    ]


def _send(url: str, rows: pd.DataFrame, prefix: str) -> list[dict[str, Any]]:
    """One request per row, each with its own id; every answer must be 200."""
    answers = []
    for index, record in enumerate(_records(rows)):
        status, body = post_json(
            url + "/predict", {"records": [record]}, headers={"x-request-id": f"{prefix}{index}"}
        )
        assert status == 200, body
        answers.append(body)
    return answers


def _cli(root: Path, *args: str) -> Any:
    """``mlmedic ARGS -C ROOT`` in this process (Typer's runner): its exit code and output."""
    from typer.testing import CliRunner

    from mlmedic.cli import app

    return CliRunner().invoke(app, [*args, "-C", str(root)])


def _release_events(root: Path) -> list[Any]:
    with EventStore(root / ".mlmedic" / "events.db") as store:
        return store.query(kind="release")


def test_a_shadow_is_scored_beside_the_champion_never_answers_and_is_promoted_on_labels(
    tmp_path: Path,
) -> None:
    root = tmp_path / "shadowed"
    project = _project(root)
    assert run_pipeline(
        project, make_churn(1500, seed=1), target=TARGET, trainer="trainers:shallow"
    ).deployed
    run = run_pipeline(project, make_churn(2000, seed=2), target=TARGET, release="shadow")
    assert (run.release, run.candidate, run.champion_after) == ("shadow", 2, 1)
    project.close()
    listed = _cli(root, "models")
    assert "v2 shadow @challenger" in listed.stdout and "v1 champion @champion" in listed.stdout
    live = make_churn(300, seed=3)
    with serving(root) as url:
        answers = _send(url, live, "shadow-")
        # only the champion answers, and nothing of the shadow is in an answer
        assert {a["model_version"] for a in answers} == {1}
        assert all(
            set(a)
            == {"request_id", "model_version", "predictions", "probabilities", "classes", "errors"}
            for a in answers
        )
        release_log = root / ".mlmedic" / "release"
        assert wait_until(lambda: len(read_predictions(release_log)) == 300, timeout=20)
        shadowed = read_predictions(release_log)
        assert set(shadowed["model_version"]) == {2}
        assert set(shadowed["request_id"]) == {a["request_id"] for a in answers}
        labels = [
            {"request_id": f"shadow-{i}", "label": str(v)} for i, v in enumerate(live[TARGET])
        ]
        assert post_json(url + "/feedback", {"labels": labels})[0] == 200
        metrics = get_metrics(url)
        assert 'mlmedic_release_requests_total{role="shadow",version="2"} 300.0' in metrics
        assert 'mlmedic_release_requests_total{role="champion",version="1"} 300.0' in metrics
        project = Project(root)
        result = Monitor(project).run_window(None, time.time() + 1)
        project.close()
        verdict = result.details["release"]
        assert verdict["action"] == "promote", verdict["why"]
        assert verdict["labelled"] == 300 and verdict["comparison"]["rows"] == 300
        assert verdict["comparison"]["a_only"] > verdict["comparison"]["b_only"]
        assert wait_until(lambda: get_json(url + "/model")[1]["version"] == 2, timeout=20)
    ended = _release_events(root)[-1]
    assert ended.action == "promote" and ended.details["evidence"]["comparison"]["rows"] == 300
    assert read_release(root / ".mlmedic").state == "promoted"
    status = _cli(root, "release", "status")
    assert "state: promoted" in status.stdout
    board = json.loads(_cli(root, "dashboard", "--json").stdout)
    assert board["releases"][0] | {"started_at": 0, "ended_at": 0} == {
        "id": ended.details["id"],
        "version": 2,
        "champion": 1,
        "mode": "shadow",
        "share": 1.0,
        "started_at": 0,
        "state": "promoted",
        "ended_at": 0,
        "why": "significantly better than the champion on the same rows",
        "labelled": 300,
        "pairs": 300,
    }
    logged = _cli(root, "logs", "--kind", "release")
    assert "release/start" in logged.stdout and "release/promote" in logged.stdout


def get_metrics(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url + "/metrics", timeout=5) as answer:
        return answer.read().decode()


def _faulty_release(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, mode: str, **deployment: Any
) -> Path:
    """A project whose champion v1 is sound and whose v2, released as ``mode``, is trained by
    the faulty trainer ``kind`` (importable by the server and its release host)."""
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}:{Path(__file__).parent}")
    monkeypatch.syspath_prepend(str(tmp_path))
    root = tmp_path / kind
    project = _project(root, **deployment)
    assert run_pipeline(project, make_churn(1500, seed=43), target=TARGET).deployed
    trainer = write_trainer(tmp_path, kind)
    run = run_pipeline(
        project, make_churn(1500, seed=44), target=TARGET, trainer=trainer, release=mode
    )
    assert (run.release, run.champion_after) == (mode, 1)
    project.close()
    return root


def _host_up(root: Path) -> bool:
    """The release host of the running release has loaded its candidate and is listening."""
    from mlmedic.heal.releases.states import host_status

    release = read_release(root / ".mlmedic")
    if release is None or not release.running:
        return False
    status = host_status(root / ".mlmedic", release)
    return status is not None and status.get("at", 0) > time.time() - 2


def _failures(metrics: str, why: tuple[str, ...]) -> int:
    """Canary requests the champion answered instead, by why, from ``/metrics``."""
    found = 0.0
    for line in metrics.splitlines():
        canary = line.startswith("mlmedic_release_failures_total{") and 'role="canary"' in line
        if canary and any(f'why="{w}"' in line for w in why):
            found += float(line.rsplit(" ", 1)[1])
    return int(found)


def test_a_canary_answers_its_stable_share_and_a_crash_aborts_it_with_no_failed_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _faulty_release(tmp_path, monkeypatch, "crashing", "canary", canary_share=0.3)
    live = make_churn(400, seed=45)
    with serving(root) as url:
        assert wait_until(lambda: _host_up(root), timeout=30)
        answers = _send(url, live, "canary-")
        # each request goes where its id says, on every worker and replica alike; a canary
        # request the candidate did not answer in time is the champion's, and counted so
        expected = [2 if routes_to_canary(a["request_id"], 0.3) else 1 for a in answers]
        served = [a["model_version"] for a in answers]
        assert all(got == 1 for got, want in zip(served, expected, strict=True) if want == 1)
        fell_back = sum(got == 1 for got, want in zip(served, expected, strict=True) if want == 2)
        assert fell_back == _failures(get_metrics(url), ("timeout", "unreachable"))
        assert served.count(2) >= 0.9 * expected.count(2)
        share = expected.count(2) / len(expected)
        assert abs(share - 0.3) < 4 * (0.3 * 0.7 / 400) ** 0.5  # within four standard errors
        # the candidate crashes on this request: the champion answers it, the release ends
        bad = _records(make_churn(1, seed=46))[0] | {"age": TRIGGER_AGE["crashing"]}
        crash_id = next(f"crash-{i}" for i in range(1000) if routes_to_canary(f"crash-{i}", 0.3))
        status, body = post_json(
            url + "/predict", {"records": [bad]}, headers={"x-request-id": crash_id}
        )
        assert status == 200 and body["model_version"] == 1
        assert wait_until(lambda: read_release(root / ".mlmedic").state == "aborted", timeout=10)
        after = _send(url, live.head(50), "after-")
        assert {a["model_version"] for a in after} == {1}
        metrics = get_metrics(url)
        assert 'mlmedic_release_requests_total{role="canary",version="2"}' in metrics
        assert 'mlmedic_release_failures_total{role="canary",version="2",why="crashed"}' in metrics
        # the champion scored every canary request too: the pairs the verdict compares
        release = read_release(root / ".mlmedic")
        assert wait_until(lambda: len(pairs_of(Project(root), release)[0]) == served.count(2))
        # the watcher carries the end to the registry: no challenger, the candidate rejected
        listed = lambda: _cli(root, "models").stdout  # noqa: E731
        assert wait_until(lambda: "v2 rejected" in listed(), timeout=30, step=0.5)
        # a canary that fails request after request (not crashing) is ended by the workers
        project = Project(root)
        picky = write_trainer(tmp_path, "picky")
        run = run_pipeline(
            project, make_churn(1500, seed=47), target=TARGET, trainer=picky, release="canary"
        )
        project.close()
        assert run.release == "canary"
        assert wait_until(lambda: _host_up(root))  # the new release's host, not the last
        bad = bad | {"age": TRIGGER_AGE["picky"]}
        routed = [f"picky-{i}" for i in range(2000) if routes_to_canary(f"picky-{i}", 0.3)]
        for request_id in routed[:5]:  # deployment.error_burst
            status, body = post_json(
                url + "/predict", {"records": [bad]}, headers={"x-request-id": request_id}
            )
            assert status == 200 and body["model_version"] == 1
        assert read_release(root / ".mlmedic").state == "aborted"
        assert wait_until(lambda: "v3 rejected" in listed(), timeout=30, step=0.5)
    aborted = [e for e in _release_events(root) if e.action == "abort"]
    assert "SIGSEGV" in aborted[0].message
    assert "5 canary requests in a row failed (last: error)" in aborted[-1].message
    assert "@challenger" not in listed()


def test_a_hanging_shadow_never_delays_an_answer_and_is_ended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _faulty_release(tmp_path, monkeypatch, "hanging", "shadow")
    bad = _records(make_churn(1, seed=46))[0] | {"age": TRIGGER_AGE["hanging"]}
    with serving(root) as url:
        assert wait_until(lambda: _host_up(root), timeout=30)
        slowest = 0.0
        for _ in range(20):  # the shadow hangs on the first; the champion never waits
            started = time.monotonic()
            status, body = post_json(url + "/predict", {"records": [bad]})
            slowest = max(slowest, time.monotonic() - started)
            assert status == 200 and body["model_version"] == 1
        assert slowest < 2.0  # serving.hang_seconds: none waited for the minute-long hang
        assert wait_until(lambda: read_release(root / ".mlmedic").state == "aborted", timeout=15)
    ended = _release_events(root)[-1]
    assert ended.action == "abort" and "hung" in ended.message


def test_replay_simulates_a_shadow_release_judged_on_the_windows_after_it(tmp_path: Path) -> None:
    """With ``deployment.release: shadow`` a replayed retrain serves only once the windows after
    it (never the one it learned from) promote it."""
    from mlmedic.heal.replay import replay
    from test_retrain import world

    (tmp_path / "self_healing_config.json").write_text(
        json.dumps({"deployment": {"release": "shadow", "min_labelled_requests": 100}})
    )
    history = pd.concat(
        [world(1000, 10 + i, shift=2.5 if i >= 4 else 0.0) for i in range(7)], ignore_index=True
    )
    result = replay(
        history, target="y", reference=world(4000, 1), baselines=False, settings_from=tmp_path
    )
    assert result.settings["releases"] == {"start": 1, "promote": 1, "retire": 0, "abort": 0}
    served = [w.model_version for w in result.windows]
    started = next(w.index for w in result.windows if "released as a shadow" in w.acted)
    judged = next(w for w in result.windows if w.release)
    assert judged.index == started + 1 and "promote" in judged.release
    # the champion served the window the shadow was judged on; the shadow, from the next
    assert served[: judged.index + 1] == [1] * (judged.index + 1)
    assert set(served[judged.index + 1 :]) == {2}
    assert any("deployment.release is shadow" in note for note in result.notes)


def test_two_hosts_on_postgres_mirror_one_release_and_give_it_one_verdict(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two project directories ("hosts") sharing the registry, a Postgres event store and the
    prediction log: the second follows the release the first started (the watcher's step), both
    monitors judge it, and it gets one verdict."""
    from mlmedic.heal.releases.judge import simulate, tend
    from mlmedic.heal.releases.states import sync_release

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'registry.db'}")
    config = {
        "model_training": {"model_name": "shared"},
        "model_validation": {"min_f1_threshold": 0.2},
        "events": {"url": pg_url},
        "serving": {"prediction_log_url": str(tmp_path / "logs")},
        "deployment": {"min_labelled_requests": 100},
    }
    hosts = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "self_healing_config.json").write_text(json.dumps(config))
        hosts.append(Project(tmp_path / name))
    a, b = hosts
    assert run_pipeline(
        a, make_churn(1500, seed=1), target=TARGET, trainer="trainers:shallow"
    ).deployed
    assert (
        run_pipeline(a, make_churn(3000, seed=2), target=TARGET, release="shadow").release
        == "shadow"
    )
    mirrored = sync_release(b)  # host b's watcher finds the challenger alias
    started = read_release(a.state_dir)
    assert mirrored is not None and started is not None and mirrored.id == started.id
    assert (b.state_dir / "serving-cache" / "v2" / "manifest.json").exists()
    traffic = make_churn(300, seed=3)
    verdict = simulate(a, traffic, TARGET, time.time() + 60, "live", {})
    assert verdict is not None and verdict.action == "promote"
    assert tend(b) is not None  # b's monitor looks too, and gives no second verdict
    ends = [e for e in a.events.query(kind="release") if e.action in ("promote", "retire", "abort")]
    assert [e.action for e in ends] == ["promote"]
    sync_release(b)
    assert read_release(b.state_dir).state == "promoted"
    assert b.registry.champion().version == 2
    for host in hosts:
        host.close()
