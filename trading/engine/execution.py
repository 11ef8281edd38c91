"""ExecutionEngine: the only way orders leave the trader.

- Entries pass the SAFE MODE gate and the RiskEngine first; a refusal is a
  returned ``{"success": false, "reason": CODE}``, never an exception.
- Every order gets an ``orderLinkId`` and is recorded durably (INTENT) before
  the request goes out. An ambiguous outcome (timeout, cut connection, 5xx) is
  resolved by looking that id up on the exchange, never by sending it again.
- Exits (reduce-only, closing, panic close) are never blocked.
- Orders, fills and positions are tracked from the private stream; REST is
  the backup (``resolve_unconfirmed``, ``sync_from_exchange``).

The engine runs on the trader's single pipeline thread. Exchange calls go
through a ``Dispatcher``: inline in REPLAY and tests, on a gateway thread in
SIM and LIVE, with the outcome handed back to the pipeline thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Protocol

from failover.domain.clock import Clock
from failover.domain.enums import OrderSide
from trading.domain import reasons
from trading.domain.ids import OrderLinkIdFactory
from trading.domain.orders import OrderRequest
from trading.domain.quality import ExecutionQuality
from trading.domain.risk import AccountState, PositionExposure, RiskEngine
from trading.domain.statemachine import StateMachine
from trading.engine.eventlog import EventLog
from trading.engine.localstate import (
    CANCELED,
    EXTERNAL_ORDER_RECOVERED,
    EXTERNAL_POSITION_RECOVERED,
    FILLED,
    INTENT,
    REJECTED,
    SUBMITTED,
    ZERO,
    ClosedTrade,
    LocalOrder,
    LocalPosition,
    LocalState,
    local_status,
)
from trading.exchange.port import (
    BUY,
    SELL,
    AmbiguousSubmitError,
    DuplicateOrderLinkId,
    ExchangeOrder,
    ExchangePort,
    ExchangePosition,
    Execution,
    OrderRejected,
    PlaceOrder,
    TemporaryExchangeError,
)
from trading.exchange.pybit_rest import parse_execution, parse_order, parse_position

logger = logging.getLogger(__name__)

EXIT_ALREADY_PENDING = "EXIT_ALREADY_PENDING"
NO_POSITION = "NO_POSITION"
EXCHANGE_ERROR = "EXCHANGE_ERROR"
RATE_LIMITED = "RATE_LIMITED"
NOT_FOUND_ON_EXCHANGE = "NOT_FOUND_ON_EXCHANGE"
DRY_RUN_NOT_SENT = "DRY_RUN_NOT_SENT"


@dataclass(frozen=True)
class ExecResult:
    success: bool
    reason: str
    order_link_id: str = ""
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"success": self.success, "reason": self.reason}
        if self.order_link_id:
            data["orderLinkId"] = self.order_link_id
        if self.message:
            data["message"] = self.message
        return data


class Dispatcher(Protocol):
    def submit(self, call: Callable[[], Any], done: Callable[[Any, BaseException | None], None]) -> None:
        """Run ``call`` somewhere; deliver ``done(result, error)`` on the pipeline thread."""
        ...


class InlineDispatcher:
    """Run exchange calls at once, on the caller's thread (REPLAY, tests)."""

    def submit(self, call: Callable[[], Any], done: Callable[[Any, BaseException | None], None]) -> None:
        try:
            result = call()
        except Exception as exc:
            done(None, exc)
            return
        done(result, None)


EntryGate = Callable[[], str | None]
"""Return the reason entries are globally blocked (SAFE_MODE_ACTIVE, ...) or None."""


@dataclass
class _Closing:
    qty: Decimal = ZERO
    notional: Decimal = ZERO
    fees: Decimal = ZERO


@dataclass
class ExecutionEngine:
    exchange: ExchangePort
    state: LocalState
    risk: RiskEngine
    quality: ExecutionQuality
    machine: StateMachine
    ids: OrderLinkIdFactory
    clock: Clock
    events: EventLog
    gate: EntryGate
    dispatcher: Dispatcher = field(default_factory=InlineDispatcher)
    confirm_after_ms: int = 3000
    give_up_after_ms: int = 15000
    on_mismatch: Callable[[str, dict[str, Any]], None] | None = None
    equity: Decimal = ZERO
    refused: dict[str, int] = field(default_factory=dict)
    _closing: dict[str, _Closing] = field(default_factory=dict)
    _lookups: set[str] = field(default_factory=set)

    # -- entries and exits --------------------------------------------------

    def submit_entry(self, request: OrderRequest) -> ExecResult:
        """Open a position for ``request`` unless safe mode or risk refuses it."""
        blocked = self.gate()
        if blocked is not None:
            return self._refuse(request.symbol, blocked, "new entries are blocked")
        decision = self.risk.check_entry(request, AccountState(equity=self.equity))
        if not decision.allowed:
            return self._refuse(request.symbol, decision.reason, decision.message)
        now = self.clock.now_ms()
        order = LocalOrder(
            order_link_id=self.ids.next_id(),
            symbol=request.symbol,
            side=request.side.value,
            qty=decision.qty,
            take_profit=decision.take_profit_price,
            stop_loss=decision.stop_price,
            expected_price=decision.price,
            purpose="ENTRY",
            created_ms=now,
            updated_ms=now,
        )
        self.state.put_order(order)  # durable before the request leaves
        self.events.write(
            request.symbol,
            "ORDER_REQUEST",
            orderLinkId=order.order_link_id,
            side=order.side,
            qty=order.qty,
            expectedPrice=order.expected_price,
            stopLoss=order.stop_loss,
            takeProfit=order.take_profit,
            reason=request.reason,
            score=round(request.score, 6),
        )
        self._send(order)
        return ExecResult(True, reasons.ALLOWED, order.order_link_id)

    def submit_exit(self, symbol: str, *, reason: str) -> ExecResult:
        """Close ``symbol``'s position with a reduce-only market order; never blocked."""
        position = self.state.positions.get(symbol)
        if position is None:
            return ExecResult(False, NO_POSITION, message=f"no open position on {symbol}")
        pending = [o for o in self.state.open_orders(symbol) if o.reduce_only]
        if pending:
            return ExecResult(True, EXIT_ALREADY_PENDING, pending[0].order_link_id)
        side = OrderSide.SELL if position.side == "LONG" else OrderSide.BUY
        self.risk.check_exit(symbol, side, position.qty)  # always allowed; kept for the audit trail
        now = self.clock.now_ms()
        order = LocalOrder(
            order_link_id=self.ids.next_id(),
            symbol=symbol,
            side=side.value,
            qty=position.qty,
            reduce_only=True,
            purpose="EXIT",
            created_ms=now,
            updated_ms=now,
        )
        self.state.put_order(order)
        self.events.write(
            symbol, "EXIT_REQUEST", orderLinkId=order.order_link_id, side=order.side, qty=order.qty, reason=reason
        )
        self._send(order)
        return ExecResult(True, reasons.REDUCE_ONLY_ALLOWED, order.order_link_id)

    def _refuse(self, symbol: str, reason: str, message: str) -> ExecResult:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        self.events.write(symbol, "ORDER_REFUSED", reason=reason, message=message)
        return ExecResult(False, reason, message=message)

    def _send(self, order: LocalOrder) -> None:
        request = PlaceOrder(
            symbol=order.symbol,
            side=BUY if order.side == "BUY" else SELL,
            qty=order.qty,
            order_link_id=order.order_link_id,
            order_type=order.order_type,
            price=order.price,
            reduce_only=order.reduce_only,
            take_profit=order.take_profit,
            stop_loss=order.stop_loss,
        )
        self.dispatcher.submit(
            lambda: self.exchange.place_order(request),
            lambda ack, error: self._on_submitted(order.order_link_id, ack, error),
        )

    def _on_submitted(self, link_id: str, ack: Any, error: BaseException | None) -> None:
        order = self.state.orders.get(link_id)
        if order is None:
            return
        now = self.clock.now_ms()
        if error is None:
            if order.status == INTENT:  # the stream may already have moved it further
                self.state.update_order(link_id, status=SUBMITTED, exchange_order_id=ack.order_id, updated_ms=now)
            elif not order.exchange_order_id:
                self.state.update_order(link_id, exchange_order_id=ack.order_id)
            return
        if isinstance(error, (AmbiguousSubmitError, DuplicateOrderLinkId)):
            # The order may exist: find out by its id, never send it again.
            self.state.update_order(link_id, status=SUBMITTED, updated_ms=now)
            self.events.write(order.symbol, "ORDER_OUTCOME_UNKNOWN", orderLinkId=link_id, error=str(error))
            self._lookup(order)
            return
        from trading.exchange.dryrun import OrderNotSent

        if isinstance(error, OrderNotSent):
            reason = DRY_RUN_NOT_SENT
        elif isinstance(error, TemporaryExchangeError):
            reason = RATE_LIMITED
        else:
            reason = EXCHANGE_ERROR
        message = str(error)
        if isinstance(error, OrderRejected):
            message = f"retCode {error.ret_code}: {error.ret_msg}"
        self._reject(order, reason, message)

    def _reject(self, order: LocalOrder, reason: str, message: str) -> None:
        now = self.clock.now_ms()
        self.state.update_order(
            order.order_link_id, status=REJECTED, reject_reason=f"{reason}: {message}"[:200], updated_ms=now
        )
        self.events.write(
            order.symbol, "ORDER_REJECTED", orderLinkId=order.order_link_id, reason=reason, message=message
        )
        if order.purpose == "ENTRY":
            self.machine.on_order_rejected(order.symbol, now)

    # -- resolving what was never confirmed ---------------------------------

    def resolve_unconfirmed(self) -> None:
        """Look up every order the exchange never confirmed (after a crash or a timeout)."""
        now = self.clock.now_ms()
        for order in list(self.state.orders.values()):
            if order.status in (INTENT, SUBMITTED) and now - order.created_ms >= self.confirm_after_ms:
                self._lookup(order)

    def _lookup(self, order: LocalOrder) -> None:
        link_id = order.order_link_id
        if link_id in self._lookups:
            return
        self._lookups.add(link_id)

        def done(found: ExchangeOrder | None, error: BaseException | None) -> None:
            self._lookups.discard(link_id)
            current = self.state.orders.get(link_id)
            if current is None or current.status not in (INTENT, SUBMITTED):
                return
            if error is not None:
                return  # the exchange did not answer; the next resolve pass asks again
            if found is not None:
                self.events.write(
                    current.symbol,
                    "ORDER_FOUND_ON_EXCHANGE",
                    orderLinkId=link_id,
                    status=found.status,
                    orderId=found.order_id,
                )
                self.apply_order(found)
            elif self.clock.now_ms() - current.created_ms >= self.give_up_after_ms:
                self._reject(current, NOT_FOUND_ON_EXCHANGE, "the exchange never received this order")

        self.dispatcher.submit(lambda: self.exchange.get_order(order.symbol, link_id), done)

    # -- the private stream -------------------------------------------------

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
        self.equity = equity
        self.risk.on_equity(equity)

    def apply_order(self, remote: ExchangeOrder) -> None:
        local = self.state.find_order(order_link_id=remote.order_link_id, exchange_order_id=remote.order_id)
        now = self.clock.now_ms()
        status = local_status(remote.status)
        if local is None:
            if not remote.is_open:
                return  # a finished order we never tracked: nothing to follow
            adopted = LocalOrder(
                order_link_id=remote.order_link_id or f"EXT-{remote.order_id}"[:36],
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
            return
        if local.status == status and local.filled_qty == remote.cum_exec_qty:
            return
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

    def apply_execution(self, execution: Execution) -> None:
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

    def apply_position(self, remote: ExchangePosition) -> None:
        symbol = remote.symbol
        local = self.state.positions.get(symbol)
        now = self.clock.now_ms()
        if remote.size > 0:
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
                self.machine.on_position_opened(symbol, OrderSide.BUY if side == "LONG" else OrderSide.SELL, now)
            return
        if local is not None:
            self._close_local(local, reason="CLOSED", now=now, mark=remote.mark_price)

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
        self.risk.on_positions(
            PositionExposure(
                symbol=p.symbol, side=OrderSide.BUY if p.side == "LONG" else OrderSide.SELL, qty=p.qty, price=p.entry_price
            )
            for p in self.state.positions.values()
        )
