"""DRY_RUN: the real exchange for reading, nothing sent for writing.

Orders are validated by the whole pipeline (risk, sizing, rounding), recorded
and logged, then stopped here with ``OrderNotSent``; cancels and leverage
changes are refused the same way. Everything read (instruments, wallet,
positions, orders) is real.

The reads are listed one by one rather than forwarded wholesale: a method
added to the port later is missing here (and mypy says so where this adapter
stands in for the port) instead of reaching the real exchange unnoticed, and
nothing of the adapter underneath (its pybit session can place orders) is
reachable through this one.
"""

from __future__ import annotations

from decimal import Decimal

from trading.exchange.port import (
    ExchangeError,
    ExchangeOrder,
    ExchangePort,
    ExchangePosition,
    Execution,
    OrderAck,
    PlaceOrder,
    Wallet,
)
from trading.marketdata.instruments import InstrumentSpec


class OrderNotSent(ExchangeError):
    """DRY_RUN: the order was validated and logged, and deliberately not sent."""


class DryRunExchange:
    """The exchange port with every write refused and every read passed to ``real``."""

    def __init__(self, real: ExchangePort) -> None:
        self._real = real

    # -- writes: refused, never sent ------------------------------------------

    def place_order(self, order: PlaceOrder) -> OrderAck:
        raise OrderNotSent(f"DRY_RUN: {order.side} {order.qty} {order.symbol} validated and not sent")

    def cancel_order(self, symbol: str, *, order_id: str = "", order_link_id: str = "") -> bool:
        raise OrderNotSent("DRY_RUN: cancels are not sent")

    def cancel_all(self, symbol: str | None = None) -> list[str]:
        raise OrderNotSent("DRY_RUN: cancels are not sent")

    def set_leverage(self, symbol: str, leverage: Decimal) -> None:
        raise OrderNotSent("DRY_RUN: leverage changes are not sent")

    # -- reads: the real exchange ---------------------------------------------

    def get_order(self, symbol: str, order_link_id: str, *, order_id: str = "") -> ExchangeOrder | None:
        return self._real.get_order(symbol, order_link_id, order_id=order_id)

    def open_orders(self, symbol: str | None = None) -> list[ExchangeOrder]:
        return self._real.open_orders(symbol)

    def positions(self, symbol: str | None = None) -> list[ExchangePosition]:
        return self._real.positions(symbol)

    def executions(self, symbol: str | None = None, *, since_ms: int = 0) -> list[Execution]:
        return self._real.executions(symbol, since_ms=since_ms)

    def wallet(self) -> Wallet:
        return self._real.wallet()

    def instruments(self, symbols: list[str]) -> dict[str, InstrumentSpec]:
        return self._real.instruments(symbols)

    def server_time_ms(self) -> int:
        return self._real.server_time_ms()
