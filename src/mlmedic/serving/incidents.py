"""Incidents: probing the service, recovering it by the configured methods in order (restart
only the dead worker, from the standby; clear the model cache; roll back on evidence), with
exponential back-off between attempts that resets after a healthy stretch, an alert after
``max_recovery_attempts``, and one ``recovery`` event per incident with its time to recovery."""

from __future__ import annotations

import http.client
import json
import logging
import os
import signal
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from mlmedic.serving.diagnosis import Diagnosis, Incident
from mlmedic.serving.pool import describe_exit
from mlmedic.store.events import EventKind, Outcome

log = logging.getLogger("mlmedic.supervisor")

BACKOFF_START = 0.5

BACKOFF_CAP = 30.0

NOT_READY_GRACE = 1.0

_CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGILL, signal.SIGFPE}


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


class Incidents(Diagnosis):
    """Health, the supervision loop, and recovery from each failure."""

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
                    f"worker {index} (pid {pid}) exited during start-up: {describe_exit(status)}",
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
            self._bookkeeping(self._fork_standby)
            self._bookkeeping(self._publish_when_standby_ready)
            self._bookkeeping(self.releases.tick)
            self._catch_hangs()
            if self.clock.now() >= next_probe:
                self._bookkeeping(self._check_watcher)
                self.events.flush()
                self._bookkeeping(self._prune)
                ok, why, body = self.healthy()
                self._hang_limit.mark(time.monotonic())  # the probe's wait is no starvation
                if not ok and not self._stopping:
                    # a probe that a dying worker had accepted fails with a reset, and one that
                    # a hung worker had accepted times out: that worker is replaced alone (as a
                    # hang, when the watch can tell), never the healthy ones with it
                    hung = self._catch_hangs()
                    self.clock.sleep(0.05)
                    gone = self._reap()
                    deadline = time.monotonic() + 2.0
                    while hung and not gone and time.monotonic() < deadline:
                        self.clock.sleep(0.02)
                        gone = self._reap()
                    for pid, index, status in gone:
                        self._worker_died(pid, index, status)
                    if not gone:
                        self._recover(Incident(cause=why, detected_at=self.clock.now()))
                elif ok:
                    self._check_fallback(body)
                next_probe = self.clock.now() + interval
            self._reset_backoff_when_healthy()

    def _bookkeeping(self, step: Any) -> None:
        """A step of the supervisor's own upkeep (the standby, its state file, the watcher,
        pruning) that the machine refuses — a full or failing disk, no memory to fork — is
        logged and tried again on the next turn: it never stops supervision."""
        try:
            step()
        except OSError as exc:
            now = self.clock.now()
            if now >= getattr(self, "_quiet_until", 0.0):
                name = getattr(step, "__name__", "upkeep")
                log.warning("supervisor upkeep failed (%s): %s; serving goes on", name, exc)
                self._quiet_until = now + 30.0

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

    def _catch_hangs(self) -> int:
        """Kill a worker that stopped beating or whose model call never returns (``serving.
        hang_seconds``); the reaper then replaces it from the standby, as any dead worker.

        On a starved host every process waits for the CPU, this loop too: a worker's beat may
        be late because the worker was not scheduled, not because it hangs. So the limit grows
        as ``marks.HangLimit`` says — except for a worker the kernel reports stopped (state
        ``T``): that is no scheduling delay."""
        now = time.monotonic()
        starved = self._hang_limit.tick(now)
        if starved is None:
            return 0
        limit = self.serving.hang_seconds
        killed = 0
        for pid, index in list(self.children.items()):
            if pid in self._hung:
                continue
            why = self.beats.hung(index, now, limit)
            if why is None:
                continue
            if starved > limit and not _stopped(pid):
                why = self.beats.hung(index, now, starved)
                if why is None:
                    continue
            log.warning("worker %s (pid %s) is hung: %s; replacing it", index, pid, why)
            self._hung[pid] = why
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # a stopped process dies of SIGKILL too
            killed += 1
        return killed

    def _worker_died(self, pid: int, index: int, status: int) -> None:
        from mlmedic.serving.metrics import forget_worker

        forget_worker(pid)
        hung = self._hung.pop(pid, None)
        incident = Incident(
            cause=f"worker {index} (pid {pid}) "
            + (f"hung: {hung}; killed" if hung else f"exited: {describe_exit(status)}"),
            detected_at=self.clock.now(),
            dead_index=index,
        )
        if hung:
            incident.evidence.append(f"worker {index} hung: {hung}")
        version, fingerprint = self.marks.get(index), self.marks.fingerprint(index)
        self.marks.set(index, 0)
        if version and os.WIFSIGNALED(status) and os.WTERMSIG(status) in _CRASH_SIGNALS:
            incident.model_crash = version
            incident.evidence.append(
                f"worker {index} died of {describe_exit(status)} inside a v{version} model call, "
                f"on the input with fingerprint {fingerprint:08x}"
            )
            incident.crash_loop = self._crashed_again(version)
        self._recover(incident)

    def _crashed_again(self, version: int) -> bool:
        """Whether ``version`` crashed a worker before, within ``serving.crash_loop_window_
        seconds``: twice is a crash loop, and the incident starts with a rollback on evidence
        (which also needs the version to be champion no longer than that window)."""
        now = self.clock.now()
        window = self.serving.crash_loop_window_seconds
        times = [t for t in self._crashes.get(version, []) if now - t <= window]
        self._crashes[version] = [*times, now]
        return len(times) >= 1

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
        if incident.crash_loop and self.healing_enabled:
            methods = ["rollback", *[m for m in methods if m != "rollback"]]
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


def _stopped(pid: int) -> bool:
    """Whether the kernel reports ``pid`` stopped by a signal (``/proc``; False where unknown)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].startswith("T")
