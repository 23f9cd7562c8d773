"""What the workers tell the supervisor through shared memory made before the forks: which
version each is calling (``ModelCallMarks``: a worker that dies of a crash signal with its mark
set died in model code), and that each is alive (``Heartbeats``: its event loop's beat, and when
its model call in flight began)."""

from __future__ import annotations

import mmap
import struct
import time

MAX_SLOTS = 128
# the last slot: the pid of a standby that has loaded its model and waits to be handed a place
STANDBY_SLOT = MAX_SLOTS - 1


class ModelCallMarks:
    """Shared memory (made before the forks) where each worker says which version it is calling,
    and a fingerprint of the input of that call.

    A worker that dies of a crash signal while its mark is set died in model code, on that input."""

    def __init__(self, slots: int = MAX_SLOTS) -> None:
        self.slots = slots
        self.memory = mmap.mmap(-1, 16 * slots)

    def set(self, index: int, version: int, fingerprint: int = 0) -> None:
        if 0 <= index < self.slots:
            struct.pack_into("qQ", self.memory, 16 * index, version, fingerprint)

    def get(self, index: int) -> int:
        if 0 <= index < self.slots:
            return int(struct.unpack_from("q", self.memory, 16 * index)[0])
        return 0

    def fingerprint(self, index: int) -> int:
        """The fingerprint of the input the worker in ``index`` was scoring (0: none)."""
        if 0 <= index < self.slots:
            return int(struct.unpack_from("Q", self.memory, 16 * index + 8)[0])
        return 0


class Heartbeats:
    """Shared memory (made before the forks) where each worker's event loop beats and says when
    its model call in flight began (``time.monotonic()``, shared by every process of a host;
    0: none). A worker whose loop stopped beating or whose model call never returns is hung."""

    def __init__(self, slots: int = MAX_SLOTS) -> None:
        self.slots = slots
        self.memory = mmap.mmap(-1, 16 * slots)

    def _set(self, index: int, field: int, value: float) -> None:
        if 0 <= index < self.slots:
            struct.pack_into("d", self.memory, 16 * index + 8 * field, value)

    def _get(self, index: int, field: int) -> float:
        if 0 <= index < self.slots:
            return float(struct.unpack_from("d", self.memory, 16 * index + 8 * field)[0])
        return 0.0

    def beat(self, index: int) -> None:
        self._set(index, 0, time.monotonic())

    def calling(self, index: int, calling: bool) -> None:
        self._set(index, 1, time.monotonic() if calling else 0.0)

    def reset(self, index: int) -> None:
        """A new worker in slot ``index``: nothing is known of it until it beats."""
        self._set(index, 0, 0.0)
        self._set(index, 1, 0.0)

    def hung(self, index: int, now: float, limit: float) -> str | None:
        """Why the worker in ``index`` is hung (None: it is not, or has not started beating)."""
        beat, call = self._get(index, 0), self._get(index, 1)
        if beat and now - beat > limit:
            return f"its event loop has not answered for {now - beat:.1f} s"
        if call and now - call > limit:
            return f"a model call has been running for {now - call:.1f} s"
        return None


class HangLimit:
    """``serving.hang_seconds``, widened on a starved host: every process waits for the CPU
    there, the watcher too, so a call may look long because nothing was scheduled. The limit
    becomes twice the longest gap between the watcher's own ticks in the last ``WINDOW`` seconds
    when that is longer — the one rule of the supervisor's hang watch and the release host's
    (whose shadow runs at idle priority, so starves first).

    >>> limit = HangLimit(2.0)
    >>> limit.tick(10.0), limit.tick(10.1), limit.tick(13.1)
    (None, 2.0, 6.0)
    """

    WINDOW = 10.0

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._last = 0.0
        self._gaps: list[tuple[float, float]] = []  # (when, seconds since the tick before)

    def mark(self, now: float) -> None:
        """A wait of the watcher's own (a probe's answer) is no starvation: start again here."""
        self._last = now

    def tick(self, now: float) -> float | None:
        """The limit now (None on the first tick: no gap seen yet)."""
        last, self._last = self._last, now
        if not last:
            return None
        self._gaps = [(at, gap) for at, gap in self._gaps if now - at < self.WINDOW]
        self._gaps.append((now, now - last))
        return max(self.seconds, 2.0 * max(gap for _, gap in self._gaps))
