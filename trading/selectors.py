"""Reads of an environment's trading record: trades, PnL, equity, alerts, open positions and orders, as plain values.

An environment is a ``run_id`` ("" for the product, an integration run's id
otherwise); every row carries it, and every read here is of one environment
(the product's unless a run id is passed). Read-only; rows come back as dicts
whose keys are the model's field names, quantities and prices as ``Decimal``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Count, Q, QuerySet, Sum

from trading.models import OPEN_ORDER_STATUSES, Alert, EquitySample, Order, Position, PositionStatus, Trade

__all__ = [
    "alerts_list",
    "equity_series",
    "orders_open",
    "pnl_summary",
    "pnl_window",
    "positions_open",
    "symbols_book",
    "trades_count",
    "trades_history",
    "trades_list",
]

TRADE_FIELDS = ("id", "symbol", "side", "qty", "entry_price", "exit_price", "realized_pnl", "fees", "close_reason",
                "opened_at", "closed_at")
TRADE_BRIEF = ("id", "symbol", "side", "realized_pnl", "closed_at")
EQUITY_FIELDS = ("at", "equity", "wallet_balance", "unrealized_pnl", "available", "trigger")
POSITION_FIELDS = ("symbol", "side", "qty", "entry_price", "leverage", "pnl_unrealized", "exchange_position_id",
                   "origin", "opened_at")
# Downsampling reads samples newest first until it has its buckets: bounded, whatever the window
# (90 days of one-minute samples are about 130,000).
EQUITY_SCAN_LIMIT = 200_000


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


def trades_history(
    *, run_id: str = "", symbol: str | None = None, since: datetime | None = None, until: datetime | None = None
) -> QuerySet[Trade, dict[str, Any]]:
    """Return the environment's closed trades, newest first, as a lazy query of dicts (the caller pages it).

    ``symbol`` keeps one symbol; ``since`` / ``until`` keep trades closed at or after / at or before them.
    """
    rows = Trade.objects.filter(run_id=run_id)
    if symbol:
        rows = rows.filter(symbol=symbol)
    if since is not None:
        rows = rows.filter(closed_at__gte=since)
    if until is not None:
        rows = rows.filter(closed_at__lte=until)
    return rows.order_by("-closed_at", "-id").values(*TRADE_FIELDS)


def pnl_window(*, run_id: str = "", since: datetime | None = None, symbol: str | None = None) -> dict[str, Any]:
    """Sum the trades closed since ``since`` (all of them when None).

    Returns ``since``, ``realized_pnl`` (net of fees, as each trade records it), ``fees``, ``trades``,
    ``wins`` (PnL above zero), ``losses`` (below zero), ``win_rate`` (wins / trades, None without trades)
    and the ``best`` and ``worst`` trade (``TRADE_BRIEF`` dicts, None without trades).
    """
    rows = Trade.objects.filter(run_id=run_id)
    if symbol:
        rows = rows.filter(symbol=symbol)
    if since is not None:
        rows = rows.filter(closed_at__gte=since)
    # The aliases differ from the field names: an alias named like a field would shadow it in the filters.
    totals = rows.aggregate(
        pnl_sum=Sum("realized_pnl"),
        fees_sum=Sum("fees"),
        count=Count("id"),
        wins=Count("id", filter=Q(realized_pnl__gt=0)),
        losses=Count("id", filter=Q(realized_pnl__lt=0)),
    )
    trades = totals["count"]
    return {
        "since": since,
        "realized_pnl": totals["pnl_sum"] or 0,
        "fees": totals["fees_sum"] or 0,
        "trades": trades,
        "wins": totals["wins"],
        "losses": totals["losses"],
        "win_rate": totals["wins"] / trades if trades else None,
        # Ties go to the latest trade.
        "best": rows.order_by("-realized_pnl", "-closed_at", "-id").values(*TRADE_BRIEF).first(),
        "worst": rows.order_by("realized_pnl", "-closed_at", "-id").values(*TRADE_BRIEF).first(),
    }


def pnl_summary(*, now: datetime, run_id: str = "", symbol: str | None = None) -> dict[str, Any]:
    """Realized PnL of today (since 00:00 UTC), of the last 7 days (since ``now`` minus 7 x 24 h) and of all time."""
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return {
        "today": pnl_window(since=midnight, run_id=run_id, symbol=symbol),
        "last_7_days": pnl_window(since=now - timedelta(days=7), run_id=run_id, symbol=symbol),
        "all_time": pnl_window(since=None, run_id=run_id, symbol=symbol),
    }


def equity_series(
    *,
    limit: int,
    run_id: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
    step_s: int | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """Return the environment's equity samples in the window, oldest first, and whether older ones were left out.

    The window's latest ``limit`` samples; with ``step_s``, one per ``step_s``-second bucket of UTC time
    (the last sample of each), the latest ``limit`` buckets.
    """
    rows = EquitySample.objects.filter(run_id=run_id)
    if since is not None:
        rows = rows.filter(at__gte=since)
    if until is not None:
        rows = rows.filter(at__lte=until)
    newest_first = rows.order_by("-at", "-id").values(*EQUITY_FIELDS)
    picked = list(newest_first[: limit + 1]) if step_s is None else _last_per_bucket(newest_first, step_s, limit + 1)
    return picked[:limit][::-1], len(picked) > limit


def _last_per_bucket(newest_first: QuerySet[EquitySample, dict[str, Any]], step_s: int, wanted: int) -> list[dict]:
    picked: list[dict[str, Any]] = []
    bucket = None
    for row in newest_first[:EQUITY_SCAN_LIMIT].iterator(chunk_size=2000):
        row_bucket = int(row["at"].timestamp()) // step_s
        if row_bucket == bucket:
            continue
        bucket = row_bucket
        picked.append(row)
        if len(picked) >= wanted:
            break
    return picked


def symbols_book(*, run_id: str = "") -> dict[str, dict[str, Any]]:
    """Per symbol with an open position or open orders: ``position`` (``POSITION_FIELDS`` or None), ``open_orders``."""
    positions = Position.objects.filter(run_id=run_id, status=PositionStatus.OPEN).values(*POSITION_FIELDS)
    counts = (
        Order.objects.filter(run_id=run_id, status__in=OPEN_ORDER_STATUSES)
        .order_by()
        .values("symbol")
        .annotate(open_orders=Count("id"))
    )
    book: dict[str, dict[str, Any]] = {}
    for position in positions:
        book[position["symbol"]] = {"position": position, "open_orders": 0}
    for row in counts:
        book.setdefault(row["symbol"], {"position": None, "open_orders": 0})["open_orders"] = row["open_orders"]
    return book
