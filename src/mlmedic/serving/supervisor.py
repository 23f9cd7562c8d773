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
"""

from __future__ import annotations

import ctypes
import errno
import gc
import http.client
import json
import logging
import mmap
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlmedic.clock import Clock, SystemClock
from mlmedic.config import NotificationsConfig, ServiceRecoveryConfig, ServingConfig
from mlmedic.eventbuffer import ResilientEventStore
from mlmedic.events import EventKind, Outcome
from mlmedic.notify import Notifier
from mlmedic.serving.metrics import forget_worker

log = logging.getLogger("mlmedic.supervisor")

BACKOFF_START = 0.5
BACKOFF_CAP = 30.0
NOT_READY_GRACE = 1.0
DIAGNOSE_TIMEOUT = 90.0
MAX_SLOTS = 128
_CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGILL, signal.SIGFPE}
_NO_PROCESS = (ProcessLookupError, ChildProcessError)


@dataclass
class Incident:
    """One outage, from detection to recovery."""

    cause: str
    detected_at: float
    methods: list[str] = field(default_factory=list)
    attempts: int = 0
    dead_index: int | None = None  # the worker that died, when one did
    model_crash: int | None = None  # the version a worker died in (crash signal, in a model call)
    rolled_back: bool = False
    evidence: list[str] = field(default_factory=list)


def probe(host: str, port: int, path: str, timeout: float) -> tuple[bool, str, dict[str, Any]]:
    """GET ``path``; (True, "", body) on HTTP 200, else (False, why, body)."""
    target = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    connection = http.client.HTTPConnection(target, port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        raw = response.read(4000)
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        if response.status == 200:
            return True, "", body
        return (
            False,
            f"{path} answered HTTP {response.status}: {raw[:300].decode(errors='replace')}",
            body,
        )
    except (OSError, http.client.HTTPException) as exc:
        return False, f"{path} failed: {type(exc).__name__}: {exc}", {}
    finally:
        connection.close()


class ModelCallMarks:
    """Shared memory (made before the forks) where each worker says which version it is calling.

    A worker that dies of a crash signal while its mark is set died in model code."""

    def __init__(self, slots: int = MAX_SLOTS) -> None:
        self.slots = slots
        self.memory = mmap.mmap(-1, 8 * slots)

    def set(self, index: int, version: int) -> None:
        if 0 <= index < self.slots:
            struct.pack_into("q", self.memory, 8 * index, version)

    def get(self, index: int) -> int:
        if 0 <= index < self.slots:
            return int(struct.unpack_from("q", self.memory, 8 * index)[0])
        return 0


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
            from mlmedic.errors import ProjectError

            raise ProjectError(f"--workers must be at least 1, not {self.workers}")
        self.probe_timeout = probe_timeout
        self.ready_timeout = ready_timeout
        self.grace_seconds = grace_seconds
        self.children: dict[int, int] = {}  # pid -> worker index
        self.standby: tuple[int, int] | None = None  # (pid, write end of its start pipe)
        self.watcher: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self.marks = ModelCallMarks()  # MAX_SLOTS > the 64 workers serve allows, + standby
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
        self._fallback_seen: tuple[int, int] | None = None

    # ------------------------------------------------------------------ events
    def _record(self, kind: str, action: str, outcome: str, **fields: Any) -> None:
        self.events.record(kind, action, outcome, **fields)

    # ------------------------------------------------------------------ processes
    def _publish(self) -> None:
        """``.mlmedic/supervisor.json``: who serves now (for operators, tests and benchmarks)."""
        state = {
            "pid": os.getpid(),
            "host": self.host,
            "port": self.port,
            "workers": {str(pid): index for pid, index in self.children.items()},
            "standby": self.standby[0] if self.standby else None,
            "watcher": self.watcher.pid if self.watcher else None,
            "updated_at": self.clock.now(),
        }
        path = self.state_dir / "supervisor.json"
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        with suppress(OSError):
            temporary.write_text(json.dumps(state), encoding="utf-8")
            temporary.replace(path)

    def _note_unclean_exit(self) -> None:
        """A ``supervisor.json`` left by a supervisor that is gone: it was killed, not stopped.
        Record it (the restart is the recovery), so the incident is in the action log."""
        try:
            previous = json.loads((self.state_dir / "supervisor.json").read_text("utf-8"))
            pid = int(previous["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return
        if pid == os.getpid() or _pid_alive(pid):
            return
        now = self.clock.now()
        last_seen = float(previous.get("updated_at") or now)
        self._record(
            EventKind.RECOVERY,
            "supervisor",
            Outcome.SUCCESS,
            message=f"the previous supervisor (pid {pid}) ended without stopping; restarted",
            details={
                "cause": f"supervisor pid {pid} ended without a clean stop",
                "detected_at": now,
                "last_seen_at": last_seen,
                "methods": ["restart supervisor"],
            },
        )

    def start(self) -> None:
        """Import the serving stack, bind the socket, fork the workers and the standby."""
        prometheus = self.state_dir / "prometheus"
        shutil.rmtree(prometheus, ignore_errors=True)
        prometheus.mkdir(parents=True, exist_ok=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(prometheus)
        import uvicorn  # noqa: F401

        import mlmedic.serving.app  # noqa: F401  (imported once, shared by every fork)

        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
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
        self._note_unclean_exit()
        for index in range(self.workers):
            self._fork(index)
        self._start_watcher()

    def _start_watcher(self) -> None:
        """The registry watcher runs as its own (spawned, not forked) process."""
        self.watcher = subprocess.Popen(
            [sys.executable, "-m", "mlmedic.serving.watcher", str(self.project_dir)],
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
            env=dict(os.environ, MLMEDIC_SUPERVISOR_PID=str(os.getpid())),
        )
        self._publish()

    def _check_watcher(self) -> None:
        if self.watcher is not None and self.watcher.poll() is not None and not self._stopping:
            log.warning("registry watcher exited (%s); restarting it", self.watcher.returncode)
            self._record(
                EventKind.COMPONENT,
                "watcher restarted",
                Outcome.WARNING,
                message=f"the registry watcher exited ({self.watcher.returncode}); restarted",
            )
            self._start_watcher()

    def _spawn(self, index: int | None) -> tuple[int, int | None]:
        """Fork a worker (``index``) or, with ``index`` None, a standby; (pid, start-pipe fd)."""
        assert self.sock is not None
        self.events.detach()  # no SQLite connection may cross a fork
        read_fd, write_fd = os.pipe() if index is None else (-1, -1)
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child
            code = 0
            try:
                _die_with_parent(parent)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                # a full disk or a file-size limit must fail a write, not kill the worker
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                if write_fd >= 0:
                    os.close(write_fd)
                _run_worker(self.project_dir, self.sock, index, self.marks, read_fd)
            except BaseException:
                logging.getLogger("mlmedic.serving").exception("worker %s crashed", index)
                code = 1
            finally:
                os._exit(code)
        if read_fd >= 0:
            os.close(read_fd)
        return pid, (write_fd if write_fd >= 0 else None)

    def _fork(self, index: int) -> int:
        pid, _ = self._spawn(index)
        self.children[pid] = index
        self._publish()
        return pid

    def _fork_standby(self) -> None:
        if not self.serving.warm_standby or self.standby is not None or self._stopping:
            return
        if self.clock.now() < self._next_standby:
            return
        pid, fd = self._spawn(None)
        assert fd is not None
        self.standby = (pid, fd)
        self._publish()

    def _drop_standby(self) -> None:
        """Stop the standby (its model may be stale after a cache clear or a rollback)."""
        if self.standby is None:
            return
        pid, fd = self.standby
        self.standby = None
        with suppress(OSError):
            os.close(fd)  # EOF: the standby exits by itself
        with suppress(*_NO_PROCESS):
            os.kill(pid, signal.SIGKILL)
        with suppress(*_NO_PROCESS):
            os.waitpid(pid, 0)

    def _activate_standby(self, index: int) -> bool:
        """Turn the standby into worker ``index``; False if there is none alive."""
        if self.standby is None:
            return False
        pid, fd = self.standby
        self.standby = None
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        try:
            if done:
                raise OSError("the standby had exited")
            os.write(fd, struct.pack("i", index))
        except OSError:
            with suppress(OSError):
                os.close(fd)
            self._standby_died()
            return False
        os.close(fd)
        self.children[pid] = index
        self._standby_failures = 0
        self._publish()
        return True

    def _standby_died(self) -> None:
        """A standby that keeps dying is retried with back-off, not in a fork storm."""
        self._standby_failures += 1
        self._next_standby = self.clock.now() + min(BACKOFF_CAP, 0.5 * 2**self._standby_failures)

    def _reap(self) -> list[tuple[int, int, int]]:
        """Workers that have exited: (pid, index, status). A dead standby is noted and dropped."""
        gone = []
        for pid, index in list(self.children.items()):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done:
                del self.children[pid]
                forget_worker(pid)  # its live gauges (the model version) stop counting
                gone.append((pid, index, status))
        if self.standby is not None:
            pid, fd = self.standby
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done:
                log.warning("standby worker exited (%s)", _describe(status))
                with suppress(OSError):
                    os.close(fd)
                self.standby = None
                self._standby_died()
        return gone

    def _stop_children(self, pids: list[int] | None = None) -> None:
        targets = list(self.children) if pids is None else pids
        for pid in targets:
            with suppress(*_NO_PROCESS):
                os.kill(pid, signal.SIGTERM)
        deadline = self.clock.now() + self.grace_seconds
        while any(pid in self.children for pid in targets) and self.clock.now() < deadline:
            self._reap()
            self.clock.sleep(0.02)
        for pid in targets:
            if pid in self.children:
                with suppress(*_NO_PROCESS):
                    os.kill(pid, signal.SIGKILL)
        while any(pid in self.children for pid in targets):
            self._reap()
            self.clock.sleep(0.01)

    def stop(self) -> None:
        self._stopping = True
        if self.watcher is not None and self.watcher.poll() is None:
            self.watcher.terminate()
            try:
                self.watcher.wait(timeout=self.grace_seconds)
            except subprocess.TimeoutExpired:
                self.watcher.kill()
                self.watcher.wait()
        self._drop_standby()
        self._stop_children()
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        with suppress(OSError):
            (self.state_dir / "supervisor.json").unlink()
        self.events.flush()
        self.events.close()

    # ------------------------------------------------------------------ health
    def healthy(self) -> tuple[bool, str, dict[str, Any]]:
        ok, why, _ = probe(self.host, self.port, "/health", self.probe_timeout)
        if not ok:
            return False, why, {}
        return probe(self.host, self.port, "/ready", self.probe_timeout)

    def wait_ready(self, timeout: float) -> tuple[bool, str]:
        """Wait for /ready. A worker answers HTTP only after loading its model, so a live worker
        whose /ready keeps failing for ``NOT_READY_GRACE`` seconds has failed, and waiting longer
        would only delay recovery."""
        deadline = self.clock.now() + timeout
        why = "not ready"
        refused_since: float | None = None
        while self.clock.now() < deadline:
            if not self.children:
                return False, "no worker is running"
            gone = self._reap()
            if gone:
                pid, index, status = gone[0]
                return (
                    False,
                    f"worker {index} (pid {pid}) exited during start-up: {_describe(status)}",
                )
            alive, why, _ = probe(self.host, self.port, "/health", self.probe_timeout)
            if alive:
                ok, why, _ = probe(self.host, self.port, "/ready", self.probe_timeout)
                if ok:
                    return True, ""
                refused_since = refused_since or self.clock.now()
                if self.clock.now() - refused_since > NOT_READY_GRACE:
                    return False, why
            self.clock.sleep(0.005)
        return False, f"not ready after {timeout:.0f}s: {why}"

    # ------------------------------------------------------------------ the loop
    def run_forever(self, *, on_ready: Any = None) -> None:
        """Start, wait for ready, then supervise until SIGTERM/SIGINT."""

        def _terminate(signum: int, _: Any) -> None:
            self._stopping = True

        signal.signal(signal.SIGTERM, _terminate)
        signal.signal(signal.SIGINT, _terminate)
        self.start()
        try:
            ok, why = self.wait_ready(self.ready_timeout)
            if not ok:
                self._recover(Incident(cause=f"start-up: {why}", detected_at=self.clock.now()))
            if on_ready is not None:
                on_ready(self)
            ok, _, body = self.healthy()
            if ok:
                self._check_fallback(body)
            self._healthy_since = self.clock.now()
            self._fork_standby()
            self._loop()
        finally:
            self.stop()

    def _loop(self) -> None:
        interval = self.recovery.health_check_interval_seconds
        next_probe = self.clock.now() + interval
        while not self._stopping:
            self.clock.sleep(0.01)
            gone = self._reap()
            if gone:
                for pid, index, status in gone:
                    self._worker_died(pid, index, status)
                next_probe = self.clock.now() + interval
                continue
            self._fork_standby()
            if self.clock.now() >= next_probe:
                self._check_watcher()
                self.events.flush()
                self._prune()
                ok, why, body = self.healthy()
                if not ok and not self._stopping:
                    # a probe that a dying worker had accepted fails with a reset: that worker
                    # is replaced alone, never the healthy ones with it
                    self.clock.sleep(0.05)
                    gone = self._reap()
                    for pid, index, status in gone:
                        self._worker_died(pid, index, status)
                    if not gone:
                        self._recover(Incident(cause=why, detected_at=self.clock.now()))
                elif ok:
                    self._check_fallback(body)
                next_probe = self.clock.now() + interval
            self._reset_backoff_when_healthy()

    def _reset_backoff_when_healthy(self) -> None:
        """After ``healthy_reset_seconds`` of health, the next outage starts from the first
        back-off again."""
        if (
            self._healthy_since is not None
            and self.clock.now() - self._healthy_since > self.serving.healthy_reset_seconds
        ):
            self._backoff = self._backoff_start

    def _prune(self) -> None:
        if self.retention_days is None or self.clock.now() < self._next_prune:
            return
        self._next_prune = self.clock.now() + 86_400
        self.events.prune(self.clock.now() - self.retention_days * 86_400)

    def _worker_died(self, pid: int, index: int, status: int) -> None:
        from mlmedic.serving.metrics import forget_worker

        forget_worker(pid)
        incident = Incident(
            cause=f"worker {index} (pid {pid}) exited: {_describe(status)}",
            detected_at=self.clock.now(),
            dead_index=index,
        )
        version = self.marks.get(index)
        self.marks.set(index, 0)
        if version and os.WIFSIGNALED(status) and os.WTERMSIG(status) in _CRASH_SIGNALS:
            incident.model_crash = version
        self._recover(incident)

    def _recover(self, incident: Incident) -> None:
        """Apply the recovery methods until the service is ready again; record the incident."""
        log.warning("service failure: %s", incident.cause)
        if not self.healing_enabled:
            self._record(
                EventKind.ALERT,
                "service-down",
                Outcome.FAILURE,
                message=f"{incident.cause}; self-healing is off (self_healing.enabled or "
                "service_recovery.auto_recovery_enabled): replacing workers only",
            )
        self._healthy_since = None
        methods = list(self.recovery.recovery_methods) or ["restart"]
        alerted = False
        while not self._stopping:
            method = methods[min(incident.attempts, len(methods) - 1)]
            incident.attempts += 1
            if incident.attempts > 1:
                self.clock.sleep(self._backoff)
                self._backoff = min(self._backoff * 2, BACKOFF_CAP)
            detail = self._apply(method, incident)
            incident.methods.append(detail[0])
            ok, why = self.wait_ready(self.ready_timeout)
            if ok:
                recovered = self.clock.now()
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
                        "last_action": detail[1],
                        "evidence": incident.evidence,
                    },
                    started_at=incident.detected_at,
                    ended_at=recovered,
                )
                self._healthy_since = self.clock.now()
                self._fork_standby()
                if incident.attempts > 1 or incident.rolled_back:  # not for every routine restart
                    self.notifier.send(
                        "recovery",
                        f"service recovered in {recovered - incident.detected_at:.1f}s by "
                        f"{' -> '.join(incident.methods)}: {incident.cause}",
                    )
                return
            log.warning("recovery attempt %s (%s) failed: %s", incident.attempts, method, why)
            incident.dead_index = None  # from now on, a restart is of every worker
            if incident.attempts >= self.recovery.max_recovery_attempts and not alerted:
                alerted = True
                if self.recovery.alert_on_failure:
                    self.notifier.send(
                        "failure",
                        f"service still down after {incident.attempts} recovery attempts: {why}",
                    )
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

    def _apply(self, method: str, incident: Incident) -> tuple[str, str]:
        """Carry out one recovery method: (the method as done, what it did)."""
        if method == "rollback" and self.healing_enabled:
            if incident.rolled_back:
                method = "restart"
            else:
                done = self._rollback_on_evidence(incident)
                if done is not None:
                    self.notifier.send("rollback", f"{done}: {'; '.join(incident.evidence)}")
                    incident.rolled_back = True
                    self._restart_all()
                    return "rollback", done
                self._restart(incident)
                return "restart", "no rollback: " + "; ".join(incident.evidence[-1:])
        if method == "clear_cache" and self.healing_enabled:
            from mlmedic.model.local import clear_cache

            removed = clear_cache(self.state_dir)
            self._restart_all()
            return "clear_cache", f"cleared {removed} cached model(s) and restarted"
        self._restart(incident)
        if incident.dead_index is not None:
            return "restart", f"replaced worker {incident.dead_index}"
        return "restart", "restarted"

    def _restart(self, incident: Incident) -> None:
        """Replace only the dead worker (from the standby when there is one), else all."""
        if incident.dead_index is None:
            self._restart_all()
            return
        if not self._activate_standby(incident.dead_index):
            self._fork(incident.dead_index)

    def _restart_all(self) -> None:
        self._drop_standby()
        self._stop_children()
        for index in range(self.workers):
            self._fork(index)

    # ------------------------------------------------------------------ evidence and rollback
    def _diagnose(self) -> dict[str, Any]:
        """In a fresh process (spawned, not forked: no thread or OpenMP state is inherited): can
        the champion (and the rollback target) be loaded and pass the canary? The supervisor
        itself never loads a model."""
        command = [sys.executable, "-m", "mlmedic.serving.supervisor", "diagnose"]
        try:
            done = subprocess.run(
                [*command, str(self.project_dir)],
                capture_output=True,
                text=True,
                timeout=DIAGNOSE_TIMEOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )
        except subprocess.TimeoutExpired:
            return {"error": f"the diagnosis did not finish within {DIAGNOSE_TIMEOUT:.0f}s"}
        try:
            return dict(json.loads(done.stdout.strip().splitlines()[-1]))
        except (ValueError, IndexError):
            return {"error": f"the diagnosis failed: {done.stderr.strip()[-300:]}"}

    def _rollback_on_evidence(self, incident: Incident, *, to: int | None = None) -> str | None:
        """Roll back only if the champion is at fault and the target passes its canary."""
        found = self._diagnose()
        if "error" in found:
            incident.evidence.append(f"diagnosis failed: {found['error']}")
            return None
        champion, target = found.get("champion"), to or found.get("previous")
        at_fault = None
        if not found.get("champion_ok", True):
            at_fault = f"champion v{champion} fails in a fresh process: {found.get('champion_why')}"
        elif incident.model_crash is not None and incident.model_crash == champion:
            changed = found.get("champion_since")
            window = self.serving.crash_loop_window_seconds
            if changed is not None and self.clock.now() - float(changed) <= window:
                at_fault = f"a worker died of a crash signal inside a v{champion} model call"
        if at_fault is None:
            incident.evidence.append(
                f"champion v{champion} loads and passes its canary in a fresh process"
            )
            return None
        incident.evidence.append(at_fault)
        if target is None:
            incident.evidence.append("no version to roll back to")
            return None
        checks = found.get("checks", {})
        if not checks.get(str(target), {}).get("ok"):
            incident.evidence.append(
                f"v{target} does not pass its canary either: "
                f"{checks.get(str(target), {}).get('why', 'not checked')}"
            )
            return None
        incident.evidence.append(f"v{target} passes its canary")
        return self._rollback(int(target), at_fault)

    def _rollback(self, target: int, why: str) -> str:
        from mlmedic.lock import project_lock
        from mlmedic.project import Project

        project = Project(self.project_dir, service=True)
        try:
            with project_lock(self.state_dir, "supervisor rollback", wait_seconds=10):
                done = project.registry.rollback(
                    to=target,
                    reason=f"the champion is at fault: {why} (supervisor)",
                    by="supervisor",
                )
        except Exception as exc:
            return f"rollback not possible: {exc}"
        finally:
            project.close()
            self.events.detach()
        return f"rolled back v{done.from_version} -> v{done.to_version}"

    def _check_fallback(self, body: dict[str, Any]) -> None:
        """Workers serve an older version when no copy of the champion loads: confirm it in a
        fresh process and make it the champion, so the registry, ``mlmedic models`` and
        ``/model`` agree (once per champion/fallback pair)."""
        fallback = body.get("fallback")
        if not isinstance(fallback, dict):
            self._fallback_seen = None
            return
        pair = (int(fallback.get("champion", 0)), int(fallback.get("serving", 0)))
        if pair == self._fallback_seen:
            return
        self._fallback_seen = pair
        incident = Incident(
            cause=f"serving fallback: {fallback.get('why', '')}", detected_at=self.clock.now()
        )
        done = self._rollback_on_evidence(incident, to=pair[1])
        if done and done.startswith("rolled back"):
            self.notifier.send("rollback", f"champion v{pair[0]} cannot be loaded; {done}")
        self._record(
            EventKind.ALERT,
            "model-fallback",
            Outcome.FAILURE,
            message=(
                f"champion v{pair[0]} cannot be loaded from any copy; serving v{pair[1]}"
                + (f"; {done}" if done else f"; champion kept ({'; '.join(incident.evidence)})")
            ),
            details={"champion": pair[0], "serving": pair[1], "evidence": incident.evidence},
            model_version=pair[1],
        )


def _diagnose_models(project_dir: Path) -> dict[str, Any]:
    """Load the champion and its rollback target (``previous``, else the newest other version
    with a local copy) as a fresh server would; report which pass their canary."""
    from mlmedic.project import Project
    from mlmedic.serving.app import model_source

    project = Project(project_dir, service=True)
    source = model_source(project)
    champion = source.champion_version(ask_registry=True)
    result: dict[str, Any] = {"champion": champion, "checks": {}}
    pointer = source.pointer() or {}
    result["champion_since"] = pointer.get("updated_at")
    previous = source.previous_version()
    candidates = [v for v in [champion, previous] if v is not None]
    if previous is None:
        candidates += [v for v in source.fallback_candidates(exclude=champion)][:3]
    for version in dict.fromkeys(candidates):
        try:
            source.load_version(version)
            result["checks"][str(version)] = {"ok": True}
        except Exception as exc:
            result["checks"][str(version)] = {"ok": False, "why": str(exc)[:500]}
    champion_check = result["checks"].get(str(champion), {"ok": False, "why": "no champion"})
    result["champion_ok"] = champion_check["ok"]
    result["champion_why"] = champion_check.get("why", "")
    passing = [v for v in candidates if v != champion and result["checks"][str(v)]["ok"]]
    result["previous"] = passing[0] if passing else previous
    project.close()
    return result


def _die_with_parent(parent: int | None = None) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux), and exit now if the
    parent is already gone."""
    expected = parent if parent is not None else os.getppid()
    with suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != expected:
        os._exit(1)


def _run_worker(
    project_dir: Path,
    sock: socket.socket,
    index: int | None,
    marks: ModelCallMarks,
    start_fd: int,
) -> None:
    """A forked worker: build the app and serve on the shared socket until told to stop.

    A standby (``index`` None) builds the app and loads the model first, then waits on
    ``start_fd`` for the index of the worker it replaces."""
    import uvicorn
    from threadpoolctl import threadpool_limits

    from mlmedic.serving.app import build

    # Requests are batched by the worker; OpenMP threads inside one small model call only add
    # contention with the other workers and the event loop.
    limits = threadpool_limits(limits=1)
    slot = {"index": -1 if index is None else index}

    def mark(version: int) -> None:
        marks.set(slot["index"], version)

    if index is not None:
        os.environ["MLMEDIC_WORKER_INDEX"] = str(index)
    app = build(project_dir, on_model_call=mark)
    # Everything loaded so far (libraries, the model) lives for the whole process: keep it out
    # of the garbage collector's full collections, whose pauses would otherwise show in the p99.
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    config.load()  # imports the protocol and loop implementations now, not after a kill
    gc.collect()
    gc.freeze()
    if index is None:
        raw = os.read(start_fd, 4)
        os.close(start_fd)
        if len(raw) != 4:
            os._exit(0)  # the supervisor dropped this standby
        slot["index"] = struct.unpack("i", raw)[0]
        os.environ["MLMEDIC_WORKER_INDEX"] = str(slot["index"])
        app.state.mlmedic.catch_up()
    uvicorn.Server(config).run(sockets=[sock])
    limits.restore_original_limits()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            return f"killed by {signal.Signals(number).name}"
        except ValueError:
            return f"killed by signal {number}"
    return f"exit code {os.WEXITSTATUS(status)}"


if (
    __name__ == "__main__"
):  # the diagnosis process: python -m mlmedic.serving.supervisor diagnose DIR
    if len(sys.argv) == 3 and sys.argv[1] == "diagnose":
        logging.disable(logging.CRITICAL)
        print(json.dumps(_diagnose_models(Path(sys.argv[2])), default=str))
