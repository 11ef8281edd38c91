"""Orders, positions, executions and the wallet of the simulated account.

Plain dataclasses with Decimal money and quantities, and a JSON-safe state form
(``to_state`` / ``from_state``) for the persisted exchange truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any

OPEN_STATUSES = frozenset({"New", "PartiallyFilled", "Untriggered"})

# createType values Bybit uses on orders and executions.
CREATE_BY_USER = "CreateByUser"
CREATE_BY_TAKE_PROFIT = "CreateByTakeProfit"
CREATE_BY_STOP_LOSS = "CreateByStopLoss"


def _decimal_fields(cls: type) -> set[str]:
    return {f.name for f in fields(cls) if f.type in ("Decimal", "Decimal | None")}


class _StateMixin:
    """Convert Decimal fields to strings and back for the JSON state file."""

    def to_state(self) -> dict[str, Any]:
        # Every field is a scalar: read them directly (asdict deep-copies; the change log asks per change).
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            out[f.name] = str(value) if isinstance(value, Decimal) else value
        return out

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> Any:
        dec = _decimal_fields(cls)
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        kwargs = {
            k: (Decimal(v) if k in dec and v is not None else v) for k, v in data.items() if k in known
        }
        return cls(**kwargs)


@dataclass(slots=True)
class Order(_StateMixin):
    order_id: str
    link_id: str
    symbol: str
    side: str  # Buy | Sell
    order_type: str  # Market | Limit
    qty: Decimal
    price: Decimal | None  # None for market orders
    time_in_force: str
    reduce_only: bool
    created_ms: int
    updated_ms: int
    status: str = "New"
    cum_qty: Decimal = Decimal(0)
    cum_value: Decimal = Decimal(0)
    cum_fee: Decimal = Decimal(0)
    take_profit: Decimal | None = None
    stop_loss: Decimal | None = None
    close_on_trigger: bool = False
    cancel_type: str = "UNKNOWN"
    reject_reason: str = "EC_NoError"
    create_type: str = CREATE_BY_USER
    stop_order_type: str = ""
    last_price_on_created: Decimal | None = None

    @property
    def leaves_qty(self) -> Decimal:
        return self.qty - self.cum_qty if self.status in OPEN_STATUSES else Decimal(0)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def avg_price(self) -> Decimal:
        return self.cum_value / self.cum_qty if self.cum_qty else Decimal(0)


@dataclass(slots=True)
class Position(_StateMixin):
    symbol: str
    size: Decimal = Decimal(0)  # signed: > 0 long, < 0 short
    avg_price: Decimal = Decimal(0)
    leverage: Decimal = Decimal(10)
    take_profit: Decimal | None = None
    stop_loss: Decimal | None = None
    cur_realised: Decimal = Decimal(0)
    cum_realised: Decimal = Decimal(0)
    created_ms: int = 0
    updated_ms: int = 0
    seq: int = 0

    @property
    def side(self) -> str:
        if self.size > 0:
            return "Buy"
        if self.size < 0:
            return "Sell"
        return ""


def apply_fill(pos: Position, signed: Decimal, price: Decimal, now: int) -> tuple[Decimal, Decimal]:
    """Move the position by ``signed`` at ``price``; return (closed size, realised PnL)."""
    if not pos.size:
        pos.created_ms = now
    pos.updated_ms = now
    if pos.size == 0 or (pos.size > 0) == (signed > 0):
        total = abs(pos.size) + abs(signed)
        pos.avg_price = (abs(pos.size) * pos.avg_price + abs(signed) * price) / total
        pos.size += signed
        return Decimal(0), Decimal(0)
    closed = min(abs(signed), abs(pos.size))
    direction = 1 if pos.size > 0 else -1
    pnl = closed * (price - pos.avg_price) * direction
    pos.size += signed
    if pos.size == 0:
        pos.avg_price = Decimal(0)
    elif (pos.size > 0) != (direction > 0):
        pos.avg_price = price  # flipped: the new side opened at this price
    return closed, pnl


@dataclass(slots=True)
class Execution(_StateMixin):
    exec_id: str
    order_id: str
    link_id: str
    symbol: str
    side: str
    order_type: str
    order_price: Decimal | None
    order_qty: Decimal
    leaves_qty: Decimal
    exec_price: Decimal
    exec_qty: Decimal
    exec_fee: Decimal
    fee_rate: Decimal
    is_maker: bool
    exec_time: int
    closed_size: Decimal
    exec_pnl: Decimal
    mark_price: Decimal
    seq: int
    create_type: str = CREATE_BY_USER
    stop_order_type: str = ""

    @property
    def exec_value(self) -> Decimal:
        return self.exec_price * self.exec_qty


@dataclass(slots=True)
class Wallet(_StateMixin):
    balance: Decimal  # USDT wallet balance: deposits + realised PnL - fees
    cum_realised: Decimal = Decimal(0)


@dataclass(slots=True)
class Changes:
    """What one exchange operation changed, in Bybit's push order."""

    orders: list[Order] = field(default_factory=list)
    executions: list[Execution] = field(default_factory=list)
    positions: list[str] = field(default_factory=list)  # symbols
    wallet: bool = False

    def order(self, order: Order) -> None:
        # Bybit pushes the latest state of an order; keep one entry per id, last wins.
        self.orders = [o for o in self.orders if o.order_id != order.order_id] + [order]

    def position(self, symbol: str) -> None:
        if symbol not in self.positions:
            self.positions.append(symbol)

    def merge(self, other: Changes) -> None:
        for o in other.orders:
            self.order(o)
        self.executions.extend(other.executions)
        for s in other.positions:
            self.position(s)
        self.wallet = self.wallet or other.wallet

    def __bool__(self) -> bool:
        return bool(self.orders or self.executions or self.positions or self.wallet)
