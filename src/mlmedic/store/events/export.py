"""The seed's JSON logs: one array per file (``data_fix_log.json``, ``rollback_log.json``, ...),
written from the event store by ``mlmedic logs --export``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from mlmedic.core.errors import ProjectError
from mlmedic.store.events.kinds import EXPORT_FILES

if TYPE_CHECKING:
    from mlmedic.store.events.store import EventStore


def export(
    store: EventStore,
    directory: str | Path,
    *,
    kind: str | None = None,
    since: float | None = None,
    names: Mapping[str, str] | None = None,
) -> dict[str, int]:
    """Write the seed-style JSON logs (one array per file) into ``directory``; return counts.
    With ``kind``, only the file that holds that kind; with ``since``, only newer events;
    ``names`` renames files (``logging.*_log_path`` in the config)."""
    target = Path(directory)
    if target.exists() and not target.is_dir():
        raise ProjectError(f"{target}: exists and is not a directory")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ProjectError(f"{target}: cannot create it ({exc.strerror})") from None
    counts: dict[str, int] = {}
    for name, kinds in EXPORT_FILES.items():
        chosen = kinds if kind is None else tuple(k for k in kinds if k == kind)
        if not chosen:
            continue
        events = [event.to_dict() for event in store.query(kind=chosen, since=since)]
        written = (names or {}).get(name, name)
        (target / written).write_text(json.dumps(events, indent=2) + "\n", encoding="utf-8")
        counts[written] = len(events)
    return counts
