"""JSON over real HTTP to a server a test started: what the process-level tests share."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any


def get_json(url: str, timeout: float = 2.0) -> tuple[int, Any]:
    """(status, the JSON body) of a GET; an error status is returned, not raised."""
    return _answer(url, timeout)


def post_json(url: str, payload: object, timeout: float = 5.0) -> tuple[int, Any]:
    """(status, the JSON body) of a POST of ``payload`` as JSON."""
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"content-type": "application/json"}
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
