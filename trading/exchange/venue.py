"""REPLAY's exchange: the simulator's matching engine in-process, with no sockets.

Same fill rules as the simulator (it is the same ``MatchingEngine`` and market
feed). What a real exchange would push on the private stream is queued here in
Bybit's shapes and handed to the pipeline with ``drain()``, so REPLAY exercises
the same private-message path as SIM and LIVE. Ids come from a counter, so the
same input gives the same output, byte for byte.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from trading.exchange.port import (
    ExchangeOrder,
    ExchangePosition,
    Execution,
    OrderAck,
    OrderRejected,
    PlaceOrder,
    Wallet,
)
from trading.exchange.pybit_rest import parse_execution, parse_order, parse_position
from trading.marketdata.instruments import InstrumentSpec
from trading.marketdata.normalise import LevelParser, parse_levels
from trading.simexchange import errors as sim_errors
from trading.simexchange import payloads
from trading.simexchange.market import MarketFeed
from trading.simexchange.matching import MatchingEngine
from trading.simexchange.models import Changes
from trading.simexchange.orders import OrderRequest


class _MatchingFeed(MarketFeed):
    """Only the matching half of the simulator's feed: REPLAY has no subscribers for derived streams.

    The book, resting fills and TP/SL triggers are the same code as the simulator's;
    what is skipped (derived order book views, tickers, candles) only feeds sockets.
    """

    def __init__(self, engine: MatchingEngine, parse_levels: LevelParser) -> None:
        super().__init__(engine, wanted=lambda topic: False, parse_levels=parse_levels)

    def apply(self, msg: dict[str, Any], now_ms: int) -> Changes | None:
        """Apply one public message as the exchange would; None when nothing changed for any account."""
        kind, symbol, depth = self.route(msg.get("topic"))
        engine = self.engine
        if kind == "orderbook":
            if self._apply_book(symbol, depth, msg, now_ms):
                return engine.on_book(symbol) if engine.has_open_orders(symbol) else None
        elif kind == "publicTrade":
            trades = [t for t in msg.get("data") or () if isinstance(t, dict)]
            if not trades:
                return None
            if engine.is_idle(symbol):  # no order rests and no position: the trades only move the last price
                engine.last_price[symbol] = Decimal(str(trades[-1]["p"]))
                return None
            changes = Changes()
            for trade in trades:
                changes.merge(engine.on_trade(symbol, Decimal(str(trade["p"])), Decimal(str(trade["v"]))))
            return changes
        return None  # tickers and klines only feed subscribers


class InProcessVenue:
    """The exchange port over an in-process matching engine."""

    def __init__(
        self,
        instruments: Mapping[str, InstrumentSpec],
        *,
        clock_ms: Callable[[], int],
        initial_balance: Decimal | None = None,
        parse_levels: LevelParser = parse_levels,
    ) -> None:
        ids = itertools.count(1)
        extra = {"initial_balance": initial_balance} if initial_balance is not None else {}
        self.engine = MatchingEngine(instruments, clock=clock_ms, id_factory=lambda: f"venue-{next(ids):010d}", **extra)
        self.feed = _MatchingFeed(self.engine, parse_levels)
        self._clock_ms = clock_ms
        # What drain() hands out next; always this one list, so a caller may hold it and test it for emptiness.
        self.pending: list[dict[str, Any]] = []
        self._msg_ids = itertools.count(1)

    # -- market and private stream ------------------------------------------

    def on_public(self, message: dict[str, Any]) -> None:
        """Apply a public market message: book, trades, resting fills, TP/SL triggers."""
        changes = self.feed.apply(message, self._clock_ms())
        if changes:
            self._publish(changes)

    def drain(self) -> Sequence[dict[str, Any]]:
        """Return and forget the private messages produced so far, in push order."""
        pending = self.pending
        if not pending:
            return ()
        out = pending[:]
        pending.clear()
        return out

    def _publish(self, changes: Changes) -> None:
        if not changes:
            return
        e = self.engine
        ts = self._clock_ms()
        if changes.orders:
            self._private("order", [payloads.order_item(e, o, ws=True) for o in changes.orders], ts)
        if changes.executions:
            self._private("execution", [payloads.execution_item(e, x, ws=True) for x in changes.executions], ts)
        if changes.positions:
            self._private(
                "position", [payloads.position_item(e, e.position(s), ws=True) for s in changes.positions], ts
            )
        if changes.wallet:
            self._private("wallet", [payloads.wallet_item(e)], ts)

    def _private(self, topic: str, data: list[dict[str, Any]], ts: int) -> None:
        self.pending.append({"id": f"m{next(self._msg_ids)}", "topic": topic, "creationTime": ts, "data": data})

    # -- the port -----------------------------------------------------------

    def _call(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except sim_errors.ExchangeError as exc:
            raise OrderRejected(exc.ret_msg, ret_code=exc.ret_code) from exc

    def place_order(self, order: PlaceOrder) -> OrderAck:
        request = OrderRequest(
            symbol=order.symbol,
            side=order.side,
            order_type=order.order_type,
            qty=order.qty,
            price=order.price,
            time_in_force=order.time_in_force,
            link_id=order.order_link_id,
            reduce_only=order.reduce_only,
            take_profit=order.take_profit,
            stop_loss=order.stop_loss,
        )
        placed, changes = self._call(lambda: self.engine.place_order(request))
        self._publish(changes)
        return OrderAck(order_id=placed.order_id, order_link_id=placed.link_id)

    def cancel_order(self, symbol: str, *, order_id: str = "", order_link_id: str = "") -> bool:
        try:
            _, changes = self.engine.cancel_order(symbol, order_id or None, order_link_id or None)
        except sim_errors.ExchangeError as exc:
            if exc.ret_code == sim_errors.ORDER_NOT_EXISTS:
                return False
            raise OrderRejected(exc.ret_msg, ret_code=exc.ret_code) from exc
        self._publish(changes)
        return True

    def cancel_all(self, symbol: str | None = None) -> list[str]:
        cancelled, changes = self._call(lambda: self.engine.cancel_all(symbol))
        self._publish(changes)
        return [o.link_id or o.order_id for o in cancelled]

    def _order(self, order: Any) -> ExchangeOrder:
        return parse_order(payloads.order_item(self.engine, order))

    def get_order(self, symbol: str, order_link_id: str, *, order_id: str = "") -> ExchangeOrder | None:
        found = self.engine.find_order(None if order_link_id else order_id or None, order_link_id or None)
        return self._order(found) if found is not None and found.symbol == symbol else None

    def open_orders(self, symbol: str | None = None) -> list[ExchangeOrder]:
        return [self._order(o) for o in self.engine.open_orders(symbol)]

    def positions(self, symbol: str | None = None) -> list[ExchangePosition]:
        e = self.engine
        rows = [
            parse_position(payloads.position_item(e, p))
            for s, p in e.positions.items()
            if symbol is None or s == symbol
        ]
        return [p for p in rows if p.size > 0]

    def executions(self, symbol: str | None = None, *, since_ms: int = 0) -> list[Execution]:
        e = self.engine
        return [
            parse_execution(payloads.execution_item(e, x))
            for x in e.executions
            if (symbol is None or x.symbol == symbol) and x.exec_time >= since_ms
        ]

    def wallet(self) -> Wallet:
        e = self.engine
        return Wallet(equity=e.equity(), wallet_balance=e.wallet.balance, available=e.available())

    def instruments(self, symbols: list[str]) -> dict[str, InstrumentSpec]:
        return {s: self.engine.spec(s) for s in symbols}

    def set_leverage(self, symbol: str, leverage: Decimal) -> None:
        try:
            self._publish(self.engine.set_leverage(symbol, leverage, leverage))
        except sim_errors.ExchangeError as exc:
            if exc.ret_code != sim_errors.LEVERAGE_NOT_MODIFIED:
                raise OrderRejected(exc.ret_msg, ret_code=exc.ret_code) from exc

    def server_time_ms(self) -> int:
        return self._clock_ms()
