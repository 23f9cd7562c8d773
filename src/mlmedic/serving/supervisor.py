"""The supervisor: runs the API workers, probes them, and recovers the service when it fails.

Pre-fork design (as gunicorn's): the supervisor imports the serving stack once, opens the
listening socket once, and forks each uvicorn worker from itself. The socket never closes, so
clients queue rather than get refused while a worker is replaced. The supervisor itself never
predicts (no OpenMP before a fork) and runs no threads.

Fast recovery: a **warm standby** is forked ahead of need (``serving.warm_standby``): it has built
the app and loaded the champion and waits on a pipe. When a worker dies, only that worker is
replaced — by the standby, which starts accepting at once — and a new standby is forked behind it.

Recovery follows ``service_recovery.recovery_methods`` in order, one per attempt — ``restart``
(the dead worker, or every worker when the service answers but is not ready), ``clear_cache``
(drop the local model copies, so the next load goes back to the registry), ``rollback`` — with
exponential back-off between attempts (``recovery_delay_seconds``, doubling to 30 s, reset after
``healthy_reset_seconds`` healthy). A rollback needs **evidence that the model is at fault**, at
most one per incident: the champion fails to load or fails its canary in a fresh process, or a
worker died of a crash signal inside a model call within ``crash_loop_window_seconds`` of a
champion change — and the version rolled back to passes its canary. Without evidence the attempt
is a restart, and the incident says why. After ``max_recovery_attempts`` failures in a row an alert
is recorded and recovery goes on at the cap. Each incident is one ``recovery`` event: detected at,
recovered at, time to recovery, cause, methods tried, evidence.

Children die with the supervisor (``PR_SET_PDEATHSIG``, and a parent check in each child), so
whatever restarts a killed supervisor (systemd, Kubernetes) can bind the port at once. Events go
through a ``ResilientEventStore``: a locked, deleted or corrupt event store never stops supervision.

The supervisor is built in rooms, each using only those below it: ``serving.pool`` (the worker
pool: fork, standby, reap), ``serving.diagnosis`` (evidence and rollback), ``serving.incidents``
(probe, recover, back-off); this module gives it its state.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from mlmedic.core.clock import Clock, SystemClock
from mlmedic.core.config import NotificationsConfig, ServiceRecoveryConfig, ServingConfig
from mlmedic.heal.notify import Notifier
from mlmedic.serving.diagnosis import Incident
from mlmedic.serving.incidents import BACKOFF_START, Incidents, probe
from mlmedic.serving.marks import HangLimit, Heartbeats, ModelCallMarks
from mlmedic.serving.releases.keeper import ReleaseKeeper
from mlmedic.store.eventbuffer import ResilientEventStore

__all__ = ["Incident", "Supervisor", "probe"]


class Supervisor(Incidents):
    """Keeps ``workers`` API processes serving on one socket, and heals the service."""

    def __init__(
        self,
        project_dir: Path,
        *,
        serving: ServingConfig,
        recovery: ServiceRecoveryConfig,
        host: str | None = None,
        port: int | None = None,
        workers: int | None = None,
        probe_timeout: float = 2.0,
        ready_timeout: float = 60.0,
        grace_seconds: float = 5.0,
        notifications: NotificationsConfig | None = None,
        events_target: str | Path | None = None,
        healing_enabled: bool = True,
        retention_days: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        """``healing_enabled`` (``self_healing.enabled``): when false, dead workers are still
        replaced, but nothing else (no cache clearing, no rollback); ``retention_days``
        (``logging.retention_days``): events older than this are pruned at start and daily;
        ``clock``: where every wait, deadline and timestamp comes from (a ``SimulatedClock``
        replays recovery without waiting)."""
        self.clock: Clock = clock or SystemClock()
        self.project_dir = Path(project_dir).resolve()
        self.state_dir = self.project_dir / ".mlmedic"
        self.serving = serving
        self.recovery = recovery
        self.host = host or serving.host
        self.port = serving.port if port is None else port
        self.workers = serving.workers if workers is None else workers
        if self.workers < 1:
            from mlmedic.core.errors import ProjectError

            raise ProjectError(f"--workers must be at least 1, not {self.workers}")
        self.probe_timeout = probe_timeout
        self.ready_timeout = ready_timeout
        self.grace_seconds = grace_seconds
        self.children: dict[int, int] = {}  # pid -> worker index
        self.standby: tuple[int, int] | None = None  # (pid, write end of its start pipe)
        self.watcher: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self.marks = ModelCallMarks()  # MAX_SLOTS > the 64 workers serve allows, + standby
        self.beats = Heartbeats()
        self._hung: dict[int, str] = {}  # pid -> why it was killed as hung
        self._crashes: dict[int, list[float]] = {}  # version -> when it crashed a worker
        self._hang_limit = HangLimit(self.serving.hang_seconds)
        target = events_target or self.state_dir / "events.db"
        self.events = ResilientEventStore(
            target,
            clock=self.clock,
            buffer_path=None
            if isinstance(target, Path)
            else self.state_dir / "events.buffer.jsonl",
        )
        self.notifier = Notifier(
            notifications or NotificationsConfig(), self.events, project=self.project_dir.name
        )
        self.healing_enabled = healing_enabled and recovery.auto_recovery_enabled
        self.retention_days = retention_days
        self._next_prune = 0.0
        self._stopping = False
        self._backoff_start = recovery.recovery_delay_seconds or BACKOFF_START
        self._backoff = self._backoff_start
        self._healthy_since: float | None = None
        self._standby_failures = 0
        self._next_standby = 0.0
        self._standby_ready = False
        self._fallback_seen: tuple[int, int] | None = None
        self.releases = ReleaseKeeper(self.project_dir, self.state_dir, self.events)
