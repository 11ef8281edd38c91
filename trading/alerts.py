"""The AlertEngine: store each alert, then send it on to the outside sinks without ever waiting for them.

An alert passes the policy of its environment first (``trading.domain.alerts``:
dedupe, a rate per type, from the config's ``alerts`` section), is stored (the
database is the record), then is offered to each outside sink its level and the
muted types allow. Every outside sink has its own bounded queue and thread, so
neither the caller (the trader's loop, a recovery step) nor one slow or failing
notifier holds up the others; a full queue drops the alert for that sink, counts
it and logs it, never blocks. The sinks themselves live in ``trading.alert_sinks``.

Each process has one engine (``alert_engine``), with one policy per
environment (run id), so an integration run's alerts never throttle the
product's. The trader puts its environment's ``alerts`` config in force at start
and at every hot reload (``alerts_configure``); other processes (Celery workers)
follow the product's ``config.json`` for the product's environment and the
built-in defaults for integration runs.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from failover.domain.clock import SystemClock
from trading.alert_sinks import (
    AlertSink,
    DashboardSink,
    DatabaseSink,
    EmailSink,
    HttpSink,
    outside_sinks_from_settings,
    telegram_sink,
    webhook_sink,
)
from trading.domain.alerts import AlertMessage, AlertPolicy
from trading.domain.config import DEFAULT_CONFIG, AlertsConfig, ConfigEngine

__all__ = [
    "CRIT", "INFO", "WARN", "AlertEngine", "AlertMessage", "AlertSink", "DashboardSink", "DatabaseSink",
    "EmailSink", "EnvironmentPolicies", "HttpSink", "ProductConfigFile", "alert_engine", "alert_engine_close",
    "alert_raise", "alerts_configure", "outside_sinks_from_settings", "telegram_sink", "webhook_sink",
]

logger = logging.getLogger(__name__)

INFO, WARN, CRIT = "INFO", "WARN", "CRIT"
PRODUCT_CONFIG_POLL_S = 2.0  # how often a process without a trader looks at the product's config.json


class Policy(Protocol):
    def should_emit(self, alert: AlertMessage, now_ms: int) -> tuple[bool, int]:
        """Return (emit, suppressed_since_last) for this alert."""
        ...

    def delivers(self, alert: AlertMessage, sink: str) -> bool:
        """Tell whether an emitted alert goes to the outside sink ``sink``."""
        ...

    def configure(self, *, run_id: str, config: AlertsConfig) -> None:
        """Put ``config`` in force for the environment ``run_id``."""
        ...


class EnvironmentPolicies:
    """One ``AlertPolicy`` per environment (run id), each under its environment's ``alerts`` config.

    An environment nobody configured takes ``product_config()`` when it is the
    product's (run id ``""``) and such a source is given, else the defaults.
    """

    def __init__(self, *, product_config: Callable[[], AlertsConfig] | None = None) -> None:
        self._policies: dict[str, AlertPolicy] = {}
        self._configured: set[str] = set()
        self._product_config = product_config
        self._lock = threading.Lock()

    def configure(self, *, run_id: str, config: AlertsConfig) -> None:
        with self._lock:
            self._configured.add(run_id)
            self._policy(run_id).apply_config(config)

    def should_emit(self, alert: AlertMessage, now_ms: int) -> tuple[bool, int]:
        with self._lock:
            policy = self._policy(alert.run_id)
            if alert.run_id == "" and "" not in self._configured and self._product_config is not None:
                policy.apply_config(self._product_config())
            suppressed = policy.check(alert, now_ms)
        return suppressed is not None, suppressed or 0

    def delivers(self, alert: AlertMessage, sink: str) -> bool:
        with self._lock:
            return self._policy(alert.run_id).delivers(alert, sink)

    def _policy(self, run_id: str) -> AlertPolicy:
        policy = self._policies.get(run_id)
        if policy is None:
            policy = self._policies[run_id] = AlertPolicy(DEFAULT_CONFIG.alerts)
        return policy


class _Outbox:
    """One outside sink's bounded queue and the daemon thread that empties it."""

    def __init__(self, sink: AlertSink, size: int, on_failure: Callable[[str], None]) -> None:
        self.sink = sink
        self.queue: queue.Queue[tuple[AlertMessage, int] | None] = queue.Queue(maxsize=size)
        self.dropped = 0
        self._on_failure = on_failure
        self.thread = threading.Thread(target=self._run, name=f"alert-{sink.name}", daemon=True)
        self.thread.start()

    def offer(self, alert: AlertMessage, suppressed: int) -> None:
        """Queue ``alert`` for this sink, or drop it (counted, logged) when the queue is full; never waits."""
        try:
            self.queue.put_nowait((alert, suppressed))
        except queue.Full:
            self.dropped += 1
            logger.error("alert queue of %s full (%d dropped); %s not sent there", self.sink.name, self.dropped,
                         alert.type)

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            try:
                if item is None:
                    return
                alert, suppressed = item
                try:
                    self.sink.send(alert, suppressed)
                except Exception as exc:
                    self._on_failure(self.sink.name)
                    logger.warning("alert sink %s failed for %s: %s", self.sink.name, alert.type, exc)
            finally:
                self.queue.task_done()


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
        self._policy: Policy = policy or EnvironmentPolicies()
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self._lock = threading.Lock()
        self.failures: dict[str, int] = {sink.name: 0 for sink in [record, *outside]}
        self.emitted = 0
        self._outboxes = [_Outbox(sink, queue_size, self._count_failure) for sink in outside]

    @property
    def dropped(self) -> int:
        """Alerts dropped for a full queue, over every outside sink."""
        return sum(outbox.dropped for outbox in self._outboxes)

    def configure(self, *, run_id: str, config: AlertsConfig) -> None:
        """Put an environment's ``alerts`` config in force (start and hot reload)."""
        self._policy.configure(run_id=run_id, config=config)

    def emit(self, alert: AlertMessage) -> bool:
        """Store and fan out ``alert`` unless the policy suppresses it; True when it was stored."""
        emit, suppressed = self._policy.should_emit(alert, self._clock_ms())
        if not emit:
            return False
        try:
            self._record.send(alert, suppressed)
        except Exception as exc:
            self._count_failure(self._record.name)
            logger.warning("alert %s not stored: %s", alert.type, exc)
        self.emitted += 1
        for outbox in self._outboxes:
            if self._policy.delivers(alert, outbox.sink.name):
                outbox.offer(alert, suppressed)
        return True

    def drain(self, timeout_s: float = 10.0) -> bool:
        """Wait until queued alerts reached the outside sinks (for shutdown and tests); False on timeout."""
        deadline = time.monotonic() + timeout_s
        while any(outbox.queue.unfinished_tasks for outbox in self._outboxes):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        """Drain within ``timeout_s``, then stop the threads (an alert still queued after that is lost)."""
        self.drain(timeout_s)
        for outbox in self._outboxes:
            try:
                outbox.queue.put_nowait(None)
            except queue.Full:
                logger.warning("alert sink %s still busy at close; its queue is abandoned", outbox.sink.name)
        for outbox in self._outboxes:
            outbox.thread.join(timeout=1.0)

    def _count_failure(self, name: str) -> None:
        with self._lock:
            self.failures[name] = self.failures.get(name, 0) + 1


# -- the process's engine -----------------------------------------------------------------------


class ProductConfigFile:
    """The ``alerts`` section of the product's ``config.json``, re-read when the file changes (at most every 2 s).

    An invalid file keeps the last valid section in force, as the trader does.
    """

    def __init__(self, path: Path) -> None:
        self._engine = ConfigEngine(path, SystemClock())
        self._next_poll = 0.0

    def __call__(self) -> AlertsConfig:
        now = time.monotonic()
        if now >= self._next_poll:
            self._next_poll = now + PRODUCT_CONFIG_POLL_S
            self._engine.poll()
        return self._engine.config.alerts


_engine: AlertEngine | None = None
_engine_pid = 0
_engine_lock = threading.Lock()


def alert_engine() -> AlertEngine:
    """Return this process's engine (built on first use, again after a fork): the database, then the sinks set."""
    global _engine, _engine_pid
    with _engine_lock:
        if _engine is None or _engine_pid != os.getpid():
            from django.conf import settings

            product = ProductConfigFile(Path(settings.DATA_DIR) / "config" / "config.json")
            _engine = AlertEngine(
                record=DatabaseSink(),
                outside=outside_sinks_from_settings(),
                policy=EnvironmentPolicies(product_config=product),
                queue_size=settings.SCALPER_ALERT_QUEUE_SIZE,
            )
            _engine_pid = os.getpid()
        return _engine


def alert_engine_close(timeout_s: float = 5.0) -> None:
    """Send what is queued (within ``timeout_s``) and forget this process's engine; the next alert builds a new one."""
    global _engine
    with _engine_lock:
        engine, _engine = _engine, None
    if engine is not None:
        engine.close(timeout_s)


def _drain_at_exit() -> None:
    # Outside sinks run on daemon threads: give what is queued two seconds to go out before the process ends.
    engine = _engine
    if engine is not None and _engine_pid == os.getpid():
        engine.drain(2.0)


atexit.register(_drain_at_exit)


def alert_raise(alert: AlertMessage) -> None:
    """Store ``alert`` and send it on through this process's engine; never raises into the caller."""
    try:
        alert_engine().emit(alert)
    except Exception:
        logger.exception("alert %s not raised", alert.type)


def alerts_configure(*, run_id: str, config: AlertsConfig) -> None:
    """Put an environment's ``alerts`` config in force in this process (the trader, at start and hot reload)."""
    alert_engine().configure(run_id=run_id, config=config)
