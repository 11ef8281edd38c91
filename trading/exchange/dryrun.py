"""DRY_RUN: the real exchange for reading, nothing sent for writing.

Orders are validated by the whole pipeline (risk, sizing, rounding), recorded
and logged, then stopped here with ``OrderNotSent``; cancels are refused the
same way. Everything read (instruments, wallet, positions, orders) is real.
"""

from __future__ import annotations

from typing import Any

from trading.exchange.port import ExchangeError, OrderAck, PlaceOrder


class OrderNotSent(ExchangeError):
    """DRY_RUN: the order was validated and logged, and deliberately not sent."""


class DryRunExchange:
    def __init__(self, real: Any) -> None:
        self._real = real

    def place_order(self, order: PlaceOrder) -> OrderAck:
        raise OrderNotSent(f"DRY_RUN: {order.side} {order.qty} {order.symbol} validated and not sent")

    def cancel_order(self, symbol: str, *, order_id: str = "", order_link_id: str = "") -> bool:
        raise OrderNotSent("DRY_RUN: cancels are not sent")

    def cancel_all(self, symbol: str | None = None) -> list[str]:
        raise OrderNotSent("DRY_RUN: cancels are not sent")

    def set_leverage(self, symbol: str, leverage: Any) -> None:
        raise OrderNotSent("DRY_RUN: leverage changes are not sent")

    def __getattr__(self, name: str) -> Any:
        # Every read goes to the real exchange.
        return getattr(self._real, name)
