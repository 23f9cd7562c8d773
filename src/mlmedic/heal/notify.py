"""Notifications: what mlmedic did, sent where people look — webhooks, e-mail, or both.

``notifications.enabled`` switches them on; ``alert_on_drift``, ``alert_on_rollback`` and
``alert_on_recovery`` choose the topics (``failure``, a service still down after its recovery
attempts, is governed by ``service_recovery.alert_on_failure`` at the caller).

- **Webhooks**: ``slack_webhook`` (Slack's ``{"text": ...}``) and each of ``webhooks`` with its
  ``format``: ``json`` (``{"source", "project", "topic", "text", "time"}``), ``slack``, or
  ``alertmanager`` (the list of alerts Alertmanager's ``POST /api/v2/alerts`` takes).
- **E-mail** through ``smtp_host:smtp_port``: ``smtp_security`` ``none``, ``starttls`` or
  ``ssl`` (certificates checked against the system's CAs or ``smtp_ca_file``), and a login when
  ``smtp_username`` is set.
- **Secrets from the environment**: ``${NAME}`` anywhere in a webhook URL or header, the SMTP
  user or password is read from the environment variable ``NAME`` (checked when the config is
  read, so a missing one is a clear error, not a silent failure later).
- **Retries**: a channel that fails for a reason that may pass (no connection, a timeout, HTTP
  429 or 5xx, an SMTP 4xx) is tried ``retries`` more times, after ``retry_backoff_seconds``,
  doubled each time. A channel that still fails is recorded as an ``alert`` event with outcome
  failure and its attempts; it never stops the caller.
"""

from __future__ import annotations

import functools
import json
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, Literal, Protocol

from mlmedic.core.config import NotificationsConfig, expand_secrets
from mlmedic.store.events import EventKind, EventLog, Outcome

Topic = Literal["drift", "rollback", "recovery", "failure"]
SEVERITY = {"drift": "warning", "rollback": "warning", "recovery": "info", "failure": "critical"}


class Notify(Protocol):
    """What the monitor and the supervisor need of a notifier."""

    def send(self, topic: Topic, text: str) -> list[str]: ...


class MemoryNotifier:
    """A notifier that keeps what it was asked to send (for tests and dry runs)."""

    def __init__(self) -> None:
        self.sent: list[tuple[Topic, str]] = []

    def send(self, topic: Topic, text: str) -> list[str]:
        self.sent.append((topic, text))
        return ["memory"]


class _Retry(Exception):
    """A failure that may pass: try again."""


def payload(form: str, *, project: str, topic: Topic, text: str, at: float) -> Any:
    """The body one webhook ``format`` sends."""
    line = f"mlmedic ({project}): {text}"
    when = datetime.fromtimestamp(at, tz=UTC).isoformat(timespec="seconds")
    if form == "slack":
        return {"text": line}
    if form == "alertmanager":
        return [
            {
                "labels": {
                    "alertname": f"mlmedic_{topic}",
                    "project": project,
                    "severity": SEVERITY[topic],
                    "source": "mlmedic",
                },
                "annotations": {"summary": text, "description": line},
                "startsAt": when,
            }
        ]
    return {"source": "mlmedic", "project": project, "topic": topic, "text": text, "time": when}


class Notifier:
    """Sends one message per call to every configured channel that wants its topic."""

    def __init__(
        self,
        config: NotificationsConfig,
        events: EventLog,
        *,
        project: str,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.events = events
        self.project = project
        self.sleep = sleep

    def wants(self, topic: Topic) -> bool:
        config = self.config
        if not config.enabled:
            return False
        return {
            "drift": config.alert_on_drift,
            "rollback": config.alert_on_rollback,
            "recovery": config.alert_on_recovery,
            "failure": True,
        }[topic]

    def send(self, topic: Topic, text: str) -> list[str]:
        """Send ``text``; returns the channels it reached."""
        if not self.wants(topic):
            return []
        reached = []
        hooks: list[tuple[str, str, dict[str, str], str]] = []
        if self.config.slack_webhook:  # the seed's key: Slack's shape, reported as "webhook"
            hooks.append((self.config.slack_webhook, "slack", {}, "webhook"))
        hooks += [(h.url, h.format, h.headers, f"webhook:{h.format}") for h in self.config.webhooks]
        now = time.time()
        for url, form, headers, name in hooks:
            body = payload(form, project=self.project, topic=topic, text=text, at=now)
            if self._attempts(name, functools.partial(self._post, url, body, headers)):
                reached.append(name)
        if self.config.email_alerts and self._attempts("email", lambda: self._email(topic, text)):
            reached.append("email")
        return reached

    def _attempts(self, channel: str, send: Callable[[], None]) -> bool:
        """``send`` until it succeeds, at most ``retries`` more times for a failure that may
        pass; a channel that still fails is recorded (with its attempts), never raised."""
        wait = self.config.retry_backoff_seconds
        errors: list[str] = []
        for attempt in range(self.config.retries + 1):
            try:
                send()
                return True
            except _Retry as exc:
                errors.append(str(exc))
                if attempt < self.config.retries:
                    self.sleep(wait)
                    wait *= 2
            except Exception as exc:  # a failure that will not pass: no retry
                errors.append(f"{type(exc).__name__}: {exc}")
                break
        self.events.record(
            EventKind.ALERT,
            channel,
            Outcome.FAILURE,
            message=f"{channel} notification failed after {len(errors)} attempt(s): {errors[-1]}",
            details={"attempts": len(errors), "errors": errors},
        )
        return False

    def _post(self, url: str, body: Any, headers: dict[str, str]) -> None:
        request = urllib.request.Request(
            expand_secrets(url),
            data=json.dumps(body).encode(),
            headers={
                "content-type": "application/json",
                **{k: expand_secrets(v) for k, v in headers.items()},
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            with exc:
                if exc.code == 429 or exc.code >= 500:
                    raise _Retry(f"HTTP {exc.code}") from exc
                raise RuntimeError(f"HTTP {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise _Retry(f"{type(exc).__name__}: {exc}") from exc

    def _email(self, topic: Topic, text: str) -> None:
        config = self.config
        message = EmailMessage()
        message["Subject"] = f"[mlmedic] {self.project}: {topic}"
        message["From"] = config.email_from
        message["To"] = ", ".join(config.email_to)
        message.set_content(f"mlmedic ({self.project}): {text}\n")
        assert config.smtp_host is not None
        context = ssl.create_default_context(cafile=config.smtp_ca_file)
        try:
            if config.smtp_security == "ssl":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    config.smtp_host, config.smtp_port, timeout=10, context=context
                )
            else:
                smtp = smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=10)
            with smtp:
                if config.smtp_security == "starttls":
                    smtp.starttls(context=context)
                if config.smtp_username:
                    smtp.login(
                        expand_secrets(config.smtp_username),
                        expand_secrets(config.smtp_password or ""),
                    )
                smtp.send_message(message)
        except smtplib.SMTPAuthenticationError:
            raise  # a refused login does not pass by itself
        except smtplib.SMTPResponseException as exc:
            if 400 <= exc.smtp_code < 500:  # the server's "try again later"
                raise _Retry(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}") from exc
            raise
        except smtplib.SMTPServerDisconnected as exc:
            raise _Retry(f"{type(exc).__name__}: {exc}") from exc
        except (smtplib.SMTPException, ssl.SSLCertVerificationError):
            raise  # smtplib's errors are OSErrors too: these will not pass by themselves
        except OSError as exc:  # no connection, a timeout
            raise _Retry(f"{type(exc).__name__}: {exc}") from exc
