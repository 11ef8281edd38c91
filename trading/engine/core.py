"""The trading core: one market or private message in, decisions and orders out.

Shared by REPLAY (in-process venue, as fast as the CPU allows) and the trader
process (SIM, DRY_RUN, LIVE): market data -> normaliser -> SignalPipeline
(FeatureEngine -> RegimeEngine -> ScoringEngine -> StateMachine) -> RiskEngine
-> ExecutionEngine, and private messages -> Ledger. It runs on one thread and is
deterministic for the same input and clock.

Each stage runs under a supervisor: an exception is a MODULE_CRASH reported with
the stage name and a traceback summary, the symbol's signal engines are rebuilt
(the module restarts), and the loop goes on; a crash never takes the process down
and never lets an entry through, because the report puts the system in safe mode.

A symbol blocked or unblocked for its execution quality and the daily loss stop
are raised as alerts through ``alerts`` (the trader's; none in REPLAY).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from failover.domain.clock import Clock
from failover.domain.enums import FailureSource
from trading.domain import reasons
from trading.domain.alerts import AlertMessage, AlertRaiser
from trading.domain.config import TradingConfig
from trading.domain.ids import OrderLinkIdFactory
from trading.domain.latency import LatencyMonitor
from trading.domain.pipeline import (
    FEATURE_ENGINE,
    REGIME_ENGINE,
    SCORING_ENGINE,
    STATE_MACHINE,
    SignalPipeline,
    StageFailed,
)
from trading.domain.quality import ExecutionQuality, QualityBlockChange
from trading.domain.risk import DailyLossStop, RiskEngine
from trading.domain.statemachine import Transition
from trading.engine.alerting import daily_loss_alert, slippage_alert
from trading.engine.eventlog import EventLog
from trading.engine.execution import Dispatcher, ExecResult, ExecutionEngine, InlineDispatcher
from trading.engine.ledger import Ledger
from trading.engine.localstate import LocalState, Persistence
from trading.exchange.port import ExchangePort
from trading.marketdata.instruments import InstrumentSpec
from trading.marketdata.normalise import Normaliser

logger = logging.getLogger(__name__)

MARKET_DATA_SERVICE: str = FailureSource.MARKET_DATA_SERVICE.value
EXECUTION_ENGINE: str = FailureSource.EXECUTION_ENGINE.value
_RESTARTED_ON_CRASH = frozenset({FEATURE_ENGINE, REGIME_ENGINE, SCORING_ENGINE})

CrashHandler = Callable[[str, BaseException, dict[str, Any]], None]


@dataclass
class FaultHooks:
    """Deliberate failures an integration scenario may arm (TEST_B); inert unless armed."""

    feature_engine_error: str | None = None


class _ArmedFault(RuntimeError):
    """The exception an armed fault hook raises inside a stage."""


@dataclass
class CoreCounters:
    market_events: int = 0
    entries_sent: int = 0
    entries_refused: dict[str, int] = field(default_factory=dict)
    crashes: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SymbolView:
    """One symbol as the core sees it now, copied out of the live engines (the heartbeat's per-symbol part).

    Signal fields are None while the symbol has no engines (before its first event, or just after a
    module restart); ``entry_blocked_by`` lists every reason a new entry would be refused now.
    """

    symbol: str
    last_price: float | None
    spread_bps: float | None
    features_ready: bool
    regime: str | None
    regime_since_ms: int | None
    score_long: float | None
    score_short: float | None
    score_ts_ms: int | None
    state: str
    state_since_ms: int
    state_reason: str
    side: str | None
    entry_blocked_by: tuple[str, ...]


def traceback_summary(exc: BaseException, limit: int = 4) -> list[str]:
    frames = traceback.extract_tb(exc.__traceback__)[-limit:]
    return [f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} in {f.name}" for f in frames]


class TradingCore:
    """The pipeline of one trader, for every symbol it trades."""

    def __init__(
        self,
        *,
        config: TradingConfig,
        clock: Clock,
        instruments: Mapping[str, InstrumentSpec],
        exchange: ExchangePort,
        persistence: Persistence,
        events: EventLog,
        safe_mode: Callable[[], bool],
        on_crash: CrashHandler,
        ids: OrderLinkIdFactory,
        dispatcher: Dispatcher | None = None,
        fault_hooks: FaultHooks | None = None,
        log_transitions: bool = True,
        normaliser: Normaliser | None = None,
        alerts: AlertRaiser | None = None,
        halted: Callable[[], bool] = lambda: False,
    ) -> None:
        self.config = config
        self.clock = clock
        self.events = events
        self.safe_mode = safe_mode
        self.halted = halted  # an operator's HALT: refused before anything else, lifted only by RESUME
        self.on_crash = on_crash
        self.hooks = fault_hooks or FaultHooks()
        self.counters = CoreCounters()
        self.normaliser = normaliser or Normaliser()
        self.alerts: AlertRaiser | None = alerts
        self.latency = LatencyMonitor(config.latency)
        self.quality = ExecutionQuality(config.quality, clock, on_change=self._on_quality_change)
        self.risk = RiskEngine(
            config.risk, clock, instruments, self.quality, on_daily_loss_stop=self._on_daily_loss_stop
        )
        self.pipeline = SignalPipeline(
            config,
            self._machine_gate,
            self._on_transition if log_transitions else None,
            on_suppressed=self._on_suppressed,
        )
        self.machine = self.pipeline.machine
        self.state = LocalState(persistence)
        self.ledger = Ledger(
            state=self.state, risk=self.risk, quality=self.quality, machine=self.machine, clock=clock, events=events
        )
        self.execution = ExecutionEngine(
            exchange=exchange,
            state=self.state,
            ledger=self.ledger,
            risk=self.risk,
            machine=self.machine,
            ids=ids,
            clock=clock,
            events=events,
            gate=self._entry_gate,
            dispatcher=dispatcher or InlineDispatcher(),
        )

    # -- gates --------------------------------------------------------------

    def _entry_gate(self) -> str | None:
        if self.halted():
            return reasons.HALTED
        return reasons.SAFE_MODE_ACTIVE if self.safe_mode() else None

    def _machine_gate(self, symbol: str) -> str | None:
        blocked = self._entry_gate()
        if blocked is not None:
            return blocked
        return self.risk.entry_block_reason(symbol)

    def _on_suppressed(self, symbol: str, reason: str) -> None:
        # The entry signal fired into a closed gate: the same refusal the execution engine writes, at the gate.
        self.events.write(symbol, "ORDER_REFUSED", reason=reason, message="entry signal refused at the gate",
                          stage=STATE_MACHINE)

    # -- alerts -------------------------------------------------------------

    def raise_alert(self, alert: AlertMessage) -> None:
        """Hand ``alert`` to the trader's alerts; a failure there is logged, never raised into a stage."""
        if self.alerts is None:
            return
        try:
            self.alerts(alert)
        except Exception:
            logger.exception("alert %s not raised", alert.type)

    def _on_quality_change(self, change: QualityBlockChange) -> None:
        self.raise_alert(slippage_alert(change))

    def _on_daily_loss_stop(self, stop: DailyLossStop) -> None:
        self.raise_alert(daily_loss_alert(stop))

    def _on_transition(self, t: Transition) -> None:
        self.events.write(
            t.symbol, "STATE_CHANGE", fromState=t.from_state.value, toState=t.to_state.value, reason=t.reason
        )

    # -- messages -----------------------------------------------------------

    def on_public(self, message: dict[str, Any], received_ms: int | None = None) -> None:
        """Run one market message through every stage."""
        counters = self.counters
        stage = MARKET_DATA_SERVICE
        symbol = ""
        try:
            if received_ms is not None and type(message.get("ts")) is int:
                self.latency.record_ws("ws", received_ms, message["ts"])
            armed = self.hooks.feature_engine_error  # armed and disarmed between messages, on this thread
            on_event = self.pipeline.on_event
            for event in self.normaliser.normalise(message):
                counters.market_events += 1
                symbol = event.symbol
                if armed is not None:
                    stage = FEATURE_ENGINE
                    raise _ArmedFault(armed)
                request = on_event(event)
                if request is not None:
                    stage = EXECUTION_ENGINE
                    self._count(self.execution.submit_entry(request))
                    stage = MARKET_DATA_SERVICE
        except StageFailed as failed:
            self.report_crash(failed.stage, failed.error, symbol)
        except Exception as exc:
            self.report_crash(stage, exc, symbol)

    def _count(self, result: ExecResult) -> None:
        if result.success:
            self.counters.entries_sent += 1
        else:
            refused = self.counters.entries_refused
            refused[result.reason] = refused.get(result.reason, 0) + 1

    def on_private(self, message: dict[str, Any]) -> None:
        """Apply one private stream message."""
        try:
            self.ledger.on_private_message(message)
        except Exception as exc:
            self.report_crash(EXECUTION_ENGINE, exc, "")

    def tick(self) -> None:
        """Timers: state machine timeouts and unconfirmed orders."""
        now = self.clock.now_ms()
        if self._entry_gate() is not None:
            self.execution.distrust()  # safe mode or a halt: what follows is checked with the exchange again
        try:
            self.machine.tick(now)
        except Exception as exc:
            self.report_crash(STATE_MACHINE, exc, "")
        try:
            self.execution.resolve_unconfirmed()
        except Exception as exc:
            self.report_crash(EXECUTION_ENGINE, exc, "")

    def report_crash(self, stage: str, exc: BaseException, symbol: str) -> None:
        self.counters.crashes[stage] = self.counters.crashes.get(stage, 0) + 1
        details = {
            "module": stage,
            "symbol": symbol,
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback_summary(exc),
        }
        logger.error("module crash in %s: %s", stage, details["error"])
        if stage in _RESTARTED_ON_CRASH and symbol:
            self.pipeline.restart(symbol)  # restart the module: fresh engines for the symbol
        self.on_crash(stage, exc, details)

    # -- reads (on the pipeline thread) -------------------------------------

    def entry_block_reasons(self, symbol: str) -> tuple[str, ...]:
        """Every reason a new entry on ``symbol`` would be refused now; empty when one may open."""
        risk, positions = self.risk, self.state.positions
        first = self._machine_gate(symbol)  # what the gate answers, a block failover set included
        candidates = (
            (reasons.HALTED, self.halted()),
            (reasons.SAFE_MODE_ACTIVE, self.safe_mode()),
            (reasons.TRADING_DISABLED, not risk.trading_enabled),
            (reasons.RISK_OFF_DAILY_LOSS, risk.risk_off),
            (reasons.SYMBOL_BLOCKED_EXECUTION_QUALITY, self.quality.block_new_entries(symbol)),
            (reasons.POSITION_ALREADY_OPEN, symbol in positions),
            (reasons.MAX_OPEN_POSITIONS, len(positions) >= self.config.risk.max_open_positions),
        )
        found = [first] if first is not None else []
        found += [reason for reason, applies in candidates if applies and reason not in found]
        return tuple(found)

    def symbol_view(self, symbol: str) -> SymbolView:
        """Return what the stages know of ``symbol`` now: price, regime, scores, state and entry blocks."""
        signals = self.pipeline.signals(symbol)
        context = self.machine.contexts().get(symbol)
        features = signals.features.features if signals is not None else None
        score = signals.scoring.score if signals is not None else None
        return SymbolView(
            symbol=symbol,
            last_price=features.price if features is not None and features.price > 0 else None,
            spread_bps=features.spread_bps if features is not None and features.bid > 0 else None,
            features_ready=features is not None and features.ready,
            regime=signals.regime.regime.value if signals is not None else None,
            regime_since_ms=signals.regime.since_ms if signals is not None else None,
            score_long=score.long if score is not None else None,
            score_short=score.short if score is not None else None,
            score_ts_ms=score.ts_ms if score is not None else None,
            state=context.state.value if context is not None else self.machine.state(symbol).value,
            state_since_ms=context.since_ms if context is not None else 0,
            state_reason=context.last_reason if context is not None else "",
            side=context.side.value if context is not None and context.side is not None else None,
            entry_blocked_by=self.entry_block_reasons(symbol),
        )

    # -- configuration ------------------------------------------------------

    def apply_config(self, config: TradingConfig) -> None:
        """Put a new config in force in every stage (hot reload)."""
        self.config = config
        self.pipeline.apply_config(config)
        self.risk.apply_config(config.risk)
        self.quality.apply_config(config.quality)
        self.latency.apply_config(config.latency)
