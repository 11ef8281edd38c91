"""Translate trading state into the failover domain's snapshot types (spec §3.1 shapes)."""

from __future__ import annotations

from failover.domain.enums import OrderSide, OrderStatus, PositionSide
from failover.domain.types import OrderSnapshot, PositionSnapshot
from trading.engine.localstate import (
    CANCELED,
    FILLED,
    NEW,
    PARTIALLY_FILLED,
    REJECTED,
    LocalOrder,
    LocalPosition,
    local_status,
)
from trading.exchange.port import BUY, ExchangeOrder, ExchangePosition

# Local statuses before the exchange confirmed anything count as NEW in the snapshot:
# the order may be live on the exchange, which is exactly what a successor must check.
_SNAPSHOT_STATUS = {
    NEW: OrderStatus.NEW,
    PARTIALLY_FILLED: OrderStatus.PARTIALLY_FILLED,
    FILLED: OrderStatus.FILLED,
    CANCELED: OrderStatus.CANCELED,
    REJECTED: OrderStatus.CANCELED,
}


def position_from_local(p: LocalPosition) -> PositionSnapshot:
    return PositionSnapshot(
        symbol=p.symbol,
        side=PositionSide(p.side),
        entry_price=float(p.entry_price),
        qty=float(p.qty),
        leverage=float(p.leverage),
        pnl_unrealized=float(p.pnl_unrealized),
        exchange_position_id=p.exchange_position_id or None,
    )


def position_from_exchange(p: ExchangePosition) -> PositionSnapshot:
    return PositionSnapshot(
        symbol=p.symbol,
        side=PositionSide.LONG if p.side == BUY else PositionSide.SHORT,
        entry_price=float(p.avg_price),
        qty=float(p.size),
        leverage=float(p.leverage or 1),
        pnl_unrealized=float(p.unrealised_pnl),
        exchange_position_id=None,
    )


def order_from_local(o: LocalOrder) -> OrderSnapshot:
    return OrderSnapshot(
        symbol=o.symbol,
        side=OrderSide(o.side),
        client_order_id=o.order_link_id,
        exchange_order_id=o.exchange_order_id or None,
        price=float(o.price or o.expected_price or 0),
        qty=float(o.qty),
        status=_SNAPSHOT_STATUS.get(o.status, OrderStatus.NEW),
    )


def order_from_exchange(o: ExchangeOrder) -> OrderSnapshot:
    return OrderSnapshot(
        symbol=o.symbol,
        side=OrderSide.BUY if o.side == BUY else OrderSide.SELL,
        client_order_id=o.order_link_id or None,
        exchange_order_id=o.order_id or None,
        price=float(o.price),
        qty=float(o.qty),
        status=_SNAPSHOT_STATUS.get(local_status(o.status), OrderStatus.NEW),
    )
