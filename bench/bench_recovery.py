"""Benchmark: time to recovery after kill -9, and failed requests across champion swaps under load.

    python bench/bench_recovery.py [--kills 20] [--stops 5] [--swaps 5]

1. `mlmedic serve` runs a 20-feature model; its API worker is killed with SIGKILL `--kills` times.
   For each kill: the time from the kill to the first HTTP 200 from /ready (polled every 5 ms),
   and the supervisor's own incident record (detected -> recovered). Prints median and p95.
   Each kill waits until the supervisor reports its standby ready (`standby_ready` in
   supervisor.json), and the standby's warm-up is reported. Then `--stops` workers are stopped
   with SIGSTOP (a hang): the time until the heartbeat watch has replaced them.
2. Four client threads send one-row requests continuously while the champion is moved
   `--swaps` times between two versions; counts failed requests and the versions served.

The kills run twice in the same run: with `serving.warm_standby` off (a fresh fork loads the model
after the kill: the design before issue 8) and on. Targets: median <= 0.5 s (the original design's
dashboard shows 47 s); zero failed requests across the swaps.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_serve import serve, stop
from bench_train import make_training

from mlmedic.data.datasets import TARGET
from mlmedic.heal.pipeline import run_pipeline
from mlmedic.model.project import Project
from mlmedic.serving.launch import worker_pids
from mlmedic.store.events import EventStore


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/ready", timeout=1) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError):
        return False


def supervisor_state(root: Path) -> dict:
    try:
        return dict(json.loads((root / ".mlmedic" / "supervisor.json").read_text()))
    except (OSError, ValueError):
        return {}


def until(condition: Callable[[], object], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server did not get there in {timeout:.0f} s")
        time.sleep(0.005)


def kills(
    supervisor: int, root: Path, url: str, count: int, *, standby: bool, stop: bool = False
) -> tuple[list[float], list[float]]:
    """Kill the worker ``count`` times (``stop``: SIGSTOP it, as a deadlock would, and let the
    supervisor's heartbeat watch catch it); seconds from each to /ready = 200, and, with the
    standby on, each new standby's warm-up (forked -> ready, as the supervisor reports it). The
    next kill waits until the standby says it is ready: the design is measured, not a sleep."""
    times, warmups = [], []
    for _ in range(count):
        if standby:
            until(lambda: supervisor_state(root).get("standby_ready"))
        [worker] = worker_pids(supervisor, root)
        spare = supervisor_state(root).get("standby")
        before = recorded(root)
        started = time.monotonic()
        os.kill(worker, signal.SIGSTOP if stop else signal.SIGKILL)
        until(lambda w=worker: w not in worker_pids(supervisor, root) and ready(url))
        times.append(time.monotonic() - started)
        # the supervisor has closed this incident (else the next kill joins it)
        until(lambda b=before: recorded(root) > b, 60)
        if standby:
            replaced = time.monotonic()
            until(lambda s=spare: supervisor_state(root).get("standby") not in (None, s))
            forked = time.monotonic()
            until(lambda: bool(supervisor_state(root).get("standby_ready")))
            warmups.append(time.monotonic() - max(forked, replaced))
    return times, warmups


def recorded(root: Path) -> int:
    """Service incidents the supervisor has recorded so far."""
    events = EventStore(root / ".mlmedic" / "events.db").query(kind="recovery")
    return sum(e.action == "service" for e in events)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--swaps", type=int, default=5)
    parser.add_argument("--stops", type=int, default=5)
    parser.add_argument("--rows", type=int, default=50_000)
    args = parser.parse_args()
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    folder = Path(tempfile.mkdtemp(prefix="bench-recovery-"))
    root = folder / "served"
    root.mkdir()
    project = Project(root)
    for seed in (1, 2):
        make_training(args.rows, seed).to_parquet(folder / f"train{seed}.parquet")
        run_pipeline(project, folder / f"train{seed}.parquet", target=TARGET)
    record = make_training(10, 3).drop(columns=[TARGET, "signup_at"]).iloc[0].to_dict()
    record = {k: (v.item() if hasattr(v, "item") else v) for k, v in record.items()}

    # the same kills with the warm standby off (the previous design: a fresh worker loads the
    # model after the kill) and on, in this run
    for standby in (False, True):
        (root / "self_healing_config.json").write_text(
            json.dumps({"serving": {"warm_standby": standby}})
        )
        server, url = serve(root, folder / "serve.log")
        try:
            kill_to_ready, warmups = kills(server.pid, root, url, args.kills, standby=standby)
            stopped: list[float] = []
            if standby:
                stopped, _ = kills(server.pid, root, url, args.stops, standby=True, stop=True)
            incidents = [
                e.details["mttr_seconds"]
                for e in EventStore(root / ".mlmedic" / "events.db").query(kind="recovery")
                if e.action == "service" and "hung" not in e.message
            ][-args.kills :]
        finally:
            if not standby:
                stop(server)
        label = "warm standby" if standby else "no standby (fresh fork loads the model)"
        print(f"kill -9 x {args.kills}, {label}; from the kill to /ready = 200 (client):")
        print(
            f"  median {statistics.median(kill_to_ready):.3f} s, "
            f"p95 {percentile(kill_to_ready, 0.95):.3f} s, max {max(kill_to_ready):.3f} s"
        )
        print(
            f"  the supervisor's incident records (detected -> ready): median "
            f"{statistics.median(incidents):.3f} s, p95 {percentile(incidents, 0.95):.3f} s"
        )
        if warmups:
            print(
                f"  the next standby's warm-up (forked -> ready): median "
                f"{statistics.median(warmups):.3f} s, max {max(warmups):.3f} s"
            )
        if stopped:
            print(
                f"kill -STOP x {len(stopped)} (a hung worker; serving.hang_seconds 2), warm "
                f"standby; from the stop to /ready = 200: median {statistics.median(stopped):.3f}"
                f" s, max {max(stopped):.3f} s"
            )
    try:
        failures: list[str] = []
        served: dict[int, int] = {}
        count = [0]
        halt = threading.Event()
        body = json.dumps(record).encode()

        def client() -> None:
            while not halt.is_set():
                request = urllib.request.Request(
                    url + "/predict", data=body, headers={"content-type": "application/json"}
                )
                try:
                    with urllib.request.urlopen(request, timeout=10) as answer:
                        version = json.loads(answer.read())["model_version"]
                        served[version] = served.get(version, 0) + 1
                except (urllib.error.URLError, OSError) as exc:
                    failures.append(repr(exc))
                count[0] += 1

        threads = [threading.Thread(target=client) for _ in range(4)]
        for thread in threads:
            thread.start()
        swap_times = []
        for swap in range(args.swaps):
            time.sleep(1.0)
            target = 1 if swap % 2 == 0 else 2
            started = time.monotonic()
            project.registry.rollback(to=target, reason="benchmark swap")
            while True:
                try:
                    with urllib.request.urlopen(url + "/model", timeout=2) as answer:
                        if json.loads(answer.read())["version"] == target:
                            break
                except OSError:
                    pass
                time.sleep(0.01)
            swap_times.append(time.monotonic() - started)
        time.sleep(1.0)
        halt.set()
        for thread in threads:
            thread.join()
        print(
            f"{args.swaps} champion swaps under load (4 clients): {count[0]:,} requests, "
            f"{len(failures)} failed; served by version: {served}; "
            f"alias move -> new version served: median {statistics.median(swap_times):.2f} s"
        )
        if failures:
            print("  first failures:", failures[:3])
    finally:
        stop(server)
        project.close()


if __name__ == "__main__":
    main()
