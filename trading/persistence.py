"""The database behind the trader's local state (SIM, DRY_RUN, LIVE).

Each call is one short transaction, so a row is durable when the call returns:
an order intent is on disk before its request leaves the process.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from django.db import IntegrityError, transaction

from trading.engine.localstate import OPEN_LOCAL, ClosedTrade, LocalOrder, LocalPosition
from trading.models import Fill, Order, Position, PositionStatus, Trade


def _dt(ts_ms: int) -> datetime:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC)


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def order_from_row(row: Order) -> LocalOrder:
    return LocalOrder(
        order_link_id=row.order_link_id,
        symbol=row.symbol,
        side=row.side,
        qty=row.qty,
        order_type=row.order_type,
        price=row.price,
        reduce_only=row.reduce_only,
        take_profit=row.take_profit,
        stop_loss=row.stop_loss,
        status=row.status,
        exchange_order_id=row.exchange_order_id,
        filled_qty=row.filled_qty,
        avg_fill_price=row.avg_fill_price,
        expected_price=row.expected_price,
        purpose=row.purpose,
        origin=row.origin,
        reject_reason=row.reject_reason,
        created_ms=_ms(row.created_at),
        updated_ms=_ms(row.updated_at),
    )


def position_from_row(row: Position) -> LocalPosition:
    return LocalPosition(
        symbol=row.symbol,
        side=row.side,
        qty=row.qty,
        entry_price=row.entry_price,
        leverage=row.leverage,
        pnl_unrealized=row.pnl_unrealized,
        origin=row.origin,
        exchange_position_id=row.exchange_position_id,
        opened_ms=_ms(row.opened_at),
    )


class DatabasePersistence:
    """Local truth in the database, scoped to one environment (``run_id``)."""

    def __init__(self, run_id: str = "") -> None:
        self.run_id = run_id

    def save_order(self, order: LocalOrder) -> None:
        Order.objects.update_or_create(
            run_id=self.run_id,
            order_link_id=order.order_link_id,
            defaults={
                "exchange_order_id": order.exchange_order_id,
                "symbol": order.symbol,
                "side": order.side,
                "order_type": order.order_type,
                "qty": order.qty,
                "price": order.price,
                "reduce_only": order.reduce_only,
                "take_profit": order.take_profit,
                "stop_loss": order.stop_loss,
                "status": order.status,
                "filled_qty": order.filled_qty,
                "avg_fill_price": order.avg_fill_price,
                "expected_price": order.expected_price,
                "origin": order.origin,
                "purpose": order.purpose,
                "reject_reason": order.reject_reason,
                "created_at": _dt(order.created_ms),
                "updated_at": _dt(order.updated_ms or order.created_ms),
            },
        )

    def save_fill(
        self,
        *,
        exec_id: str,
        order_link_id: str,
        symbol: str,
        side: str,
        price: Decimal,
        qty: Decimal,
        fee: Decimal,
        is_maker: bool,
        exec_ms: int,
    ) -> bool:
        order = Order.objects.filter(run_id=self.run_id, order_link_id=order_link_id).first() if order_link_id else None
        try:
            with transaction.atomic():
                Fill.objects.create(
                    run_id=self.run_id,
                    exec_id=exec_id,
                    order=order,
                    order_link_id=order_link_id,
                    symbol=symbol,
                    side=side,
                    price=price,
                    qty=qty,
                    fee=fee,
                    is_maker=is_maker,
                    executed_at=_dt(exec_ms),
                )
        except IntegrityError:
            return False  # the same execution again (a replayed or re-fetched message)
        return True

    def save_position(self, position: LocalPosition) -> None:
        changing = {
            "side": position.side,
            "qty": position.qty,
            "entry_price": position.entry_price,
            "leverage": position.leverage,
            "pnl_unrealized": position.pnl_unrealized,
            "exchange_position_id": position.exchange_position_id,
        }
        # Origin and opening time belong to the position's first record and are never rewritten.
        Position.objects.update_or_create(
            run_id=self.run_id,
            symbol=position.symbol,
            status=PositionStatus.OPEN,
            defaults=changing,
            create_defaults={**changing, "origin": position.origin, "opened_at": _dt(position.opened_ms)},
        )

    def close_position(self, symbol: str, *, reason: str, closed_ms: int) -> None:
        Position.objects.filter(run_id=self.run_id, symbol=symbol, status=PositionStatus.OPEN).update(
            status=PositionStatus.CLOSED, close_reason=reason, closed_at=_dt(closed_ms)
        )

    def save_trade(self, trade: ClosedTrade) -> None:
        Trade.objects.create(
            run_id=self.run_id,
            symbol=trade.symbol,
            side=trade.side,
            qty=trade.qty,
            entry_price=trade.entry_price,
            exit_price=trade.exit_price,
            realized_pnl=trade.realized_pnl,
            fees=trade.fees,
            close_reason=trade.close_reason,
            opened_at=_dt(trade.opened_ms),
            closed_at=_dt(trade.closed_ms),
        )

    def load(self) -> tuple[list[LocalOrder], list[LocalPosition]]:
        orders = Order.objects.filter(run_id=self.run_id, status__in=list(OPEN_LOCAL))
        positions = Position.objects.filter(run_id=self.run_id, status=PositionStatus.OPEN)
        return [order_from_row(o) for o in orders], [position_from_row(p) for p in positions]
