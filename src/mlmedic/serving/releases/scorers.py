"""Where a release's candidate is scored (#31): the ``CandidateScorer`` protocol a worker's link
talks to, the release host over its Unix socket (``SocketScorer``), and one in this process
(``InMemoryScorer``), so the link's routing, counting and error-burst rules are tested without
processes and only the transport needs real ones.

- ``mirror(rows)`` hands a shadow batch over and never waits: False when it was dropped (the
  host gone, slow or more than ``MIRROR_BUFFER`` bytes behind).
- ``ask(columns)`` is the candidate's answer to a canary request (an answer with ``ok`` False
  when the candidate failed on it), or ``CandidateUnavailable`` naming why there is none:
  ``unreachable``, ``timeout`` (no answer in ``CANARY_WAIT`` seconds) or ``crashed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from mlmedic.serving.releases.wire import (
    CanaryAnswer,
    CanaryAsk,
    ShadowRows,
    WireError,
    address,
    encode,
    parse_answer,
)

MIRROR_BUFFER = 4 * 2**20  # bytes a worker lets wait for the shadow before it drops rows
MIRROR_EVERY = 0.01  # seconds between a worker's writes to the shadow (one write, many calls)
CANARY_WAIT = 0.5  # seconds a canary request waits for the candidate before the champion answers
RECONNECT = 0.5  # seconds between attempts to reach the host
CONNECT_WAIT = 0.2  # seconds a canary request waits for a connection being opened
WHY = ("unreachable", "timeout", "crashed")


class CandidateUnavailable(Exception):
    """No answer from the candidate; ``why`` is one of ``WHY``."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class CandidateScorer(Protocol):
    def bind(self, loop: asyncio.AbstractEventLoop) -> None: ...

    def reset(self) -> None: ...

    def keep_open(self) -> None: ...

    def mirror(self, rows: ShadowRows) -> bool: ...

    async def ask(self, columns: dict[str, list[Any]]) -> CanaryAnswer: ...


class InMemoryScorer:
    """A candidate in this process: ``score(columns)`` gives ``(labels, outputs, classes)``;
    ``fail`` makes every ask fail that way (one of ``WHY``, or ``error``: the candidate raised);
    ``room`` is how many shadow batches it takes before it drops them."""

    def __init__(
        self,
        score: Callable[[dict[str, list[Any]]], tuple[list[Any], list[list[float]], list[Any]]],
        *,
        fail: str | None = None,
        room: int | None = None,
    ) -> None:
        self.score, self.fail, self.room = score, fail, room
        self.mirrored: list[ShadowRows] = []
        self.asked = 0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        pass

    def reset(self) -> None:
        self.mirrored = []

    def keep_open(self) -> None:
        pass

    def mirror(self, rows: ShadowRows) -> bool:
        if self.room is not None and len(self.mirrored) >= self.room:
            return False
        self.mirrored.append(rows)
        return True

    async def ask(self, columns: dict[str, list[Any]]) -> CanaryAnswer:
        self.asked += 1
        if self.fail in WHY:
            raise CandidateUnavailable(str(self.fail))
        if self.fail is not None:
            return CanaryAnswer(self.asked, False, error=self.fail)
        labels, outputs, classes = self.score(columns)
        return CanaryAnswer(self.asked, True, labels, outputs, classes)


class SocketScorer:
    """The release host over ``wire.address(state_dir)``: one connection per worker, opened on
    the event loop (at most every ``RECONNECT`` seconds), shadow lines sent every
    ``MIRROR_EVERY`` seconds in one write; ``malformed`` hears of a line that does not parse."""

    def __init__(self, state_dir: Path, malformed: Callable[[WireError], None]) -> None:
        self.state_dir = Path(state_dir)
        self.malformed = malformed
        self._writer: asyncio.StreamWriter | None = None
        self._opening: asyncio.Task[None] | None = None
        self._next_try = 0.0
        self._waiting: dict[int, asyncio.Future[CanaryAnswer]] = {}
        self._sequence = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._backlog: list[bytes] = []  # shadow lines waiting for the line to open
        self._backlog_bytes = 0
        self._flush_due = False

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def reset(self) -> None:
        self._backlog, self._backlog_bytes = [], 0

    def keep_open(self) -> None:
        """From the watch thread: while shadow lines wait, keep trying to open the line and send
        them (the host starts after the workers; no request may be needed)."""
        loop = self._loop
        if self._backlog and loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(self._flush)

    def mirror(self, rows: ShadowRows) -> bool:
        writer = self._line()
        waiting = self._backlog_bytes
        if writer is not None:
            waiting += writer.transport.get_write_buffer_size()
        if waiting > MIRROR_BUFFER:
            return False
        line = encode(rows)
        self._backlog.append(line)
        self._backlog_bytes += len(line)
        if not self._flush_due and self._loop is not None:
            self._flush_due = True
            self._loop.call_later(MIRROR_EVERY, self._flush)
        return True

    def _flush(self) -> None:
        self._flush_due = False
        writer = self._line()
        if writer is not None and self._backlog:
            writer.write(b"".join(self._backlog))
            self._backlog, self._backlog_bytes = [], 0

    async def ask(self, columns: dict[str, list[Any]]) -> CanaryAnswer:
        writer = await self._open()
        if writer is None:
            raise CandidateUnavailable("unreachable")
        self._sequence += 1
        number = self._sequence
        waiting: asyncio.Future[CanaryAnswer] = asyncio.get_running_loop().create_future()
        self._waiting[number] = waiting
        writer.write(encode(CanaryAsk(number, columns)))
        try:
            return await asyncio.wait_for(waiting, CANARY_WAIT)
        except TimeoutError:
            raise CandidateUnavailable("timeout") from None
        except ConnectionError:
            raise CandidateUnavailable("crashed") from None
        finally:
            self._waiting.pop(number, None)

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
                    self.malformed(exc)
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
