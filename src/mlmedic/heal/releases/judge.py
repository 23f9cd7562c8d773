"""A release judged on live traffic (#24): the candidate against the champion on the same
labelled requests, with the evidence the rest of the loop uses.

The two models' answers to one request are found in the prediction log (what was answered) and
the release log (what the other model said: the shadow's answers, or the champion's to a canary
request), paired by request id and row. With ``deployment.min_labelled_requests`` labelled pairs:
- **retire** when the candidate is significantly worse (McNemar's exact test on the rows where
  one of them is right; a regression's paired test of absolute errors);
- **promote** when it is significantly better, or *not worse by* ``not_worse_margin``: the
  one-sided lower bound of the paired accuracy difference (a regression's: of the MAE reduction,
  as a share of the champion's MAE) above minus the margin.
Before that, and whatever the labels: retire on the candidate's errors (over
``max_error_rate`` of its calls, at least three), its p99 call time over ``max_latency_ms``
(when set), a champion that changed underneath, or a release past ``max_duration_hours`` or
``max_requests``. Without labels, and only with ``decide_without_labels``, agreement decides: the
champion's and the candidate's accuracies differ by at most the share of rows where they
disagree, so an upper bound of that share under the margin proves *not worse* (a regression's:
the mean gap between the two predictions against the margin of the champion's validation MAE).

Power: to see a 3-point accuracy difference (95 % one-sided, 80 % power) McNemar needs about
``requests_for(0.03, discordant)`` labelled requests — 666 when the models disagree on 10 % of
rows, 1,364 at 20 % (the status prints it for the disagreement measured).

    >>> requests_for(0.03, 0.10), requests_for(0.03, 0.20)
    (666, 1364)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from mlmedic.core.errors import MedicError
from mlmedic.core.lock import project_lock
from mlmedic.heal.releases.states import (
    Move,
    Release,
    ReleaseStateError,
    end_release,
    host_status,
    read_release,
    running_release,
)
from mlmedic.model.tasks import Task, task_of
from mlmedic.model.training import model_frame
from mlmedic.store.events import EventKind, Outcome
from mlmedic.store.logstore import FeedbackLog, Location, hour_of, read_feedback, read_predictions

SAME = "on the same rows"


class Action(StrEnum):
    """What a look at a release calls for."""

    PROMOTE = "promote"
    RETIRE = "retire"
    WAIT = "wait"


def requests_for(difference: float, discordant: float, *, power: float = 0.8) -> int:
    """Labelled requests McNemar needs to see ``difference`` (accuracy points) at 95 %
    one-sided with ``power``, when a ``discordant`` share of rows has one model right."""
    if discordant <= difference or discordant <= 0:
        return 0
    lean = 0.5 + difference / (2 * discordant)  # the share of discordant rows the better wins
    z_a, z_b = stats.norm.ppf(0.95), stats.norm.ppf(power)
    rows = ((z_a * 0.5 + z_b * math.sqrt(lean * (1 - lean))) / (lean - 0.5)) ** 2
    return math.ceil(rows / discordant)


@dataclass
class ReleaseVerdict:
    """What one look at a release found, and what it calls for: promote, retire or wait."""

    release: Release
    action: Action
    why: str
    expired: bool = False  # retired for outliving max_duration_hours or max_requests
    requests: int = 0  # requests served since the release started
    pairs: int = 0  # rows both models answered
    labelled: int = 0  # of which labelled
    comparison: dict[str, Any] | None = None  # the paired test, candidate (A) vs champion (B)
    lower_bound: float | None = None  # of the candidate's advantage (accuracy points / MAE share)
    agreement: float | None = None
    host: dict[str, Any] = field(default_factory=dict)  # the candidate's calls, errors, latency
    needed: int | None = None  # labelled requests to see 3 points at the disagreement seen

    def to_dict(self) -> dict[str, Any]:
        found = asdict(self)
        found["release"] = self.release.to_dict()
        found["action"] = str(self.action)
        return found

    @property
    def move(self) -> Move | None:
        """The transition this verdict calls for (None: wait)."""
        if self.action is Action.WAIT:
            return None
        if self.action is Action.PROMOTE:
            return Move.PROMOTE
        return Move.EXPIRE if self.expired else Move.RETIRE


def pairs_of(project: Any, release: Release) -> tuple[pd.DataFrame, int]:
    """(one row per request row both models answered: ``candidate``, ``champion``, ``label``;
    the requests served since the release started)."""
    since = release.started_at
    main = read_predictions(project.log_location("predictions"), since=since)
    side = read_predictions(project.log_location("release"), since=since)
    requests = int(main["request_id"].nunique()) if len(main) else 0
    columns = ["candidate", "champion", "label"]
    logged = [frame for frame in (main, side) if len(frame)]  # (an empty one would warn)
    if not logged:
        return pd.DataFrame(columns=columns), requests
    both = pd.concat(logged, ignore_index=True)
    both = both[both["model_version"].isin([release.version, release.champion])]
    both = both.assign(row=both.groupby(["request_id", "model_version"]).cumcount())
    keyed = both.set_index(["request_id", "row"])
    one = keyed[keyed["model_version"] == release.version]["prediction"]
    other = keyed[keyed["model_version"] == release.champion]["prediction"]
    joined = pd.concat([one.rename("candidate"), other.rename("champion")], axis=1, join="inner")
    feedback = read_feedback(project.log_location("feedback"))
    labels = feedback.drop_duplicates("request_id", keep="last").set_index("request_id")["label"]
    ids = joined.index.get_level_values("request_id")
    joined["label"] = ids.map(labels.to_dict()) if len(labels) else None
    return joined.reset_index(drop=True), requests


def judge(project: Any, release: Release, *, now: float | None = None) -> ReleaseVerdict:
    """Look at ``release`` once; decides nothing by itself (``tend`` acts)."""
    deployment = project.settings.self_healing.deployment
    confidence = project.settings.self_healing.model_validation.evidence_confidence
    now = project.events.clock.now() if now is None else now
    verdict = ReleaseVerdict(release, Action.WAIT, "")
    pairs, verdict.requests = pairs_of(project, release)
    verdict.pairs = len(pairs)
    verdict.host = host_status(project.state_dir, release) or {}
    task = _task(project, release)
    if len(pairs) and task.probabilities:  # how often the two give the same class
        same = task.agree(pairs["candidate"], pairs["champion"])
        verdict.agreement = float(np.mean(same))
        verdict.needed = requests_for(0.03, 1.0 - verdict.agreement)
    labelled = pairs[pairs["label"].notna()] if len(pairs) else pairs
    verdict.labelled = len(labelled)
    why = _limits(project, release, verdict, deployment, now)
    if why:  # checked before any comparison: a limit holds whatever the labels say (#31)
        return _set(verdict, Action.RETIRE, why)
    if verdict.labelled >= deployment.min_labelled_requests:
        return _compare(verdict, labelled, task, deployment, confidence)
    if deployment.decide_without_labels and verdict.pairs >= deployment.min_labelled_requests:
        return _by_agreement(project, verdict, pairs, task, deployment, confidence)
    return _set(
        verdict,
        Action.WAIT,
        f"{verdict.labelled:,} of {deployment.min_labelled_requests:,} labelled requests "
        "(deployment.min_labelled_requests)",
    )


def _limits(
    project: Any, release: Release, verdict: ReleaseVerdict, deployment: Any, now: float
) -> str:
    """A reason to retire whatever the labels say, or ''; one that is a limit of time or
    traffic marks the verdict ``expired``."""
    if now - release.started_at > deployment.max_duration_hours * 3600.0:
        verdict.expired = True
        return "outlived deployment.max_duration_hours"
    if verdict.requests > deployment.max_requests:
        verdict.expired = True
        return "outlived deployment.max_requests"
    champion = project.registry.alias_version("champion")
    if champion is not None and champion != release.champion:
        return f"the champion changed during the release (v{release.champion} -> v{champion})"
    calls, failures = verdict.host.get("calls", 0), verdict.host.get("failures", 0)
    if failures >= 3 and calls and failures / calls > deployment.max_error_rate:
        return (
            f"the candidate failed {failures:,} of {calls:,} calls "
            f"(over deployment.max_error_rate {deployment.max_error_rate:g})"
        )
    p99 = verdict.host.get("call_p99_ms")
    if (
        deployment.max_latency_ms is not None
        and p99 is not None
        and p99 > deployment.max_latency_ms
    ):
        return f"the candidate's p99 call took {p99:.1f} ms (over deployment.max_latency_ms)"
    return ""


def _compare(
    verdict: ReleaseVerdict,
    labelled: pd.DataFrame,
    task: Task,
    deployment: Any,
    confidence: float,
) -> ReleaseVerdict:
    """The candidate (A) against the champion (B) on the labelled pairs: the task's paired
    test, and the lower bound of the candidate's advantage against the margin."""
    z = float(stats.norm.ppf(confidence))
    truth = labelled["label"]
    candidate = task.per_row(labelled["candidate"], truth)
    champion = task.per_row(labelled["champion"], truth)
    test = task.versus(candidate, champion, confidence=confidence)
    verdict.lower_bound = task.advantage_bound(candidate, champion, z)
    verdict.comparison = {**test.to_dict(), "summary": test.summary("candidate", "champion")}
    if test.worse:
        return _set(verdict, Action.RETIRE, f"significantly worse than the champion {SAME}")
    if test.better:
        return _set(verdict, Action.PROMOTE, f"significantly better than the champion {SAME}")
    if verdict.lower_bound > -deployment.not_worse_margin:
        return _set(
            verdict,
            Action.PROMOTE,
            f"not worse than the champion by {deployment.not_worse_margin:g} "
            f"(lower bound {verdict.lower_bound:+.4f}, deployment.not_worse_margin)",
        )
    return _set(verdict, Action.WAIT, "no significant difference yet, not shown within the margin")


def _by_agreement(
    project: Any,
    verdict: ReleaseVerdict,
    pairs: pd.DataFrame,
    task: Task,
    deployment: Any,
    confidence: float,
) -> ReleaseVerdict:
    """No labels: how far the two models' answers differ bounds how far their scores can
    (``decide_without_labels``): the share of rows with another class bounds the accuracy
    difference; the mean gap between two predictions bounds the MAE difference."""
    z = float(stats.norm.ppf(confidence))
    rows = len(pairs)
    if task.probabilities:
        share = 1.0 - float(verdict.agreement or 0.0)
        bound = share + z * math.sqrt(max(share * (1 - share), 1e-12) / rows)
        allowed: float | None = deployment.not_worse_margin
        what = f"disagrees with the champion on at most {bound:.2%} of requests"
    else:
        gap = task.per_row(pairs["candidate"], pairs["champion"])
        bound = float(gap.mean() + z * gap.std(ddof=1) / math.sqrt(rows))
        mae = project.registry.info(verdict.release.champion).metrics.get(task.metric)
        allowed = None if mae is None else deployment.not_worse_margin * float(mae)
        what = f"predictions within {bound:.4g} of the champion's"
    if allowed is not None and bound <= allowed:
        return _set(
            verdict,
            Action.PROMOTE,
            f"unlabelled: {what}, within deployment.not_worse_margin ({allowed:.4g})",
        )
    return _set(verdict, Action.WAIT, f"unlabelled: {what}: more than the margin allows")


def _set(verdict: ReleaseVerdict, action: Action, why: str) -> ReleaseVerdict:
    verdict.action, verdict.why = action, why
    return verdict


def _task(project: Any, release: Release) -> Task:
    """The champion's task, as its version's tags say (classification when they cannot)."""
    try:
        return task_of(project.registry.info(release.champion).tags.get("mlmedic.task"))
    except (MedicError, ValueError):
        return task_of(None)


def tend(project: Any, say: Any = None) -> ReleaseVerdict | None:
    """A monitoring pass's look at the running release: judged, and promoted or retired when
    the evidence says so (under the project lock, once per release across every host)."""
    release = running_release(project)
    if release is None:
        return None
    verdict = judge(project, release)
    say = say or (lambda _: None)
    say(f"release: {release.mode} v{release.version}: {verdict.action} — {verdict.why}")
    move = verdict.move
    if move is None:
        project.events.record(
            EventKind.RELEASE,
            "verdict",
            Outcome.SKIPPED,
            message=f"{release.mode} v{release.version}: waiting — {verdict.why}",
            details={**verdict.to_dict(), "id": release.id},
            model_version=release.version,
        )
        return verdict
    with project_lock(project.state_dir, f"release verdict on v{release.version}"):
        try:  # re-read under the lock: a server may have aborted it since the look
            end_release(project, release, move, verdict.why, evidence=verdict.to_dict())
        except ReleaseStateError as exc:
            say(f"release: {exc}")
    return verdict


def release_status(project: Any) -> tuple[Release | None, ReleaseVerdict | None]:
    """``mlmedic release status``: the newest release this host knows of, and (while it runs)
    what a look at it finds now."""
    release = read_release(project.state_dir)
    return release, judge(project, release) if release is not None and release.running else None


def decide_release(project: Any, move: Move, why: str, *, by: str = "person") -> Release:
    """``mlmedic release promote|abort``: end the running release by ``move`` now, whatever its
    evidence (kept with the end); ``ReleaseStateError`` when none runs."""
    release = running_release(project)
    if release is None:
        last = read_release(project.state_dir)
        ended = f" (the last, v{last.version}, was {last.state}: {last.why})" if last else ""
        raise ReleaseStateError(f"no release is running{ended}")
    with project_lock(project.state_dir, f"mlmedic release ({move} v{release.version})"):
        evidence = judge(project, release).to_dict()
        return end_release(project, release, move, why, evidence=evidence, by=by)


def promote_release(project: Any, why: str = "promoted by a person") -> Release:
    """Make the running release's candidate the champion now."""
    return decide_release(project, Move.PROMOTE, why)


def abort_release(project: Any, why: str = "aborted by a person") -> Release:
    """End the running release now: the candidate is retired, the champion stays."""
    return decide_release(project, Move.ABORT, why)


def simulate(
    project: Any, rows: pd.DataFrame, target: str, at: float, key: str, models: dict[int, Any]
) -> ReleaseVerdict | None:
    """``mlmedic replay``'s shadow (#24): a window of history as the traffic of the running
    release — both models' answers logged under one id per row (at data time ``at``), the
    window's labels as feedback — then one look, as a monitoring pass takes it. ``models``
    caches (model, contract) per version."""

    release = running_release(project)
    if release is None or not len(rows) or release.started_at >= at:
        return None  # none, or started by this very window's pass: it learned these rows
    import pyarrow as pa

    ids = [f"{key}-{i}" for i in range(len(rows))]
    hour = hour_of(at)
    for version, log in ((release.champion, "predictions"), (release.version, "release")):
        if version not in models:
            models[version] = (
                project.registry.load_model(version),
                project.registry.load_contract(version),
            )
        model, contract = models[version]
        predicted = model.predict(model_frame(rows, contract))
        frame = pd.DataFrame(
            {
                "prediction": [str(v) for v in predicted],
                "model_version": version,
                "request_id": ids,
                "served_at": at,
            }
        )
        where = Location(project.log_location(log))
        where.write(
            where.path(f"hour={hour}"),
            f"part-{int(at * 1e9)}-0-replay-{key}.parquet",
            pa.Table.from_pandas(frame, preserve_index=False),
        )
    labelled = rows[target].notna().to_numpy()
    FeedbackLog(project.log_location("feedback")).write(
        [
            {"request_id": i, "label": str(v)}
            for i, v, keep in zip(ids, rows[target].tolist(), labelled, strict=True)
            if keep
        ]
    )
    return tend(project)
