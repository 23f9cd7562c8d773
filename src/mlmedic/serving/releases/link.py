"""A worker's side of a release (#24): which release runs (``.mlmedic/release.json``, re-read
when it changes), and the connection to the release host that holds the candidate.

- **Shadow**: after each model call the batch's rows go to the host in one write that never
  waits (``mirror``): with the host gone, slow or behind (more than ``MIRROR_BUFFER`` bytes
  unsent), the rows are dropped and counted — an answer never waits for the shadow.
- **Canary**: a request whose id falls in ``canary_share`` (``releases.routes_to_canary``) is
  sent to the host while the champion scores it too; the candidate's answer is returned when it
  comes within ``CANARY_WAIT`` seconds, else the champion's. The champion's answer to a canary
  request is logged in the release log, so the two are compared on the same requests.
  ``deployment.error_burst`` failures in a row end the release at once (``end_locally``).

The link's state changes on the worker's event loop only: the watch thread reads the record and
hands what it found to the loop (``refresh``). The candidate is scored through a
``scorers.CandidateScorer``: the release host over its socket in a server (its lines are
``wire``'s messages; an answer that does not parse is counted,
``mlmedic_release_failures_total{why="malformed"}``), one in this process in the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from mlmedic.core.jsonvalues import plain
from mlmedic.heal.releases.states import (
    Release,
    end_locally,
    read_release,
    release_path,
    routes_to_canary,
)
from mlmedic.serving.releases.scorers import (
    MIRROR_EVERY,
    CandidateScorer,
    CandidateUnavailable,
    SocketScorer,
)
from mlmedic.serving.releases.wire import ShadowRows, WireError

log = logging.getLogger("mlmedic.serving")


class ReleaseLink:
    """One worker's view of the running release and its line to the candidate."""

    def __init__(
        self,
        state_dir: Path,
        events: Any,
        metrics: Any,
        *,
        model_name: str,
        error_burst: int,
        release_log: Any = None,
        scorer: CandidateScorer | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.events = events
        self.metrics = metrics
        self.model_name = model_name
        self.error_burst = error_burst
        self.release: Release | None = None
        self.release_log = release_log  # a PredictionLog of .mlmedic/release/ (canary pairs)
        self.scorer: CandidateScorer = scorer or SocketScorer(state_dir, self._malformed)
        self._seen: float | None = None
        self._in_a_row = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flush_due = False
        self._counts: dict[tuple[int, str], int] = {}  # (version, role) -> requests, unflushed
        self._dropped = 0

    # ------------------------------------------------------------------ following
    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The worker's event loop: from now on every change of state happens on it."""
        self._loop = loop
        self.scorer.bind(loop)

    def refresh(self) -> None:
        """Re-read the release record when its file changed (the worker's watch thread, or
        before the loop runs); what was found is followed on the event loop."""
        try:
            stamp = os.stat(release_path(self.state_dir)).st_mtime_ns
        except OSError:
            stamp = None
        if stamp == self._seen:
            return
        self._seen = stamp
        found = read_release(self.state_dir) if stamp is not None else None
        if found is not None and (not found.running or found.model_name != self.model_name):
            found = None
        loop = self._loop
        if loop is None:
            self._follow(found)
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed
            loop.call_soon_threadsafe(self._follow, found)

    def _follow(self, found: Release | None) -> None:
        if found is None or self.release is None or found.id != self.release.id:
            self._in_a_row = 0
            self.scorer.reset()
        self.release = found

    def keep_open(self) -> None:
        """From the worker's watch thread: while a release runs, the scorer keeps its line open
        and sends what waits (the host starts after the workers; no request may be needed)."""
        if self.release is not None:
            self.scorer.keep_open()

    def role(self, request_id: str) -> str | None:
        """``canary`` when the candidate answers this request, ``shadow`` when it only scores
        it, None when no release runs."""
        release = self.release
        if release is None:
            return None
        if release.mode == "shadow":
            return "shadow"
        return "canary" if routes_to_canary(request_id, release.share) else None

    # ------------------------------------------------------------------ shadow
    def mirror(
        self,
        ids: list[str],
        rows: list[int],
        columns: list[dict[str, list[Any]]],
        champion: int,
    ) -> None:
        """Hand one model call's requests (answered by ``champion``) to the shadow; never
        waits: what the scorer cannot take is dropped and counted."""
        release = self.release
        if release is None or release.mode != "shadow" or not ids:
            return
        key = (champion, "champion")
        self._counts[key] = self._counts.get(key, 0) + len(ids)
        merged = columns[0] if len(columns) == 1 else _merge(columns)
        if self.scorer.mirror(ShadowRows(ids, rows, merged)):
            key = (release.version, "shadow")
            self._counts[key] = self._counts.get(key, 0) + len(ids)
        else:
            self._dropped += len(ids)
        loop = self._loop or _running_loop()
        if not self._flush_due and loop is not None:
            self._flush_due = True
            loop.call_later(MIRROR_EVERY, self._flush)

    def _flush(self) -> None:
        """The counts to the metrics (every ``MIRROR_EVERY`` seconds at most)."""
        self._flush_due = False
        counts, self._counts = self._counts, {}
        for (version, role), requests in counts.items():
            self.metrics.released(version, role, requests)
        if self._dropped and self.release is not None:
            self.metrics.release_failed(self.release.version, "shadow", "dropped", self._dropped)
            self._dropped = 0

    # ------------------------------------------------------------------ canary
    async def ask(
        self, columns: dict[str, list[Any]]
    ) -> tuple[list[Any], np.ndarray, list[Any]] | None:
        """The candidate's answer to a canary request, or None (the champion answers)."""
        release = self.release
        if release is None:
            return None
        try:
            answer = await self.scorer.ask(columns)
        except CandidateUnavailable as exc:
            why = exc.why
        else:
            if answer.ok:
                self._in_a_row = 0
                return answer.labels, np.asarray(answer.outputs, dtype=float), answer.classes
            why = "error"
        self.metrics.release_failed(release.version, "canary", why)
        if why == "unreachable":  # not started yet, or gone: the supervisor ends a dead host
            return None
        self._in_a_row += 1
        if self._in_a_row >= self.error_burst:
            text = f"{self._in_a_row} canary requests in a row failed (last: {why})"
            if end_locally(self.state_dir, self.events, release, text):
                log.error("canary v%s aborted: %s", release.version, text)
            self.release = None
        return None

    def log_champion(
        self, future: asyncio.Future[Any], columns: dict[str, list[Any]], request_id: str
    ) -> None:
        """The champion's answer to a request the canary answered, kept for the comparison."""
        if self.release_log is None or future.cancelled() or future.exception() is not None:
            return
        labels, outputs, used = future.result()
        self.release_log.append(
            columns, [plain(v) for v in labels], outputs, used.version, request_id
        )

    def _malformed(self, exc: WireError) -> None:
        log.warning("a malformed line from the release host: %s", exc)
        release = self.release
        if release is not None:
            self.metrics.release_failed(release.version, str(release.mode), "malformed")


def _merge(parts: list[dict[str, list[Any]]]) -> dict[str, list[Any]]:
    names = list(parts[0])
    return {name: [v for part in parts for v in part[name]] for name in names}


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
