"""One worker's state: the model it serves, where models come from, its logs and metrics, and
the micro-batcher that coalesces concurrent requests into one model call. The champion is
swapped atomically: the new version is loaded and canaried first, and a version that fails
leaves the old one serving (retries back off)."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlmedic.core.config import ServingConfig
from mlmedic.core.errors import InvalidRequest, NotReady
from mlmedic.model.local import LoadedModel, ModelLoadError
from mlmedic.model.source import ModelSource
from mlmedic.serving.metrics import Metrics
from mlmedic.store.events import EventKind, EventLog, Outcome
from mlmedic.store.logstore import FeedbackLog, PredictionLog

log = logging.getLogger("mlmedic.serving")

_ARRIVAL_GAP = 0.0004  # seconds without a new request that close a batch early

_SWAP_BACKOFF_CAP = 30.0

_INLINE_ROWS = 16  # batches up to this many rows run on the event loop (fast path only)


@dataclass
class Pending:
    """One request's validated rows, as feature columns, waiting for a model call."""

    columns: dict[str, list[Any]]
    rows: int
    future: asyncio.Future[tuple[np.ndarray, np.ndarray, LoadedModel]]
    fingerprint: int = 0  # of the request's body (``requests.json_body``)
    request_id: str = ""
    failed: dict[int, str] = field(default_factory=dict)  # record index -> why it has no answer


@dataclass
class ServerState:
    """Everything one worker holds: the model, its source, logs, metrics, the batch queue."""

    source: ModelSource
    config: ServingConfig
    events: EventLog
    predictions: PredictionLog
    feedback: FeedbackLog
    metrics: Metrics
    admin_token: str | None
    api_token: str | None = None
    metrics_token: str | None = None  # also opens /metrics (a scraper's token)
    poll_registry: bool = False
    model: LoadedModel | None = None
    queue: asyncio.Queue[Pending] | None = None
    swap_lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)
    # (version, input fingerprint) before a model call, (0) after: a crash in between is the
    # model's
    on_model_call: Callable[..., None] | None = None
    on_beat: Callable[[], None] | None = None  # the event loop is alive (the supervisor watches)
    log_failing: bool = False
    settings: Any = None  # the project's Settings (the dashboard's floors and intervals)
    # a swap target that failed: version -> (attempts, first failure time, next try, last error)
    failing: dict[int, list[Any]] = field(default_factory=dict)
    # the dashboard page this worker rendered last, and until when it stands (5 s)
    dashboard_cache: dict[str, Any] = field(default_factory=dict)
    release: Any = None  # the worker's ReleaseLink (serving.release_link), when one is built

    # ------------------------------------------------------------------ model lifecycle
    def load_initial(self) -> None:
        try:
            self.model = self.source.load_champion()
        except ModelLoadError as exc:
            log.error("no model to serve yet: %s", exc)
            self.events.record(
                EventKind.RECOVERY, "load-model", Outcome.FAILURE, message=f"no model: {exc}"
            )
        if self.model is not None:
            self.metrics.model_version(self.model.version)
            if self.model.fallback_from is not None:
                self.failing[self.model.fallback_from] = [
                    1,
                    time.time(),
                    time.monotonic() + 1.0,
                    self.model.fallback_why,
                ]

    def catch_up(self) -> None:
        """A standby that starts serving swaps first if the champion moved since it loaded."""
        version = self.check_for_new_champion(ask_registry=False)
        if version is not None:
            self.swap_to(version, reason="champion moved while this worker was on standby")

    def swap_to(self, version: int, *, reason: str) -> bool:
        """Load ``version``, canary it, swap it in; on failure keep the old model (and say so,
        once per target: retries back off, and the success that ends them counts them)."""
        with self.swap_lock:
            current = self.model.version if self.model else None
            if current == version:
                return False
            failing = self.failing.get(version)
            if failing is not None and time.monotonic() < failing[2]:
                return False
            try:
                loaded = self.source.load_version(version)
            except ModelLoadError as exc:
                self.metrics.swap(ok=False)
                if failing is None:
                    self.failing[version] = [1, time.time(), time.monotonic() + 1.0, str(exc)]
                    self.events.record(
                        EventKind.DEPLOY,
                        "hot-swap",
                        Outcome.FAILURE,
                        message=f"hot swap to v{version} failed, still serving v{current}: {exc}"
                        " (retrying with back-off)",
                        details={"to_version": version, "serving": current, "reason": reason},
                        model_version=current,
                    )
                else:
                    failing[0] += 1
                    delay = min(_SWAP_BACKOFF_CAP, 2.0 ** min(failing[0], 10))
                    failing[2], failing[3] = time.monotonic() + delay, str(exc)
                return False
            attempts = self.failing.pop(version, [0])[0]
            self.model = loaded
            self.metrics.model_version(loaded.version)
            self.metrics.swap(ok=True)
            self.events.record(
                EventKind.DEPLOY,
                "hot-swap",
                Outcome.SUCCESS,
                message=f"now serving v{version} (was v{current}): {reason}"
                + (f" after {attempts} failed attempt(s)" if attempts else ""),
                details={
                    "from_version": current,
                    "to_version": version,
                    "source": loaded.source,
                    "failed_attempts": attempts,
                },
                model_version=version,
            )
            return True

    def check_for_new_champion(self, *, ask_registry: bool) -> int | None:
        """The champion version if it differs from the one served (from the local pointer, and
        from the registry when ``ask_registry``)."""
        wanted = self.source.champion_version(ask_registry=ask_registry)
        served = self.model.version if self.model else None
        return wanted if wanted is not None and wanted != served else None

    def watch(self) -> None:
        """Background thread: follow the local champion record (the registry watcher process
        keeps it in step with the registry), and write events buffered while the store was
        unavailable."""
        parent = os.getppid()
        ticks = 0
        while not self.stopping.wait(0.25):
            ticks += 1
            try:
                if os.environ.get("MLMEDIC_WORKER_INDEX") and os.getppid() != parent:
                    log.error("the supervisor is gone; this worker stops")
                    os._exit(1)
                version = self.check_for_new_champion(ask_registry=self.poll_registry)
                if version is not None:
                    self.swap_to(version, reason="champion alias moved")
                if self.release is not None:
                    self.release.refresh()
                    self.release.keep_open()
                self._watch_prediction_log()
                if ticks % 8 == 0:
                    flush = getattr(self.events, "flush", None)
                    if flush is not None:
                        flush()
            except Exception as exc:  # the watcher must never die
                log.warning("champion watch failed: %s", exc)

    def _watch_prediction_log(self) -> None:
        """One event when the prediction log stops being written, one when it writes again."""
        status = self.predictions.status()
        failing = not status["writing"]
        if failing == self.log_failing:
            return
        self.log_failing = failing
        self.events.record(
            EventKind.COMPONENT,
            "prediction-log failing" if failing else "prediction-log writing",
            Outcome.WARNING if failing else Outcome.SUCCESS,
            message=(
                f"the prediction log cannot be written ({status['last_error']}); rows are kept "
                f"in memory (at most {self.predictions.max_pending_rows:,})"
                if failing
                else f"the prediction log is written again ({status['dropped_rows']} rows dropped, "
                f"{status['set_aside_rows']} set aside)"
            ),
            details=status,
        )

    def fallback(self) -> dict[str, Any] | None:
        """When another version is served because the champion cannot be loaded (at start, or
        by a hot swap that keeps failing)."""
        model = self.model
        if model is None:
            return None
        wanted = self.source.champion_version(ask_registry=False)
        if model.fallback_from is not None and wanted in (None, model.fallback_from):
            champion, why = model.fallback_from, model.fallback_why
        elif wanted is not None and wanted != model.version and wanted in self.failing:
            champion, why = wanted, str(self.failing[wanted][3])
        else:
            return None
        return {"champion": champion, "serving": model.version, "why": why}

    # ------------------------------------------------------------------ batching
    async def batcher(self) -> None:
        """Coalesce queued requests into model calls of at most ``max_batch_size`` rows."""
        assert self.queue is not None
        loop = asyncio.get_running_loop()
        wait = self.config.batch_wait_ms / 1000.0
        limit = self.config.max_batch_size
        while True:
            first = await self.queue.get()
            batch = [first]
            rows = first.rows
            deadline = loop.time() + wait
            while rows < limit:
                # close the batch at the window's end, or as soon as arrivals pause: with few
                # clients in flight, waiting out the whole window would only add latency
                timeout = min(deadline - loop.time(), _ARRIVAL_GAP)
                if timeout <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self.queue.get(), timeout)
                except TimeoutError:
                    break
                batch.append(item)
                rows += item.rows
            while rows < limit and not self.queue.empty():
                item = self.queue.get_nowait()
                batch.append(item)
                rows += item.rows
            model = self.model
            if model is None:
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(NotReady("no model is loaded yet"))
                continue
            self.metrics.batch(rows)
            mark = self.on_model_call
            try:
                parts = [item.columns for item in batch]
                if mark is not None:
                    mark(model.version, batch_fingerprint(batch))
                fast = getattr(model, "fast", None) is not None
                if rows <= _INLINE_ROWS and fast and self.queue.empty():
                    # a small batch on the fast path costs about a millisecond: with nothing else
                    # waiting, handing it to a thread and back costs more than it saves
                    labels, probabilities = model.predict_columns(parts)
                else:
                    labels, probabilities = await loop.run_in_executor(
                        None, model.predict_columns, parts
                    )
            except Exception:
                # one request's rows must not fail the others: score them one by one
                await self._one_by_one(batch, model)
                continue
            finally:
                if mark is not None:
                    mark(0)
            start = 0
            for item in batch:
                stop = start + item.rows
                if not item.future.done():
                    item.future.set_result((labels[start:stop], probabilities[start:stop], model))
                start = stop
            link = self.release
            if link is not None and link.release is not None and link.release.mode == "shadow":
                ids, counts = [i.request_id for i in batch], [i.rows for i in batch]
                link.mirror(ids, counts, parts, model.version)

    async def _one_by_one(self, batch: list[Pending], model: LoadedModel) -> None:
        """A batch the model failed on, scored request by request; a request it still fails on,
        record by record: a record the model cannot score gets its own error (its index in the
        request) and the others their predictions. Only a request whose every record fails is
        refused (422)."""
        loop = asyncio.get_running_loop()
        for item in batch:
            if item.future.done():
                continue
            try:
                labels, probabilities = await loop.run_in_executor(
                    None, model.predict_columns, [item.columns]
                )
            except Exception as exc:
                if item.rows == 1:
                    item.future.set_exception(_cannot_score(model, exc))
                    continue
                await self._record_by_record(item, model, loop)
            else:
                item.future.set_result((labels, probabilities, model))

    async def _record_by_record(
        self, item: Pending, model: LoadedModel, loop: asyncio.AbstractEventLoop
    ) -> None:
        labels: list[Any] = []
        probabilities: list[Any] = []
        failed: dict[int, str] = {}
        for index in range(item.rows):
            record = {name: [values[index]] for name, values in item.columns.items()}
            try:
                label, probability = await loop.run_in_executor(
                    None, model.predict_columns, [record]
                )
            except Exception as exc:
                failed[index] = _cannot_score(model, exc).detail
                labels.append(None)
                probabilities.append(None)
            else:
                labels.append(label[0])
                probabilities.append(probability[0])
        if len(failed) == item.rows:
            item.future.set_exception(InvalidRequest(failed[0]))
            return
        item.failed = failed
        item.future.set_result(
            (np.asarray(labels, dtype=object), np.asarray(probabilities, dtype=object), model)
        )


def _cannot_score(model: LoadedModel, exc: Exception) -> InvalidRequest:
    return InvalidRequest(
        f"v{model.version} cannot score these records: {type(exc).__name__}: {str(exc)[:200]}"
    )


def batch_fingerprint(batch: list[Pending]) -> int:
    """The fingerprint of one model call's input: its request's body fingerprint when the call
    holds one request (the usual case of a crash worth naming), else a fingerprint of theirs."""
    if len(batch) == 1:
        return batch[0].fingerprint
    return zlib.crc32(b"".join(item.fingerprint.to_bytes(4, "little") for item in batch))


BEAT_SECONDS = 0.25


async def beating(beat: Callable[[], None]) -> None:
    """Say every ``BEAT_SECONDS`` that this worker's event loop runs (``serving.hang_seconds``
    without a beat and the supervisor replaces the worker)."""
    while True:
        beat()
        await asyncio.sleep(BEAT_SECONDS)


def state_of(request: Any) -> ServerState:
    """The worker's state behind a request (``app.state.mlmedic``), for the routers."""
    state: ServerState = request.app.state.mlmedic
    return state
