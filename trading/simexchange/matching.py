"""The matching engine of the simulated Bybit linear (USDT perpetual) account.

Pure Python with Decimal money: no Django, no aiohttp, so the in-process REPLAY
venue reuses the same fill rules. One-way position mode only.

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
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from decimal import ROUND_DOWN, Decimal

from trading.marketdata.instruments import InstrumentSpec

from . import errors as E
from .book import OrderBook, walk
from .constants import (
    DEFAULT_LEVERAGE,
    INITIAL_BALANCE,
    MAKER_FEE,
    MAX_CLOSED_ORDERS,
    MAX_EXECUTIONS,
    TAKER_FEE,
)
from .models import (
    CREATE_BY_STOP_LOSS,
    CREATE_BY_TAKE_PROFIT,
    CREATE_BY_USER,
    Changes,
    Execution,
    Order,
    Position,
    Wallet,
    apply_fill,
)
from .orders import LINK_ID_RE, PRICE_BAND, TIME_IN_FORCE, OrderRequest, max_price, validate_qty


class MatchingEngine:
    """Orders, positions and the wallet of one account, matched against a played market."""

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
        self.instruments = dict(instruments)
        self.clock = clock
        self.maker_fee = maker_fee
        self.taker_fee = taker_fee
        self.initial_balance = initial_balance
        self._new_id = id_factory or (lambda: str(uuid.uuid4()))
        self.books: dict[str, OrderBook] = {s: OrderBook(s) for s in self.instruments}
        self.last_price: dict[str, Decimal] = {}
        # Adverse price shift in basis points per symbol (the slippage fault).
        self.slippage_bps: dict[str, Decimal] = {}
        self.reset()

    def reset(self) -> None:
        """Forget every order, position and execution; refill the wallet."""
        self.orders: dict[str, Order] = {}
        self._live: dict[str, Order] = {}  # every order that may still be open, in creation order
        self.link_ids: dict[str, str] = {}  # orderLinkId -> orderId, never forgotten
        self.positions: dict[str, Position] = {}
        self.executions: deque[Execution] = deque(maxlen=MAX_EXECUTIONS)
        self.wallet = Wallet(balance=self.initial_balance)
        self._last_seq = 0

    # -- lookups ---------------------------------------------------------
    def spec(self, symbol: str) -> InstrumentSpec:
        try:
            return self.instruments[symbol]
        except KeyError:
            raise E.param_error(f"params error: symbol invalid: {symbol}") from None

    def position(self, symbol: str) -> Position:
        pos = self.positions.get(symbol)
        if pos is None:
            pos = Position(symbol=symbol, leverage=DEFAULT_LEVERAGE, created_ms=self.clock())
            self.positions[symbol] = pos
        return pos

    def mark_price(self, symbol: str) -> Decimal | None:
        if symbol in self.last_price:
            return self.last_price[symbol]
        return self.books[symbol].mid() if symbol in self.books else None

    def find_order(self, order_id: str | None = None, link_id: str | None = None) -> Order | None:
        if order_id:
            return self.orders.get(order_id)
        if link_id and link_id in self.link_ids:
            return self.orders.get(self.link_ids[link_id])
        return None

    def _open(self) -> Iterable[Order]:
        """The orders still open, in creation order; asked on every market message, so it never scans the
        closed ones: they leave the index here (a closed order never opens again)."""
        live = self._live
        for order_id in [i for i, o in live.items() if not o.is_open]:
            del live[order_id]
        return live.values()

    def has_open_orders(self, symbol: str) -> bool:
        return any(o.symbol == symbol for o in self._open())

    def is_idle(self, symbol: str) -> bool:
        """No open order and no position on ``symbol``: a public trade only moves its last price."""
        pos = self.positions.get(symbol)
        return (pos is None or not pos.size) and not self.has_open_orders(symbol)

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        return [o for o in self._open() if symbol is None or o.symbol == symbol]

    # -- account figures -------------------------------------------------
    def unrealised(self, pos: Position) -> Decimal:
        mark = self.mark_price(pos.symbol)
        if not pos.size or mark is None:
            return Decimal(0)
        return pos.size * (mark - pos.avg_price)

    def position_im(self, pos: Position) -> Decimal:
        return abs(pos.size) * pos.avg_price / pos.leverage if pos.size else Decimal(0)

    def order_im(self) -> Decimal:
        total = Decimal(0)
        for o in self.open_orders():
            if o.reduce_only or o.price is None:
                continue
            total += o.leaves_qty * o.price / self.position(o.symbol).leverage
        return total

    def equity(self) -> Decimal:
        return self.wallet.balance + sum((self.unrealised(p) for p in self.positions.values()), Decimal(0))

    def available(self) -> Decimal:
        im = sum((self.position_im(p) for p in self.positions.values()), Decimal(0))
        return self.equity() - im - self.order_im()

    # -- validation ------------------------------------------------------
    def _validate(self, req: OrderRequest) -> tuple[InstrumentSpec, Decimal]:
        spec = self.spec(req.symbol)
        if req.side not in ("Buy", "Sell"):
            raise E.param_error("params error: side invalid")
        if req.order_type not in ("Market", "Limit"):
            raise E.param_error("params error: orderType invalid")
        if req.position_idx != 0:
            raise E.param_error("position idx not match position mode")
        if req.time_in_force is not None and req.time_in_force not in TIME_IN_FORCE:
            raise E.param_error("params error: timeInForce invalid")
        if req.link_id and not LINK_ID_RE.match(req.link_id):
            raise E.param_error("params error: orderLinkId invalid")
        if req.link_id and req.link_id in self.link_ids:
            raise E.ExchangeError(E.ORDER_LINK_ID_DUPLICATE, "OrderLinkedID is duplicate")
        validate_qty(spec, req.qty)
        price = self._validate_price(spec, req)
        for name, trigger in (("takeProfit", req.take_profit), ("stopLoss", req.stop_loss)):
            if trigger is not None and (trigger <= 0 or trigger % spec.tick_size):
                raise E.param_error(f"params error: {name} invalid")
        return spec, price

    def _validate_price(self, spec: InstrumentSpec, req: OrderRequest) -> Decimal:
        """Check the limit price; return the price used to size margin."""
        mark = self.mark_price(req.symbol)
        if req.order_type == "Market":
            book = self.books[req.symbol]
            best = book.best_ask() if req.side == "Buy" else book.best_bid()
            ref = best[0] if best else mark
            if ref is None:
                raise E.ExchangeError(E.PRICE_OUT_OF_RANGE, "no market price for a market order")
            return ref
        if req.price is None:
            raise E.param_error("params error: price is required for a limit order")
        if req.price <= 0 or req.price % spec.tick_size:
            raise E.param_error("params error: price invalid")
        if req.price > max_price(spec):
            raise E.ExchangeError(E.PRICE_OUT_OF_RANGE, "Order price is out of permissible range")
        if mark is not None:
            if req.side == "Buy" and req.price > mark * (1 + PRICE_BAND):
                raise E.ExchangeError(E.PRICE_OUT_OF_RANGE, "The order price is higher than the maximum buy price")
            if req.side == "Sell" and req.price < mark * (1 - PRICE_BAND):
                raise E.ExchangeError(E.PRICE_OUT_OF_RANGE, "The order price is lower than the minimum sell price")
        return req.price

    def _check_margin(self, req: OrderRequest, ref_price: Decimal, spec: InstrumentSpec) -> None:
        pos = self.position(req.symbol)
        signed = req.qty if req.side == "Buy" else -req.qty
        # Only the part of the order that opens or grows the position needs margin.
        opening = req.qty if pos.size * signed >= 0 else max(Decimal(0), req.qty - abs(pos.size))
        if opening <= 0:
            return
        notional = opening * ref_price
        if notional < spec.min_notional and pos.size == 0:
            raise E.ExchangeError(E.NOTIONAL_TOO_LOW, "The order value is below the minimum order value")
        need = notional / pos.leverage + notional * self.taker_fee
        if need > self.available():
            raise E.ExchangeError(E.INSUFFICIENT_AVAILABLE, "ab not enough for new order")

    # -- order entry -----------------------------------------------------
    def place_order(self, req: OrderRequest, *, create_type: str = CREATE_BY_USER) -> tuple[Order, Changes]:
        """Validate, accept and match an order; raise ExchangeError on refusal."""
        spec, ref_price = self._validate(req)
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
            self._check_margin(req, ref_price, spec)
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
        self.orders[order.order_id] = order
        self._live[order.order_id] = order
        if req.link_id:
            self.link_ids[req.link_id] = order.order_id
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

    def cancel_all(self, symbol: str | None) -> tuple[list[Order], Changes]:
        """Cancel every open order (of one symbol, or all)."""
        if symbol is not None:
            self.spec(symbol)
        changes = Changes()
        cancelled = []
        for order in self.open_orders(symbol):
            self._close(order, "Cancelled", cancel_type="CancelByUser")
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
            self._validate_price(spec, OrderRequest(symbol, order.side, "Limit", order.qty, price))
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
        """Set the position's leverage; 110043 when it is already that."""
        spec = self.spec(symbol)
        if buy != sell:
            raise E.param_error("buy leverage must equal sell leverage in one-way mode")
        if buy < 1 or buy > spec.max_leverage or buy % Decimal("0.01"):
            raise E.param_error(f"leverage invalid: must be within [1, {spec.max_leverage}]")
        pos = self.position(symbol)
        if pos.leverage == buy:
            raise E.ExchangeError(E.LEVERAGE_NOT_MODIFIED, "leverage not modified")
        need = abs(pos.size) * pos.avg_price / buy - self.position_im(pos)
        if need > 0 and need > self.available():
            raise E.ExchangeError(E.INSUFFICIENT_AVAILABLE, "ab not enough for new leverage")
        pos.leverage = buy
        pos.updated_ms = self.clock()
        changes = Changes()
        changes.position(symbol)
        changes.wallet = True
        return changes

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

    def _trim_closed(self) -> None:
        closed = [o for o in self.orders.values() if not o.is_open]
        for order in closed[: max(0, len(closed) - MAX_CLOSED_ORDERS)]:
            del self.orders[order.order_id]

    # -- persistence -----------------------------------------------------
    def to_state(self) -> dict:
        """Return the exchange truth as JSON-safe data."""
        return {
            "orders": [o.to_state() for o in self.orders.values()],
            "linkIds": dict(self.link_ids),
            "positions": [p.to_state() for p in self.positions.values()],
            "executions": [e.to_state() for e in self.executions],
            "wallet": self.wallet.to_state(),
            "lastPrice": {s: str(p) for s, p in self.last_price.items()},
            "seq": self._last_seq,
        }

    def load_state(self, state: dict) -> None:
        """Replace the exchange truth with a saved one."""
        self.reset()
        self.orders = {o["order_id"]: Order.from_state(o) for o in state.get("orders", [])}
        self._live = {i: o for i, o in self.orders.items() if o.is_open}
        self.link_ids = dict(state.get("linkIds", {}))
        self.positions = {p["symbol"]: Position.from_state(p) for p in state.get("positions", [])}
        self.executions.extend(Execution.from_state(e) for e in state.get("executions", []))
        self.wallet = Wallet.from_state(state["wallet"]) if "wallet" in state else Wallet(self.initial_balance)
        self.last_price.update({s: Decimal(p) for s, p in state.get("lastPrice", {}).items()})
        self._last_seq = int(state.get("seq", 0))

