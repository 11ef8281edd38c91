"""The one port the product trades through.

Two adapters implement it: the pybit adapter (Bybit mainnet, testnet, demo or the
simulator) and the in-process venue of REPLAY. Nothing else in the product
knows which one it talks to. Prices and quantities are ``Decimal``: they reach
the exchange.

Exceptions say what the caller must do:

- ``TemporaryExchangeError``: nothing happened; retry later with backoff.
- ``AmbiguousSubmitError``: the order may or may not exist; look it up by its
  ``orderLinkId``, never send it again blindly.
- ``OrderRejected``: the exchange refused; final for this request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from trading.marketdata.instruments import InstrumentSpec

BUY = "Buy"
SELL = "Sell"

# Bybit order statuses that are still working on the book.
OPEN_STATUSES = frozenset({"New", "PartiallyFilled", "Untriggered"})


class ExchangeError(Exception):
    """Base class of everything the port raises."""


class TemporaryExchangeError(ExchangeError):
    """The request did not take effect (5xx on a read, refused connection, rate limit): retry with backoff."""


class RateLimited(TemporaryExchangeError):
    def __init__(self, message: str, *, reset_at_ms: int | None = None) -> None:
        super().__init__(message)
        self.reset_at_ms = reset_at_ms


class AmbiguousSubmitError(ExchangeError):
    """An order request whose outcome is unknown (timeout, cut connection, 5xx on create)."""

    def __init__(self, message: str, *, order_link_id: str) -> None:
        super().__init__(message)
        self.order_link_id = order_link_id


class OrderRejected(ExchangeError):
    """The exchange refused the request; ``ret_code`` is Bybit's retCode."""

    def __init__(self, message: str, *, ret_code: int) -> None:
        super().__init__(f"{ret_code}: {message}")
        self.ret_code = ret_code
        self.ret_msg = message


class DuplicateOrderLinkId(OrderRejected):
    """110072: an order with this orderLinkId already exists; look it up instead."""


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    symbol: str
    side: str  # BUY | SELL
    qty: Decimal
    order_link_id: str
    order_type: str = "Market"  # Market | Limit
    price: Decimal | None = None
    reduce_only: bool = False
    take_profit: Decimal | None = None
    stop_loss: Decimal | None = None
    time_in_force: str | None = None


@dataclass(frozen=True, slots=True)
class OrderAck:
    order_id: str
    order_link_id: str


@dataclass(frozen=True, slots=True)
class ExchangeOrder:
    order_id: str
    order_link_id: str
    symbol: str
    side: str
    order_type: str
    price: Decimal
    qty: Decimal
    cum_exec_qty: Decimal
    avg_price: Decimal
    status: str  # Bybit's orderStatus
    reduce_only: bool
    created_ms: int
    updated_ms: int

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


@dataclass(frozen=True, slots=True)
class ExchangePosition:
    symbol: str
    side: str  # BUY (long) | SELL (short)
    size: Decimal
    avg_price: Decimal
    leverage: Decimal
    unrealised_pnl: Decimal
    mark_price: Decimal
    take_profit: Decimal = Decimal(0)
    stop_loss: Decimal = Decimal(0)
    updated_ms: int = 0


@dataclass(frozen=True, slots=True)
class Execution:
    exec_id: str
    order_id: str
    order_link_id: str
    symbol: str
    side: str
    price: Decimal
    qty: Decimal
    fee: Decimal
    is_maker: bool
    exec_ms: int
    closed_size: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class Wallet:
    equity: Decimal
    wallet_balance: Decimal
    available: Decimal
    unrealised_pnl: Decimal = Decimal(0)


@dataclass(slots=True)
class StreamStatus:
    """What the product itself measured about one stream; pybit's own flags are not trusted."""

    name: str
    connected: bool = False
    last_message_ms: int = 0
    connects: int = 0  # sockets the product built
    opens: int = 0  # connections opened, including pybit's own silent reconnects
    rebuilds: int = 0
    gave_up: bool = False
    errors: list[str] = field(default_factory=list)


StreamSink = Callable[[str, dict[str, Any]], None]
"""Receives ``(stream, raw_message)``: stream is "public" or "private"."""


class ExchangePort(Protocol):
    def place_order(self, order: PlaceOrder) -> OrderAck: ...

    def cancel_order(self, symbol: str, *, order_id: str = "", order_link_id: str = "") -> bool:
        """Cancel one order; False when the exchange no longer has it open (110001)."""
        ...

    def cancel_all(self, symbol: str | None = None) -> list[str]: ...

    def get_order(self, symbol: str, order_link_id: str, *, order_id: str = "") -> ExchangeOrder | None:
        """Find an order by orderLinkId (or by ``order_id`` when it has no link), open or closed; None if the
        exchange never saw it."""
        ...

    def open_orders(self, symbol: str | None = None) -> list[ExchangeOrder]: ...

    def positions(self, symbol: str | None = None) -> list[ExchangePosition]:
        """Open (non-zero) positions."""
        ...

    def executions(self, symbol: str | None = None, *, since_ms: int = 0) -> list[Execution]: ...

    def wallet(self) -> Wallet: ...

    def instruments(self, symbols: list[str]) -> dict[str, InstrumentSpec]: ...

    def set_leverage(self, symbol: str, leverage: Decimal) -> None: ...

    def server_time_ms(self) -> int: ...


DCP_PRODUCT = "DERIVATIVES"  # Bybit's product for perpetuals and futures (its default, OPTIONS, is not ours)


class DcpPort(Protocol):
    """Bybit's Disconnection Cancel All, where the account has it (a port of its own: only the pybit adapter
    talks to an exchange that can have it)."""

    def dcp_window_s(self) -> int | None:
        """The DERIVATIVES window the exchange has for the account; None when the account has no DCP."""
        ...

    def set_dcp(self, window_s: int) -> None:
        """Set the DERIVATIVES window (3 to 300 s); refused (``OrderRejected``) for an account without DCP."""
        ...
