"""The ExecutionEngine's REST side: resync with exchange truth, and panic close.

Both run on the pipeline thread and call the exchange directly: a resync after a
reconnect and a panic close are rare, and nothing else may trade meanwhile.
"""

from __future__ import annotations

from typing import Any

from trading.engine.execution import ExecutionEngine
from trading.engine.localstate import CANCELED, INTENT, SUBMITTED, ZERO, LocalOrder
from trading.exchange.port import BUY, SELL, ExchangeError, ExchangePosition, PlaceOrder


def sync_from_exchange(engine: ExecutionEngine) -> dict[str, int]:
    """Apply the exchange's open orders, positions and wallet over REST (after a reconnect)."""
    remote_orders = engine.exchange.open_orders()
    remote_positions = {p.symbol: p for p in engine.exchange.positions()}
    for remote in remote_orders:
        engine.apply_order(remote)
    remote_open = {o.order_link_id for o in remote_orders} | {o.order_id for o in remote_orders}
    for local in engine.state.open_orders():
        if local.status in (INTENT, SUBMITTED):
            continue  # in flight: resolve_unconfirmed owns these
        if local.order_link_id not in remote_open and local.exchange_order_id not in remote_open:
            found = engine.exchange.get_order(local.symbol, local.order_link_id)
            if found is not None:
                engine.apply_order(found)
            else:
                engine.state.update_order(local.order_link_id, status=CANCELED, updated_ms=engine.clock.now_ms())
    for symbol in list(engine.state.positions):
        if symbol not in remote_positions:
            engine.apply_position(
                ExchangePosition(
                    symbol=symbol,
                    side="",
                    size=ZERO,
                    avg_price=ZERO,
                    leverage=ZERO,
                    unrealised_pnl=ZERO,
                    mark_price=ZERO,
                )
            )
    for remote in remote_positions.values():
        engine.apply_position(remote)
    engine.set_equity(engine.exchange.wallet().equity)
    return {"orders": len(remote_orders), "positions": len(remote_positions)}


def panic_close_all(engine: ExecutionEngine, *, attempts: int = 3) -> dict[str, Any]:
    """Cancel every open order and close every position with reduce-only market orders."""
    report: dict[str, Any] = {"canceledOrders": [], "closedPositions": [], "errors": []}
    for attempt in range(attempts):
        try:
            report["canceledOrders"].extend(engine.exchange.cancel_all())
            positions = engine.exchange.positions()
        except ExchangeError as exc:
            report["errors"].append(f"attempt {attempt + 1}: {exc}")
            continue
        if not positions:
            break
        for remote in positions:
            link_id = engine.ids.next_id()
            side = SELL if remote.side == BUY else BUY
            now = engine.clock.now_ms()
            engine.state.put_order(
                LocalOrder(
                    order_link_id=link_id,
                    symbol=remote.symbol,
                    side="BUY" if side == BUY else "SELL",
                    qty=remote.size,
                    reduce_only=True,
                    purpose="PANIC_CLOSE",
                    created_ms=now,
                    updated_ms=now,
                )
            )
            try:
                engine.exchange.place_order(
                    PlaceOrder(
                        symbol=remote.symbol, side=side, qty=remote.size, order_link_id=link_id, reduce_only=True
                    )
                )
                report["closedPositions"].append(remote.symbol)
            except ExchangeError as exc:
                report["errors"].append(f"{remote.symbol}: {exc}")
    try:
        sync_from_exchange(engine)
        still_open = [p.symbol for p in engine.exchange.positions()]
    except ExchangeError as exc:
        report["errors"].append(f"final check: {exc}")
        still_open = sorted(engine.state.positions)
    report["openPositions"] = still_open
    report["success"] = not still_open
    report["dailyPnl"] = engine.risk.daily_pnl
    report["heatPct"] = engine.risk.heat_pct(engine.equity) if engine.equity > 0 else ZERO
    engine.events.write("_SYSTEM", "PANIC_CLOSE", **report)
    return report
