"""The black box: the heartbeat other processes read, and the process state the next start reads.

The heartbeat (shape in ``trading.control``) goes out every second and ages out
when the process stops writing it. The process state
(``<dataDir>/system/process_state.json``) is written whenever positions, orders
or the phase change, and on a timer regardless, so a crash leaves the last
known exposure behind for the restart's recovery plan.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from failover.domain.enums import Phase
from failover.domain.types import OrderSnapshot, PositionSnapshot, ProcessState
from trading.engine.snapshots import order_from_local, position_from_local
from trading.trader.context import Engine, TraderContext

logger = logging.getLogger("scalper.trader")

Snapshots = tuple[tuple[PositionSnapshot, ...], tuple[OrderSnapshot, ...]]


class Blackbox:
    """Write the heartbeat and the process state of one trader."""

    def __init__(self, ctx: TraderContext, engine: Engine) -> None:
        self._ctx = ctx
        self._engine = engine
        self.last_data_ms: dict[str, int] = {}  # per symbol, written by the inbox on every market message
        self._last_snapshot_key: tuple | None = None

    # -- process state ------------------------------------------------------

    def snapshots(self) -> Snapshots:
        state = self._engine.core.state
        positions = tuple(position_from_local(p) for p in state.positions.values())
        orders = tuple(order_from_local(o) for o in state.open_orders())
        return positions, orders

    def write_process_state(self, *, phase: Phase | None = None, force: bool = False) -> None:
        """Write the black box when something changed (or on the periodic timer)."""
        ctx = self._ctx
        positions, orders = self.snapshots()
        if phase is None:
            phase = Phase.RECOVERING if ctx.link.is_safe_mode() else Phase.RUNNING
        key = (phase, positions, orders)
        if not force and key == self._last_snapshot_key:
            return
        self._last_snapshot_key = key
        current = ctx.store.current
        assert current is not None  # written at start, before the black box exists
        ctx.store.save(
            ProcessState(
                last_update=ctx.clock.now(),
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

    # -- heartbeat ----------------------------------------------------------

    def heartbeat(self) -> None:
        ctx = self._ctx
        beat = self.beat()
        try:
            ctx.control.write_heartbeat(beat, run_id=ctx.settings.run_id)
        except Exception as exc:  # Redis down: the heartbeat ages out, which is the truth
            logger.warning("heartbeat not written: %s", exc)

    def beat(self) -> dict[str, Any]:
        """The heartbeat's body (its shape is documented in ``trading.control``)."""
        ctx, core, watchdog = self._ctx, self._engine.core, self._engine.watchdog
        now_mono = int(time.monotonic() * 1000)
        return {
            "pid": os.getpid(),
            "phase": ctx.state.value,
            "at": int(time.time() * 1000),
            "mode": ctx.settings.mode,
            "symbols": ctx.settings.symbols,
            "safeMode": ctx.link.is_safe_mode(),
            "streams": self._streams(now_mono),
            "marketData": self._market_data(),
            "restFailuresInARow": watchdog.rest_failures_in_a_row,
            "latencyAvgMs": {"rest": core.latency.average("rest"), "ws": core.latency.average("ws")},
            "config": self._config(),
            "counters": self._counters(),
            "positions": len(core.state.positions),
            "openOrders": len(core.state.open_orders()),
        }

    def _config(self) -> dict[str, Any]:
        """Whether the config file in force is valid, where the config comes from, and what is wrong if not."""
        engine = self._ctx.config_engine
        # Bounded: a heartbeat goes out every second, and an error may quote a long line of the file.
        errors = [error[:300] for error in engine.last_errors[:5]]
        return {"valid": not errors, "source": engine.source, "errors": errors}

    def _streams(self, now_mono: int) -> dict[str, dict[str, Any]]:
        return {
            name: {
                "connected": s.status.connected,
                "rebuilds": s.status.rebuilds,
                "lastMessageAgeMs": now_mono - s.status.last_message_ms if s.status.last_message_ms else None,
                "hostileMessages": s.hostile_messages,
            }
            for name, s in self._ctx.streams.items()
        }

    def _market_data(self) -> dict[str, Any]:
        ctx, normaliser = self._ctx, self._engine.core.normaliser
        public = ctx.streams["public"].status
        return {
            "lastMessageAgeMs": {
                symbol: (ctx.clock.now_ms() - self.last_data_ms[symbol]) if symbol in self.last_data_ms else None
                for symbol in ctx.settings.symbols
            },
            "rejected": dict(normaliser.rejected),
            "gapsAndWarnings": dict(normaliser.warnings),
            "publicReconnects": public.opens - 1 if public.opens else 0,
        }

    def _counters(self) -> dict[str, Any]:
        core = self._engine.core
        counters = core.counters
        return {
            "marketEvents": counters.market_events,
            "entriesSent": counters.entries_sent,
            # Refusals at execution and suppressions at the state machine's gate, by reason.
            "entriesRefused": merge_counts(counters.entries_refused, core.machine.suppressed_by_reason),
            "crashes": counters.crashes,
        }


def merge_counts(*counts: dict[str, int]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for count in counts:
        for reason, n in count.items():
            merged[str(reason)] = merged.get(str(reason), 0) + n
    return merged
