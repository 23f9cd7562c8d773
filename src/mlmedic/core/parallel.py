"""Column-wise work on two threads for large frames (numpy releases the GIL in its loops): used by
the data checks and repairs and by the drift statistics, so it sits beside both.

Small frames run inline: a thread hand-off costs more than it saves below ~100,000 rows.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

PARALLEL_MIN_ROWS = 100_000
_WORKERS = max(1, min(2, os.cpu_count() or 1))
_pool: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="mlmedic-data")
    return _pool


def worth_it(rows: int) -> bool:
    return _WORKERS > 1 and rows >= PARALLEL_MIN_ROWS


def pmap(fn: Callable[[T], R], items: Iterable[T], *, rows: int) -> list[R]:
    """``[fn(x) for x in items]``, in order; on threads when ``rows`` makes it worth it."""
    if not worth_it(rows):
        return [fn(item) for item in items]
    return list(_executor().map(fn, items))


def background(fn: Callable[[], R], *, rows: int) -> Callable[[], R]:
    """Start ``fn`` on a worker thread if worth it; returns a function that waits for its result."""
    if not worth_it(rows):
        return fn
    future: Future[R] = _executor().submit(fn)
    return future.result
