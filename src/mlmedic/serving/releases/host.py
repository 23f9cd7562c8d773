"""The release host: one process beside the workers that holds the candidate of a shadow or
canary release (#24), so that whatever the candidate does — raise, hang, leak memory, crash —
happens in a process no answer depends on.

Workers reach it on a Unix socket in the abstract namespace (no file, no path-length limit), with
the messages of ``release_wire`` (a malformed line is counted in the status, never acted on):
- a **shadow** batch (``ShadowRows``) is queued and never answered: the host scores queued
  batches together, off every response path, and logs the candidate's answers under each
  request's id in the release log (``.mlmedic/release/`` or ``<prediction_log_url>/release``); a
  queue past ``SHADOW_QUEUE_ROWS`` drops its oldest batches (counted), so a slow candidate falls
  behind instead of holding memory;
- a **canary** request (``CanaryAsk``) is scored at once and answered (``CanaryAnswer``); the
  worker waits a bounded time and answers with the champion when the host does not.

A model call in flight longer than ``serving.hang_seconds`` — widened on a starved host as the
supervisor's hang watch widens it (``marks.HangLimit``) — ends the process (exit 4): the
supervisor sees the exit, or a crash signal, or the memory over ``deployment.max_memory_mb``
(exit 5 here, or SIGKILL from the supervisor), and ends the release.

    python -m mlmedic.serving.releases.host PROJECT_DIR
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import numpy as np

from mlmedic.core.jsonvalues import plain, write_json
from mlmedic.heal.releases.states import STATUS_FILE
from mlmedic.serving.marks import HangLimit
from mlmedic.serving.releases.wire import (
    CanaryAnswer,
    CanaryAsk,
    ShadowRows,
    WireError,
    address,
    encode,
    parse_request,
    same_user,
)

log = logging.getLogger("mlmedic.release")
SHADOW_QUEUE_ROWS = 50_000  # queued shadow rows beyond which the oldest batches are dropped
SHADOW_BATCH_ROWS = 1024  # rows per shadow model call
SHADOW_GATHER = 0.05  # seconds a shadow waits for more rows before a model call
SHADOW_NICE = 19  # where SCHED_IDLE is not offered: the lowest priority
HANG_EXIT, MEMORY_EXIT, LOAD_EXIT = 4, 5, 6


def rss_mb(pid: int | None = None) -> float:
    """A process's resident memory (MB), from ``/proc`` (0 when it cannot be read)."""
    try:
        pages = int(Path(f"/proc/{pid or 'self'}/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


class Host:
    """The candidate, its queue, its log and its counters."""

    def __init__(self, project_dir: Path) -> None:
        from mlmedic.heal.releases.states import read_release
        from mlmedic.model.local import ModelLoadError
        from mlmedic.model.project import Project
        from mlmedic.model.source import model_source
        from mlmedic.store.logstore import PredictionLog

        self.project = Project(project_dir, service=True)
        settings = self.project.settings.self_healing
        self.hang_seconds = settings.serving.hang_seconds
        self.max_memory_mb = settings.deployment.max_memory_mb
        release = read_release(self.project.state_dir)
        if release is None or not release.running:
            log.error("no running release")
            sys.exit(0)
        self.release = release
        try:
            self.model = model_source(self.project).load_version(release.version)
        except ModelLoadError as exc:
            log.error("cannot load the candidate v%s: %s", release.version, exc)
            sys.exit(LOAD_EXIT)
        self.log = PredictionLog(  # written once a second: fewer, larger files
            self.project.log_location("release"),
            flush_seconds=max(1.0, settings.serving.prediction_log_flush_seconds),
        )
        self.queue: list[ShadowRows] = []
        self.queued_rows = 0
        self.wake = asyncio.Event()
        self.calls = self.failures = self.scored_rows = self.dropped_rows = self.malformed = 0
        self.call_ms: list[float] = []  # the newest model calls' durations
        self.in_flight: dict[int, float] = {}  # model calls running: id -> when they began
        self.answering: set[asyncio.Task[None]] = set()  # canary answers being scored

    # ------------------------------------------------------------------ scoring
    def _predict(self, columns: dict[str, list[Any]]) -> tuple[np.ndarray, np.ndarray]:
        key, began = id(columns), time.monotonic()
        self.in_flight[key] = began
        try:
            return self.model.predict_columns([columns])
        finally:
            self.in_flight.pop(key, None)
            self.call_ms = [*self.call_ms[-999:], (time.monotonic() - began) * 1000.0]

    async def canary(self, message: CanaryAsk) -> CanaryAnswer:
        loop = asyncio.get_running_loop()
        self.calls += 1
        try:
            labels, outputs = await loop.run_in_executor(None, self._predict, message.columns)
        except Exception as exc:
            self.failures += 1
            return CanaryAnswer(message.number, False, error=f"{type(exc).__name__}: {exc}")
        self.scored_rows += len(labels)
        return CanaryAnswer(
            message.number,
            True,
            [plain(v) for v in labels],
            np.asarray(outputs, dtype=float).tolist(),
            [plain(c) for c in self.model.classes],
        )

    async def _answer(self, message: CanaryAsk, writer: asyncio.StreamWriter) -> None:
        answer = await self.canary(message)
        if not writer.is_closing():
            writer.write(encode(answer))

    def enqueue(self, message: ShadowRows) -> None:
        self.queue.append(message)
        self.queued_rows += sum(message.rows)
        while self.queued_rows > SHADOW_QUEUE_ROWS and len(self.queue) > 1:
            dropped = self.queue.pop(0)
            self.queued_rows -= sum(dropped.rows)
            self.dropped_rows += sum(dropped.rows)
        self.wake.set()

    async def shadow_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.wake.wait()
            if self.queued_rows < SHADOW_BATCH_ROWS:  # one call for many requests
                await asyncio.sleep(SHADOW_GATHER)
            self.wake.clear()
            while self.queue:
                batch, rows = [], 0
                while self.queue and rows < SHADOW_BATCH_ROWS:
                    message = self.queue.pop(0)
                    rows += sum(message.rows)
                    batch.append(message)
                self.queued_rows -= rows
                await loop.run_in_executor(None, self._shadow_batch, batch)

    def _shadow_batch(self, batch: list[ShadowRows]) -> None:
        names = list(batch[0].columns)
        merged: dict[str, list[Any]] = {name: [] for name in names}
        for message in batch:
            for name in names:
                merged[name].extend(message.columns.get(name, []))
        self.calls += 1
        try:
            labels, outputs = self._predict(merged)
        except Exception as exc:
            self.failures += 1
            log.warning("the shadow failed on %s requests: %s", sum(len(m.ids) for m in batch), exc)
            return
        self.scored_rows += len(labels)
        start = 0
        for message in batch:
            for request_id, count in zip(message.ids, message.rows, strict=True):
                stop = start + count
                columns = {n: merged[n][start:stop] for n in names}
                answered = [plain(v) for v in labels[start:stop]]
                self.log.append(
                    columns, answered, outputs[start:stop], self.release.version, request_id
                )
                start = stop

    # ------------------------------------------------------------------ connections
    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not same_user(writer.get_extra_info("socket")):
            writer.close()  # an abstract socket has no file permissions: the kernel says who
            return
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                try:
                    message = parse_request(line)
                except WireError as exc:
                    self.malformed += 1
                    log.warning("a malformed line from a worker: %s", exc)
                    continue
                if isinstance(message, ShadowRows):
                    self.enqueue(message)
                else:  # a canary request, answered as it is scored, not in turn
                    task = asyncio.create_task(self._answer(message, writer))
                    self.answering.add(task)
                    task.add_done_callback(self.answering.discard)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    # ------------------------------------------------------------------ watchdogs
    def watchdog(self) -> None:
        """A model call that does not return ends the process (the supervisor ends the
        release); so does memory past ``deployment.max_memory_mb``; the status file every
        half second."""
        next_status = 0.0
        hang = HangLimit(self.hang_seconds)
        while True:
            time.sleep(0.1)
            limit = hang.tick(time.monotonic()) or self.hang_seconds
            started = min(list(self.in_flight.values()), default=None)  # a copy: calls move
            if started is not None and time.monotonic() - started > limit:
                log.error("a candidate call ran over %.1f s: hung", limit)
                os._exit(HANG_EXIT)
            if rss_mb() > self.max_memory_mb:
                log.error("the candidate holds over %.0f MB", self.max_memory_mb)
                os._exit(MEMORY_EXIT)
            if time.monotonic() >= next_status:
                next_status = time.monotonic() + 0.5
                self._write_status()

    def _write_status(self) -> None:
        ms = sorted(self.call_ms)
        status = {
            "pid": os.getpid(),
            "release": self.release.id,
            "version": self.release.version,
            "mode": self.release.mode,
            "calls": self.calls,
            "failures": self.failures,
            "scored_rows": self.scored_rows,
            "dropped_rows": self.dropped_rows,
            "malformed_lines": self.malformed,
            "queued_rows": self.queued_rows,
            "call_p50_ms": ms[len(ms) // 2] if ms else None,
            "call_p99_ms": ms[min(len(ms) - 1, int(len(ms) * 0.99))] if ms else None,
            "rss_mb": round(rss_mb(), 1),
            "at": time.time(),
        }
        with suppress(OSError):  # a full disk delays the status; the keeper sees it stale
            write_json(self.project.state_dir / STATUS_FILE, status)

    async def run(self) -> None:
        server = await asyncio.start_unix_server(
            self.handle, path=address(self.project.state_dir), limit=2**24
        )
        threading.Thread(target=self.watchdog, name="release-watchdog", daemon=True).start()
        shadow = asyncio.create_task(self.shadow_loop())
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        supervisor = int(os.environ.get("MLMEDIC_SUPERVISOR_PID", "0") or 0)
        async with server:
            while not stop.is_set():
                if supervisor and os.getppid() != supervisor:
                    break
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
        shadow.cancel()
        self.log.close()


def idle() -> None:
    """Run only on CPU time nobody else wants (Linux ``SCHED_IDLE``; else the lowest nice):
    a shadow never takes a core from the champion's workers. Under a load that leaves no idle
    time the shadow falls behind, and its queue drops its oldest rows (counted)."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(SHADOW_NICE)


def main(argv: list[str] | None = None) -> None:
    from mlmedic.serving.pool import one_thread_per_worker

    args = argv if argv is not None else sys.argv[1:]
    logging.basicConfig(level=logging.WARNING)
    one_thread_per_worker()
    host = Host(Path(args[0] if args else "."))
    if host.release.mode == "shadow":  # best effort: the champion's answers come first
        idle()
    asyncio.run(host.run())


if __name__ == "__main__":
    main()
