"""The black box: the heartbeat other processes read, the process state the next start reads, the equity curve.

The heartbeat (shape in ``trading.control``) goes out every second and ages out
when the process stops writing it; its ``symbolStatus`` says, per symbol, what
the stages see (price, regime, scores, state, why entries are blocked). The
process state (``<dataDir>/system/process_state.json``) is written whenever
positions, orders or the phase change, and on a timer regardless, so a crash
leaves the last known exposure behind for the restart's recovery plan. With the
heartbeat, ``EquitySampler`` checks whether an equity sample is due.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from decimal import Decimal
from functools import partial
from typing import Any, Protocol, runtime_checkable

from failover.domain.clock import Clock
from failover.domain.enums import Phase
from failover.domain.types import OrderSnapshot, PositionSnapshot, ProcessState
from trading.engine.core import SymbolView
from trading.engine.leverage import LeverageKeeper
from trading.engine.snapshots import order_from_local, position_from_local
from trading.exchange.port import Wallet
from trading.trader.context import Engine, TraderContext
from trading.trader.dcp import DRY_RUN, DcpArming, DcpStatus, health_json

logger = logging.getLogger("scalper.trader")

Snapshots = tuple[tuple[PositionSnapshot, ...], tuple[OrderSnapshot, ...]]

# The heartbeat goes out every second: its per-symbol part is bounded whatever the command line says.
MAX_SYMBOLS_IN_BEAT = 50
MAX_REASONS_IN_BEAT = 8
TIMER, POSITION_CLOSED = "TIMER", "POSITION_CLOSED"  # why an equity sample was taken (trading.models)


@runtime_checkable
class EquityRecorder(Protocol):
    """Where equity samples go: the database persistence has it (written off this thread); REPLAY keeps none."""

    @property
    def equity_every_s(self) -> float: ...

    def record_equity(
        self,
        *,
        at_ms: int,
        equity: Decimal,
        wallet_balance: Decimal,
        unrealized_pnl: Decimal,
        available: Decimal,
        trigger: str,
    ) -> bool: ...


class EquitySampler:
    """Sample the exchange wallet every ``recorder.equity_every_s`` seconds and after every position close.

    The wallet is read on the gateway thread and the sample written on the
    recorder's own thread: the pipeline thread only compares the open symbols and
    hands over the answer. One read at a time; a failed read is skipped, and the
    next turn of the timer samples again.
    """

    def __init__(self, engine: Engine, recorder: EquityRecorder, clock: Clock) -> None:
        self._engine = engine
        self._recorder = recorder
        self._clock = clock
        self._open = frozenset(engine.core.state.positions)
        self._next_at_ms = 0  # the first check samples at once
        self._close_seen = False
        self._reading = False

    def check(self) -> None:
        """Ask for a sample when the interval has passed or a position closed since the last check."""
        open_now = frozenset(self._engine.core.state.positions)
        self._close_seen = self._close_seen or bool(self._open - open_now)
        self._open = open_now
        now = self._clock.monotonic_ms()
        if self._reading or not (self._close_seen or now >= self._next_at_ms):
            return
        trigger = POSITION_CLOSED if self._close_seen else TIMER
        self._close_seen = False
        self._next_at_ms = now + int(self._recorder.equity_every_s * 1000)
        self._reading = True
        self._engine.dispatcher.submit(self._engine.rest.wallet, partial(self._on_wallet, trigger))

    def _on_wallet(self, trigger: str, wallet: Wallet | None, error: BaseException | None) -> None:
        self._reading = False
        if error is not None or wallet is None:
            logger.warning("equity sample skipped: the wallet read failed: %s", error)
            return
        kept = self._recorder.record_equity(
            at_ms=self._clock.now_ms(),
            equity=wallet.equity,
            wallet_balance=wallet.wallet_balance,
            unrealized_pnl=wallet.unrealised_pnl,
            available=wallet.available,
            trigger=trigger,
        )
        if not kept:
            logger.warning("equity sample dropped: the database writer is behind")


class Blackbox:
    """Write the heartbeat and the process state of one trader."""

    def __init__(
        self,
        ctx: TraderContext,
        engine: Engine,
        *,
        leverage: LeverageKeeper | None = None,
        dcp: DcpArming | None = None,
    ) -> None:
        self._ctx = ctx
        self._engine = engine
        self._leverage = leverage  # each symbol's wanted and applied leverage, in its status (None: not managed)
        self._dcp = dcp  # Bybit's DCP as armed by the leader (None: a dry run, which arms nothing)
        self.last_data_ms: dict[str, int] = {}  # per symbol, written by the inbox on every market message
        self._last_snapshot_key: tuple | None = None
        persistence = engine.core.state.persistence
        recorder = persistence if isinstance(persistence, EquityRecorder) else None
        self.equity = EquitySampler(engine, recorder, ctx.clock) if recorder is not None else None

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
        lease = self.lease_view()
        key = (phase, positions, orders, ctx.role, lease["token"] if lease else None)
        if not force and key == self._last_snapshot_key:
            return
        self._last_snapshot_key = key
        current = ctx.store.current
        assert current is not None  # recorded at start, before the black box exists
        with contextlib.suppress(OSError):  # the store says it is failing; the health check reports and retries
            ctx.store.save(ProcessState(
                last_update=ctx.clock.now(),
                pid=os.getpid(),
                run_mode=current.run_mode,
                phase=phase,
                active_symbols=current.active_symbols,
                open_positions_snapshot=positions,
                open_orders_snapshot=orders,
                last_recovery_at=current.last_recovery_at,
                last_failure=current.last_failure,
                role=ctx.role,
                lease=lease,
            ))

    def lease_view(self) -> dict[str, Any] | None:
        """The account lease as this trader sees it (None: it runs without one)."""
        lease = self._ctx.lease
        return lease.view() if lease is not None else None

    # -- heartbeat ----------------------------------------------------------

    def heartbeat(self) -> None:
        ctx = self._ctx
        beat = self.beat()
        try:
            if ctx.standby and ctx.lease is not None:  # beside the leader's, never over it
                ctx.control.write_heartbeat(beat, run_id=ctx.settings.run_id, standby=ctx.lease.holder)
            else:
                ctx.control.write_heartbeat(beat, run_id=ctx.settings.run_id)
        except Exception as exc:  # Redis down: the heartbeat ages out, which is the truth
            logger.warning("heartbeat not written: %s", exc)
        if self.equity is not None and not ctx.standby:  # the leader records the account's equity
            self.equity.check()

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
            "symbolStatus": self.symbol_status(),
            "detectors": watchdog.detector_status(),  # eight entries: what a quiet window's countdown needs
            "role": ctx.role,
            "lease": self.lease_view(),
            "dcp": self.dcp_view(),
        }

    def dcp_view(self) -> dict[str, Any]:
        """Health's ``dcp`` object: armed or not, the window, whether the account has DCP, and why not."""
        config = self._ctx.config_engine.config
        status = self._dcp.status if self._dcp is not None else DcpStatus(
            window_s=config.exchange.dcp_window_s, reason=DRY_RUN)
        return health_json(status, deadman_after_s=config.deadman.after_s)

    def symbol_status(self) -> dict[str, dict[str, Any]]:
        """Per traded symbol (the first ``MAX_SYMBOLS_IN_BEAT``): what the stages see and why entries are blocked."""
        core, now_ms = self._engine.core, self._ctx.clock.now_ms()
        status: dict[str, dict[str, Any]] = {}
        for symbol in self._ctx.settings.symbols[:MAX_SYMBOLS_IN_BEAT]:
            seen_ms = self.last_data_ms.get(symbol)
            status[symbol] = {
                **symbol_view_dict(core.symbol_view(symbol)),
                "marketDataAgeMs": now_ms - seen_ms if seen_ms is not None else None,
            }
            if self._leverage is not None:
                status[symbol]["leverage"] = self._leverage.status(symbol)
        return status

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


def _rounded(value: float | None, digits: int) -> float | None:
    return round(value, digits) if value is not None else None


def symbol_view_dict(view: SymbolView) -> dict[str, Any]:
    """The heartbeat's entry for one symbol (times in epoch ms; None where the stages know nothing yet)."""
    scored = view.score_long is not None
    return {
        "lastPrice": view.last_price,
        "spreadBps": _rounded(view.spread_bps, 3),
        "featuresReady": view.features_ready,
        "regime": view.regime,
        "regimeSinceMs": view.regime_since_ms or None,
        "score": {"long": _rounded(view.score_long, 4), "short": _rounded(view.score_short, 4),
                  "atMs": view.score_ts_ms or None} if scored else None,
        "state": view.state,
        "stateSinceMs": view.state_since_ms or None,
        "stateReason": view.state_reason[:80],
        "side": view.side,
        "entryBlockedBy": list(view.entry_blocked_by[:MAX_REASONS_IN_BEAT]),
    }


def merge_counts(*counts: dict[str, int]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for count in counts:
        for reason, n in count.items():
            merged[str(reason)] = merged.get(str(reason), 0) + n
    return merged
