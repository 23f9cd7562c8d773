"""The supervisor: runs the API workers, probes them, and recovers the service when it fails.

Pre-fork design (as gunicorn's): the supervisor imports the serving stack once, opens the
listening socket once, and forks each uvicorn worker from itself. A restarted worker therefore
starts in milliseconds, and the socket never closes, so clients queue rather than get refused
while a worker is replaced. The supervisor itself never predicts (no OpenMP before a fork) and
runs no threads.

Recovery follows ``service_recovery.recovery_methods`` in order, one per attempt — ``restart``
(SIGTERM, then SIGKILL after a grace period, and a fresh worker), ``clear_cache`` (drop the local
model copies, so the next load goes back to the registry), ``rollback`` (only when the service
crash-loops within ``crash_loop_window_seconds`` of a champion change: the champion moves back to
``previous``) — with exponential back-off between attempts (0.5 s doubling to 30 s, reset after
``healthy_reset_seconds`` healthy). After ``max_recovery_attempts`` failures in a row an alert is
recorded and recovery goes on at the cap. Each incident is one ``recovery`` event: detected at,
recovered at, time to recovery, cause, methods tried.
"""

from __future__ import annotations

import errno
import gc
import http.client
import json
import logging
import os
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlmedic.config import ServiceRecoveryConfig, ServingConfig
from mlmedic.events import EventKind, EventStore, Outcome

log = logging.getLogger("mlmedic.supervisor")

BACKOFF_START = 0.5
BACKOFF_CAP = 30.0
CRASH_LOOP_FAILURES = 3
NOT_READY_GRACE = 1.0


@dataclass
class Incident:
    """One outage, from detection to recovery."""

    cause: str
    detected_at: float
    methods: list[str] = field(default_factory=list)
    attempts: int = 0


def probe(host: str, port: int, path: str, timeout: float) -> tuple[bool, str]:
    """GET ``path``; (True, "") on HTTP 200, else (False, why)."""
    target = "127.0.0.1" if host in ("0.0.0.0", "") else host
    connection = http.client.HTTPConnection(target, port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read(500)
        if response.status == 200:
            return True, ""
        return False, f"{path} answered HTTP {response.status}: {body.decode(errors='replace')}"
    except (OSError, http.client.HTTPException) as exc:
        return False, f"{path} failed: {type(exc).__name__}: {exc}"
    finally:
        connection.close()


class Supervisor:
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
    ) -> None:
        self.project_dir = Path(project_dir).resolve()
        self.state_dir = self.project_dir / ".mlmedic"
        self.serving = serving
        self.recovery = recovery
        self.host = host or serving.host
        self.port = serving.port if port is None else port
        self.workers = workers or serving.workers
        self.probe_timeout = probe_timeout
        self.ready_timeout = ready_timeout
        self.grace_seconds = grace_seconds
        self.children: dict[int, int] = {}  # pid -> worker index
        self.watcher: Any = None
        self.sock: socket.socket | None = None
        self._stopping = False
        self._backoff = BACKOFF_START
        self._healthy_since: float | None = None
        self._failures: list[float] = []

    # ------------------------------------------------------------------ events
    def _record(self, kind: str, action: str, outcome: str, **fields: Any) -> None:
        with EventStore(self.state_dir / "events.db") as events:
            events.record(kind, action, outcome, **fields)

    # ------------------------------------------------------------------ processes
    def start(self) -> None:
        """Import the serving stack, bind the socket, fork the workers."""
        prometheus = self.state_dir / "prometheus"
        shutil.rmtree(prometheus, ignore_errors=True)
        prometheus.mkdir(parents=True, exist_ok=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(prometheus)
        import uvicorn  # noqa: F401

        import mlmedic.serving.app  # noqa: F401  (imported once, shared by every fork)

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            from mlmedic.errors import ProjectError

            if exc.errno == errno.EADDRINUSE:
                raise ProjectError(
                    f"{self.host}:{self.port} is already in use; pick --port"
                ) from exc
            raise ProjectError(f"cannot listen on {self.host}:{self.port}: {exc}") from exc
        sock.listen(2048)
        sock.set_inheritable(True)
        self.sock = sock
        self.port = sock.getsockname()[1]
        for index in range(self.workers):
            self._fork(index)
        self._start_watcher()

    def _start_watcher(self) -> None:
        """The registry watcher runs as its own (spawned, not forked) process."""
        import subprocess

        self.watcher = subprocess.Popen(
            [sys.executable, "-m", "mlmedic.serving.watcher", str(self.project_dir)],
            stdin=subprocess.DEVNULL,
        )

    def _check_watcher(self) -> None:
        if self.watcher is not None and self.watcher.poll() is not None and not self._stopping:
            log.warning("registry watcher exited (%s); restarting it", self.watcher.returncode)
            self._start_watcher()

    def _fork(self, index: int) -> int:
        assert self.sock is not None
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                _run_worker(self.project_dir, self.sock, index)
            except BaseException:
                logging.getLogger("mlmedic.serving").exception("worker %s crashed", index)
                code = 1
            finally:
                os._exit(code)
        self.children[pid] = index
        return pid

    def _reap(self) -> list[tuple[int, int, int]]:
        """Children that have exited: (pid, index, status)."""
        gone = []
        for pid, index in list(self.children.items()):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done:
                del self.children[pid]
                gone.append((pid, index, status))
        return gone

    def _stop_children(self) -> None:
        for pid in list(self.children):
            with _suppress():
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_seconds
        while self.children and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.02)
        for pid in list(self.children):
            with _suppress():
                os.kill(pid, signal.SIGKILL)
        while self.children:
            self._reap()
            time.sleep(0.01)

    def stop(self) -> None:
        self._stopping = True
        if self.watcher is not None and self.watcher.poll() is None:
            self.watcher.terminate()
            try:
                self.watcher.wait(timeout=self.grace_seconds)
            except Exception:
                self.watcher.kill()
                self.watcher.wait()
        self._stop_children()
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    # ------------------------------------------------------------------ health
    def healthy(self) -> tuple[bool, str]:
        ok, why = probe(self.host, self.port, "/health", self.probe_timeout)
        if not ok:
            return False, why
        return probe(self.host, self.port, "/ready", self.probe_timeout)

    def wait_ready(self, timeout: float) -> tuple[bool, str]:
        """Wait for /ready. A worker answers HTTP only after loading its model, so a live worker
        whose /ready keeps failing for ``NOT_READY_GRACE`` seconds has failed, and waiting longer
        would only delay recovery."""
        deadline = time.monotonic() + timeout
        why = "not ready"
        refused_since: float | None = None
        while time.monotonic() < deadline:
            if not self.children:
                return False, "no worker is running"
            gone = self._reap()
            if gone:
                pid, index, status = gone[0]
                return (
                    False,
                    f"worker {index} (pid {pid}) exited during start-up: {_describe(status)}",
                )
            alive, why = probe(self.host, self.port, "/health", self.probe_timeout)
            if alive:
                ok, why = probe(self.host, self.port, "/ready", self.probe_timeout)
                if ok:
                    return True, ""
                refused_since = refused_since or time.monotonic()
                if time.monotonic() - refused_since > NOT_READY_GRACE:
                    return False, why
            time.sleep(0.02)
        return False, f"not ready after {timeout:.0f}s: {why}"

    # ------------------------------------------------------------------ the loop
    def run_forever(self, *, on_ready: Any = None) -> None:
        """Start, wait for ready, then supervise until SIGTERM/SIGINT."""

        def _terminate(signum: int, _: Any) -> None:
            self._stopping = True

        signal.signal(signal.SIGTERM, _terminate)
        signal.signal(signal.SIGINT, _terminate)
        self.start()
        ok, why = self.wait_ready(self.ready_timeout)
        if not ok:
            self._recover(Incident(cause=f"start-up: {why}", detected_at=time.time()))
        if on_ready is not None:
            on_ready(self)
        self._healthy_since = time.monotonic()
        next_probe = time.monotonic() + self.recovery.health_check_interval_seconds
        try:
            while not self._stopping:
                time.sleep(0.02)
                gone = self._reap()
                if gone:
                    pid, index, status = gone[0]
                    self._recover(
                        Incident(
                            cause=f"worker {index} (pid {pid}) exited: {_describe(status)}",
                            detected_at=time.time(),
                        )
                    )
                    next_probe = time.monotonic() + self.recovery.health_check_interval_seconds
                    continue
                if time.monotonic() >= next_probe:
                    self._check_watcher()
                    ok, why = self.healthy()
                    if not ok and not self._stopping:
                        self._recover(Incident(cause=why, detected_at=time.time()))
                    next_probe = time.monotonic() + self.recovery.health_check_interval_seconds
                if (
                    self._healthy_since is not None
                    and time.monotonic() - self._healthy_since > self.serving.healthy_reset_seconds
                ):
                    self._backoff = BACKOFF_START
        finally:
            self.stop()

    def _recover(self, incident: Incident) -> None:
        """Apply the recovery methods until the service is ready again; record the incident."""
        log.warning("service failure: %s", incident.cause)
        self._healthy_since = None
        self._failures.append(time.time())
        methods = list(self.recovery.recovery_methods) or ["restart"]
        alerted = False
        while not self._stopping:
            method = methods[min(incident.attempts, len(methods) - 1)]
            if method == "rollback" and not self._crash_looping():
                method = "restart"
            incident.attempts += 1
            incident.methods.append(method)
            if incident.attempts > 1:
                time.sleep(self._backoff)
                self._backoff = min(self._backoff * 2, BACKOFF_CAP)
            detail = self._apply(method)
            ok, why = self.wait_ready(self.ready_timeout)
            if ok:
                recovered = time.time()
                self._record(
                    EventKind.RECOVERY,
                    "service",
                    Outcome.SUCCESS,
                    message=(
                        f"recovered in {recovered - incident.detected_at:.2f}s by "
                        f"{' -> '.join(incident.methods)}: {incident.cause}"
                    ),
                    details={
                        "cause": incident.cause,
                        "detected_at": incident.detected_at,
                        "recovered_at": recovered,
                        "mttr_seconds": recovered - incident.detected_at,
                        "methods": incident.methods,
                        "attempts": incident.attempts,
                        "last_action": detail,
                    },
                    started_at=incident.detected_at,
                    ended_at=recovered,
                )
                self._healthy_since = time.monotonic()
                return
            log.warning("recovery attempt %s (%s) failed: %s", incident.attempts, method, why)
            self._failures.append(time.time())
            if incident.attempts >= self.recovery.max_recovery_attempts and not alerted:
                alerted = True
                self._record(
                    EventKind.ALERT,
                    "service-down",
                    Outcome.FAILURE,
                    message=(
                        f"service still down after {incident.attempts} recovery attempts "
                        f"({', '.join(incident.methods)}): {why}; retrying every "
                        f"{BACKOFF_CAP:.0f}s at most"
                    ),
                    details={
                        "cause": incident.cause,
                        "last_error": why,
                        "methods": incident.methods,
                    },
                )

    def _apply(self, method: str) -> str:
        if method == "clear_cache":
            from mlmedic.serving.model import clear_cache

            removed = clear_cache(self.state_dir)
            self._restart()
            return f"cleared {removed} cached model(s) and restarted"
        if method == "rollback":
            done = self._rollback()
            self._restart()
            return done
        self._restart()
        return "restarted"

    def _restart(self) -> None:
        self._stop_children()
        for index in range(self.workers):
            self._fork(index)

    def _champion_changed_at(self) -> float | None:
        try:
            pointer = json.loads((self.state_dir / "champion.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return float(pointer.get("updated_at", 0.0))

    def _crash_looping(self) -> bool:
        """Several failures within the crash-loop window after the champion last changed."""
        changed = self._champion_changed_at()
        if changed is None:
            return False
        window = self.serving.crash_loop_window_seconds
        now = time.time()
        if now - changed > window:
            return False
        recent = [t for t in self._failures if t >= changed and now - t <= window]
        return len(recent) >= CRASH_LOOP_FAILURES

    def _rollback(self) -> str:
        """Move the champion back to ``previous`` (it will be served by the restarted workers)."""
        from mlmedic.project import Project

        project = Project(self.project_dir)
        try:
            done = project.registry.rollback(
                reason="the service crash-looped after a champion change (supervisor)"
            )
        except Exception as exc:
            return f"rollback not possible: {exc}"
        finally:
            project.close()
        return f"rolled back v{done.from_version} -> v{done.to_version}"


def _run_worker(project_dir: Path, sock: socket.socket, index: int) -> None:
    """A forked worker: build the app and serve on the shared socket until told to stop."""
    import uvicorn
    from threadpoolctl import threadpool_limits

    from mlmedic.serving.app import build

    # Requests are batched by the worker; OpenMP threads inside one small model call only add
    # contention with the other workers and the event loop.
    limits = threadpool_limits(limits=1)
    os.environ["MLMEDIC_WORKER_INDEX"] = str(index)
    app = build(project_dir)
    # Everything loaded so far (libraries, the model) lives for the whole process: keep it out
    # of the garbage collector's full collections, whose pauses would otherwise show in the p99.
    gc.collect()
    gc.freeze()
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    uvicorn.Server(config).run(sockets=[sock])
    limits.restore_original_limits()


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            return f"killed by {signal.Signals(number).name}"
        except ValueError:
            return f"killed by signal {number}"
    return f"exit code {os.WEXITSTATUS(status)}"


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, *_: Any) -> bool:
        return kind is not None and issubclass(kind, ProcessLookupError | ChildProcessError)


def main(argv: list[str] | None = None) -> None:
    """``python -m mlmedic.serving.supervisor PROJECT_DIR [PORT]`` (what ``mlmedic serve`` runs)."""
    from mlmedic.config import load_settings

    args = argv if argv is not None else sys.argv[1:]
    project_dir = Path(args[0] if args else ".")
    settings = load_settings(project_dir).self_healing
    port = int(args[1]) if len(args) > 1 else None
    Supervisor(
        project_dir, serving=settings.serving, recovery=settings.service_recovery, port=port
    ).run_forever()


if __name__ == "__main__":
    main()
