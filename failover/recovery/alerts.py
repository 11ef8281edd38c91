"""Failover alerts through the AlertEngine: stored, deduplicated per environment, fanned out after commit."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from trading.alerts import CRIT, WARN, AlertMessage, alert_raise

# Failures that mean something is broken inside the product, not outside it.
CRIT_FAILURES = frozenset({"CONFIG_INVALID", "MODULE_CRASH", "DATA_CORRUPTION", "UNEXPECTED_SHUTDOWN"})


def alert_on_commit(*, level: str, type: str, message: str, run_id: str, details: dict[str, Any] | None = None,
                    symbol: str = "") -> None:
    """Emit an alert once the current transaction commits (a rolled-back change raises no alarm)."""
    alert = AlertMessage(level=level, type=type, message=message, symbol=symbol, details=details or {},
                         run_id=run_id)
    transaction.on_commit(lambda: alert_raise(alert))


def failure_level(failure_type: str) -> str:
    return CRIT if failure_type in CRIT_FAILURES else WARN
