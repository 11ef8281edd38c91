"""The exchange port behind the account lease: no change to the account without proof of the lease.

Every call that changes the account (place, cancel, cancel-all, set-leverage)
first passes ``AccountLease.ensure``: the local deadline on ``CLOCK_BOOTTIME``
(the time of the last successful acquire or renew, plus the TTL, minus a
margin; it runs on while the process is stopped or the host suspended), then
the fence check in Redis (the lease still holds this trader's token, with more
than the margin left). Either failing raises ``LeaseLost`` and nothing is sent:
fail closed. Reads pass straight through; a standby reads like a leader.

Like ``DryRunExchange``, the methods are listed one by one: a method added to
the port later is missing here (and mypy says so) instead of reaching the
exchange unfenced.
"""

from __future__ import annotations

from decimal import Decimal

from trading.exchange.lease import AccountLease, LeaseLost
from trading.exchange.port import ExchangeOrder, ExchangePort, ExchangePosition, Execution, OrderAck, PlaceOrder, Wallet
from trading.marketdata.instruments import InstrumentSpec

__all__ = ["FencedExchange", "LeaseLost"]


class FencedExchange:
    """``ExchangePort`` over ``inner``; every write proves the lease first (``LeaseLost``: not sent)."""

    def __init__(self, inner: ExchangePort, lease: AccountLease) -> None:
        self._inner = inner
        self._lease = lease
        self.refused = 0  # writes stopped for want of a lease (a count for the heartbeat and the tests)

    @property
    def lease(self) -> AccountLease:
        return self._lease

    def _ensure(self, what: str) -> None:
        try:
            self._lease.ensure(what)
        except LeaseLost:
            self.refused += 1
            raise

    # -- writes: fenced -------------------------------------------------------------------------

    def place_order(self, order: PlaceOrder) -> OrderAck:
        self._ensure(f"order {order.order_link_id}")
        return self._inner.place_order(order)

    def cancel_order(self, symbol: str, *, order_id: str = "", order_link_id: str = "") -> bool:
        self._ensure(f"cancel of {order_link_id or order_id}")
        return self._inner.cancel_order(symbol, order_id=order_id, order_link_id=order_link_id)

    def cancel_all(self, symbol: str | None = None) -> list[str]:
        self._ensure(f"cancel-all on {symbol or 'every symbol'}")
        return self._inner.cancel_all(symbol)

    def set_leverage(self, symbol: str, leverage: Decimal) -> None:
        self._ensure(f"leverage {leverage} on {symbol}")
        self._inner.set_leverage(symbol, leverage)

    # -- reads: passed through ------------------------------------------------------------------

    def get_order(self, symbol: str, order_link_id: str, *, order_id: str = "") -> ExchangeOrder | None:
        return self._inner.get_order(symbol, order_link_id, order_id=order_id)

    def open_orders(self, symbol: str | None = None) -> list[ExchangeOrder]:
        return self._inner.open_orders(symbol)

    def positions(self, symbol: str | None = None) -> list[ExchangePosition]:
        return self._inner.positions(symbol)

    def executions(self, symbol: str | None = None, *, since_ms: int = 0) -> list[Execution]:
        return self._inner.executions(symbol, since_ms=since_ms)

    def wallet(self) -> Wallet:
        return self._inner.wallet()

    def instruments(self, symbols: list[str]) -> dict[str, InstrumentSpec]:
        return self._inner.instruments(symbols)

    def server_time_ms(self) -> int:
        return self._inner.server_time_ms()
