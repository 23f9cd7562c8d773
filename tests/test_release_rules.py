"""The rules of a release (#24): how requests split, when a verdict promotes, retires or waits
(each boundary fails a test when flipped), the power it documents, and the bad input a release
gets through the command line."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mlmedic.cli import app
from mlmedic.core.config import DeploymentConfig, load_settings
from mlmedic.core.errors import ConfigError
from mlmedic.data.datasets import TARGET, make_churn
from mlmedic.heal.releases.judge import ReleaseVerdict, _compare, _limits, requests_for
from mlmedic.heal.releases.states import Release, read_release, routes_to_canary
from mlmedic.model.tasks import CLASSIFICATION, REGRESSION

runner = CliRunner()


def _release(**fields: Any) -> Release:
    base = dict(id="v2-1", version=2, champion=1, mode="shadow", share=1.0, started_at=0.0)
    return Release(**{**base, **fields})


def _pairs(candidate_right: int, champion_right: int, both: int, neither: int) -> pd.DataFrame:
    """Labelled pairs with the given counts: rows only the candidate gets right, only the
    champion, both, neither (labels 1; a wrong answer is 0)."""
    rows = (
        [("1", "0")] * candidate_right
        + [("0", "1")] * champion_right
        + [("1", "1")] * both
        + [("0", "0")] * neither
    )
    return pd.DataFrame(
        {"candidate": [r[0] for r in rows], "champion": [r[1] for r in rows], "label": "1"}
    )


def _verdict(pairs: pd.DataFrame, **deployment: Any) -> ReleaseVerdict:
    return _compare(
        ReleaseVerdict(_release(), "wait", ""),
        pairs,
        task=CLASSIFICATION,
        deployment=DeploymentConfig(**deployment),
        confidence=0.95,
    )


# ---------------------------------------------------------------------- the split
def test_the_canary_split_is_stable_by_request_id_and_near_its_share() -> None:
    ids = [f"request-{i}" for i in range(20_000)]
    first = [routes_to_canary(i, 0.1) for i in ids]
    assert first == [routes_to_canary(i, 0.1) for i in ids]  # the same on every worker
    assert abs(sum(first) / len(ids) - 0.1) < 4 * (0.1 * 0.9 / len(ids)) ** 0.5
    # a larger share keeps every request the smaller one sent to the canary
    assert all(routes_to_canary(i, 0.3) for i, chosen in zip(ids, first, strict=True) if chosen)


# ---------------------------------------------------------------------- the verdict on labels
def test_a_significantly_better_candidate_is_promoted() -> None:
    found = _verdict(_pairs(40, 5, 400, 55))
    assert found.action == "promote" and "significantly better" in found.why


def test_a_significantly_worse_candidate_is_retired() -> None:
    found = _verdict(_pairs(5, 40, 400, 55))
    assert found.action == "retire" and "significantly worse" in found.why


def test_a_candidate_equal_to_the_champion_is_promoted_only_within_the_margin() -> None:
    same = _pairs(10, 10, 900, 80)  # 1,000 rows, a difference of 0, 20 discordant
    # the paired lower bound is -1.645 * sqrt(20) / 1000 = -0.0074
    assert _verdict(same, not_worse_margin=0.01).action == "promote"
    assert _verdict(same, not_worse_margin=0.007).action == "wait"
    bound = _verdict(same).lower_bound
    assert bound is not None and bound == pytest.approx(-1.6449 * 20**0.5 / 1000, abs=1e-4)


def test_the_margin_boundary_is_strict() -> None:
    same = _pairs(10, 10, 900, 80)
    bound = _verdict(same).lower_bound
    assert bound is not None
    assert _verdict(same, not_worse_margin=-bound + 1e-9).action == "promote"
    assert _verdict(same, not_worse_margin=-bound - 1e-9).action == "wait"


def test_a_regression_candidate_is_judged_on_paired_absolute_errors() -> None:
    rng = np.random.default_rng(0)
    truth = rng.normal(0.0, 1.0, 400)
    pairs = pd.DataFrame(
        {
            "candidate": truth + rng.normal(0.0, 0.5, 400),
            "champion": truth + rng.normal(0.0, 1.0, 400),
            "label": truth,
        }
    )
    found = _compare(
        ReleaseVerdict(_release(), "wait", ""),
        pairs,
        task=REGRESSION,
        deployment=DeploymentConfig(),
        confidence=0.95,
    )
    assert found.action == "promote" and found.comparison is not None
    assert found.comparison["mae_a"] < found.comparison["mae_b"]
    swapped = pairs.rename(columns={"candidate": "champion", "champion": "candidate"})
    assert (
        _compare(
            ReleaseVerdict(_release(), "wait", ""),
            swapped,
            task=REGRESSION,
            deployment=DeploymentConfig(),
            confidence=0.95,
        ).action
        == "retire"
    )


# ---------------------------------------------------------------------- whatever the labels
def _limited(host: dict[str, Any], champion: int = 1, **deployment: Any) -> str:
    project = SimpleNamespace(registry=SimpleNamespace(alias_version=lambda _: champion))
    verdict = ReleaseVerdict(_release(), "wait", "", host=host)
    return _limits(project, _release(), verdict, DeploymentConfig(**deployment), 0.0)


def test_errors_latency_and_a_changed_champion_retire_a_release() -> None:
    assert _limited({"calls": 100, "failures": 2}) == ""  # under three failures: not a pattern
    assert "failed 3 of 100" in _limited({"calls": 100, "failures": 3})
    assert _limited({"calls": 300, "failures": 3}) == ""  # exactly 1 %: not over
    assert "p99" in _limited({"call_p99_ms": 12.0}, max_latency_ms=10.0)
    assert _limited({"call_p99_ms": 10.0}, max_latency_ms=10.0) == ""
    assert _limited({"call_p99_ms": 500.0}) == ""  # no latency limit unless configured
    assert "champion changed" in _limited({}, champion=3)


def test_the_power_of_the_paired_test_is_what_the_docs_say() -> None:
    assert requests_for(0.03, 0.10) == 666
    assert requests_for(0.03, 0.20) == 1364
    assert requests_for(0.03, 0.30) > requests_for(0.03, 0.20)  # more disagreement, more rows
    assert requests_for(0.05, 0.10) < requests_for(0.03, 0.10)


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize("share", [0.0, 1.0, 1.5, -0.1])
def test_a_canary_share_outside_zero_one_is_refused_by_the_config_check(
    tmp_path: Path, share: float
) -> None:
    (tmp_path / "self_healing_config.json").write_text(
        json.dumps({"deployment": {"canary_share": share}})
    )
    with pytest.raises(ConfigError, match=r"deployment\.canary_share"):
        load_settings(tmp_path)
    done = runner.invoke(app, ["release", "status", "-C", str(tmp_path)])
    assert done.exit_code == 2 and "deployment.canary_share" in done.output


def test_a_release_without_a_champion_is_direct_and_a_second_release_is_refused(
    tmp_path: Path,
) -> None:
    make_churn(1200, seed=1).to_csv(tmp_path / "a.csv", index=False)
    make_churn(1200, seed=2).to_csv(tmp_path / "b.csv", index=False)
    root = str(tmp_path)
    a, b = str(tmp_path / "a.csv"), str(tmp_path / "b.csv")
    first = runner.invoke(app, ["run", a, "-t", TARGET, "--release", "shadow", "-C", root])
    assert first.exit_code == 0, first.output
    assert "no champion to compare with, so a shadow release is direct" in first.output
    assert "v1 is now champion" in first.output
    second = runner.invoke(app, ["run", b, "-t", TARGET, "--release", "shadow", "-C", root])
    assert second.exit_code == 0 and "v2 is the shadow" in second.output
    release = read_release(tmp_path / ".mlmedic")
    assert release is not None and (release.version, release.champion) == (2, 1)
    third = runner.invoke(app, ["run", b, "-t", TARGET, "--release", "canary", "-C", root])
    assert third.exit_code == 2
    assert "a shadow release of v2 is running" in third.output
    assert "Traceback" not in third.output
    versions = runner.invoke(app, ["models", "--json", "-C", root])
    assert len(json.loads(versions.output)["versions"]) == 2  # the third trained nothing
    wrong = runner.invoke(app, ["run", b, "-t", TARGET, "--release", "blue", "-C", root])
    assert wrong.exit_code == 2 and "--release must be direct, shadow or canary" in wrong.output
    _past_its_limits(tmp_path)
    aborted = runner.invoke(app, ["release", "abort", "--reason", "not now", "-C", root])
    assert aborted.exit_code == 0 and "v2 is retired" in aborted.output
    again = runner.invoke(app, ["release", "abort", "-C", root])
    assert again.exit_code == 2 and "no release is running" in again.output
    listed = runner.invoke(app, ["models", "-C", root])
    assert "v1 champion @champion" in listed.output and "v2 rejected" in listed.output
    from mlmedic.core.errors import RegistryError
    from mlmedic.model.project import Project

    project = Project(tmp_path)  # the registry itself never makes a rejected version champion
    with pytest.raises(RegistryError, match="v2 is tagged rejected"):
        project.registry.promote(2, reason="by hand")
    assert project.registry.alias_version("champion") == 1
    project.close()


def _past_its_limits(root: Path) -> None:
    """A running release is retired, whatever its labels, once it outlives
    ``max_duration_hours`` or ``max_requests`` (each limit exceeded, not reached)."""
    from mlmedic.heal.releases.judge import judge
    from mlmedic.model.project import Project
    from mlmedic.store.logstore import PredictionLog

    project = Project(root)
    release = read_release(project.state_dir)
    assert release is not None and release.running
    hours = project.settings.self_healing.deployment.max_duration_hours
    assert judge(project, release, now=release.started_at + hours * 3600 - 1).action == "wait"
    late = judge(project, release, now=release.started_at + hours * 3600 + 1)
    assert late.action == "retire" and "deployment.max_duration_hours" in late.why
    log = PredictionLog(project.log_location("predictions"), flush_seconds=60)
    for index in range(6):
        log.append({"age": [30]}, [1], np.array([[0.2, 0.8]]), 1, f"seen-{index}")
    log.close()
    project.close()
    config: dict[str, Any] = {}
    for limit, action in ((6, "wait"), (5, "retire")):
        config["deployment"] = {"max_requests": limit}
        (root / "self_healing_config.json").write_text(json.dumps(config))
        project = Project(root)
        found = judge(project, release, now=release.started_at + 60)
        project.close()
        assert (found.requests, found.action) == (6, action), found.why
    (root / "self_healing_config.json").unlink()


def test_without_labels_agreement_decides_only_when_configured_and_within_the_margin() -> None:
    from mlmedic.heal.releases.judge import _by_agreement

    def look(agree: int, rows: int = 2000) -> ReleaseVerdict:
        pairs = pd.DataFrame(
            {"candidate": ["1"] * rows, "champion": ["1"] * agree + ["0"] * (rows - agree)}
        )
        verdict = ReleaseVerdict(_release(), "wait", "", agreement=agree / rows)
        return _by_agreement(
            SimpleNamespace(), verdict, pairs, CLASSIFICATION, DeploymentConfig(), confidence=0.95
        )

    # disagreeing on 0.5 % of 2,000 rows: at most 0.76 % at 95 % — within the 1-point margin
    assert look(1990).action == "promote"
    assert look(1970).action == "wait"  # 1.5 %: the bound is above the margin


def test_only_the_projects_own_user_may_talk_to_the_release_host() -> None:
    """The host's socket is abstract (no file permissions): it checks each peer's user."""
    import os
    import socket

    from mlmedic.serving.releases.wire import same_user

    mine, theirs = socket.socketpair(socket.AF_UNIX)
    assert same_user(mine) and not same_user(None)
    mine.close()
    theirs.close()
    if os.getuid() != 0:
        pytest.skip("another user's connection needs root to make")
    name = "\0mlmedic-test-peer-" + str(os.getpid())
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(name)
    server.listen(1)
    # the other user is a forked child that drops to nobody: no interpreter has to be one that
    # nobody may run (the suite's may live under a 0700 home)
    child = os.fork()
    if child == 0:  # pragma: no cover - the child only connects and leaves
        code = 1
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            peer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            peer.connect(name)
            peer.recv(1)
            code = 0
        finally:
            os._exit(code)
    server.settimeout(30)
    try:
        connection, _ = server.accept()
        with connection:
            other_is_refused = not same_user(connection)
    finally:
        server.close()
        _, status = os.waitpid(child, 0)
    assert other_is_refused
    assert os.waitstatus_to_exitcode(status) == 0, "the child could not connect as nobody"
