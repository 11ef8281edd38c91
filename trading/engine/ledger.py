"""Ledger: what the exchange reports, applied to local state.

Order updates, fills, positions and the wallet come in on the private stream,
or from a REST resync after a reconnect, which feeds the same methods. The
ledger moves local orders to the exchange's status, adopts orders and positions
it never made (and says so through ``on_mismatch``), closes a position into a
``ClosedTrade`` with its realised PnL and fees, and keeps the RiskEngine's view
of equity and exposure current. It never calls the exchange: orders leave
through the ExecutionEngine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from failover.domain.clock import Clock
from failover.domain.enums import OrderSide
from failover.domain.reconcile import external_link_id
from trading.domain.quality import ExecutionQuality
from trading.domain.risk import PositionExposure, RiskEngine
from trading.domain.statemachine import StateMachine
from trading.engine import crashpoints
from trading.engine.eventlog import EventLog
from trading.engine.localstate import (
    CANCELED,
    EXTERNAL_ORDER_RECOVERED,
    EXTERNAL_POSITION_RECOVERED,
    FILLED,
    REJECTED,
    ZERO,
    ClosedTrade,
    LocalOrder,
    LocalPosition,
    LocalState,
    local_status,
)
from trading.exchange.port import BUY, SELL, ExchangeOrder, ExchangePosition, Execution
from trading.exchange.pybit_rest import parse_execution, parse_order, parse_position

MismatchHandler = Callable[[str, dict[str, str]], None]
"""Called with UNKNOWN_ORDER or UNKNOWN_POSITION and the details when the exchange shows what we never made."""


@dataclass
class _Closing:
    qty: Decimal = ZERO
    notional: Decimal = ZERO
    fees: Decimal = ZERO


@dataclass
class Ledger:
    state: LocalState
    risk: RiskEngine
    quality: ExecutionQuality
    machine: StateMachine
    clock: Clock
    events: EventLog
    on_mismatch: MismatchHandler | None = None
    equity: Decimal = ZERO
    _closing: dict[str, _Closing] = field(default_factory=dict)

    def on_private_message(self, message: dict[str, Any]) -> None:
        """Apply one private stream message (order, execution, position, wallet)."""
        topic = message.get("topic")
        rows = message.get("data")
        if not isinstance(rows, list):
            return
        for row in rows:
            if not isinstance(row, dict):
                continue
            if topic == "order" and row.get("category", "linear") == "linear":
                self.apply_order(parse_order(row))
            elif topic == "execution":
                self.apply_execution(parse_execution(row))
            elif topic == "position":
                self.apply_position(parse_position(row))
            elif topic == "wallet":
                coins = [c for c in row.get("coin", []) if c.get("coin") == "USDT"]
                equity = coins[0].get("equity") if coins else row.get("totalEquity")
                if equity not in (None, ""):
                    self.set_equity(Decimal(str(equity)))

    def set_equity(self, equity: Decimal) -> None:
        """Take the account's equity (wallet message, REST wallet, start)."""
        self.equity = equity
        self.risk.on_equity(equity)

    # -- orders -------------------------------------------------------------

    def apply_order(self, remote: ExchangeOrder) -> None:
        """Move the local order to the exchange's status; adopt an open order we never made."""
        local = self.state.find_order(order_link_id=remote.order_link_id, exchange_order_id=remote.order_id)
        now = self.clock.now_ms()
        status = local_status(remote.status)
        if local is None:
            if remote.is_open:  # a finished order we never tracked has nothing to follow
                self._adopt_order(remote, status, now)
            return
        if local.status == status and local.filled_qty == remote.cum_exec_qty:
            return
        if remote.cum_exec_qty > local.filled_qty:
            crashpoints.reached(crashpoints.AFTER_FILL)  # an order update or REST answer reports a fill not stored yet
        updated = self.state.update_order(
            local.order_link_id,
            status=status,
            exchange_order_id=remote.order_id or local.exchange_order_id,
            filled_qty=remote.cum_exec_qty,
            avg_fill_price=remote.avg_price or local.avg_fill_price,
            updated_ms=now,
        )
        self.events.write(
            remote.symbol,
            "ORDER_UPDATE",
            orderLinkId=local.order_link_id,
            status=status,
            filledQty=remote.cum_exec_qty,
            avgPrice=remote.avg_price,
        )
        if updated.purpose != "ENTRY":
            return
        if status == FILLED and local.status != FILLED and updated.expected_price and remote.avg_price > 0:
            side = OrderSide(updated.side)
            slip = self.quality.record_fill(remote.symbol, side, float(updated.expected_price), float(remote.avg_price))
            self.events.write(
                remote.symbol,
                "SLIPPAGE",
                orderLinkId=local.order_link_id,
                slippageBps=round(slip, 4),
                qualityScore=round(self.quality.score(remote.symbol), 4),
            )
        if status in (CANCELED, REJECTED) and remote.cum_exec_qty == 0:
            self.machine.on_order_rejected(remote.symbol, now)

    def _adopt_order(self, remote: ExchangeOrder, status: str, now: int) -> None:
        adopted = LocalOrder(
            order_link_id=remote.order_link_id or external_link_id(remote.order_id),
            symbol=remote.symbol,
            side="BUY" if remote.side == BUY else "SELL",
            qty=remote.qty,
            order_type=remote.order_type,
            price=remote.price or None,
            reduce_only=remote.reduce_only,
            status=status,
            exchange_order_id=remote.order_id,
            filled_qty=remote.cum_exec_qty,
            origin=EXTERNAL_ORDER_RECOVERED,
            purpose="EXTERNAL",
            created_ms=remote.created_ms or now,
            updated_ms=now,
        )
        self.state.put_order(adopted)
        self.events.write(
            remote.symbol,
            "EXTERNAL_ORDER_RECOVERED",
            orderLinkId=adopted.order_link_id,
            orderId=remote.order_id,
            status=remote.status,
        )
        if self.on_mismatch is not None:
            self.on_mismatch("UNKNOWN_ORDER", {"symbol": remote.symbol, "orderId": remote.order_id})

    # -- fills --------------------------------------------------------------

    def apply_execution(self, execution: Execution) -> None:
        """Record a fill once; add it to the closing trade or to the position's fees."""
        crashpoints.reached(crashpoints.AFTER_FILL)  # the fill is in, not stored yet
        fresh = self.state.persistence.save_fill(
            exec_id=execution.exec_id,
            order_link_id=execution.order_link_id,
            symbol=execution.symbol,
            side="BUY" if execution.side == BUY else "SELL",
            price=execution.price,
            qty=execution.qty,
            fee=execution.fee,
            is_maker=execution.is_maker,
            exec_ms=execution.exec_ms,
        )
        if not fresh:
            return
        self.events.write(
            execution.symbol,
            "FILL",
            execId=execution.exec_id,
            orderLinkId=execution.order_link_id,
            side=execution.side,
            price=execution.price,
            qty=execution.qty,
            fee=execution.fee,
        )
        position = self.state.positions.get(execution.symbol)
        closing_side = SELL if position is not None and position.side == "LONG" else BUY
        if position is not None and execution.side == closing_side:
            acc = self._closing.setdefault(execution.symbol, _Closing())
            acc.qty += execution.qty
            acc.notional += execution.qty * execution.price
            acc.fees += execution.fee
        elif position is not None:
            self.state.put_position(replace(position, fees=position.fees + execution.fee))
        else:
            # The entry fill may arrive before the position message: keep its fee for the trade.
            acc = self._closing.setdefault(f"open:{execution.symbol}", _Closing())
            acc.fees += execution.fee

    # -- positions ----------------------------------------------------------

    def apply_position(self, remote: ExchangePosition) -> None:
        """Open, resize, flip or close the local position to match the exchange's."""
        symbol = remote.symbol
        local = self.state.positions.get(symbol)
        now = self.clock.now_ms()
        if remote.size <= 0:
            if local is not None:
                self._close_local(local, reason="CLOSED", now=now, mark=remote.mark_price)
            return
        side = "LONG" if remote.side == BUY else "SHORT"
        if local is not None and local.side == side and local.qty == remote.size:
            if local.pnl_unrealized != remote.unrealised_pnl:
                self.state.positions[symbol] = replace(local, pnl_unrealized=remote.unrealised_pnl)
            return
        if local is not None and local.side != side:
            self._close_local(local, reason="POSITION_FLIPPED", now=now, mark=remote.avg_price)
            local = None
        opening_fees = self._closing.pop(f"open:{symbol}", _Closing()).fees
        origin = local.origin if local is not None else self._origin_of_new_position(symbol)
        position = LocalPosition(
            symbol=symbol,
            side=side,
            qty=remote.size,
            entry_price=remote.avg_price,
            leverage=remote.leverage,
            pnl_unrealized=remote.unrealised_pnl,
            origin=origin,
            opened_ms=local.opened_ms if local is not None else now,
            fees=(local.fees if local is not None else ZERO) + opening_fees,
        )
        self.state.put_position(position)
        self.events.write(
            symbol, "POSITION_UPDATE", side=side, qty=remote.size, entryPrice=remote.avg_price, origin=origin
        )
        self.publish_exposure()
        if local is None:
            self.machine.on_position_opened(symbol, OrderSide.opening(side), now)

    def _origin_of_new_position(self, symbol: str) -> str:
        ours = any(
            o.symbol == symbol and o.purpose == "ENTRY" and o.status not in (CANCELED, REJECTED)
            for o in self.state.orders.values()
        )
        if ours:
            return "LOCAL"
        if self.on_mismatch is not None:
            self.on_mismatch("UNKNOWN_POSITION", {"symbol": symbol})
        return EXTERNAL_POSITION_RECOVERED

    def _close_local(self, local: LocalPosition, *, reason: str, now: int, mark: Decimal) -> None:
        acc = self._closing.pop(local.symbol, _Closing())
        exit_price = (acc.notional / acc.qty) if acc.qty > 0 else (mark if mark > 0 else local.entry_price)
        direction = Decimal(1) if local.side == "LONG" else Decimal(-1)
        fees = local.fees + acc.fees
        pnl = (exit_price - local.entry_price) * local.qty * direction - fees
        trade = ClosedTrade(
            symbol=local.symbol,
            side=local.side,
            qty=local.qty,
            entry_price=local.entry_price,
            exit_price=exit_price,
            realized_pnl=pnl,
            fees=fees,
            close_reason=reason,
            opened_ms=local.opened_ms,
            closed_ms=now,
        )
        self.state.persistence.save_trade(trade)
        self.state.drop_position(local.symbol, reason=reason, closed_ms=now)
        self.events.write(
            local.symbol,
            "POSITION_CLOSED",
            side=local.side,
            qty=local.qty,
            entryPrice=local.entry_price,
            exitPrice=exit_price,
            realizedPnl=pnl,
            fees=fees,
            reason=reason,
        )
        self.risk.on_trade_closed(pnl)
        self.publish_exposure()
        self.machine.on_position_closed(local.symbol, now)

    def publish_exposure(self) -> None:
        """Tell the RiskEngine the open positions (after every change, and after a state reload)."""
        self.risk.on_positions(
            PositionExposure(
                symbol=p.symbol,
                side=OrderSide.opening(p.side),
                qty=p.qty,
                price=p.entry_price,
            )
            for p in self.state.positions.values()
        )
