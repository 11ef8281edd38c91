"""The simulated account's books: orders, positions, executions and the wallet, and what they are worth.

What the matching engine changes and the REST views and payloads read: the
order index (open orders kept apart, so a market message never scans closed
ones), the instruments and order books the account is valued against, the
margin figures Bybit reports (equity, initial margin, available balance) and the
JSON-safe saved form of it all. Pure Python with Decimal money.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from trading.marketdata.instruments import InstrumentSpec

from . import errors as E
from .book import OrderBook
from .constants import DEFAULT_LEVERAGE, INITIAL_BALANCE, MAX_CLOSED_ORDERS, MAX_EXECUTIONS
from .models import Execution, Order, Position, Wallet


class Account:
    """Orders, positions, executions and the wallet of one account, with the books that value them."""

    def __init__(
        self,
        instruments: Mapping[str, InstrumentSpec],
        *,
        clock: Callable[[], int],
        initial_balance: Decimal = INITIAL_BALANCE,
    ) -> None:
        self.instruments = dict(instruments)
        self.clock = clock
        self.initial_balance = initial_balance
        self.books: dict[str, OrderBook] = {s: OrderBook(s) for s in self.instruments}
        self.last_price: dict[str, Decimal] = {}
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

    def _add_order(self, order: Order) -> None:
        """Index a newly accepted order by id, as open, and by its orderLinkId."""
        self.orders[order.order_id] = order
        self._live[order.order_id] = order
        if order.link_id:
            self.link_ids[order.link_id] = order.order_id

    def _open(self) -> Iterable[Order]:
        """The orders still open, in creation order; asked on every market message, so it never scans the
        closed ones: they leave the index here (a closed order never opens again)."""
        live = self._live
        for order_id in [i for i, o in live.items() if not o.is_open]:
            del live[order_id]
        return live.values()

    def has_open_orders(self, symbol: str) -> bool:
        if not self._live:  # the usual case, asked on every market message
            return False
        return any(o.symbol == symbol for o in self._open())

    def is_idle(self, symbol: str) -> bool:
        """No open order and no position on ``symbol``: a public trade only moves its last price."""
        pos = self.positions.get(symbol)
        return (pos is None or not pos.size) and not self.has_open_orders(symbol)

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        return [o for o in self._open() if symbol is None or o.symbol == symbol]

    def _trim_closed(self) -> None:
        """Forget the oldest closed orders beyond what the exchange remembers."""
        closed = [o for o in self.orders.values() if not o.is_open]
        for order in closed[: max(0, len(closed) - MAX_CLOSED_ORDERS)]:
            del self.orders[order.order_id]

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

    # -- persistence -----------------------------------------------------
    @property
    def last_seq(self) -> int:
        """The last position sequence number given (Bybit's ``seq``)."""
        return self._last_seq

    def apply_logged(self, record: dict[str, Any]) -> None:
        """Apply one change-log line over the state: the orders, executions, positions and wallet it left."""
        for data in record.get("orders") or []:
            order = Order.from_state(data)
            self.orders[order.order_id] = order
            if order.is_open:
                self._live[order.order_id] = order
            else:
                self._live.pop(order.order_id, None)
            if order.link_id:
                self.link_ids[order.link_id] = order.order_id
        self.executions.extend(Execution.from_state(x) for x in record.get("executions") or [])
        for data in record.get("positions") or []:
            pos = Position.from_state(data)
            self.positions[pos.symbol] = pos
        if record.get("wallet"):
            self.wallet = Wallet.from_state(record["wallet"])
        self._last_seq = max(self._last_seq, int(record.get("seq") or 0))

    def forget_old_closed(self) -> None:
        """Forget the closed orders beyond what the exchange remembers (after a change log was applied)."""
        self._trim_closed()

    def to_state(self) -> dict[str, Any]:
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

    def load_state(self, state: dict[str, Any]) -> None:
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
