"""What a process held (spec 3.1): positions and orders as one side believed them, and the black box."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from failover.domain import _codec as c
from failover.domain._codec import SchemaError
from failover.domain.enums import OrderSide, OrderStatus, Phase, PositionSide, RunMode
from failover.domain.failure import FailureEvent


@dataclass(frozen=True, slots=True)
class PositionSnapshot:
    """A position as one side believed it (spec 3.1); ``qty`` is always positive, ``side`` carries direction."""

    symbol: str
    side: PositionSide
    entry_price: int | float
    qty: int | float
    leverage: int | float
    pnl_unrealized: int | float
    exchange_position_id: str | None = None

    def __post_init__(self) -> None:
        c.string(self.symbol, "symbol")
        c.assign(self, "side", c.enum(PositionSide, self.side, "side"))
        c.number(self.entry_price, "entryPrice", minimum=0)
        c.number(self.qty, "qty", positive=True)
        c.number(self.leverage, "leverage", positive=True)
        c.number(self.pnl_unrealized, "pnlUnrealized")
        c.opt_string(self.exchange_position_id, "exchangePositionId")

    def to_dict(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "side": self.side.value,
            "entryPrice": self.entry_price,
            "qty": self.qty,
            "leverage": self.leverage,
            "pnlUnrealized": self.pnl_unrealized,
            "exchangePositionId": self.exchange_position_id,
        }

    @classmethod
    def from_dict(cls, data: Any, path: str = "") -> PositionSnapshot:
        def build() -> PositionSnapshot:
            d = c.obj(data, "")
            return cls(
                symbol=c.field(d, "symbol", ""),
                side=c.field(d, "side", ""),
                entry_price=c.field(d, "entryPrice", ""),
                qty=c.field(d, "qty", ""),
                leverage=c.field(d, "leverage", ""),
                pnl_unrealized=c.field(d, "pnlUnrealized", ""),
                exchange_position_id=c.opt(d, "exchangePositionId"),
            )

        return c.read(path, build)


@dataclass(frozen=True, slots=True)
class OrderSnapshot:
    """An order as one side believed it (spec 3.1); at least one of its two ids is known."""

    symbol: str
    side: OrderSide
    client_order_id: str | None
    exchange_order_id: str | None
    price: int | float
    qty: int | float
    status: OrderStatus

    def __post_init__(self) -> None:
        c.string(self.symbol, "symbol")
        c.assign(self, "side", c.enum(OrderSide, self.side, "side"))
        c.opt_string(self.client_order_id, "clientOrderId")
        c.opt_string(self.exchange_order_id, "exchangeOrderId")
        if self.client_order_id is None and self.exchange_order_id is None:
            # An order with neither id can never be matched against the exchange.
            raise SchemaError("clientOrderId", "clientOrderId and exchangeOrderId cannot both be null")
        c.number(self.price, "price", minimum=0)  # 0 for a market order
        c.number(self.qty, "qty", positive=True)
        c.assign(self, "status", c.enum(OrderStatus, self.status, "status"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "side": self.side.value,
            "clientOrderId": self.client_order_id,
            "exchangeOrderId": self.exchange_order_id,
            "price": self.price,
            "qty": self.qty,
            "status": self.status.value,
        }

    @classmethod
    def from_dict(cls, data: Any, path: str = "") -> OrderSnapshot:
        def build() -> OrderSnapshot:
            d = c.obj(data, "")
            return cls(
                symbol=c.field(d, "symbol", ""),
                side=c.field(d, "side", ""),
                client_order_id=c.opt(d, "clientOrderId"),
                exchange_order_id=c.opt(d, "exchangeOrderId"),
                price=c.field(d, "price", ""),
                qty=c.field(d, "qty", ""),
                status=c.field(d, "status", ""),
            )

        return c.read(path, build)


@dataclass(frozen=True, slots=True)
class ProcessState:
    """The black box in ``data/system/process_state.json`` (spec 3.1)."""

    last_update: datetime
    pid: int
    run_mode: RunMode
    phase: Phase
    active_symbols: tuple[str, ...] = ()
    open_positions_snapshot: tuple[PositionSnapshot, ...] = ()
    open_orders_snapshot: tuple[OrderSnapshot, ...] = ()
    last_recovery_at: datetime | None = None
    last_failure: FailureEvent | None = None
    role: str | None = None  # LEADER or STANDBY on the account lease (None: written before leases, or no lease)
    lease: dict[str, Any] | None = None  # {"account", "holder", "token", "expiresAt", "held"}

    def __post_init__(self) -> None:
        c.assign(self, "last_update", c.to_ms(self.last_update, "lastUpdate"))
        if self.role is not None and self.role not in ("LEADER", "STANDBY"):
            raise SchemaError("role", f"expected LEADER or STANDBY, got {self.role!r:.40}")
        if self.lease is not None:
            c.assign(self, "lease", c.details(self.lease, "lease"))
        c.integer(self.pid, "pid", minimum=1)
        c.assign(self, "run_mode", c.enum(RunMode, self.run_mode, "runMode"))
        c.assign(self, "phase", c.enum(Phase, self.phase, "phase"))
        c.assign(self, "active_symbols", c.string_list(self.active_symbols, "activeSymbols"))
        c.assign(self, "open_positions_snapshot", c.items(PositionSnapshot, self.open_positions_snapshot,
                                                     "openPositionsSnapshot"))
        c.assign(self, "open_orders_snapshot", c.items(OrderSnapshot, self.open_orders_snapshot, "openOrdersSnapshot"))
        if self.last_recovery_at is not None:
            c.assign(self, "last_recovery_at", c.to_ms(self.last_recovery_at, "lastRecoveryAt"))
        if self.last_failure is not None and not isinstance(self.last_failure, FailureEvent):
            raise SchemaError("lastFailure", f"expected FailureEvent, got {type(self.last_failure).__name__}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "lastUpdate": c.format_ts(self.last_update),
            "pid": self.pid,
            "runMode": self.run_mode.value,
            "phase": self.phase.value,
            "activeSymbols": list(self.active_symbols),
            "openPositionsSnapshot": [p.to_dict() for p in self.open_positions_snapshot],
            "openOrdersSnapshot": [o.to_dict() for o in self.open_orders_snapshot],
            "lastRecoveryAt": c.format_opt_ts(self.last_recovery_at),
            "lastFailure": None if self.last_failure is None else self.last_failure.to_dict(),
            **({"role": self.role, "lease": self.lease} if self.role is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: Any, path: str = "") -> ProcessState:
        def build() -> ProcessState:
            d = c.obj(data, "")
            positions = c.array(c.field(d, "openPositionsSnapshot", ""), "openPositionsSnapshot")
            orders = c.array(c.field(d, "openOrdersSnapshot", ""), "openOrdersSnapshot")
            failure = c.opt(d, "lastFailure")
            return cls(
                last_update=c.parse_ts(c.field(d, "lastUpdate", ""), "lastUpdate"),
                pid=c.field(d, "pid", ""),
                run_mode=c.field(d, "runMode", ""),
                phase=c.field(d, "phase", ""),
                active_symbols=c.field(d, "activeSymbols", ""),
                open_positions_snapshot=tuple(
                    PositionSnapshot.from_dict(p, f"openPositionsSnapshot[{i}]") for i, p in enumerate(positions)
                ),
                open_orders_snapshot=tuple(
                    OrderSnapshot.from_dict(o, f"openOrdersSnapshot[{i}]") for i, o in enumerate(orders)
                ),
                last_recovery_at=c.parse_opt_ts(c.opt(d, "lastRecoveryAt"), "lastRecoveryAt"),
                last_failure=None if failure is None else FailureEvent.from_dict(failure, "lastFailure"),
                role=c.opt(d, "role"),
                lease=c.opt(d, "lease"),
            )

        return c.read(path, build)
