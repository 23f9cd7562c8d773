"""Notifications: what mlmedic did, sent where people look — a webhook, e-mail, or both.

``notifications.enabled`` switches them on; ``alert_on_drift``, ``alert_on_rollback`` and
``alert_on_recovery`` choose the topics (``failure``, a service still down after its recovery
attempts, is governed by ``service_recovery.alert_on_failure`` at the caller). The webhook gets a
Slack-compatible JSON POST (``{"text": ...}``); e-mail goes through ``smtplib`` to
``smtp_host:smtp_port`` from ``email_from`` to ``email_to``. A channel that fails is recorded as an
``alert`` event with outcome failure; it never stops the caller.
"""

from __future__ import annotations

import json
import smtplib
import urllib.error
import urllib.request
from email.message import EmailMessage
from typing import Literal, Protocol

from mlmedic.config import NotificationsConfig
from mlmedic.events import EventKind, EventLog, Outcome

Topic = Literal["drift", "rollback", "recovery", "failure"]


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


class Notifier:
    """Sends one message per call to every configured channel that wants its topic."""

    def __init__(self, config: NotificationsConfig, events: EventLog, *, project: str) -> None:
        self.config = config
        self.events = events
        self.project = project

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
        line = f"mlmedic ({self.project}): {text}"
        if self.config.slack_webhook and self._webhook(line):
            reached.append("webhook")
        if self.config.email_alerts and self._email(topic, line):
            reached.append("email")
        return reached

    def _webhook(self, line: str) -> bool:
        assert self.config.slack_webhook is not None
        request = urllib.request.Request(
            self.config.slack_webhook,
            data=json.dumps({"text": line}).encode(),
            headers={"content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                response.read()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            self._failed("webhook", exc)
            return False
        return True

    def _email(self, topic: Topic, line: str) -> bool:
        config = self.config
        message = EmailMessage()
        message["Subject"] = f"[mlmedic] {self.project}: {topic}"
        message["From"] = config.email_from
        message["To"] = ", ".join(config.email_to)
        message.set_content(line + "\n")
        try:
            assert config.smtp_host is not None
            with smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=10) as smtp:
                smtp.send_message(message)
        except (smtplib.SMTPException, OSError) as exc:
            self._failed("email", exc)
            return False
        return True

    def _failed(self, channel: str, exc: BaseException) -> None:
        self.events.record(
            EventKind.ALERT,
            channel,
            Outcome.FAILURE,
            message=f"{channel} notification failed: {type(exc).__name__}: {exc}",
        )
