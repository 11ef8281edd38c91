"""Reads of an environment's trading record: trades, alerts, open positions and orders, as plain values.

An environment is a ``run_id`` ("" for the product, an integration run's id
otherwise); every row carries it. Read-only; rows come back as dicts whose keys
are the model's field names, quantities and prices as ``Decimal``.
"""

from __future__ import annotations

from typing import Any

from trading.models import OPEN_ORDER_STATUSES, Alert, Order, Position, PositionStatus, Trade

__all__ = ["alerts_list", "orders_open", "positions_open", "trades_count", "trades_list"]


def trades_count(*, run_id: str = "") -> int:
    """Return how many trades the environment has closed."""
    return Trade.objects.filter(run_id=run_id).count()


def trades_list(*, run_id: str = "") -> list[dict[str, Any]]:
    """Return the environment's closed trades, oldest first: symbol, side, qty, realized_pnl, closed_at."""
    rows = Trade.objects.filter(run_id=run_id).order_by("closed_at", "id")
    return list(rows.values("symbol", "side", "qty", "realized_pnl", "closed_at"))


def alerts_list(*, run_id: str = "", level: str | None = None) -> list[dict[str, Any]]:
    """Return the environment's alerts (optionally of one level), oldest first: level, type, message."""
    rows = Alert.objects.filter(run_id=run_id)
    if level:
        rows = rows.filter(level=level)
    return list(rows.order_by("created_at", "id").values("level", "type", "message"))


def positions_open(*, run_id: str = "") -> list[dict[str, Any]]:
    """Return the environment's open position rows: symbol, side, qty."""
    rows = Position.objects.filter(run_id=run_id, status=PositionStatus.OPEN).order_by("symbol", "id")
    return list(rows.values("symbol", "side", "qty"))


def orders_open(*, run_id: str = "") -> list[dict[str, Any]]:
    """Return the environment's orders not yet finished (INTENT to PARTIALLY_FILLED), oldest first.

    Each has symbol, order_link_id, exchange_order_id and status.
    """
    rows = Order.objects.filter(run_id=run_id, status__in=OPEN_ORDER_STATUSES).order_by("created_at", "id")
    return list(rows.values("symbol", "order_link_id", "exchange_order_id", "status"))
