"""The AlertEngine's delivery: database, dashboard, webhook and Telegram sinks.

An alert is stored first (the database is the record), then handed to the
other sinks on a background thread, so neither the hot loop nor one slow or
failing notifier holds up the others. Each outside sink has a timeout and a
bounded number of retries with backoff; its failures are counted, never raised.
Deduplication and throttling are the policy's job (``trading.domain.alerts``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import requests

logger = logging.getLogger(__name__)

WARN, CRIT = "WARN", "CRIT"


@dataclass(frozen=True)
class AlertMessage:
    level: str
    type: str
    message: str
    symbol: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    run_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "type": self.type,
            "message": self.message,
            "symbol": self.symbol,
            "details": self.details,
        }


class AlertSink(Protocol):
    name: str

    def send(self, alert: AlertMessage, suppressed: int) -> None: ...


class DatabaseSink:
    """Store the alert (the dashboard's list and the admin read these rows)."""

    name = "database"

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
        body = self._build(alert, suppressed)
        last: Exception | None = None
        for attempt in range(self._retries + 1):
            try:
                response = requests.post(self._url, json=body, timeout=self._timeout_s)
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


def webhook_sink(url: str, **kw: Any) -> HttpSink:
    return HttpSink("webhook", url, build=lambda alert, suppressed: {**alert.to_dict(), "suppressed": suppressed}, **kw)


def telegram_sink(token: str, chat_id: str, *, api_base: str = "https://api.telegram.org", **kw: Any) -> HttpSink:
    def build(alert: AlertMessage, suppressed: int) -> dict[str, Any]:
        extra = f" (+{suppressed} similar)" if suppressed else ""
        where = f" {alert.symbol}" if alert.symbol else ""
        return {"chat_id": chat_id, "text": f"[{alert.level}] {alert.type}{where}: {alert.message}{extra}"}

    return HttpSink("telegram", f"{api_base.rstrip('/')}/bot{token}/sendMessage", build=build, **kw)


class Policy(Protocol):
    def should_emit(self, alert: AlertMessage, now_ms: int) -> tuple[bool, int]:
        """Return (emit, suppressed_since_last) for this alert."""
        ...


class AlertEngine:
    """Deduplicate, store and fan out alerts; never blocks on an outside notifier."""

    def __init__(
        self,
        *,
        record: AlertSink,
        outside: list[AlertSink],
        policy: Policy | None = None,
        clock_ms: Callable[[], int] | None = None,
        queue_size: int = 1000,
    ) -> None:
        self._record = record
        self._outside = outside
        self._policy = policy
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self._queue: queue.Queue[tuple[AlertMessage, int] | None] = queue.Queue(maxsize=queue_size)
        self.failures: dict[str, int] = {sink.name: 0 for sink in [record, *outside]}
        self.dropped = 0
        self.emitted = 0
        self._thread = threading.Thread(target=self._deliver, name="alert-delivery", daemon=True)
        self._thread.start()

    def emit(self, alert: AlertMessage) -> bool:
        """Store and fan out ``alert`` unless the policy throttles it; True when it went out."""
        suppressed = 0
        if self._policy is not None:
            emit, suppressed = self._policy.should_emit(alert, self._clock_ms())
            if not emit:
                return False
        self._send(self._record, alert, suppressed)
        self.emitted += 1
        try:
            self._queue.put_nowait((alert, suppressed))
        except queue.Full:
            self.dropped += 1
            logger.error("alert queue full; %s not delivered to outside sinks", alert.type)
        return True

    def _send(self, sink: AlertSink, alert: AlertMessage, suppressed: int) -> None:
        try:
            sink.send(alert, suppressed)
        except Exception as exc:
            self.failures[sink.name] += 1
            logger.warning("alert sink %s failed: %s", sink.name, exc)

    def _deliver(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            alert, suppressed = item
            for sink in self._outside:
                self._send(sink, alert, suppressed)
            self._queue.task_done()

    def drain(self, timeout_s: float = 10.0) -> bool:
        """Wait until queued alerts reached the outside sinks (for shutdown and tests)."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._queue.unfinished_tasks

    def close(self) -> None:
        self.drain()
        self._queue.put(None)
        self._thread.join(timeout=5)


def outside_sinks_from_settings() -> list[AlertSink]:
    """The configured outside sinks: the dashboard always, webhook and Telegram when set."""
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
    return sinks
