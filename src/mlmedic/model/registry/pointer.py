"""``.mlmedic/champion.json``: the champion as this project last knew it.

This module is its only reader and writer. The registry writes it on every champion move; the
serving workers read it to know which version to serve (without asking MLflow), and an offline
rollback writes it with ``synced: false`` so the registry's aliases follow on the next connection.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlmedic.core.jsonvalues import write_json

POINTER_FILE = "champion.json"


def pointer_path(state_dir: Path) -> Path:
    return Path(state_dir) / POINTER_FILE


def read_pointer(state_dir: Path) -> dict[str, Any] | None:
    """The pointer's record, or None when there is none or it cannot be read."""
    try:
        return dict(json.loads(pointer_path(state_dir).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def write_pointer(
    state_dir: Path,
    *,
    model_name: str,
    version: int,
    tracking_uri: str,
    synced: bool,
    now: float,
    backup: str | None = None,
) -> None:
    """Write the pointer atomically (write, then rename)."""
    record = {
        "model_name": model_name,
        "version": version,
        "tracking_uri": tracking_uri,
        "synced": synced,
        "backup": backup,
        "updated_at": now,
    }
    write_json(pointer_path(state_dir), record)
