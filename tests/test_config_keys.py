"""Every configuration key does something, or is refused: a key accepted and ignored is a lie."""

from __future__ import annotations

import json
import re
import socketserver
import threading
from pathlib import Path

import pytest
from pydantic import BaseModel

from mlmedic.core.config import (
    INFORMATIONAL,
    MONITORING_FILE,
    SELF_HEALING_FILE,
    UNSUPPORTED,
    MonitoringConfig,
    NotificationsConfig,
    SelfHealingConfig,
    load_settings,
)
from mlmedic.core.errors import ConfigError
from mlmedic.store.events import EventStore

SOURCE = Path(__file__).resolve().parents[1] / "src" / "mlmedic"


def _leaves(model: type[BaseModel], prefix: str = "") -> list[str]:
    found = []
    for name, info in model.model_fields.items():
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            found += _leaves(kind, f"{prefix}{name}.")
        else:
            found.append(prefix + name)
    return found


def test_every_settings_field_has_a_reader_or_is_refused() -> None:
    """A key is read where it acts: some module other than config.py names its section (or the
    section's class) and reads ``.key``; or it is listed as refused unless default, or as a
    description."""
    modules = [p.read_text(encoding="utf-8") for p in SOURCE.rglob("*.py") if p.name != "config.py"]
    config = (SOURCE / "core" / "config.py").read_text(encoding="utf-8")
    unread = []
    for path in _leaves(SelfHealingConfig) + [
        f"monitoring_file.{p}" for p in _leaves(MonitoringConfig)
    ]:
        if path in UNSUPPORTED or path in INFORMATIONAL:
            continue
        section, key = path.rsplit(".", 1)
        if section == "monitoring_file":  # read directly, or through a Settings property
            section = "monitoring"
            if re.search(rf"self\.monitoring\.{key}\b", config):
                continue
        field = SelfHealingConfig.model_fields.get(section)
        names = [section] + ([field.annotation.__name__] if field and field.annotation else [])
        if not any(
            any(name in text for name in names) and re.search(rf"\.{key}\b", text)
            for text in modules
        ):
            unread.append(path)
    assert unread == []


def test_unsupported_values_are_refused_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / SELF_HEALING_FILE).write_text(json.dumps({"ci_cd": {"fail_fast": True}}))
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path)
    assert "ci_cd.fail_fast" in str(info.value) and "not supported" in str(info.value)
    (tmp_path / SELF_HEALING_FILE).write_text(
        json.dumps({"monitoring": {"real_time_monitoring_enabled": True}})
    )
    with pytest.raises(ConfigError, match="streaming"):
        load_settings(tmp_path)
    (tmp_path / MONITORING_FILE).write_text("{}")


def test_email_alerts_need_a_server_and_are_sent(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="smtp_host"):
        NotificationsConfig(enabled=True, email_alerts=True)
    received: list[bytes] = []

    class Smtp(socketserver.StreamRequestHandler):
        """Just enough SMTP to take one message."""

        def handle(self) -> None:
            self.wfile.write(b"220 test\r\n")
            data = False
            while line := self.rfile.readline():
                if data:
                    if line == b".\r\n":
                        data = False
                        self.wfile.write(b"250 queued\r\n")
                    else:
                        received.append(line)
                    continue
                verb = line[:4].upper()
                if verb == b"DATA":
                    data = True
                    self.wfile.write(b"354 go\r\n")
                elif verb == b"QUIT":
                    self.wfile.write(b"221 bye\r\n")
                    return
                else:
                    self.wfile.write(b"250 ok\r\n")

    server = socketserver.TCPServer(("127.0.0.1", 0), Smtp)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        from mlmedic.heal.notify import Notifier

        config = NotificationsConfig(
            enabled=True,
            email_alerts=True,
            smtp_host="127.0.0.1",
            smtp_port=server.server_address[1],
            email_to=["oncall@example.org"],
            alert_on_recovery=False,
        )
        notifier = Notifier(config, EventStore(tmp_path / "e.db"), project="shop")
        assert notifier.send("rollback", "rolled back v3 -> v2") == ["email"]
        assert notifier.send("recovery", "recovered") == []  # alert_on_recovery is false
    finally:
        server.shutdown()
        server.server_close()
    text = b"".join(received).decode()
    assert "rolled back v3 -> v2" in text and "oncall@example.org" in text
    assert "Subject: [mlmedic] shop: rollback" in text


def test_retention_prunes_old_events(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db")
    store.record("alert", "old", started_at=1_000.0, ended_at=1_000.0)
    store.record("alert", "new")
    assert store.prune(before=2_000.0) == 1
    assert [e.action for e in store.query()] == ["new"]
