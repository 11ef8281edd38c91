"""The matching engine of the simulated Bybit linear (USDT perpetual) account.

Pure Python with Decimal money: no Django, no aiohttp, so the in-process REPLAY
venue reuses the same fill rules. One-way position mode only. The engine is the
account (``account.Account``: orders, positions, wallet, margin figures, saved
form) plus the rules that change it; the checks an order passes before it is
accepted live in ``orders``.

Fill rules:
- market orders walk the opposite side of the book (depth-aware slippage);
  what the book cannot fill is cancelled, as Bybit does with IOC remainders;
- a limit order that crosses the book takes liquidity up to its price; the rest
  rests (GTC), is cancelled (IOC), or the whole order is cancelled (FOK, or a
  PostOnly order that would take);
- a resting limit order fills as maker when a public trade prints through its
  price (fully) or at its price (up to the trade's size), or when the book
  crosses it (up to the crossing size);
- ``takeProfit`` / ``stopLoss`` attach to the position and close it with a
  reduce-only market order when the last price crosses them.
Every operation returns ``Changes`` listing what to push, in Bybit's order.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from decimal import ROUND_DOWN, Decimal

from trading.marketdata.instruments import InstrumentSpec

from . import errors as E
from .account import Account
from .book import walk
from .constants import INITIAL_BALANCE, LEVERAGE_STEP, MAKER_FEE, MIN_LEVERAGE, TAKER_FEE
from .models import (
    CREATE_BY_STOP_LOSS,
    CREATE_BY_TAKE_PROFIT,
    CREATE_BY_USER,
    Changes,
    Execution,
    Order,
    apply_fill,
)
from .orders import OrderRequest, check_margin, validate_order, validate_price, validate_qty


class MatchingEngine(Account):
    """The account's order entry and fills, matched against a played market."""

    def __init__(
        self,
        instruments: Mapping[str, InstrumentSpec],
        *,
        clock: Callable[[], int],
        maker_fee: Decimal = MAKER_FEE,
        taker_fee: Decimal = TAKER_FEE,
        initial_balance: Decimal = INITIAL_BALANCE,
        id_factory: Callable[[], str] | None = None,
    ) -> None:
        self.maker_fee = maker_fee
        self.taker_fee = taker_fee
        self._new_id = id_factory or (lambda: str(uuid.uuid4()))
        # Adverse price shift in basis points per symbol (the slippage fault).
        self.slippage_bps: dict[str, Decimal] = {}
        super().__init__(instruments, clock=clock, initial_balance=initial_balance)

    # -- order entry -----------------------------------------------------
    def place_order(self, req: OrderRequest, *, create_type: str = CREATE_BY_USER) -> tuple[Order, Changes]:
        """Validate, accept and match an order; raise ExchangeError on refusal."""
        spec, ref_price = validate_order(self, req)
        qty = req.qty
        if req.reduce_only:
            pos = self.position(req.symbol)
            closing_side = "Sell" if pos.size > 0 else "Buy"
            if pos.size == 0 or req.side != closing_side:
                # Bybit: 110017 "Reduce-only rule not satisfied" (derivatives error table).
                raise E.ExchangeError(
                    E.REDUCE_ONLY_NOT_SATISFIED, "current position is zero, cannot fix reduce-only order qty"
                    if pos.size == 0 else "Reduce-only rule not satisfied"
                )
            qty = min(qty, abs(pos.size))  # Bybit trims a reduce-only order to the position
        else:
            check_margin(self, req, ref_price, spec, taker_fee=self.taker_fee)
        now = self.clock()
        tif = "IOC" if req.order_type == "Market" else (req.time_in_force or "GTC")
        order = Order(
            order_id=self._new_id(),
            link_id=req.link_id,
            symbol=req.symbol,
            side=req.side,
            order_type=req.order_type,
            qty=qty,
            price=req.price if req.order_type == "Limit" else None,
            time_in_force=tif,
            reduce_only=req.reduce_only,
            close_on_trigger=req.close_on_trigger,
            created_ms=now,
            updated_ms=now,
            take_profit=req.take_profit,
            stop_loss=req.stop_loss,
            create_type=create_type,
            last_price_on_created=self.mark_price(req.symbol),
        )
        self._add_order(order)
        changes = Changes()
        self._match_incoming(order, changes)
        changes.order(order)
        self._trim_closed()
        return order, changes

    def _match_incoming(self, order: Order, changes: Changes) -> None:
        book = self.books[order.symbol]
        levels = book.liquidity_for(order.side, order.price)
        if order.time_in_force == "PostOnly" and levels:
            self._close(order, "Cancelled", reject_reason="EC_PostOnlyWillTakeLiquidity")
            return
        if order.time_in_force == "FOK" and sum((s for _, s in levels), Decimal(0)) < order.qty:
            self._close(order, "Cancelled", reject_reason="EC_FOKOrderCancelled")
            return
        for price, qty in walk(levels, order.qty):
            self._fill(order, self._slipped(order.symbol, order.side, price), qty, is_maker=False, changes=changes)
        if order.leaves_qty > 0 and order.time_in_force in ("IOC", "FOK"):
            self._close(order, "Cancelled", reject_reason="EC_NoImmediateQtyToFill" if not order.cum_qty else "")

    def _slipped(self, symbol: str, side: str, price: Decimal) -> Decimal:
        bps = self.slippage_bps.get(symbol)
        if not bps:
            return price
        tick = self.instruments[symbol].tick_size
        shift = price * bps / Decimal(10000)
        moved = price + shift if side == "Buy" else price - shift
        return max(tick, (moved / tick).quantize(Decimal(1), rounding=ROUND_DOWN) * tick)

    def cancel_order(self, symbol: str, order_id: str | None, link_id: str | None) -> tuple[Order, Changes]:
        """Cancel one open order; 110001 if it is unknown or already closed."""
        self.spec(symbol)
        order = self.find_order(order_id, link_id)
        if order is None or not order.is_open or order.symbol != symbol:
            raise E.ExchangeError(E.ORDER_NOT_EXISTS, "order not exists or too late to cancel")
        self._close(order, "Cancelled", cancel_type="CancelByUser")
        changes = Changes()
        changes.order(order)
        return order, changes

    def cancel_all(self, symbol: str | None, *, cancel_type: str = "CancelByUser") -> tuple[list[Order], Changes]:
        """Cancel every open order (of one symbol, or all; ``cancel_type`` says who: the user, or DCP)."""
        if symbol is not None:
            self.spec(symbol)
        changes = Changes()
        cancelled = []
        for order in self.open_orders(symbol):
            self._close(order, "Cancelled", cancel_type=cancel_type)
            changes.order(order)
            cancelled.append(order)
        return cancelled, changes

    def amend_order(
        self,
        symbol: str,
        order_id: str | None,
        link_id: str | None,
        *,
        qty: Decimal | None = None,
        price: Decimal | None = None,
        take_profit: Decimal | None = None,
        stop_loss: Decimal | None = None,
    ) -> tuple[Order, Changes]:
        """Change qty, price or TP/SL of an open order; it may then cross and fill."""
        spec = self.spec(symbol)
        order = self.find_order(order_id, link_id)
        if order is None or not order.is_open or order.symbol != symbol:
            raise E.ExchangeError(E.ORDER_NOT_EXISTS, "order not exists or too late to replace")
        if qty is not None:
            validate_qty(spec, qty)
            if qty <= order.cum_qty:
                raise E.param_error("params error: qty must exceed the filled quantity")
        if price is not None:
            if order.order_type != "Limit":
                raise E.param_error("params error: cannot amend the price of a market order")
            validate_price(self, spec, OrderRequest(symbol, order.side, "Limit", order.qty, price))
        unchanged = (
            (qty is None or qty == order.qty)
            and (price is None or price == order.price)
            and (take_profit is None or take_profit == order.take_profit)
            and (stop_loss is None or stop_loss == order.stop_loss)
        )
        if unchanged:
            raise E.param_error("The order remains unchanged as the parameters entered match the existing ones.")
        if qty is not None:
            order.qty = qty
        if price is not None:
            order.price = price
        if take_profit is not None:
            order.take_profit = take_profit or None
        if stop_loss is not None:
            order.stop_loss = stop_loss or None
        order.updated_ms = self.clock()
        changes = Changes()
        levels = self.books[symbol].liquidity_for(order.side, order.price)
        for lv_price, lv_qty in walk(levels, order.leaves_qty):
            self._fill(order, self._slipped(symbol, order.side, lv_price), lv_qty, is_maker=False, changes=changes)
        changes.order(order)
        return order, changes

    def set_leverage(self, symbol: str, buy: Decimal, sell: Decimal) -> Changes:
        """Set the position's leverage as Bybit does in one-way mode.

        buy must equal sell (10001), within the instrument's leverage filter
        ``[1, maxLeverage]`` in steps of 0.01 (10001); the same leverage again is
        110043; a change whose initial margin (position and open orders) grows by
        more than the available balance is 110012. A flat symbol keeps it for its
        next position.
        """
        spec = self.spec(symbol)
        if buy != sell:
            raise E.param_error("buy leverage must equal sell leverage in one-way mode")
        if buy < MIN_LEVERAGE or buy > spec.max_leverage or buy % LEVERAGE_STEP:
            raise E.param_error(f"leverage invalid: must be within [{MIN_LEVERAGE}, {spec.max_leverage}] "
                                f"in steps of {LEVERAGE_STEP}")
        pos = self.position(symbol)
        if pos.leverage == buy:
            raise E.ExchangeError(E.LEVERAGE_NOT_MODIFIED, "Set leverage has not been modified.")
        notional = abs(pos.size) * pos.avg_price + self._order_notional(symbol)
        need = notional / buy - notional / pos.leverage
        if need > 0 and need > self.available():
            raise E.ExchangeError(E.AVAILABLE_NOT_ENOUGH, "Available balance not enough for the new leverage")
        pos.leverage = buy
        pos.updated_ms = self.clock()
        changes = Changes()
        changes.position(symbol)
        changes.wallet = True
        return changes

    def _order_notional(self, symbol: str) -> Decimal:
        """The value of ``symbol``'s open orders that hold initial margin (``Account.order_im``'s rule)."""
        return sum(
            (o.leaves_qty * o.price for o in self.open_orders(symbol) if not o.reduce_only and o.price is not None),
            Decimal(0),
        )

    # -- market events ---------------------------------------------------
    def on_book(self, symbol: str) -> Changes:
        """Fill resting orders the book now crosses (as maker, at their price)."""
        changes = Changes()
        book = self.books.get(symbol)
        if book is None:
            return changes
        for order in self._resting(symbol):
            levels = book.liquidity_for(order.side, order.price)
            available = sum((s for _, s in levels), Decimal(0))
            if available > 0:
                assert order.price is not None
                self._fill(order, order.price, min(order.leaves_qty, available), is_maker=True, changes=changes)
                changes.order(order)
        return changes

    def on_trade(self, symbol: str, price: Decimal, qty: Decimal) -> Changes:
        """Apply a public trade: last price, resting fills, then TP/SL triggers."""
        if symbol not in self.instruments:
            return Changes()
        self.last_price[symbol] = price
        changes = Changes()
        budget = qty
        for order in self._resting(symbol):
            assert order.price is not None
            through = price < order.price if order.side == "Buy" else price > order.price
            at = price == order.price
            if through:
                fill = order.leaves_qty  # the whole level traded away
            elif at and budget > 0:
                fill = min(order.leaves_qty, budget)  # size-limited at the touch
                budget -= fill
            else:
                continue
            self._fill(order, order.price, fill, is_maker=True, changes=changes)
            changes.order(order)
        changes.merge(self._check_triggers(symbol, price))
        return changes

    def _resting(self, symbol: str) -> list[Order]:
        """Open limit orders of a symbol in price-time priority (buys high first, sells low first)."""
        orders = [o for o in self.open_orders(symbol) if o.order_type == "Limit"]
        if not orders:
            return orders
        buys = sorted((o for o in orders if o.side == "Buy"), key=lambda o: (-(o.price or 0), o.created_ms))
        sells = sorted((o for o in orders if o.side == "Sell"), key=lambda o: (o.price or 0, o.created_ms))
        return buys + sells

    def _check_triggers(self, symbol: str, last: Decimal) -> Changes:
        pos = self.positions.get(symbol)
        changes = Changes()
        if pos is None or not pos.size:
            return changes
        long = pos.size > 0
        hit_tp = pos.take_profit is not None and (last >= pos.take_profit if long else last <= pos.take_profit)
        hit_sl = pos.stop_loss is not None and (last <= pos.stop_loss if long else last >= pos.stop_loss)
        if not (hit_tp or hit_sl):
            return changes
        create_type = CREATE_BY_TAKE_PROFIT if hit_tp else CREATE_BY_STOP_LOSS
        pos.take_profit = pos.stop_loss = None
        order, closed = self.place_order(
            OrderRequest(symbol, "Sell" if long else "Buy", "Market", abs(pos.size), reduce_only=True,
                         close_on_trigger=True),
            create_type=create_type,
        )
        order.stop_order_type = "TakeProfit" if hit_tp else "StopLoss"
        for ex in closed.executions:
            ex.stop_order_type = order.stop_order_type
        changes.merge(closed)
        changes.position(symbol)
        return changes

    # -- behind-the-back helpers -----------------------------------------
    def close_position(self, symbol: str) -> Changes:
        """Close a position with a market order, as a manual action in the Bybit app would."""
        pos = self.position(symbol)
        if not pos.size:
            raise E.ExchangeError(E.REDUCE_ONLY_NOT_SATISFIED, "current position is zero, cannot close")
        _, changes = self.place_order(
            OrderRequest(symbol, "Sell" if pos.size > 0 else "Buy", "Market", abs(pos.size), reduce_only=True)
        )
        changes.position(symbol)
        return changes

    def fill_order(
        self, symbol: str, order_id: str | None, link_id: str | None, qty: Decimal | None = None
    ) -> tuple[Order, Changes]:
        """Fill a resting limit order now at its own price, as maker (all it leaves, or ``qty`` of it).

        A counterparty the played book never showed; 110001 when the order is
        unknown, closed, of another symbol or not a resting limit order.
        """
        self.spec(symbol)
        order = self.find_order(order_id, link_id)
        if order is None or not order.is_open or order.symbol != symbol or order.price is None:
            raise E.ExchangeError(E.ORDER_NOT_EXISTS, "order not exists or not resting")
        if qty is not None and qty <= 0:
            raise E.param_error("params error: qty invalid")
        changes = Changes()
        fill = order.leaves_qty if qty is None else min(qty, order.leaves_qty)
        self._fill(order, order.price, fill, is_maker=True, changes=changes)
        changes.order(order)
        return order, changes

    # -- fills -----------------------------------------------------------
    def _fill(self, order: Order, price: Decimal, qty: Decimal, *, is_maker: bool, changes: Changes) -> None:
        pos = self.position(order.symbol)
        if order.reduce_only:
            closing = (order.side == "Sell" and pos.size > 0) or (order.side == "Buy" and pos.size < 0)
            qty = min(qty, abs(pos.size)) if closing else Decimal(0)
            if qty <= 0:
                self._close(order, "Cancelled", cancel_type="CancelByReduceOnly")
                changes.order(order)
                return
        now = self.clock()
        rate = self.maker_fee if is_maker else self.taker_fee
        fee = price * qty * rate
        signed = qty if order.side == "Buy" else -qty
        closed_size, pnl = apply_fill(pos, signed, price, now)
        if (order.take_profit is not None or order.stop_loss is not None) and pos.size and not order.reduce_only:
            # Full-mode TP/SL on an opening order attach to the whole position.
            pos.take_profit = order.take_profit or pos.take_profit
            pos.stop_loss = order.stop_loss or pos.stop_loss
        self.wallet.balance += pnl - fee
        self.wallet.cum_realised += pnl - fee
        pos.cur_realised += pnl - fee
        pos.cum_realised += pnl - fee
        order.cum_qty += qty
        order.cum_value += price * qty
        order.cum_fee += fee
        order.updated_ms = now
        order.status = "Filled" if order.cum_qty >= order.qty else "PartiallyFilled"
        self._last_seq += 1
        seq = self._last_seq
        pos.seq = seq
        execution = Execution(
            exec_id=self._new_id(),
            order_id=order.order_id,
            link_id=order.link_id,
            symbol=order.symbol,
            side=order.side,
            order_type=order.order_type,
            order_price=order.price,
            order_qty=order.qty,
            leaves_qty=order.leaves_qty,
            exec_price=price,
            exec_qty=qty,
            exec_fee=fee,
            fee_rate=rate,
            is_maker=is_maker,
            exec_time=now,
            closed_size=closed_size,
            exec_pnl=pnl,
            mark_price=self.mark_price(order.symbol) or price,
            seq=seq,
            create_type=order.create_type,
            stop_order_type=order.stop_order_type,
        )
        self.executions.append(execution)
        changes.executions.append(execution)
        changes.order(order)
        changes.position(order.symbol)
        changes.wallet = True
        if pos.size == 0:
            pos.take_profit = pos.stop_loss = None
            self._cancel_stale_reduce_only(order.symbol, changes)

    def _cancel_stale_reduce_only(self, symbol: str, changes: Changes) -> None:
        for other in self.open_orders(symbol):
            if other.reduce_only:
                self._close(other, "Cancelled", cancel_type="CancelByReduceOnly")
                changes.order(other)

    def _close(self, order: Order, status: str, *, cancel_type: str = "UNKNOWN", reject_reason: str = "") -> None:
        if status == "Cancelled" and order.cum_qty >= order.qty:
            return
        order.status = status
        order.cancel_type = cancel_type
        if reject_reason:
            order.reject_reason = reject_reason
        order.updated_ms = self.clock()
