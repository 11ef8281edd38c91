"""Reads the dashboard needs: the product's alerts, open positions and orders, and its health.

Rows of integration runs carry their run id; the product's own have ``run_id=""``
and are the only ones shown here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import QuerySet

from failover.domain.enums import utc_now
from failover.recovery.records import environment_config
from failover.services import failover_health
from scalper_site.api.health import health_snapshot_build
from trading.control import read_heartbeat
from trading.models import OPEN_ORDER_STATUSES, Alert, Order, Position, PositionStatus

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
    config = environment_config(Path(settings.DATA_DIR))
    return health_snapshot_build(read_heartbeat(run_id=PRODUCT), config=config,
                                 failover=failover_health(run_id=PRODUCT), now=utc_now()).to_dict()
