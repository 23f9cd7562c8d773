"""The registry against a real MLflow (SQLite tracking store and local artifacts)."""

from __future__ import annotations

import json
import time

import pytest
from mlflow.exceptions import MlflowException

from mlmedic.core.errors import RegistryError, RegistryUnavailableError
from mlmedic.data.contract import DataContract
from mlmedic.data.datasets import TARGET, make_churn
from mlmedic.model.project import Project
from mlmedic.model.registry import CHAMPION, PREVIOUS, Registry
from mlmedic.model.training import train
from mlmedic.store.events import EventKind


@pytest.fixture(scope="module")
def trained():  # type: ignore[no-untyped-def]
    frame = make_churn(1500, seed=9)
    contract = DataContract(target=TARGET).fit(frame)
    return train(frame, contract), contract


def _register(project: Project, trained) -> int:  # type: ignore[no-untyped-def]
    result, contract = trained
    return project.registry.log_candidate(result, contract, {"fill_values": {}}).version


def test_log_candidate_registers_a_version_with_its_baseline(project: Project, trained) -> None:  # type: ignore[no-untyped-def]
    registry = project.registry
    assert registry.tracking_uri.startswith("sqlite:///")
    assert str(project.state_dir) in registry.tracking_uri
    version = _register(project, trained)
    info = registry.info(version)
    assert (version, info.status) == (1, "candidate")
    assert info.metrics["accuracy"] == pytest.approx(trained[0].metrics["accuracy"])
    assert registry.load_contract(version).to_dict() == trained[1].to_dict()
    model = registry.load_model(version)
    assert len(model.predict_proba(trained[0].holdout[trained[0].features])) == 300
    assert (project.state_dir / "mlartifacts").exists()  # artifacts stay inside the project
    [event] = project.events.query(kind="register")
    assert event.model_version == "1"


@pytest.mark.slow
def test_promote_moves_aliases_and_records_each_move(project: Project, trained) -> None:  # type: ignore[no-untyped-def]
    registry = project.registry
    first, second = _register(project, trained), _register(project, trained)
    assert registry.promote(first, "passed") is None
    old = registry.promote(second, "passed")
    assert old is not None and old.version == first
    assert registry.champion().version == second  # type: ignore[union-attr]
    assert registry.alias(PREVIOUS).version == first  # type: ignore[union-attr]
    moves = [
        (e.details["alias"], e.details["from"], e.details["to"])
        for e in project.events.query(kind="alias")
    ]
    assert moves == [(CHAMPION, None, 1), (PREVIOUS, None, 1), (CHAMPION, 1, 2)]
    assert registry.champion_history() == [1, 2]


@pytest.mark.slow
def test_rollback_walks_back_through_the_champion_history(project: Project, trained) -> None:  # type: ignore[no-untyped-def]
    registry = project.registry
    # four versions: with three, "the latest before" and "the first" of the history coincide
    versions = [_register(project, trained) for _ in range(4)]
    for version in versions:
        registry.promote(version, "passed")
    assert registry.rollback()[:2] == (4, 3)
    assert registry.alias(PREVIOUS).version == 2  # type: ignore[union-attr]
    assert registry.rollback()[:2] == (3, 2)
    assert registry.alias(PREVIOUS).version == 1  # type: ignore[union-attr]
    assert registry.rollback()[:2] == (2, 1)
    assert registry.alias(PREVIOUS) is None
    with pytest.raises(RegistryError, match="no previous version to roll back to"):
        registry.rollback()
    assert registry.champion().version == 1  # type: ignore[union-attr]
    assert registry.rollback(to=3)[:2] == (1, 3)
    assert registry.alias(PREVIOUS).version == 4  # type: ignore[union-attr]  # 3 came after 4
    [first, *_] = project.events.query(kind="rollback")
    assert first.details == {
        "from_version": 4,
        "to_version": 3,
        "reason": "manual rollback",
        "by": "person",
    }


def test_rollback_refuses_rejected_missing_and_unvalidated_versions(
    project: Project, trained
) -> None:  # type: ignore[no-untyped-def]
    registry = project.registry
    with pytest.raises(RegistryError, match="no champion"):
        registry.rollback()
    good, bad, fresh = (_register(project, trained) for _ in range(3))
    registry.promote(good, "passed")
    registry.reject(bad, "Model accuracy 0.65 below threshold 0.70")
    with pytest.raises(RegistryError, match=r"v2 was rejected by the gate \(Model accuracy 0\.65"):
        registry.rollback(to=bad)
    with pytest.raises(RegistryError, match="has no version 99"):
        registry.rollback(to=99)
    with pytest.raises(RegistryError, match="never passed the gate"):
        registry.rollback(to=fresh)
    with pytest.raises(RegistryError, match="already the champion"):
        registry.rollback(to=good)
    assert registry.champion().version == good  # type: ignore[union-attr]


def test_backup_copies_model_and_baseline_and_prunes(project: Project, trained) -> None:  # type: ignore[no-untyped-def]
    registry = project.registry
    registry.backup_store.max_backups = 2
    versions = [_register(project, trained) for _ in range(3)]
    for version in versions:
        path = registry.backup(version)
        assert (path / "model" / "MLmodel").exists()
        assert (path / "contract.json").exists() or (path / "baseline" / "contract.json").exists()
        manifest = json.loads((path / "manifest.json").read_text())
        assert manifest["version"] == version
    assert [p.name for p in registry.backups()] == ["v2", "v3"]


def test_unreachable_tracking_server_is_one_clear_error(project: Project) -> None:
    registry = Registry(
        project.state_dir, project.events, model_name="m", tracking_uri="http://127.0.0.1:9"
    )
    with pytest.raises(RegistryUnavailableError, match=r"http://127.0.0.1:9 is unreachable"):
        registry.champion()


def test_versions_lists_status_and_aliases(project: Project, trained) -> None:  # type: ignore[no-untyped-def]
    registry = project.registry
    assert registry.versions() == []
    first, second = _register(project, trained), _register(project, trained)
    registry.promote(first, "passed")
    registry.reject(second, "worse")
    listed = {(v.version, v.status, tuple(v.aliases), v.reason) for v in registry.versions()}
    assert listed == {(1, "champion", ("champion",), "passed"), (2, "rejected", (), "worse")}
    assert abs(registry.versions()[0].created_at - time.time()) < 600  # epoch seconds, now


@pytest.mark.slow
def test_rollback_works_while_the_tracking_server_is_unreachable(project: Project, trained) -> None:  # type: ignore[no-untyped-def]
    local = project.registry
    first, second = _register(project, trained), _register(project, trained)
    local.promote(first, "passed")
    local.backup(first)  # what `mlmedic run` does before training the next candidate
    local.promote(second, "passed")
    assert local.read_pointer()["version"] == second  # type: ignore[index]

    offline = Registry(
        project.state_dir,
        project.events,
        model_name=local.model_name,
        tracking_uri="http://127.0.0.1:9",
    )
    done = offline.rollback(reason="server down")
    assert done == (second, first, True)
    pointer = offline.read_pointer()
    assert pointer is not None and pointer["version"] == first and pointer["synced"] is False
    assert pointer["backup"].endswith(f"v{first}")
    event = project.events.last("rollback")
    assert event is not None and event.details["offline"] is True
    with pytest.raises(RegistryError, match="no previous version"):
        offline.rollback()

    # reachable again: the registry's aliases follow the local champion
    back = Registry(project.state_dir, project.events, model_name=local.model_name)
    assert back.champion().version == first  # type: ignore[union-attr]
    assert back.read_pointer()["synced"] is True  # type: ignore[index]


def test_offline_rollback_needs_a_backup(project: Project, trained) -> None:  # type: ignore[no-untyped-def]
    local = project.registry
    first, second = _register(project, trained), _register(project, trained)
    local.promote(first, "passed")
    local.promote(second, "passed")
    offline = Registry(
        project.state_dir,
        project.events,
        model_name=local.model_name,
        tracking_uri="http://127.0.0.1:9",
    )
    with pytest.raises(RegistryUnavailableError, match=f"no local backup of v{first}"):
        offline.rollback()
    assert local.champion().version == second  # type: ignore[union-attr]


def test_backups_older_than_the_retention_are_removed(project: Project, trained) -> None:  # type: ignore[no-untyped-def]
    from mlmedic.core.clock import SimulatedClock

    registry = project.registry
    clock = SimulatedClock(start=1_000_000.0)
    project.events.clock = clock
    registry.backup_store.retention_days = 30
    first, second = _register(project, trained), _register(project, trained)
    registry.backup(first)
    clock.advance(31 * 86_400)
    registry.backup(second)
    assert [p.name for p in registry.backups()] == [f"v{second}"]


def test_the_tracking_uri_does_not_leak_between_projects(tmp_path, trained) -> None:  # type: ignore[no-untyped-def]
    import os

    first, second = Project(tmp_path / "a"), Project(tmp_path / "b")
    try:
        _register(first, trained)
        assert "MLFLOW_TRACKING_URI" not in os.environ
        assert str(second.state_dir) in second.registry.tracking_uri
        assert second.registry.versions() == []
    finally:
        first.close()
        second.close()


def test_status_follows_an_alias_moved_outside_mlmedic(project: Project, trained) -> None:  # type: ignore[no-untyped-def]
    first, second = _register(project, trained), _register(project, trained)
    registry = project.registry
    registry.promote(first, "first")
    registry.promote(second, "second")
    # someone moves the champion back by hand in MLflow's UI: the tags still say v1 retired
    registry.client.set_registered_model_alias(registry.model_name, CHAMPION, str(first))
    statuses = {v.version: (v.status, v.aliases) for v in registry.versions()}
    assert statuses[first] == ("champion", [CHAMPION, PREVIOUS])
    assert statuses[second] == ("retired", [])
    assert registry.info(second).status == "retired"


def test_the_watcher_follows_a_champion_moved_by_hand(project: Project, trained) -> None:  # type: ignore[no-untyped-def]
    from mlmedic.serving.watcher import follow_once

    first, second = _register(project, trained), _register(project, trained)
    registry = project.registry
    registry.promote(first, "first")
    assert follow_once(project) is None  # already in step
    registry.client.set_registered_model_alias(registry.model_name, CHAMPION, str(second))
    assert registry.read_pointer()["version"] == first  # type: ignore[index]
    assert follow_once(project) == second
    assert registry.read_pointer()["version"] == second  # type: ignore[index]
    assert (project.state_dir / "serving-cache" / f"v{second}" / "manifest.json").exists()


def test_mlflow_failing_part_way_through_a_promotion_leaves_the_old_champion(
    project: Project,
    trained,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import requests

    first, second = _register(project, trained), _register(project, trained)
    registry = project.registry
    registry.promote(first, "first")
    real = registry.client.set_registered_model_alias

    def failing(name: str, alias: str, version: str) -> None:
        if alias == CHAMPION:  # `previous` moved, then the server went away
            try:
                raise requests.exceptions.ConnectionError("connection refused")
            except requests.exceptions.ConnectionError as exc:
                raise MlflowException(f"API request failed with exception {exc}") from None
        real(name, alias, version)

    monkeypatch.setattr(registry.client, "set_registered_model_alias", failing)
    with pytest.raises(RegistryUnavailableError, match="move an alias"):
        registry.promote(second, "second")
    assert registry.champion().version == first  # type: ignore[union-attr]
    assert registry.read_pointer()["version"] == first  # type: ignore[index]
    champion_moves = [
        e.details["to"]
        for e in project.events.query(kind=EventKind.ALIAS)
        if e.details["alias"] == CHAMPION
    ]
    assert champion_moves == [first]
    monkeypatch.setattr(registry.client, "set_registered_model_alias", real)
    registry.promote(second, "second, again")  # the operation can simply be repeated
    assert registry.champion().version == second  # type: ignore[union-attr]
    assert registry.alias(PREVIOUS).version == first  # type: ignore[union-attr]


def test_mlflow_failures_are_classified_by_type_and_code_not_by_text() -> None:
    import requests
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, TEMPORARILY_UNAVAILABLE

    from mlmedic.model.registry.connection import is_not_found, is_unavailable

    def raised_inside(cause: BaseException, outer: BaseException) -> BaseException:
        try:
            try:
                raise cause
            except BaseException:
                raise outer from None
        except BaseException as exc:
            exc.__context__ = cause
            return exc

    refused = raised_inside(requests.exceptions.ConnectionError("x"), MlflowException("boom"))
    assert is_unavailable(refused)
    assert is_unavailable(MlflowException("x", error_code=TEMPORARILY_UNAVAILABLE))
    # words in a message decide nothing
    assert not is_unavailable(MlflowException("Connection to the model timed out (not really)"))
    assert not is_not_found(MlflowException("model not found"))
    assert is_not_found(MlflowException("x", error_code=RESOURCE_DOES_NOT_EXIST))


@pytest.mark.slow
def test_the_quick_alias_read_agrees_with_mlflow_without_importing_it(
    project: Project, trained
) -> None:  # type: ignore[no-untyped-def]
    registry = project.registry
    assert registry.connection.quick_alias(CHAMPION) is None  # no registry yet
    first, second = _register(project, trained), _register(project, trained)
    registry.promote(first, "first")
    assert registry.connection.quick_alias(CHAMPION) == first
    assert registry.connection.quick_alias(PREVIOUS) is None
    registry.client.set_registered_model_alias(registry.model_name, CHAMPION, str(second))
    assert registry.connection.quick_alias(CHAMPION) == second  # a move made in MLflow's UI
    assert registry.alias_version(CHAMPION) == registry.champion().version  # type: ignore[union-attr]
    other = Registry(
        project.state_dir, project.events, model_name="m", tracking_uri="file:///nowhere"
    )
    with pytest.raises(LookupError):
        other.connection.quick_alias(CHAMPION)  # a store it cannot read this way: ask MLflow


@pytest.mark.slow
def test_a_new_local_registry_starts_from_a_migrated_copy_and_never_replaces_one(
    tmp_path, monkeypatch: pytest.MonkeyPatch, trained
) -> None:  # type: ignore[no-untyped-def]
    """The empty MLflow database is migrated once per MLflow version (in the user's cache);
    each new project copies it, its default experiment's artifacts point into the project, and
    a database that exists is never replaced. Without a writable cache, MLflow migrates as
    before."""
    import sqlite3

    import mlflow

    from mlmedic.model.registry.connection import seed_sqlite_store

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first = Project(tmp_path / "first")
    version = _register(first, trained)
    first.close()
    template = tmp_path / "cache" / "mlmedic" / f"mlflow-{mlflow.__version__}-empty.db"
    assert template.exists()
    second = Project(tmp_path / "second")
    assert _register(second, trained) == version == 1
    second.close()
    database = tmp_path / "second" / ".mlmedic" / "mlflow.db"
    with sqlite3.connect(database) as conn:
        [location] = conn.execute(
            "SELECT artifact_location FROM experiments WHERE experiment_id = 0"
        ).fetchone()
    assert location == (tmp_path / "second" / ".mlmedic" / "mlartifacts").resolve().as_uri()
    before = database.read_bytes()
    seed_sqlite_store(f"sqlite:///{database}", tmp_path / "elsewhere")
    assert database.read_bytes() == before
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder would be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    third = Project(tmp_path / "third")
    assert _register(third, trained) == 1
    third.close()


@pytest.mark.slow
def test_a_version_registered_outside_mlmedic_is_refused_once_then_adopted(
    project: Project,
    trained,  # type: ignore[no-untyped-def]
    tmp_path,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Plain MLflow logs v2 and moves @champion to it by hand: the watcher refuses it with one
    event (v1 keeps serving); `mlmedic adopt 2 --reference` stores its baseline and trusted
    types, and the watcher then follows it; bad adopts are one line, exit 2."""
    import sys

    import mlflow
    import mlflow.sklearn

    from mlmedic.cli import main
    from mlmedic.serving.watcher import follow_once

    first = _register(project, trained)
    registry = project.registry
    registry.promote(first, "first")
    result, _ = trained
    registry.connection.activate()
    with mlflow.start_run(experiment_id=registry.connection.experiment_id()):
        mlflow.sklearn.log_model(
            result.model,
            name="model",
            serialization_format="skops",
            skops_trusted_types=result_types(result.model),
            registered_model_name=registry.model_name,
        )
    registry.client.set_registered_model_alias(registry.model_name, CHAMPION, "2")
    with pytest.raises(RegistryError, match="was not registered by mlmedic"):
        follow_once(project)
    assert registry.read_pointer()["version"] == first  # type: ignore[index]  # v1 still serves

    reference = tmp_path / "reference.csv"
    make_churn(1500, seed=9).to_csv(reference, index=False)
    capsys.readouterr()  # what plain MLflow printed while logging

    def cli(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["mlmedic", *args, "-C", str(project.root)])
        with pytest.raises(SystemExit) as done:
            main()
        said = capsys.readouterr()
        return int(done.value.code or 0), said.out, said.err

    for args, problem in [
        (("adopt", "9", "-r", str(reference), "-t", TARGET), "has no version 9"),
        (("adopt", str(first), "-r", str(reference), "-t", TARGET), "registered by mlmedic"),
        (("adopt", "2", "-r", str(reference), "-t", "nope"), "no target column 'nope'"),
        (("adopt", "2", "-r", str(tmp_path / "missing.csv"), "-t", TARGET), "missing.csv"),
    ]:
        code, out, err = cli(*args)
        assert code == 2 and problem in err and "Traceback" not in err, (args, err)
        assert len(err.strip().splitlines()) == 1
    assert registry.trusted_types(2) is None  # nothing half-stored

    code, out, err = cli("adopt", "2", "-r", str(reference), "-t", TARGET)
    assert code == 0, err
    assert "adopted v2" in out and "trusting" in out and "@champion" in out
    assert registry.trusted_types(2) == result_types(result.model)
    assert registry.load_contract(2).target == TARGET
    profile = registry.load_drift_profile(2)
    assert profile is not None and profile["validation_accuracy"] > 0.7
    assert registry.info(2).metrics["accuracy"] > 0.7
    [event] = [e for e in project.events.query(kind="register") if e.action == "adopt"]
    assert str(event.model_version) == "2" and event.details["reference"] == str(reference)
    assert follow_once(project) == 2  # servers follow the adopted champion
    assert registry.read_pointer()["version"] == 2  # type: ignore[index]


def result_types(model) -> list[str]:  # type: ignore[no-untyped-def]
    import skops.io

    return sorted(skops.io.get_untrusted_types(data=skops.io.dumps(model)))


@pytest.mark.slow
def test_the_fallback_never_serves_a_version_someone_rolled_back_from(
    project: Project, trained, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """#21 item 4: v1, v2, v3 served in turn; a person rolls back v3 -> v2. With the registry
    away and v2 unloadable, the fallback is v1 (the champion before), never v3 — although v3 is
    the newest local copy."""
    from mlmedic.core.errors import RegistryUnavailableError
    from mlmedic.model.source import ModelSource

    registry = project.registry
    versions = [_register(project, trained) for _ in range(3)]
    for version in versions:
        registry.promote(version, "passed")
        registry.backup(version)
    assert registry.rollback(by="person")[:2] == (3, 2)
    source = ModelSource(
        project.state_dir, model_name=registry.model_name, events=project.events, registry=registry
    )

    def away() -> None:
        raise RegistryUnavailableError("the tracking server cannot be reached")

    monkeypatch.setattr(registry, "versions", away)
    assert source.fallback_candidates(exclude=2) == [1]
    monkeypatch.undo()
    registry.promote(3, "a person promotes v3 again")  # then it is a champion like any other
    assert source.fallback_candidates(exclude=2)[0] == 3
