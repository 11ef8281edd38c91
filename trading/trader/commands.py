"""Operator commands: what the trader does when another process asks it over the bus.

``COMMAND_NAMES`` is the one list: each name is a method of ``Commands``, and
``trading.control`` (the sending side) derives its set from it, which is why
this module imports no Django, nor the exchange adapters, at load.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from failover.domain.enums import OrderSide
from failover.domain.reconcile import exchange_link_id
from trading.domain.config import DEFAULT_CONFIG
from trading.engine import crashpoints
from trading.engine.alerting import panic_close_alert

if TYPE_CHECKING:
    from trading.trader.blackbox import Blackbox
    from trading.trader.context import Engine, TraderContext

logger = logging.getLogger("scalper.trader")

COMMAND_NAMES: tuple[str, ...] = (
    "reload_state",
    "clear_local_state",
    "rebuild_streams",
    "reload_config",
    "panic_close",
    "close_position",
    "cancel_order",
    "arm_fault",
)
FAULT_ARGS = frozenset({"feature_engine_error", "crash_at", "crash_after"})


class Commands:
    """Carry out operator commands on the pipeline thread and acknowledge each."""

    def __init__(self, ctx: TraderContext, engine: Engine, blackbox: Blackbox) -> None:
        self._ctx = ctx
        self._core = engine.core
        self._blackbox = blackbox

    def handlers(self) -> dict[str, Callable[..., dict[str, Any]]]:
        """The commands ``trading.control.send_command`` may send, by name."""
        return {name: getattr(self, name) for name in COMMAND_NAMES}

    def run(self, payload: dict[str, Any]) -> None:
        """Carry out one command message; record it and write its acknowledgement when it has an id."""
        name = payload.get("command")
        command_id = str(payload.get("commandId", ""))
        args = payload.get("args") or {}
        handler = self.handlers().get(str(name))
        try:
            if handler is None:
                raise ValueError(f"unknown command {name!r}")
            result = handler(**args)
            ok, error = True, None
        except Exception as exc:
            result, ok, error = {}, False, f"{type(exc).__name__}: {exc}"
            logger.warning("command %s failed: %s", name, error)
        ctx = self._ctx
        ctx.events.write("_SYSTEM", "COMMAND", command=name, ok=ok, error=error)
        if command_id:
            try:
                ctx.control.write_ack(command_id, ok=ok, result=result, error=error, run_id=ctx.settings.run_id)
            except Exception as exc:
                logger.warning("ack of %s not written: %s", name, exc)

    # -- the commands -------------------------------------------------------

    def reload_state(self) -> dict[str, Any]:
        """Re-read orders and positions from the database (a recovery step changed them)."""
        core = self._core
        state = core.state
        state.reload()
        core.execution.distrust()  # the database changed behind the cache: the next entries ask the exchange
        core.ledger.publish_exposure()
        now = self._ctx.clock.now_ms()
        for position in state.positions.values():
            core.machine.on_position_opened(
                position.symbol, OrderSide.opening(position.side), now, reason="STATE_RELOADED"
            )
        for symbol, machine_ctx in core.machine.contexts().items():
            if machine_ctx.state.value == "IN_POSITION" and symbol not in state.positions:
                core.machine.on_position_closed(symbol, now, reason="STATE_RELOADED")
        self._blackbox.write_process_state(force=True)
        return {"positions": sorted(state.positions), "openOrders": len(state.open_orders())}

    def clear_local_state(self, keep: list[str] | None = None) -> dict[str, Any]:
        keep_symbols = set(keep or []) | set(self._core.state.positions)
        cleared = self._core.machine.clear_idle_state(self._ctx.clock.now_ms(), keep=keep_symbols)
        self._core.state.forget_closed_orders()
        return {"cleared": cleared, "kept": sorted(keep_symbols)}

    def rebuild_streams(self, force: bool = False) -> dict[str, Any]:
        """Rebuild the streams that are down (all of them with ``force``); a healthy one is left alone."""
        streams = self._ctx.streams
        rebuilding = []
        for name, stream in streams.items():
            if force or not stream.check().connected:
                stream.close()
                stream.start()
                rebuilding.append(name)
        return {"rebuilding": rebuilding, "healthy": sorted(set(streams) - set(rebuilding))}

    def reload_config(self, fallback: bool = False) -> dict[str, Any]:
        engine = self._ctx.config_engine
        if fallback:
            engine.use_fallback("RESYNC_CONFIG: the config file is invalid")
            self._core.apply_config(DEFAULT_CONFIG)
        else:
            engine.load()
        return {"source": engine.source, "onFallback": engine.on_fallback}

    def panic_close(self, by: str = "") -> dict[str, Any]:
        """Cancel every order and close every position; raise PANIC_CLOSE naming ``by`` (who asked) and the result."""
        # Imported here: the execution engine pulls in the exchange adapters, which the web and worker
        # processes that import the command names through trading.control never need.
        from trading.engine.execution import panic_close_all

        try:
            report = panic_close_all(self._core.execution)
        except Exception as exc:
            failed = {"errors": [f"{type(exc).__name__}: {exc}"], "success": False}
            self._ctx.alert(panic_close_alert(failed, by=str(by)))
            raise
        self._ctx.alert(panic_close_alert(report, by=str(by)))
        return report

    def close_position(self, symbol: str = "") -> dict[str, Any]:
        """Flatten one symbol with a reduce-only market order (never blocked); entries are not touched."""
        symbols = self._ctx.settings.symbols
        if symbol not in symbols:
            raise ValueError(f"{symbol!r} is not a symbol this trader trades ({', '.join(symbols)})")
        return self._core.execution.submit_exit(symbol, reason="OPERATOR_CLOSE").to_dict()

    def cancel_order(self, order_link_id: str = "") -> dict[str, Any]:
        """Cancel one open order by its orderLinkId; its status is then the exchange's, read back at once."""
        core = self._core
        order = core.state.orders.get(order_link_id)
        if order is None or not order.is_open:
            raise ValueError(f"{order_link_id!r} is not an open order of this trader")
        exchange, link = core.execution.exchange, exchange_link_id(order_link_id)
        canceled = exchange.cancel_order(order.symbol, order_id=order.exchange_order_id, order_link_id=link)
        found = exchange.get_order(order.symbol, link, order_id=order.exchange_order_id)
        if found is not None:
            core.ledger.apply_order(found)
        self._ctx.events.write(order.symbol, "ORDER_CANCEL", orderLinkId=order_link_id, canceled=canceled)
        now = core.state.orders.get(order_link_id, order)
        return {"orderLinkId": order_link_id, "symbol": order.symbol, "canceled": canceled, "status": now.status}

    def arm_fault(self, **faults: Any) -> dict[str, Any]:
        """Arm or disarm the faults named (``feature_engine_error``, ``crash_at`` with ``crash_after``).

        Only what is named changes; a refusal (hooks off, an unknown name or
        point) changes nothing. The answer is what is armed now.
        """
        if not self._ctx.settings.allow_fault_hooks:
            raise PermissionError("fault hooks are off (start the trader with --allow-fault-hooks)")
        unknown = sorted(set(faults) - FAULT_ARGS)
        if unknown:
            raise TypeError(f"unknown fault {', '.join(unknown)}; known: {', '.join(sorted(FAULT_ARGS))}")
        if "crash_after" in faults and "crash_at" not in faults:
            raise ValueError("crash_after needs crash_at")
        if "crash_at" in faults:
            _arm_crash(faults["crash_at"], faults.get("crash_after", 1))
        if "feature_engine_error" in faults:
            self._ctx.hooks.feature_engine_error = faults["feature_engine_error"]
        armed = crashpoints.REGISTRY.armed
        return {
            "featureEngineError": self._ctx.hooks.feature_engine_error,
            "crashAt": armed.point if armed else None,
            "crashAfter": armed.remaining if armed else None,
        }


def _arm_crash(point: Any, after: Any) -> None:
    """Arm one of the trader's crash points (None disarms); raise ValueError for anything else."""
    if point is None:
        crashpoints.disarm()
        return
    if point not in crashpoints.TRADER_POINTS:
        raise ValueError(f"unknown crash point {point!r}; the trader's: {', '.join(crashpoints.TRADER_POINTS)}")
    crashpoints.arm(point, after)
