"""The registry watcher: a small process beside the workers that follows the ``champion`` alias.

It also compacts the prediction log: every five minutes, each closed hour's many small part
files become one (``logstore.compact``).

Every ``serving.registry_poll_seconds`` it asks the registry for the champion; when the alias has
moved (by hand in MLflow, say), it exports that version into the serving cache and only then
updates ``.mlmedic/champion.json``, which the workers follow. Keeping MLflow out of the workers
keeps their start-up short and their latency flat.

    python -m mlmedic.serving.watcher PROJECT_DIR
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from mlmedic.core.errors import MedicError
from mlmedic.heal.releases.states import sync_release
from mlmedic.model.local import cache_path
from mlmedic.model.project import Project
from mlmedic.model.registry import CHAMPION
from mlmedic.store.events import EventKind, Outcome
from mlmedic.store.logstore import compact

log = logging.getLogger("mlmedic.watcher")
COMPACT_EVERY = 300.0  # seconds between compactions of the prediction log


def follow_once(project: Project) -> int | None:
    """One poll: returns the champion's version if the local record was moved to it.

    The alias is read without MLflow when the store allows (one SQL query on SQLite, one REST
    call on a server): a watcher that finds nothing new never imports it. An offline rollback
    waiting to be synced connects (the connection syncs it), and so does a move to export."""
    registry = project.registry
    pointer = registry.read_pointer()
    if pointer is not None and not pointer.get("synced", True):
        registry.champion()  # connecting syncs the offline rollback to the registry
        return None  # the registry follows the rollback, not the other way round
    version = registry.alias_version(CHAMPION)
    if version is None:
        return None
    if pointer is not None and int(pointer["version"]) == version:
        return None
    cached = cache_path(project.state_dir, version)
    if not (cached / "manifest.json").exists():
        registry.export(version, cached)
    registry.write_pointer(version, synced=True)
    return version


def main(argv: list[str] | None = None) -> None:
    args = argv if argv is not None else sys.argv[1:]
    project = Project(Path(args[0] if args else "."), service=True)
    interval = project.settings.self_healing.serving.registry_poll_seconds
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    supervisor = int(os.environ.get("MLMEDIC_SUPERVISOR_PID", "0") or 0)
    problem = ""  # the last failure, recorded once (not once per poll)
    next_compaction = 0.0
    while not stop.is_set():
        if time.monotonic() >= next_compaction:  # closed hours of the log become one file
            next_compaction = time.monotonic() + COMPACT_EVERY
            try:
                compact(
                    project.log_location("predictions"),
                    claim=lambda: project.events.claim("compact:predictions", seconds=600.0),
                )
            except (OSError, ValueError, MedicError) as exc:
                log.warning("prediction-log compaction failed: %s", exc)
        if supervisor and os.getppid() != supervisor:
            break  # the supervisor is gone (PR_SET_PDEATHSIG covers Linux; this, the rest)
        try:
            moved = follow_once(project)
            if moved is not None:
                log.info("champion moved to v%s", moved)
            sync_release(project)  # a release a server ended, or one started on another host
            problem = ""
        except Exception as exc:  # keep watching whatever happens
            text = f"{type(exc).__name__}: {exc}" if not isinstance(exc, MedicError) else str(exc)
            if text != problem:
                problem = text
                log.warning("registry watch: %s", text)
                project.events.record(
                    EventKind.COMPONENT,
                    "watcher",
                    Outcome.WARNING,
                    message=f"the registry watcher cannot follow the champion: {text}",
                )
        stop.wait(interval)
    project.close()


if __name__ == "__main__":
    main()
