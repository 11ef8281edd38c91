"""Stub builders for the domain tests: a clock that moves only when told, and small snapshot factories."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from failover.domain.clock import to_epoch_ms
from failover.domain.types import (
    FailureEvent,
    OrderSnapshot,
    Phase,
    PositionSnapshot,
    ProcessState,
    RunMode,
)

T0 = datetime(2025, 11, 18, 15, 20, 0, tzinfo=UTC)


class FakeClock:
    """A ``Clock`` for tests that counts in seconds: tells ``start`` until ``advance`` moves it."""

    def __init__(self, start: datetime = T0) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def now_ms(self) -> int:
        return to_epoch_ms(self._now)

    def advance(self, seconds: float) -> datetime:
        self._now += timedelta(seconds=seconds)
        return self._now


def position(symbol: str = "BTCUSDT", side: str = "LONG", qty: float = 0.01, **overrides: Any) -> PositionSnapshot:
    values: dict[str, Any] = {"entry_price": 91234.5, "leverage": 5, "pnl_unrealized": 1.23,
                              "exchange_position_id": None, **overrides}
    return PositionSnapshot(symbol=symbol, side=side, qty=qty, **values)


def order(client_order_id: str | None = "AISCLP-1", exchange_order_id: str | None = "ex-1", *,
          symbol: str = "BTCUSDT", side: str = "BUY", price: float = 91000.0, qty: float = 0.01,
          status: str = "NEW") -> OrderSnapshot:
    return OrderSnapshot(symbol=symbol, side=side, client_order_id=client_order_id,
                         exchange_order_id=exchange_order_id, price=price, qty=qty, status=status)


def event(failure_type: str, *, at: datetime = T0, source: str = "FAILOVER_MANAGER",
          details: dict[str, Any] | None = None) -> FailureEvent:
    return FailureEvent(timestamp=at, type=failure_type, source=source, message=f"test {failure_type}",
                        details=details or {})


def process_state(*, phase: str = Phase.RUNNING, pid: int = 12345, positions: tuple[PositionSnapshot, ...] = (),
                  orders: tuple[OrderSnapshot, ...] = (), symbols: tuple[str, ...] = ("BTCUSDT",),
                  at: datetime = T0) -> ProcessState:
    return ProcessState(last_update=at, pid=pid, run_mode=RunMode.SIM, phase=phase, active_symbols=symbols,
                        open_positions_snapshot=positions, open_orders_snapshot=orders)
