"""Alerts that arrive (#22 item 7): webhooks in three shapes with bounded retries and back-off,
e-mail over STARTTLS or TLS with a login, secrets from the environment — against a local HTTP
receiver that fails first and a local TLS SMTP server (aiosmtpd)."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from mlmedic.core.config import NotificationsConfig
from mlmedic.heal.notify import Notifier
from mlmedic.serving.launch import free_port
from mlmedic.store.events import EventStore


class _Receiver:
    """A webhook receiver that answers ``failures`` with their statuses first, then 200."""

    def __init__(self, failures: list[int]) -> None:
        self.failures = list(failures)
        self.bodies: list[Any] = []
        self.headers: list[dict[str, str]] = []
        outer = self

        class Hook(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                outer.bodies.append(body)
                outer.headers.append(dict(self.headers))
                self.send_response(outer.failures.pop(0) if outer.failures else 200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = HTTPServer(("127.0.0.1", 0), Hook)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():  # type: ignore[no-untyped-def]
    made: list[_Receiver] = []

    def make(failures: list[int]) -> _Receiver:
        made.append(_Receiver(failures))
        return made[-1]

    yield make
    for one in made:
        one.close()


def _notifier(tmp_path: Path, **config: Any) -> tuple[Notifier, list[float], EventStore]:
    waits: list[float] = []
    events = EventStore(tmp_path / "events.db")
    settings = NotificationsConfig(enabled=True, **config)
    return Notifier(settings, events, project="shop", sleep=waits.append), waits, events


def test_a_webhook_that_fails_twice_is_retried_with_back_off(receiver, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    hook = receiver([503, 500])
    notifier, waits, events = _notifier(
        tmp_path, webhooks=[{"url": hook.url}], retries=3, retry_backoff_seconds=0.5
    )
    assert notifier.send("rollback", "rolled back v3 -> v2") == ["webhook:json"]
    assert len(hook.bodies) == 3 and waits == [0.5, 1.0]  # doubled each time
    body = hook.bodies[-1]
    assert body["topic"] == "rollback" and body["text"] == "rolled back v3 -> v2"
    assert body["project"] == "shop" and body["source"] == "mlmedic"
    assert events.query(kind="alert") == []


def test_the_retries_are_bounded_and_the_failure_recorded(receiver, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    hook = receiver([500] * 10)
    notifier, waits, events = _notifier(tmp_path, webhooks=[{"url": hook.url}], retries=2)
    assert notifier.send("drift", "drift") == []
    assert len(hook.bodies) == 3 and len(waits) == 2
    [failed] = events.query(kind="alert")
    assert failed.outcome == "failure" and failed.details["attempts"] == 3
    assert "HTTP 500" in failed.message


def test_a_client_error_is_not_retried(receiver, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    hook = receiver([404])
    notifier, waits, events = _notifier(tmp_path, webhooks=[{"url": hook.url}], retries=3)
    assert notifier.send("drift", "drift") == []
    assert len(hook.bodies) == 1 and waits == []
    assert events.query(kind="alert")[0].details["attempts"] == 1


def test_slack_and_alertmanager_shapes_and_a_secret_header(  # type: ignore[no-untyped-def]
    receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slack, manager = receiver([]), receiver([])
    monkeypatch.setenv("HOOK_TOKEN", "s3cret")
    notifier, _, _ = _notifier(
        tmp_path,
        slack_webhook=slack.url,
        webhooks=[
            {
                "url": manager.url,
                "format": "alertmanager",
                "headers": {"Authorization": "Bearer ${HOOK_TOKEN}"},
            }
        ],
    )
    assert notifier.send("failure", "service down") == ["webhook", "webhook:alertmanager"]
    assert slack.bodies == [{"text": "mlmedic (shop): service down"}]
    [alerts] = manager.bodies
    assert alerts[0]["labels"] == {
        "alertname": "mlmedic_failure",
        "project": "shop",
        "severity": "critical",
        "source": "mlmedic",
    }
    assert alerts[0]["annotations"]["summary"] == "service down"
    assert manager.headers[0]["Authorization"] == "Bearer s3cret"


def test_a_secret_that_is_not_in_the_environment_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    with pytest.raises(ValueError, match="NOT_SET_ANYWHERE"):
        NotificationsConfig(enabled=True, slack_webhook="http://x/${NOT_SET_ANYWHERE}")
    NotificationsConfig(enabled=False, slack_webhook="http://x/${NOT_SET_ANYWHERE}")  # unused


# ------------------------------------------------------------------------------------- e-mail
def _certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (the test's own CA)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert, private = folder / "cert.pem", folder / "key.pem"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert, private


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_email_over_tls_with_a_login_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, security: str
) -> None:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    cert, key = _certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    received: list[str] = []
    logins: list[tuple[str, str]] = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
            received.append(envelope.content.decode())
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth_data):  # type: ignore[no-untyped-def]
        login = (auth_data.login.decode(), auth_data.password.decode())
        logins.append(login)
        return AuthResult(success=login == ("alerts", "hunter2"), handled=False)

    # AUTH only over TLS (aiosmtpd knows STARTTLS's; an implicit-TLS session is TLS throughout)
    options: dict[str, Any] = {
        "authenticator": authenticator,
        "auth_require_tls": security == "starttls",
    }
    port = free_port()
    if security == "starttls":
        options.update(tls_context=context, require_starttls=True)
        controller = Controller(Handler(), hostname="127.0.0.1", port=port, **options)
    else:
        controller = Controller(
            Handler(), hostname="127.0.0.1", port=port, ssl_context=context, **options
        )
    controller.start()
    try:
        monkeypatch.setenv("SMTP_PASSWORD", "hunter2")
        notifier, _, events = _notifier(
            tmp_path,
            email_alerts=True,
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_security=security,
            smtp_username="alerts",
            smtp_password="${SMTP_PASSWORD}",
            smtp_ca_file=str(cert),
            email_to=["oncall@example.org"],
        )
        sent = notifier.send("rollback", "rolled back v3 -> v2")
        assert sent == ["email"], [e.message for e in events.query(kind="alert")]
        monkeypatch.setenv("SMTP_PASSWORD", "wrong")
        assert notifier.send("rollback", "again") == []  # refused login: recorded, not retried
    finally:
        controller.stop()
    # one send each (smtplib may try each mechanism the server offers with the same login)
    assert logins[0] == ("alerts", "hunter2") and set(logins[1:]) == {("alerts", "wrong")}
    assert len(received) == 1 and "rolled back v3 -> v2" in received[0]
    [failed] = events.query(kind="alert")
    assert failed.action == "email" and failed.details["attempts"] == 1, failed.details
