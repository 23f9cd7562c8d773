"""``mlmedic recover``: a one-shot check of a service mlmedic does not supervise.

If the service is unhealthy, run its restart command and check again with back-off, up to
``max_recovery_attempts`` times (the seed's ``auto_recover_service.py``). Every run is an event.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from mlmedic.core.errors import UsageError
from mlmedic.store.events import EventKind, EventLog, Outcome

COMMAND_TIMEOUT = 300.0


@dataclass
class RecoverResult:
    healthy: bool
    message: str
    attempts: int = 0
    outputs: list[str] = field(default_factory=list)


def check(url: str, timeout: float = 3.0) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200, f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return False, str(getattr(exc, "reason", exc))


def check_url(url: str) -> str:
    """``url`` if it is an http(s) URL with a host; a one-line ``MedicError`` otherwise (never a
    ``file://`` read of local files)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--url {url!r}: expected an http:// or https:// URL with a host")
    return url


def run_command(command: str, timeout: float = COMMAND_TIMEOUT) -> str:
    """Run a restart command in its own process group; on timeout kill the whole group (a
    command that hangs must not be left running). Returns the tail of its output."""
    process = subprocess.Popen(
        command,
        shell=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        text=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        output = (output or "") + f"\n(killed after {timeout:.0f}s)"
    return (output or "")[-500:]


def recover_once(
    url: str,
    command: str,
    *,
    path: str = "/health",
    attempts: int = 3,
    events: EventLog | None = None,
    wait_seconds: float = 30.0,
    command_timeout: float = COMMAND_TIMEOUT,
    say: Callable[[str], None] | None = None,
    delay_seconds: float = 0.5,
    alert_on_failure: bool = True,
) -> RecoverResult:
    """Restart an unhealthy service with ``command`` up to ``attempts`` times, waiting
    ``delay_seconds`` (doubling, at most 30 s) between attempts; alert when it stays down."""
    target = check_url(url).rstrip("/") + path
    ok, why = check(target)
    if ok:
        return RecoverResult(True, f"{target} is healthy ({why})")
    detected = time.time()
    result = RecoverResult(False, "")
    delay = delay_seconds
    for attempt in range(1, attempts + 1):
        result.attempts = attempt
        if say is not None:
            say(f"{target} is unhealthy ({why}); restart {attempt}/{attempts}: {command}")
        result.outputs.append(run_command(command, command_timeout))
        if say is not None:
            say(f"waiting up to {wait_seconds:.0f}s for {target} to answer")
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:
            ok, _ = check(target)
            if ok:
                break
            time.sleep(0.2)
        if ok:
            recovered = time.time()
            result.healthy = True
            result.message = (
                f"{target} was unhealthy ({why}); recovered in {recovered - detected:.2f}s "
                f"after {attempt} restart(s)"
            )
            if events is not None:
                events.record(
                    EventKind.RECOVERY,
                    "external-restart",
                    Outcome.SUCCESS,
                    message=result.message,
                    details={
                        "url": url,
                        "cause": why,
                        "attempts": attempt,
                        "methods": ["restart"],
                        "mttr_seconds": recovered - detected,
                        "command": command,
                    },
                    started_at=detected,
                    ended_at=recovered,
                )
            return result
        time.sleep(delay)
        delay = min(delay * 2, 30.0)
    result.message = f"{target} is still unhealthy after {attempts} restart(s): {why}"
    if events is not None:
        events.record(
            EventKind.RECOVERY,
            "external-restart",
            Outcome.FAILURE,
            message=result.message,
            details={"url": url, "cause": why, "attempts": attempts, "command": command},
            started_at=detected,
        )
        if alert_on_failure:
            events.record(EventKind.ALERT, "service-down", Outcome.FAILURE, message=result.message)
    return result
