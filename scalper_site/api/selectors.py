"""Reads the dashboard needs: the product's alerts, open positions and orders, its health and its symbols.

Rows of integration runs carry their run id; the product's own have ``run_id=""``
and are the only ones shown here unless a view is asked for a run's explicitly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import QuerySet

from failover.domain.enums import utc_now
from failover.recovery.records import environment_config
from failover.services import failover_health
from scalper_site.api.health import health_snapshot_build, trader_dcp, trader_lease
from scalper_site.api.symbols import symbols_status_build
from trading.control import HEARTBEAT_TTL_S, read_heartbeat
from trading.models import OPEN_ORDER_STATUSES, Alert, Order, Position, PositionStatus
from trading.selectors import symbols_book

PRODUCT = ""  # the product's run id
OPEN_ORDERS_SHOWN = 500  # a dashboard table, not an export: bounded


def alerts_list(*, level: str | None = None) -> QuerySet[Alert]:
    """The product's alerts, latest first, optionally of one level."""
    alerts = Alert.objects.filter(run_id=PRODUCT).order_by("-created_at", "-id")
    return alerts.filter(level=level) if level else alerts


def positions_open() -> list[Position]:
    """The product's open positions (one per symbol at most), by symbol."""
    return list(Position.objects.filter(run_id=PRODUCT, status=PositionStatus.OPEN).order_by("symbol"))


def orders_open() -> list[Order]:
    """The product's orders not yet finished, latest first."""
    return list(Order.objects.filter(run_id=PRODUCT, status__in=OPEN_ORDER_STATUSES)[:OPEN_ORDERS_SHOWN])


def health_snapshot() -> dict[str, Any]:
    """The product's HealthSnapshot (spec 10): trader services from its heartbeat plus failover and recovery."""
    config = environment_config(Path(settings.DATA_DIR))  # read at each request: health.stale_after_s as written
    beat = read_heartbeat(run_id=PRODUCT, max_age_ms=HEARTBEAT_TTL_S * 1000)  # any age: the config judges it
    snapshot = health_snapshot_build(beat, config=config, failover=failover_health(run_id=PRODUCT), now=utc_now())
    return {**snapshot.to_dict(), **trader_lease(beat), **trader_dcp(beat)}  # + role, account lease and DCP


def symbols_status(*, run_id: str = PRODUCT) -> dict[str, Any]:
    """Per-symbol status of an environment: its trader's heartbeat (any age Redis still holds) plus its database."""
    beat = read_heartbeat(run_id=run_id, max_age_ms=HEARTBEAT_TTL_S * 1000)
    return symbols_status_build(beat, symbols_book(run_id=run_id), now=utc_now())
