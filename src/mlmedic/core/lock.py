"""The project lock: one operation at a time moves the champion.

Deploys (``mlmedic run``'s gate and promotion), rollbacks (manual, the monitor's, the
supervisor's) and retrains hold ``.mlmedic/project.lock`` (``flock``, released by the kernel if the
holder dies) while they read the champion, decide, and move the aliases. A second operation waits,
saying what it waits for, up to ``wait_seconds``, then fails with a clear message. The lock is
re-entrant within a thread, so a retrain can call the pipeline that takes it again.

Examples:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> with project_lock(folder, "example"):
    ...     holder(folder)["what"]
    'example'
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mlmedic.core.errors import ProjectBusyError

LOCK_FILE = "project.lock"
RUN_LOCK = "run.lock"  # whole runs (``mlmedic run``, a monitor's retrain): one at a time
_held = threading.local()


def holder(state_dir: Path, lock_file: str = LOCK_FILE) -> dict[str, Any]:
    """Who holds (or last held) the lock: pid, what, since. Empty when unknown."""
    try:
        return dict(json.loads((Path(state_dir) / lock_file).read_text(encoding="utf-8") or "{}"))
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def project_lock(
    state_dir: Path,
    what: str,
    *,
    wait_seconds: float = 600.0,
    say: Callable[[str], None] | None = None,
    lock_file: str = LOCK_FILE,
) -> Iterator[None]:
    """Hold the project lock (or, with ``lock_file=RUN_LOCK``, the run lock) for ``what``
    (re-entrant in one thread). Whoever takes both takes the run lock first."""
    state_dir = Path(state_dir)
    key = f"{state_dir.resolve()}/{lock_file}"
    depth: dict[str, int] = getattr(_held, "depth", None) or {}
    _held.depth = depth
    if depth.get(key):
        depth[key] += 1
        try:
            yield
        finally:
            depth[key] -= 1
        return
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_dir / lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(fd, state_dir, what, wait_seconds, say, lock_file)
        record = json.dumps({"pid": os.getpid(), "what": what, "since": time.time()})
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode(), 0)
        depth[key] = 1
        try:
            yield
        finally:
            depth[key] = 0
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _acquire(
    fd: int,
    state_dir: Path,
    what: str,
    wait_seconds: float,
    say: Callable[[str], None] | None,
    lock_file: str,
) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    busy = holder(state_dir, lock_file)
    who = f"{busy.get('what', 'another mlmedic operation')} (pid {busy.get('pid', '?')})"
    if say is not None:
        say(f"waiting for {who} to finish before: {what} (up to {wait_seconds:.0f}s)")
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                name = "run lock" if lock_file == RUN_LOCK else "project lock"
                raise ProjectBusyError(
                    f"{state_dir}: {who} holds the {name}; {what} did not start. "
                    "Try again when it has finished."
                ) from None
            time.sleep(0.05)
