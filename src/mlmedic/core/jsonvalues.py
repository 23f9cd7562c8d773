"""Values as JSON holds them, and JSON files written whole: the one copy of each (#31).

- ``plain``: a numpy scalar as the Python number or string it holds, a timestamp as ISO-8601;
  anything else unchanged (the ``default`` of ``json.dumps`` where numpy values may appear);
- ``write_json``: a document written to a temporary file of the owner's alone (0600) and renamed
  over the target, so a reader never sees half of it.

Examples:
    >>> import numpy as np
    >>> plain(np.int64(3)), plain(np.float32(0.5)), plain("a")
    (3, 0.5, 'a')
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np


def plain(value: Any) -> Any:
    """``value`` as JSON holds it (numpy scalars and timestamps converted)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, datetime):  # pandas' Timestamp is one too
        return value.isoformat()
    return value


def write_json(path: str | Path, document: Any, *, indent: int | None = 2) -> None:
    """Write ``document`` to ``path`` atomically (write, then rename), readable by its owner
    alone; numpy values are written as ``plain`` makes them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    text = json.dumps(document, indent=indent, default=plain)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
