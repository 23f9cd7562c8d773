"""A worker's link to a release, in process (#31 item 2): the routing, the counts and the
error-burst rule run against an ``InMemoryScorer``; only the socket transport needs the real
release host (tests/test_releases.py)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from mlmedic.core.clock import SimulatedClock
from mlmedic.heal.releases.states import (
    Mode,
    Release,
    State,
    read_release,
    release_path,
    routes_to_canary,
    write_release,
)
from mlmedic.serving.releases.link import ReleaseLink
from mlmedic.serving.releases.scorers import InMemoryScorer
from mlmedic.store.events import EventKind, EventStore


class _Metrics:
    def __init__(self) -> None:
        self.released_: dict[tuple[int, str], int] = {}
        self.failed: list[tuple[int, str, str, int]] = []

    def released(self, version: int, role: str, requests: int = 1) -> None:
        self.released_[(version, role)] = self.released_.get((version, role), 0) + requests

    def release_failed(self, version: int, role: str, why: str, requests: int = 1) -> None:
        self.failed.append((version, role, why, requests))


def _score(columns: dict[str, list[Any]]) -> tuple[list[Any], list[list[float]], list[Any]]:
    rows = len(next(iter(columns.values())))
    return ["yes"] * rows, [[0.2, 0.8]] * rows, ["no", "yes"]


def _link(
    tmp_path: Path, mode: Mode, scorer: InMemoryScorer, burst: int = 3
) -> tuple[ReleaseLink, _Metrics, EventStore]:
    state = tmp_path / ".mlmedic"
    state.mkdir()
    share = 1.0 if mode is Mode.SHADOW else 0.3
    release = Release("v2-1000", 2, 1, mode, share, 1_000.0, model_name="churn")
    write_release(state, release)
    events = EventStore(state / "events.db", clock=SimulatedClock(2_000.0))
    metrics = _Metrics()
    link = ReleaseLink(state, events, metrics, model_name="churn", error_burst=burst, scorer=scorer)
    link.refresh()
    return link, metrics, events


def test_a_canary_answers_the_requests_its_share_routes_to_it(tmp_path: Path) -> None:
    link, metrics, _ = _link(tmp_path, Mode.CANARY, InMemoryScorer(_score))
    ids = [f"request-{i}" for i in range(400)]
    routed = [i for i in ids if link.role(i) == "canary"]
    assert routed == [i for i in ids if routes_to_canary(i, 0.3)]
    assert 0.2 < len(routed) / len(ids) < 0.4  # the share, not every request nor none
    answer = asyncio.run(link.ask({"age": [30, 40]}))
    assert answer is not None
    labels, outputs, classes = answer
    assert labels == ["yes", "yes"] and outputs.shape == (2, 2) and classes == ["no", "yes"]
    assert metrics.failed == []


@pytest.mark.parametrize("why", ["timeout", "crashed", "error"])
def test_error_burst_failures_in_a_row_abort_the_canary_and_no_fewer(
    tmp_path: Path, why: str
) -> None:
    scorer = InMemoryScorer(_score, fail=why)
    link, metrics, events = _link(tmp_path, Mode.CANARY, scorer, burst=3)

    async def asks(n: int) -> list[Any]:
        return [await link.ask({"age": [30]}) for _ in range(n)]

    assert asyncio.run(asks(2)) == [None, None]  # the champion answers; the canary runs on
    assert link.release is not None and read_release(link.state_dir).running  # type: ignore[union-attr]
    assert asyncio.run(asks(1)) == [None]  # the third in a row ends it
    ended = read_release(link.state_dir)
    assert ended is not None and ended.state is State.ABORTED and why in ended.why
    assert link.release is None and link.role("request-1") is None
    assert [f[2] for f in metrics.failed] == [why] * 3
    assert events.last(EventKind.RELEASE) is not None


def test_a_success_between_failures_starts_the_burst_again(tmp_path: Path) -> None:
    scorer = InMemoryScorer(_score, fail="timeout")
    link, _, _ = _link(tmp_path, Mode.CANARY, scorer, burst=2)

    async def run() -> None:
        await link.ask({"age": [30]})
        scorer.fail = None
        assert await link.ask({"age": [30]}) is not None
        scorer.fail = "timeout"
        await link.ask({"age": [30]})

    asyncio.run(run())
    assert read_release(link.state_dir).running  # type: ignore[union-attr]


def test_an_unreachable_candidate_is_counted_but_never_ends_the_release(tmp_path: Path) -> None:
    """Not started yet, or gone: the supervisor ends a dead host, not a worker's burst."""
    link, metrics, _ = _link(tmp_path, Mode.CANARY, InMemoryScorer(_score, fail="unreachable"), 2)

    async def run() -> None:
        for _ in range(5):
            assert await link.ask({"age": [30]}) is None

    asyncio.run(run())
    assert read_release(link.state_dir).running  # type: ignore[union-attr]
    assert [f[2] for f in metrics.failed] == ["unreachable"] * 5


def test_a_shadow_gets_every_batch_and_what_it_cannot_take_is_counted_dropped(
    tmp_path: Path,
) -> None:
    scorer = InMemoryScorer(_score, room=2)
    link, metrics, _ = _link(tmp_path, Mode.SHADOW, scorer)
    assert link.role("any") == "shadow"

    async def run() -> None:
        link.bind(asyncio.get_running_loop())
        for n in range(3):
            link.mirror([f"r{n}a", f"r{n}b"], [1, 1], [{"age": [30, 40]}], champion=1)
        await asyncio.sleep(0.05)  # the counts go to the metrics every MIRROR_EVERY

    asyncio.run(run())
    assert [m.ids for m in scorer.mirrored] == [["r0a", "r0b"], ["r1a", "r1b"]]
    assert metrics.released_ == {(1, "champion"): 6, (2, "shadow"): 4}
    assert metrics.failed == [(2, "shadow", "dropped", 2)]


def test_a_new_release_starts_with_an_empty_scorer_and_no_failures_counted(
    tmp_path: Path,
) -> None:
    scorer = InMemoryScorer(_score, fail="timeout")
    link, _, _ = _link(tmp_path, Mode.CANARY, scorer, burst=2)
    asyncio.run(link.ask({"age": [30]}))
    scorer.mirrored.append(object())  # type: ignore[arg-type]
    other = Release("v3-3000", 3, 1, Mode.CANARY, 0.3, 3_000.0, model_name="churn")
    write_release(link.state_dir, other)
    stamp = 5_000_000_000_000_000_000  # a new stamp, whatever the filesystem's clock tick
    os.utime(release_path(link.state_dir), ns=(stamp, stamp))
    link.refresh()
    assert link.release is not None and link.release.id == "v3-3000"
    assert scorer.mirrored == []
    asyncio.run(link.ask({"age": [30]}))  # one failure of the new release: not a burst of two
    assert read_release(link.state_dir).running  # type: ignore[union-attr]
