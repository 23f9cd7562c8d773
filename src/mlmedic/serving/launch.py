"""Running `mlmedic serve` as a background process: start, wait, find its workers, stop.

Used by the demo, the benchmarks and the real-process tests, so all three drive the server the
way a user does (the command line), and clean up the whole process group.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO, Any


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    root: Path,
    port: int,
    output: IO[Any] | int | None,
    *,
    workers: int = 1,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """`mlmedic serve` for project ``root`` on ``port``, in its own process group."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlmedic",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "-C",
            str(root),
        ],
        env=env if env is not None else dict(os.environ),
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_server(process: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    """SIGTERM the server's process group, SIGKILL it if it does not stop within ``grace``."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def wait_ready(url: str, timeout: float) -> bool:
    """Poll ``url``/ready until it answers 200 (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url + "/ready", timeout=1) as answer:
                if answer.status == 200:
                    return True
        except OSError:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


def worker_pids(supervisor: int, root: Path) -> list[int]:
    """The supervisor's serving workers (not its standby or registry watcher), from the state
    file it keeps (``.mlmedic/supervisor.json``), checked against its live children."""
    try:
        children = set(
            map(int, Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split())
        )
        state = json.loads((Path(root) / ".mlmedic" / "supervisor.json").read_text())
    except (OSError, ValueError):
        return []
    if state.get("pid") != supervisor:
        return []
    return sorted(pid for pid in map(int, state.get("workers", {})) if pid in children)
