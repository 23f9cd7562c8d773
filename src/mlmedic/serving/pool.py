"""The worker pool: the listening socket opened once, API workers forked from the supervisor
(which imported the serving stack once, as gunicorn's preload does), a warm standby forked ahead
of need and handed a dead worker's place through a pipe, reaping, the registry watcher process,
and ``supervisor.json`` saying who serves now. Children die with the supervisor."""

from __future__ import annotations

import ctypes
import gc
import json
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
from contextlib import suppress
from pathlib import Path
from typing import Any

from mlmedic.core.clock import Clock
from mlmedic.core.config import ServiceRecoveryConfig, ServingConfig
from mlmedic.core.jsonvalues import write_json
from mlmedic.heal.notify import Notifier
from mlmedic.serving.marks import STANDBY_SLOT, Heartbeats, ModelCallMarks
from mlmedic.serving.metrics import forget_worker, share_between_workers
from mlmedic.serving.sockets import inherited_socket, listen
from mlmedic.store.eventbuffer import ResilientEventStore
from mlmedic.store.events import EventKind, Outcome

log = logging.getLogger("mlmedic.supervisor")

_NO_PROCESS = (ProcessLookupError, ChildProcessError)
_STANDBY_BACKOFF_CAP = 30.0  # a standby that keeps dying is re-forked at most this rarely


class WorkerPool:
    """Forks, replaces and stops the API workers and the standby on one socket."""

    # the supervisor's state, set by ``Supervisor.__init__`` and shared by its rooms
    clock: Clock
    project_dir: Path
    state_dir: Path
    serving: ServingConfig
    recovery: ServiceRecoveryConfig
    host: str
    port: int
    workers: int
    probe_timeout: float
    ready_timeout: float
    grace_seconds: float
    children: dict[int, int]  # pid -> worker index
    standby: tuple[int, int] | None  # (pid, write end of its start pipe)
    watcher: subprocess.Popen[bytes] | None
    sock: socket.socket | None
    marks: ModelCallMarks
    beats: Heartbeats
    events: ResilientEventStore
    notifier: Notifier
    healing_enabled: bool
    retention_days: float | None
    _next_prune: float
    _stopping: bool
    _backoff_start: float
    _backoff: float
    _healthy_since: float | None
    _standby_failures: int
    _next_standby: float
    _standby_ready: bool  # as last published
    _hung: dict[int, str]  # pid -> why it was killed as hung
    _crashes: dict[int, list[float]]  # version -> when it crashed a worker (crash signal)
    _hang_limit: Any  # marks.HangLimit: serving.hang_seconds, widened on a starved host
    _fallback_seen: tuple[int, int] | None
    releases: Any  # the ReleaseKeeper: the release host beside the workers (#24)

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
            "standby_ready": self._standby_is_ready(),
            "watcher": self.watcher.pid if self.watcher else None,
            "updated_at": self.clock.now(),
        }
        self._standby_ready = bool(state["standby_ready"])
        try:
            write_json(self.state_dir / "supervisor.json", state, indent=None)
        except OSError as exc:  # a full or failing disk: the state waits for the next change
            log.warning("cannot write %s: %s", self.state_dir / "supervisor.json", exc)

    def _standby_is_ready(self) -> bool:
        """Whether the standby has loaded its model (it says so in ``STANDBY_SLOT``)."""
        return self.standby is not None and self.marks.get(STANDBY_SLOT) == self.standby[0]

    def _publish_when_standby_ready(self) -> None:
        """Say in ``supervisor.json`` the moment the standby is ready to take a place."""
        if self._standby_is_ready() != self._standby_ready:
            self._publish()

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
        share_between_workers(prometheus)
        import uvicorn  # noqa: F401

        import mlmedic.serving.app  # noqa: F401  (imported once, shared by every fork)

        sock = inherited_socket()
        if sock is None:
            sock = listen(self.host, self.port)
        else:  # socket activation: the manager holds the port across our restarts
            self.host, self.port = sock.getsockname()[:2]
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
            preexec_fn=die_with_parent,
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
                die_with_parent(parent)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                # a full disk or a file-size limit must fail a write, not kill the worker
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                if write_fd >= 0:
                    os.close(write_fd)
                _run_worker(self.project_dir, self.sock, index, self.marks, self.beats, read_fd)
            except BaseException:
                logging.getLogger("mlmedic.serving").exception("worker %s crashed", index)
                code = 1
            finally:
                os._exit(code)
        if read_fd >= 0:
            os.close(read_fd)
        return pid, (write_fd if write_fd >= 0 else None)

    def _fork(self, index: int) -> int:
        self.beats.reset(index)
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
            self.beats.reset(index)
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
        self._next_standby = self.clock.now() + min(
            _STANDBY_BACKOFF_CAP, 0.5 * 2**self._standby_failures
        )

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
                log.warning("standby worker exited (%s)", describe_exit(status))
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
        self.releases.stop()
        self._stop_children()
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        with suppress(OSError):
            (self.state_dir / "supervisor.json").unlink()
        self.events.flush()
        self.events.close()


def die_with_parent(parent: int | None = None) -> None:
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
    beats: Heartbeats,
    start_fd: int,
) -> None:
    """A forked worker: build the app and serve on the shared socket until told to stop.

    A standby (``index`` None) builds the app and loads the model first, then waits on
    ``start_fd`` for the index of the worker it replaces."""
    import uvicorn

    from mlmedic.serving.app import build

    limits = one_thread_per_worker()
    slot = {"index": -1 if index is None else index}

    def mark(version: int, fingerprint: int = 0) -> None:
        marks.set(slot["index"], version, fingerprint if version else 0)
        beats.calling(slot["index"], bool(version))

    def beat() -> None:
        beats.beat(slot["index"])

    if index is not None:
        os.environ["MLMEDIC_WORKER_INDEX"] = str(index)
    app = build(project_dir, on_model_call=mark, on_beat=beat)
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
        marks.set(STANDBY_SLOT, os.getpid())  # loaded: ready to take a place
        raw = os.read(start_fd, 4)
        os.close(start_fd)
        if len(raw) != 4:
            os._exit(0)  # the supervisor dropped this standby
        slot["index"] = struct.unpack("i", raw)[0]
        os.environ["MLMEDIC_WORKER_INDEX"] = str(slot["index"])
        app.state.mlmedic.catch_up()
    uvicorn.Server(config).run(sockets=[sock])
    limits.restore_original_limits()


def one_thread_per_worker() -> Any:
    """Requests are batched by the worker and the workers are the parallelism: OpenMP or BLAS
    threads inside one small model call only wait for cores the other workers and the event
    loop hold (#22: sklearn's trees, two OpenMP threads per call, halved a worker's throughput
    on a busy 2-core host). OpenMP is not loaded yet when a worker starts (the supervisor never
    imports a model library), so ``threadpoolctl`` cannot reach it and its limit would bind only
    the calling thread anyway: ``OMP_NUM_THREADS`` sets it for every thread of the process, the
    executor's included, unless the operator set it. Returns the BLAS limits to restore."""
    from threadpoolctl import threadpool_limits

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    return threadpool_limits(limits=1)


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


def describe_exit(status: int) -> str:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            return f"killed by {signal.Signals(number).name}"
        except ValueError:
            return f"killed by signal {number}"
    return f"exit code {os.WEXITSTATUS(status)}"
