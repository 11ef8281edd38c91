"""Where alerts go: the database (the record), the dashboard, a webhook, Telegram and email.

Each sink sends one alert and raises when it could not; the AlertEngine
(``trading.alerts``) counts the failure and goes on. Every call that leaves the
process has a timeout: HTTP ``ALERT_HTTP_TIMEOUT_S`` per attempt with bounded
retries, SMTP ``EMAIL_TIMEOUT`` for one attempt (a mail sent twice is worse than
one that comes late).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import requests

from scalper_site.db_threads import closing_on_error
from trading.domain.alerts import AlertMessage

SUBJECT_MAX = 150


class AlertSink(Protocol):
    name: str

    def send(self, alert: AlertMessage, suppressed: int) -> None: ...


def alert_text(alert: AlertMessage, suppressed: int) -> str:
    """One line for people: ``[CRIT] DAILY_LOSS_STOP BTCUSDT: message (+2 similar)``."""
    extra = f" (+{suppressed} similar)" if suppressed else ""
    where = f" {alert.symbol}" if alert.symbol else ""
    return f"[{alert.level}] {alert.type}{where}: {alert.message}{extra}"


class DatabaseSink:
    """Store the alert (the dashboard's list and the admin read these rows)."""

    name = "database"

    @closing_on_error  # from a trader's pipeline thread: a connection the database dropped is closed, not kept
    def send(self, alert: AlertMessage, suppressed: int) -> None:
        from trading.models import Alert

        Alert.objects.create(
            run_id=alert.run_id,
            level=alert.level,
            type=alert.type,
            symbol=alert.symbol,
            message=alert.message,
            details=alert.details,
            suppressed_count=suppressed,
            created_at=datetime.now(tz=UTC),
        )


class DashboardSink:
    """Push the alert to the dashboard websocket group."""

    name = "dashboard"

    def send(self, alert: AlertMessage, suppressed: int) -> None:
        from scalper_site.realtime import push_failover_message

        # runId lets the dashboard keep integration runs' alerts out of the product's live list.
        payload = {**alert.to_dict(), "suppressed": suppressed, "runId": alert.run_id}
        push_failover_message(kind="alert", payload=payload)


class HttpSink:
    """POST JSON to a URL with a timeout and bounded retries."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        build: Callable[[AlertMessage, int], dict[str, Any]],
        timeout_s: float = 3.0,
        retries: int = 2,
        backoff_s: float = 0.5,
    ) -> None:
        self.name = name
        self._url = url
        self._build = build
        self._timeout_s = timeout_s
        self._retries = retries
        self._backoff_s = backoff_s

    def send(self, alert: AlertMessage, suppressed: int) -> None:
        # default=str: a Decimal or a datetime in the details is posted as text rather than failing the send.
        body = json.dumps(self._build(alert, suppressed), default=str)
        headers = {"Content-Type": "application/json"}
        last: Exception | None = None
        for attempt in range(self._retries + 1):
            try:
                response = requests.post(self._url, data=body, headers=headers, timeout=self._timeout_s)
                if response.status_code < 500 and response.status_code != 429:
                    response.raise_for_status()  # a 4xx is our mistake: retrying will not help
                    return
                last = RuntimeError(f"HTTP {response.status_code}")
            except requests.HTTPError:
                raise
            except requests.RequestException as exc:
                last = exc
            if attempt < self._retries:
                time.sleep(self._backoff_s * (2**attempt))
        raise RuntimeError(f"{self.name}: gave up after {self._retries + 1} attempts: {last}")


def webhook_body(alert: AlertMessage, suppressed: int) -> dict[str, Any]:
    """``text`` for chat webhooks (Slack, Mattermost), the structured alert under ``alert`` for programs.

    The structured fields are nested on purpose: Mattermost refuses a top-level
    ``type`` that does not start with ``custom_``, and both ignore keys they do not know.
    """
    return {
        "text": alert_text(alert, suppressed),
        "alert": {**alert.to_dict(), "suppressed": suppressed, "runId": alert.run_id},
    }


def webhook_sink(url: str, **kw: Any) -> HttpSink:
    return HttpSink("webhook", url, build=webhook_body, **kw)


def telegram_sink(token: str, chat_id: str, *, api_base: str = "https://api.telegram.org", **kw: Any) -> HttpSink:
    def build(alert: AlertMessage, suppressed: int) -> dict[str, Any]:
        return {"chat_id": chat_id, "text": alert_text(alert, suppressed)}

    return HttpSink("telegram", f"{api_base.rstrip('/')}/bot{token}/sendMessage", build=build, **kw)


def email_subject(alert: AlertMessage) -> str:
    """One header line (a newline in a subject is refused by the mail library), at most 150 characters."""
    where = f" {alert.symbol}" if alert.symbol else ""
    run = f" run {alert.run_id}" if alert.run_id else ""
    subject = " ".join(f"[scalper{run}] {alert.level} {alert.type}{where}: {alert.message}".split())
    return subject if len(subject) <= SUBJECT_MAX else subject[: SUBJECT_MAX - 3] + "..."


def email_body(alert: AlertMessage, suppressed: int) -> str:
    """The message, then what a reader needs to act on it, then the details as JSON."""
    lines = [alert.message, "", f"Level: {alert.level}", f"Type: {alert.type}"]
    if alert.symbol:
        lines.append(f"Symbol: {alert.symbol}")
    lines.append(f"Environment: {f'integration run {alert.run_id}' if alert.run_id else 'product'}")
    if suppressed:
        lines.append(f"Similar alerts suppressed since the last one sent: {suppressed}")
    lines += ["", "Details:", json.dumps(alert.details, indent=2, sort_keys=True, default=str)]
    return "\n".join(lines) + "\n"


class EmailSink:
    """Mail the alert through Django's mail settings (``EMAIL_HOST`` and the rest); one attempt, with a timeout."""

    name = "email"

    def __init__(
        self,
        recipients: Sequence[str],
        *,
        from_email: str | None = None,
        timeout_s: float = 10.0,
        backend: str | None = None,
        **connection: Any,
    ) -> None:
        self._recipients = list(recipients)
        self._from_email = from_email
        self._timeout_s = timeout_s
        self._backend = backend  # None: settings.EMAIL_BACKEND
        self._connection = connection  # host, port, username, ... over the settings (tests)

    def send(self, alert: AlertMessage, suppressed: int) -> None:
        from django.core.mail import EmailMessage, get_connection

        connection = get_connection(self._backend, fail_silently=False, timeout=self._timeout_s, **self._connection)
        EmailMessage(
            subject=email_subject(alert),
            body=email_body(alert, suppressed),
            from_email=self._from_email,
            to=self._recipients,
            connection=connection,
        ).send()


def outside_sinks_from_settings() -> list[AlertSink]:
    """The configured outside sinks: the dashboard always; webhook, Telegram and email when set."""
    from django.conf import settings

    sinks: list[AlertSink] = [DashboardSink()]
    if settings.ALERT_WEBHOOK_URL:
        sinks.append(webhook_sink(settings.ALERT_WEBHOOK_URL, timeout_s=settings.ALERT_HTTP_TIMEOUT_S))
    if settings.TELEGRAM_BOT_TOKEN and settings.TELEGRAM_CHAT_ID:
        sinks.append(
            telegram_sink(
                settings.TELEGRAM_BOT_TOKEN,
                settings.TELEGRAM_CHAT_ID,
                api_base=settings.TELEGRAM_API_BASE,
                timeout_s=settings.ALERT_HTTP_TIMEOUT_S,
            )
        )
    if settings.SCALPER_ALERT_EMAIL_TO:
        sinks.append(
            EmailSink(
                settings.SCALPER_ALERT_EMAIL_TO,
                from_email=settings.DEFAULT_FROM_EMAIL,
                timeout_s=settings.EMAIL_TIMEOUT,
            )
        )
    return sinks
