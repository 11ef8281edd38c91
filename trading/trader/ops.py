"""What the trader does on its pipeline thread besides the pipeline: handlers, timers, commands.

Kept apart from ``trading.trader.process`` (startup and the loop) so each reads as one
concept: here, what every queue item means and what runs on a schedule.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from failover.domain.enums import OrderSide, Phase, utc_now
from failover.domain.reconcile import diff_orders, diff_positions
from failover.domain.types import ProcessState
from trading.domain import reasons
from trading.domain.config import DEFAULT_CONFIG
from trading.engine.execution_ops import panic_close_all, sync_from_exchange
from trading.engine.localstate import INTENT, SUBMITTED
from trading.engine.snapshots import order_from_exchange, order_from_local, position_from_exchange, position_from_local
from trading.exchange.port import ExchangeError

if TYPE_CHECKING:
    from trading.trader.process import GatewayDispatcher, Trader

logger = logging.getLogger("scalper.trader")


@dataclass
class Timer:
    every_s: float | Callable[[], float]  # a callable is read at each run: an interval the config may change
    action: Callable[[], None]
    name: str
    next_at: float = 0.0

    def maybe_run(self, now: float) -> None:
        if now < self.next_at:
            return
        self.next_at = now + (self.every_s() if callable(self.every_s) else self.every_s)
        try:
            self.action()
        except Exception:
            logger.exception("timer %s failed", self.name)


class TraderOps:
    def __init__(self, trader: Trader, *, rest: Any, dispatcher: GatewayDispatcher) -> None:
        self.trader = trader
        self.rest = rest
        self.dispatcher = dispatcher
        assert trader.core is not None
        self.core = trader.core
        self._last_private_opens = 0
        self._reconciling = False
        self._probing = False
        self._last_data_ms: dict[str, int] = {}
        self._last_snapshot_key: tuple | None = None

    # -- queue items --------------------------------------------------------

    def handlers(self) -> dict[str, Callable[[tuple], None]]:
        return {
            "public": self._on_public,
            "private": self._on_private,
            "done": self._on_done,
            "rest": self._on_rest,
            "command": lambda item: self.command(item[1]),
            "failover_changed": lambda item: self.on_failover_changed(item[1]),
            "config": lambda item: self.trader.on_config_event(item[1]),
            "wake": lambda item: None,
        }

    def _on_public(self, item: tuple) -> None:
        _, message, received_ms = item
        self.core.on_public(message, received_ms)
        symbol = message.get("topic", "").rsplit(".", 1)[-1]
        self._last_data_ms[symbol] = received_ms
        self.trader.watchdog.on_market_data(symbol)

    def _on_private(self, item: tuple) -> None:
        self.core.on_private(item[1])
        self.write_process_state()

    def _on_done(self, item: tuple) -> None:
        _, done, result, error = item
        try:
            done(result, error)
        except Exception as exc:
            self.core.report_crash("EXECUTION_ENGINE", exc, "")
        self.write_process_state()

    def _on_rest(self, item: tuple) -> None:
        _, ok, elapsed_ms, kind = item
        self.trader.watchdog.on_rest(ok, elapsed_ms, kind)
        self.core.latency.record("rest", elapsed_ms)

    # -- schedules ----------------------------------------------------------

    def timers(self) -> list[Timer]:
        engine = self.trader.config_engine
        return [
            Timer(0.1, self.core.tick, "tick"),
            Timer(0.5, self.check_health, "watchdog"),
            Timer(2.0, self.probe_rest, "rest-probe"),
            Timer(1.0, self.heartbeat, "heartbeat"),
            Timer(
                lambda: engine.config.failover.process_state_interval_s,  # follows a hot reload
                lambda: self.write_process_state(force=True),
                "process-state",
            ),
            Timer(2.0, self.trader.config_engine.poll, "config"),
            Timer(15.0, self.reconcile, "reconcile"),
        ]

    def check_health(self) -> None:
        streams = self.trader.streams
        for stream in streams.values():
            stream.check()
        private = streams["private"].status
        if private.opens > self._last_private_opens:
            if self._last_private_opens > 0:
                self.resync("private stream reconnected")
            self._last_private_opens = private.opens
        ws_lag = self.core.latency.average("ws")
        if ws_lag is not None:
            self.trader.watchdog.on_latency(ws_lag)
        report = self.trader.watchdog.check(public=streams["public"].status, private=private)
        for event in report.started:
            self.trader.report_event(event)
        for failure_type in report.cleared:
            self.trader.events.write("_SYSTEM", "FAILURE_CLEARED", type=failure_type)
            self.trader.link.cleared(failure_type)

    def probe_rest(self) -> None:
        """Ask the exchange the time: REST liveness and latency even when nothing trades."""
        if self._probing:
            return
        self._probing = True

        def done(result: Any, error: BaseException | None) -> None:
            self._probing = False

        self.dispatcher.submit(self.rest.server_time_ms, done)

    def resync(self, why: str) -> None:
        """Bring local state to exchange truth over REST; the exchange does not replay missed events."""
        try:
            counts = sync_from_exchange(self.core.execution)
        except ExchangeError as exc:
            logger.warning("resync after %s failed: %s", why, exc)
            return
        self.trader.events.write("_SYSTEM", "RESYNC", why=why, **counts)
        self.write_process_state()

    def reconcile(self) -> None:
        """Compare local state with the exchange in the background; NON_SYNC_STATE if they stay apart."""
        if self._reconciling:
            return
        self._reconciling = True
        config = self.trader.config_engine.config

        def fetch() -> tuple[list, list]:
            return self.rest.positions(), self.rest.open_orders()

        def done(result: Any, error: BaseException | None) -> None:
            self._reconciling = False
            if error is not None:
                return
            remote_positions, remote_orders = result
            state = self.core.state
            created = {o.order_link_id: o.created_ms for o in state.orders.values()}
            local_orders = [o for o in state.open_orders() if o.status not in (INTENT, SUBMITTED)]
            positions = diff_positions(
                [position_from_local(p) for p in state.positions.values()],
                [position_from_exchange(p) for p in remote_positions],
            )
            orders = diff_orders(
                [order_from_local(o) for o in local_orders],
                [order_from_exchange(o) for o in remote_orders],
                now_ms=self.trader.clock.now_ms(),
                recent_window_ms=config.failover.recent_order_window_ms,
                created_ms_of=lambda snap: created.get(snap.client_order_id or ""),
            )
            self.trader.watchdog.on_reconciliation(positions, orders)

        self.dispatcher.submit(fetch, done)

    def heartbeat(self) -> None:
        trader = self.trader
        streams = trader.streams
        now_mono = int(time.monotonic() * 1000)
        beat = {
            "pid": os.getpid(),
            "phase": trader.state.value,
            "at": int(time.time() * 1000),
            "mode": trader.settings.mode,
            "symbols": trader.settings.symbols,
            "safeMode": trader.link.is_safe_mode(),
            "streams": {
                name: {
                    "connected": s.status.connected,
                    "rebuilds": s.status.rebuilds,
                    "lastMessageAgeMs": now_mono - s.status.last_message_ms if s.status.last_message_ms else None,
                    "hostileMessages": s.hostile_messages,
                }
                for name, s in streams.items()
            },
            "marketData": {
                "lastMessageAgeMs": {
                    symbol: (trader.clock.now_ms() - self._last_data_ms[symbol])
                    if symbol in self._last_data_ms
                    else None
                    for symbol in trader.settings.symbols
                },
                "rejected": dict(self.core.normaliser.rejected),
                "gapsAndWarnings": dict(self.core.normaliser.warnings),
                "publicReconnects": streams["public"].status.opens - 1 if streams["public"].status.opens else 0,
            },
            "restFailuresInARow": trader.watchdog.rest_failures_in_a_row,
            "latencyAvgMs": {"rest": self.core.latency.average("rest"), "ws": self.core.latency.average("ws")},
            "config": {"valid": not trader.config_engine.last_errors, "source": trader.config_engine.source},
            "counters": {
                "marketEvents": self.core.counters.market_events,
                "entriesSent": self.core.counters.entries_sent,
                # Refusals at execution and suppressions at the state machine's gate, by reason.
                "entriesRefused": _merge_counts(
                    self.core.counters.entries_refused, self.core.machine.suppressed_by_reason
                ),
                "crashes": self.core.counters.crashes,
            },
            "positions": len(self.core.state.positions),
            "openOrders": len(self.core.state.open_orders()),
        }
        try:
            trader.control.write_heartbeat(beat, run_id=trader.settings.run_id)
        except Exception as exc:  # Redis down: the heartbeat ages out, which is the truth
            logger.warning("heartbeat not written: %s", exc)

    # -- process state ------------------------------------------------------

    def write_process_state(self, *, phase: Phase | None = None, force: bool = False) -> None:
        """Write the black box when something changed (or on the periodic timer)."""
        trader = self.trader
        positions, orders = trader.snapshots()
        if phase is None:
            phase = Phase.RECOVERING if trader.link.is_safe_mode() else Phase.RUNNING
        key = (phase, positions, orders)
        if not force and key == self._last_snapshot_key:
            return
        self._last_snapshot_key = key
        current = trader.store.current
        trader.store.save(
            ProcessState(
                last_update=utc_now(),
                pid=os.getpid(),
                run_mode=current.run_mode,
                phase=phase,
                active_symbols=current.active_symbols,
                open_positions_snapshot=positions,
                open_orders_snapshot=orders,
                last_recovery_at=current.last_recovery_at,
                last_failure=current.last_failure,
            )
        )

    # -- failover -----------------------------------------------------------

    def on_failover_changed(self, state: Any) -> None:
        risk = self.core.risk
        risk.set_global_block(reasons.SAFE_MODE_ACTIVE if state.safe_mode else None)
        risk.set_trading_enabled(bool(getattr(state, "trading_enabled", True)))
        reason = state.reason.value if hasattr(state.reason, "value") else state.reason
        self.trader.events.write(
            "_SYSTEM",
            "FAILOVER_STATE",
            safeMode=state.safe_mode,
            reason=reason,
            recoveryInProgress=state.recovery_in_progress,
        )
        self.write_process_state()

    # -- commands -----------------------------------------------------------

    def command_handlers(self) -> dict[str, Callable[..., dict[str, Any] | None]]:
        """The commands ``trading.control.send_command`` may send, by name."""
        return {
            "reload_state": self.reload_state,
            "clear_local_state": self.clear_local_state,
            "rebuild_streams": self.rebuild_streams,
            "reload_config": self.reload_config,
            "panic_close": self.panic_close,
            "close_position": self.close_position,
            "arm_fault": self.arm_fault,
        }

    def command(self, payload: dict[str, Any]) -> None:
        name = payload.get("command")
        command_id = str(payload.get("commandId", ""))
        args = payload.get("args") or {}
        handler = self.command_handlers().get(str(name))
        try:
            if handler is None:
                raise ValueError(f"unknown command {name!r}")
            result = handler(**args)
            ok, error = True, None
        except Exception as exc:
            result, ok, error = {}, False, f"{type(exc).__name__}: {exc}"
            logger.warning("command %s failed: %s", name, error)
        self.trader.events.write("_SYSTEM", "COMMAND", command=name, ok=ok, error=error)
        if command_id:
            try:
                self.trader.control.write_ack(
                    command_id, ok=ok, result=result, error=error, run_id=self.trader.settings.run_id
                )
            except Exception as exc:
                logger.warning("ack of %s not written: %s", name, exc)

    def reload_state(self) -> dict[str, Any]:
        """Re-read orders and positions from the database (a recovery step changed them)."""
        state = self.core.state
        state.reload()
        execution = self.core.execution
        execution.publish_exposure()
        now = self.trader.clock.now_ms()
        for position in state.positions.values():
            self.core.machine.on_position_opened(
                position.symbol, OrderSide.BUY if position.side == "LONG" else OrderSide.SELL, now, reason="STATE_RELOADED"
            )
        for symbol, ctx in self.core.machine.contexts().items():
            if ctx.state.value == "IN_POSITION" and symbol not in state.positions:
                self.core.machine.on_position_closed(symbol, now, reason="STATE_RELOADED")
        self.write_process_state(force=True)
        return {"positions": sorted(state.positions), "openOrders": len(state.open_orders())}

    def clear_local_state(self, keep: list[str] | None = None) -> dict[str, Any]:
        keep_symbols = set(keep or []) | set(self.core.state.positions)
        cleared = self.core.machine.clear_idle_state(self.trader.clock.now_ms(), keep=keep_symbols)
        self.core.state.forget_closed_orders()
        return {"cleared": cleared, "kept": sorted(keep_symbols)}

    def rebuild_streams(self, force: bool = False) -> dict[str, Any]:
        """Rebuild the streams that are down (all of them with ``force``); a healthy one is left alone."""
        rebuilding = []
        for name, stream in self.trader.streams.items():
            if force or not stream.check().connected:
                stream.close()
                stream.start()
                rebuilding.append(name)
        return {"rebuilding": rebuilding, "healthy": sorted(set(self.trader.streams) - set(rebuilding))}

    def reload_config(self, fallback: bool = False) -> dict[str, Any]:
        engine = self.trader.config_engine
        if fallback:
            engine.use_fallback("RESYNC_CONFIG: the config file is invalid")
            self.core.apply_config(DEFAULT_CONFIG)
        else:
            engine.load()
        return {"source": engine.source, "onFallback": engine.on_fallback}

    def panic_close(self) -> dict[str, Any]:
        return panic_close_all(self.core.execution)

    def close_position(self, symbol: str = "") -> dict[str, Any]:
        """Flatten one symbol with a reduce-only market order (never blocked); entries are not touched."""
        if symbol not in self.trader.settings.symbols:
            traded = ", ".join(self.trader.settings.symbols)
            raise ValueError(f"{symbol!r} is not a symbol this trader trades ({traded})")
        return self.core.execution.submit_exit(symbol, reason="OPERATOR_CLOSE").to_dict()

    def arm_fault(self, feature_engine_error: str | None = None) -> dict[str, Any]:
        if not self.trader.settings.allow_fault_hooks:
            raise PermissionError("fault hooks are off (start the trader with --allow-fault-hooks)")
        self.trader.hooks.feature_engine_error = feature_engine_error
        return {"featureEngineError": feature_engine_error}


def _merge_counts(*counts: dict[str, int]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for count in counts:
        for reason, n in count.items():
            merged[str(reason)] = merged.get(str(reason), 0) + n
    return merged
