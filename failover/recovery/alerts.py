"""Failover alerts through the AlertEngine: stored, deduplicated per environment, fanned out after commit."""

from __future__ import annotations

import threading
import time
from typing import Any

from django.db import transaction

from trading.alerts import CRIT, WARN, AlertEngine, AlertMessage, DatabaseSink, outside_sinks_from_settings
from trading.domain.alerts import AlertPolicy
from trading.domain.config import DEFAULT_CONFIG

# Failures that mean something is broken inside the product, not outside it.
CRIT_FAILURES = frozenset({"CONFIG_INVALID", "MODULE_CRASH", "DATA_CORRUPTION", "UNEXPECTED_SHUTDOWN"})


class _PerEnvironmentPolicy:
    """Adapt ``AlertPolicy.check`` to the engine's ``should_emit``; one policy per environment.

    Keyed by ``run_id`` so an integration run's alerts never throttle the product's.
    """

    def __init__(self) -> None:
        self._policies: dict[str, AlertPolicy] = {}
        self._lock = threading.Lock()

    def should_emit(self, alert: AlertMessage, now_ms: int) -> tuple[bool, int]:
        with self._lock:
            policy = self._policies.setdefault(alert.run_id, AlertPolicy(DEFAULT_CONFIG.alerts))
            suppressed = policy.check(alert, now_ms)
        return suppressed is not None, suppressed or 0


_engine: AlertEngine | None = None
_engine_lock = threading.Lock()


def alert_engine() -> AlertEngine:
    """Return this process's engine (built on first use: database record, then the configured outside sinks)."""
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = AlertEngine(record=DatabaseSink(), outside=outside_sinks_from_settings(),
                                  policy=_PerEnvironmentPolicy(), clock_ms=lambda: int(time.time() * 1000))
        return _engine


def alert_on_commit(*, level: str, type: str, message: str, run_id: str, details: dict[str, Any] | None = None,
                    symbol: str = "") -> None:
    """Emit an alert once the current transaction commits (a rolled-back change raises no alarm)."""
    alert = AlertMessage(level=level, type=type, message=message, symbol=symbol, details=details or {},
                         run_id=run_id)
    transaction.on_commit(lambda: alert_engine().emit(alert))


def failure_level(failure_type: str) -> str:
    return CRIT if failure_type in CRIT_FAILURES else WARN
