"""The supervisor's side of a release (#24): the release host runs while a release runs, and a
host that crashes, hangs or leaks memory ends the release at once — the champion's workers
never notice, since no answer waits on the host.

Checked on every turn of the supervisor's loop (at most every ``EVERY`` seconds): the record in
``.mlmedic/release.json``; the host's exit (a crash signal, exit 4 hung, 5 over memory, 6 cannot
load the candidate); its resident memory against ``deployment.max_memory_mb`` (SIGKILL); and its
status file, which a host stuck outside Python (a native call holding the interpreter) stops
writing for ``STALE`` seconds (SIGKILL).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from mlmedic.heal.releases.states import STATUS_FILE, end_locally, host_status, read_release
from mlmedic.serving.pool import die_with_parent
from mlmedic.serving.releases.host import HANG_EXIT, LOAD_EXIT, MEMORY_EXIT, rss_mb

log = logging.getLogger("mlmedic.supervisor")
EVERY = 0.1  # seconds between looks
STALE = 5.0  # seconds without a status from a live host: it is stuck


class ReleaseKeeper:
    """Starts, watches and stops the release host of one project."""

    def __init__(self, project_dir: Path, state_dir: Path, events: Any) -> None:
        from mlmedic.core.config import load_settings

        self.project_dir = project_dir
        self.state_dir = state_dir
        self.events = events
        self.max_memory_mb = load_settings(project_dir).self_healing.deployment.max_memory_mb
        self.process: subprocess.Popen[bytes] | None = None
        self.serving_id: str | None = None  # the release the host was started for
        self.started = 0.0
        self.ended: set[str] = set()  # releases this keeper ended (never restarted)
        self._next = 0.0

    def tick(self) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + EVERY
        release = read_release(self.state_dir)
        running = release if release is not None and release.running else None
        process = self.process
        if process is not None and process.poll() is not None:
            self._exited(process.returncode)
            return
        if process is not None and (running is None or running.id != self.serving_id):
            self.stop()  # the release ended (promoted, retired, aborted): the host goes
            return
        if process is None:
            if running is not None and running.id not in self.ended:
                self._start(running.id)
            return
        self._check_health()

    def _start(self, release_id: str) -> None:
        with suppress(OSError):
            (self.state_dir / STATUS_FILE).unlink()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlmedic.serving.releases.host", str(self.project_dir)],
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
            env=dict(os.environ, MLMEDIC_SUPERVISOR_PID=str(os.getpid())),
        )
        self.serving_id, self.started = release_id, time.monotonic()

    def _check_health(self) -> None:
        assert self.process is not None
        memory = rss_mb(self.process.pid)
        if memory > self.max_memory_mb:
            self._kill(f"the candidate held {memory:.0f} MB (deployment.max_memory_mb)")
            return
        status = host_status(self.state_dir)
        loaded = status is not None and status.get("pid") == self.process.pid
        since = float(status["at"]) if loaded and status else None
        if since is not None and time.time() - since > STALE:
            self._kill(f"the release host stopped answering for over {STALE:g} s (hung)")
        elif since is None and time.monotonic() - self.started > 120.0:
            self._kill("the release host did not load the candidate within 120 s")

    def _kill(self, why: str) -> None:
        assert self.process is not None
        with suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.process = None
        self._end(why)

    def _exited(self, code: int) -> None:
        self.process = None
        if code == 0:
            self.serving_id = None  # it found no running release
            return
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            why = f"the candidate crashed its process ({name})"
        else:
            why = {
                HANG_EXIT: "a candidate call did not return within serving.hang_seconds (hung)",
                MEMORY_EXIT: "the candidate held more memory than deployment.max_memory_mb",
                LOAD_EXIT: "the candidate could not be loaded",
            }.get(code, f"the release host exited with code {code}")
        self._end(why)

    def _end(self, why: str) -> None:
        release = read_release(self.state_dir)
        if release is None or release.id != self.serving_id:
            return
        self.ended.add(release.id)
        if end_locally(self.state_dir, self.events, release, why):
            log.error("release of v%s aborted: %s", release.version, why)

    def stop(self) -> None:
        process, self.process = self.process, None
        self.serving_id = None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
