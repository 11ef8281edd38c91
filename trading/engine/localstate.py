"""The trader's in-memory view of its orders and positions, written through to persistence.

The hot path reads this; every change is first made durable by the
persistence port (the database in SIM/LIVE, nothing in REPLAY) and only then
applied here, so a crash can lose a cache but never a record.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Protocol, TypedDict, Unpack

ZERO = Decimal(0)

# Local order statuses (the spec's, plus the two before the exchange answered).
INTENT = "INTENT"
SUBMITTED = "SUBMITTED"
NEW = "NEW"
PARTIALLY_FILLED = "PARTIALLY_FILLED"
FILLED = "FILLED"
CANCELED = "CANCELED"
REJECTED = "REJECTED"
OPEN_LOCAL = frozenset({INTENT, SUBMITTED, NEW, PARTIALLY_FILLED})

LOCAL = "LOCAL"
EXTERNAL_ORDER_RECOVERED = "EXTERNAL_ORDER_RECOVERED"
EXTERNAL_POSITION_RECOVERED = "EXTERNAL_POSITION_RECOVERED"

# Bybit orderStatus -> local status.
_FROM_BYBIT = {
    "New": NEW,
    "Untriggered": NEW,
    "PartiallyFilled": PARTIALLY_FILLED,
    "Filled": FILLED,
    "Cancelled": CANCELED,
    "PartiallyFilledCanceled": CANCELED,
    "Deactivated": CANCELED,
    "Triggered": NEW,
    "Rejected": REJECTED,
}


def local_status(bybit_status: str) -> str:
    return _FROM_BYBIT.get(bybit_status, NEW)


@dataclass(frozen=True, slots=True)
class LocalOrder:
    order_link_id: str
    symbol: str
    side: str  # BUY | SELL
    qty: Decimal
    order_type: str = "Market"
    price: Decimal | None = None
    reduce_only: bool = False
    take_profit: Decimal | None = None
    stop_loss: Decimal | None = None
    status: str = INTENT
    exchange_order_id: str = ""
    filled_qty: Decimal = ZERO
    avg_fill_price: Decimal | None = None
    expected_price: Decimal | None = None
    purpose: str = "ENTRY"
    origin: str = LOCAL
    reject_reason: str = ""
    created_ms: int = 0
    updated_ms: int = 0

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_LOCAL


@dataclass(frozen=True, slots=True)
class LocalPosition:
    symbol: str
    side: str  # LONG | SHORT
    qty: Decimal
    entry_price: Decimal
    leverage: Decimal = Decimal(1)
    pnl_unrealized: Decimal = ZERO
    origin: str = LOCAL
    exchange_position_id: str = ""
    opened_ms: int = 0
    fees: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class ClosedTrade:
    symbol: str
    side: str
    qty: Decimal
    entry_price: Decimal
    exit_price: Decimal
    realized_pnl: Decimal
    fees: Decimal
    close_reason: str
    opened_ms: int
    closed_ms: int


class OrderChanges(TypedDict, total=False):
    """What the exchange's answers and reports change on a local order."""

    status: str
    exchange_order_id: str
    filled_qty: Decimal
    avg_fill_price: Decimal | None
    reject_reason: str
    updated_ms: int


class Persistence(Protocol):
    """Where local truth is made durable; each call returns only once it is."""

    def save_order(self, order: LocalOrder) -> None: ...

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
        """Store a fill; False when this exec_id was stored before (a replayed message)."""
        ...

    def save_position(self, position: LocalPosition) -> None: ...

    def close_position(self, symbol: str, *, reason: str, closed_ms: int) -> None: ...

    def save_trade(self, trade: ClosedTrade) -> None: ...

    def load(self) -> tuple[list[LocalOrder], list[LocalPosition]]:
        """Open orders and open positions, for a (re)start or a refresh after a recovery step."""
        ...


class NoPersistence:
    """REPLAY: nothing outlives the process; fills are de-duplicated in memory."""

    def __init__(self) -> None:
        self._exec_ids: set[str] = set()
        self.trades: list[ClosedTrade] = []

    def save_order(self, order: LocalOrder) -> None:
        return None

    def save_fill(self, *, exec_id: str, **_: object) -> bool:
        if exec_id in self._exec_ids:
            return False
        self._exec_ids.add(exec_id)
        return True

    def save_position(self, position: LocalPosition) -> None:
        return None

    def close_position(self, symbol: str, *, reason: str, closed_ms: int) -> None:
        return None

    def save_trade(self, trade: ClosedTrade) -> None:
        self.trades.append(trade)

    def load(self) -> tuple[list[LocalOrder], list[LocalPosition]]:
        return [], []


@dataclass
class LocalState:
    """Orders by orderLinkId and open positions by symbol, written through ``persistence``."""

    persistence: Persistence
    orders: dict[str, LocalOrder] = field(default_factory=dict)
    positions: dict[str, LocalPosition] = field(default_factory=dict)
    by_exchange_id: dict[str, str] = field(default_factory=dict)

    def reload(self) -> None:
        """Replace the cache with what persistence holds (start, or after a recovery step)."""
        orders, positions = self.persistence.load()
        self.orders = {o.order_link_id: o for o in orders}
        self.positions = {p.symbol: p for p in positions}
        self.by_exchange_id = {o.exchange_order_id: o.order_link_id for o in orders if o.exchange_order_id}

    def put_order(self, order: LocalOrder) -> LocalOrder:
        self.persistence.save_order(order)
        self.orders[order.order_link_id] = order
        if order.exchange_order_id:
            self.by_exchange_id[order.exchange_order_id] = order.order_link_id
        return order

    def update_order(self, link_id: str, **changes: Unpack[OrderChanges]) -> LocalOrder:
        return self.put_order(replace(self.orders[link_id], **changes))

    def find_order(self, *, order_link_id: str = "", exchange_order_id: str = "") -> LocalOrder | None:
        if order_link_id and order_link_id in self.orders:
            return self.orders[order_link_id]
        link = self.by_exchange_id.get(exchange_order_id) if exchange_order_id else None
        return self.orders.get(link) if link else None

    def open_orders(self, symbol: str | None = None) -> list[LocalOrder]:
        return [o for o in self.orders.values() if o.is_open and (symbol is None or o.symbol == symbol)]

    def forget_closed_orders(self) -> None:
        """Drop finished orders from memory (they stay in persistence) so the cache stays small."""
        for link_id in [k for k, o in self.orders.items() if not o.is_open]:
            order = self.orders.pop(link_id)
            self.by_exchange_id.pop(order.exchange_order_id, None)

    def put_position(self, position: LocalPosition) -> None:
        self.persistence.save_position(position)
        self.positions[position.symbol] = position

    def drop_position(self, symbol: str, *, reason: str, closed_ms: int) -> LocalPosition | None:
        position = self.positions.get(symbol)
        if position is None:
            return None
        self.persistence.close_position(symbol, reason=reason, closed_ms=closed_ms)
        return self.positions.pop(symbol)
