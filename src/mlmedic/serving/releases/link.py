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
hands what it found to the loop (``refresh``). Its lines are ``release_wire``'s messages; an
answer that does not parse is counted (``mlmedic_release_failures_total{why="malformed"}``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
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
from mlmedic.serving.releases.wire import (
    CanaryAnswer,
    CanaryAsk,
    ShadowRows,
    WireError,
    address,
    encode,
    parse_answer,
)

log = logging.getLogger("mlmedic.serving")
MIRROR_BUFFER = 4 * 2**20  # bytes a worker lets wait for the shadow before it drops rows
MIRROR_EVERY = 0.01  # seconds between a worker's writes to the shadow (one write, many calls)
CANARY_WAIT = 0.5  # seconds a canary request waits for the candidate before the champion answers
RECONNECT = 0.5  # seconds between attempts to reach the host
CONNECT_WAIT = 0.2  # seconds a canary request waits for a connection being opened


class ReleaseLink:
    """One worker's view of the running release and its line to the release host."""

    def __init__(
        self,
        state_dir: Path,
        events: Any,
        metrics: Any,
        *,
        model_name: str,
        error_burst: int,
        release_log: Any = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.events = events
        self.metrics = metrics
        self.model_name = model_name
        self.error_burst = error_burst
        self.release: Release | None = None
        self.release_log = release_log  # a PredictionLog of .mlmedic/release/ (canary pairs)
        self._seen: float | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._opening: asyncio.Task[None] | None = None
        self._next_try = 0.0
        self._waiting: dict[int, asyncio.Future[CanaryAnswer]] = {}
        self._sequence = 0
        self._in_a_row = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._backlog: list[bytes] = []  # shadow lines waiting for the line to open
        self._backlog_bytes = 0
        self._flush_due = False
        self._counts: dict[tuple[int, str], int] = {}  # (version, role) -> requests, unflushed
        self._dropped = 0

    # ------------------------------------------------------------------ following
    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The worker's event loop: from now on every change of state happens on it."""
        self._loop = loop

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
            self._backlog, self._backlog_bytes = [], 0
        self.release = found

    def keep_open(self) -> None:
        """From the worker's watch thread: while shadow rows wait for a line, keep trying to
        open one and send them (the host starts after the workers; no request may be needed)."""
        loop = self._loop
        if self.release is not None and self._backlog and loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(self._flush)

    def role(self, request_id: str) -> str | None:
        """``canary`` when the candidate answers this request, ``shadow`` when it only scores
        it, None when no release runs."""
        release = self.release
        if release is None:
            return None
        if release.mode == "shadow":
            return "shadow"
        return "canary" if routes_to_canary(request_id, release.share) else None

    # ------------------------------------------------------------------ the line to the host
    def _line(self) -> asyncio.StreamWriter | None:
        """The open connection, or None (and one is being opened, at most every RECONNECT)."""
        writer = self._writer
        if writer is not None and not writer.is_closing():
            return writer
        self._writer = None
        self._loop = asyncio.get_running_loop()
        if self._opening is None and time.monotonic() >= self._next_try:
            self._opening = self._loop.create_task(self._connect())
        return None

    async def _open(self) -> asyncio.StreamWriter | None:
        """The open connection, waiting a moment for one being opened."""
        writer = self._line()
        if writer is None and self._opening is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._opening), CONNECT_WAIT)
            writer = self._line()
        return writer

    async def _connect(self) -> None:
        # the socket is made here: uvloop (uvicorn's loop) refuses an abstract name as a path
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, address(self.state_dir))
            reader, writer = await asyncio.open_unix_connection(sock=sock, limit=2**24)
        except OSError:
            sock.close()
            self._next_try = time.monotonic() + RECONNECT
            return
        finally:
            self._opening = None
        self._writer = writer
        if self._backlog:
            writer.write(b"".join(self._backlog))
            self._backlog, self._backlog_bytes = [], 0
        self._loop = asyncio.get_running_loop()
        self._loop.create_task(self._read(reader, writer))

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                try:
                    answer = parse_answer(line)
                except WireError as exc:
                    self._malformed(exc)
                    continue
                waiting = self._waiting.pop(answer.number, None)
                if waiting is not None and not waiting.done():
                    waiting.set_result(answer)
        except (OSError, ValueError, asyncio.IncompleteReadError):
            pass  # the line broke: every request waiting on it gets the champion's answer
        finally:
            if self._writer is writer:
                self._writer = None
            for waiting in self._waiting.values():
                if not waiting.done():
                    waiting.set_exception(ConnectionError("the release host went away"))
            self._waiting.clear()

    # ------------------------------------------------------------------ shadow
    def mirror(
        self,
        ids: list[str],
        rows: list[int],
        columns: list[dict[str, list[Any]]],
        champion: int,
    ) -> None:
        """Queue one model call's requests (answered by ``champion``) for the shadow; never
        waits: the queue goes to the host every ``MIRROR_EVERY`` seconds in one write, and
        past ``MIRROR_BUFFER`` bytes waiting the rows are dropped (counted)."""
        release = self.release
        if release is None or release.mode != "shadow" or not ids:
            return
        writer = self._line()
        self._counts[(champion, "champion")] = self._counts.get((champion, "champion"), 0) + len(
            ids
        )
        waiting = self._backlog_bytes
        if writer is not None:
            waiting += writer.transport.get_write_buffer_size()
        if waiting > MIRROR_BUFFER:
            self._dropped += len(ids)
        else:
            merged = columns[0] if len(columns) == 1 else _merge(columns)
            line = encode(ShadowRows(ids, rows, merged))
            self._backlog.append(line)
            self._backlog_bytes += len(line)
            key = (release.version, "shadow")
            self._counts[key] = self._counts.get(key, 0) + len(ids)
        if not self._flush_due and self._loop is not None:
            self._flush_due = True
            self._loop.call_later(MIRROR_EVERY, self._flush)

    def _flush(self) -> None:
        """One write for every queued shadow line, and the counts to the metrics."""
        self._flush_due = False
        writer = self._line()
        if writer is not None and self._backlog:
            writer.write(b"".join(self._backlog))
            self._backlog, self._backlog_bytes = [], 0
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
        writer = await self._open()
        why = "unreachable"
        if writer is not None:
            self._sequence += 1
            number = self._sequence
            waiting: asyncio.Future[CanaryAnswer] = asyncio.get_running_loop().create_future()
            self._waiting[number] = waiting
            writer.write(encode(CanaryAsk(number, columns)))
            try:
                answer = await asyncio.wait_for(waiting, CANARY_WAIT)
            except TimeoutError:
                why = "timeout"
            except ConnectionError:
                why = "crashed"
            else:
                if answer.ok:
                    self._in_a_row = 0
                    outputs = np.asarray(answer.outputs, dtype=float)
                    return answer.labels, outputs, answer.classes
                why = "error"
            finally:
                self._waiting.pop(number, None)
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
