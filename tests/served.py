"""What the process-level tests share: JSON over real HTTP to a server a test started, and
waiting for a condition with a deadline instead of sleeping."""

from __future__ import annotations

import contextlib
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd


def get_json(url: str, timeout: float = 2.0) -> tuple[int, Any]:
    """(status, the JSON body) of a GET; an error status is returned, not raised."""
    return _answer(url, timeout)


def post_json(
    url: str, payload: object, timeout: float = 5.0, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """(status, the JSON body) of a POST of ``payload`` as JSON (with ``headers`` too)."""
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"content-type": "application/json", **(headers or {})},
    )
    return _answer(request, timeout)


def _answer(request: str | urllib.request.Request, timeout: float) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read() or b"{}")


def wait_ready(url: str, timeout: float = 60.0) -> float:
    """Poll ``/ready`` until it answers 200; the seconds it took (AssertionError past
    ``timeout``)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if get_json(url + "/ready", timeout=1.0)[0] == 200:
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.02)
    raise AssertionError(f"{url} not ready within {timeout}s")


def wait_until(condition: Callable[[], Any], timeout: float = 30.0, step: float = 0.05) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass; whether it held (asked
    once more at the deadline)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return bool(condition())


@contextlib.contextmanager
def serving(project: Path) -> Iterator[str]:
    """``mlmedic serve`` of ``project`` as a real process, ready; yields its URL, then stops it
    (its output goes to ``serve.log`` in the project)."""
    from mlmedic.serving.launch import free_port, start_server, stop_server

    port = free_port()
    log = (project / "serve.log").open("ab")
    process = start_server(
        project, port, log, env=dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true")
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url)
        yield url
    finally:
        stop_server(process)
        log.close()


def v2_inputs(rows: Any, integer: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """A frame's columns as Open Inference Protocol tensors: ``integer`` ones as INT64, other
    numbers FP64, text BYTES (missing as null)."""
    return [
        {
            "name": column,
            "datatype": "INT64"
            if column in integer
            else "FP64"
            if pd.api.types.is_numeric_dtype(rows[column])
            else "BYTES",
            "shape": [len(rows)],
            "data": [None if pd.isna(v) else v for v in rows[column].tolist()],
        }
        for column in rows.columns
    ]
