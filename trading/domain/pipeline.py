"""The signal half of the hot loop: event -> features -> regime -> score -> state machine.

One ``SignalPipeline`` serves every symbol; per symbol it keeps a
``FeatureEngine``, ``RegimeEngine`` and ``ScoringEngine``, and it shares one
``StateMachine``. What comes out is an ``OrderRequest`` (rarely) or None; the
trading core hands requests to risk and execution. A stage that raises comes
out as a ``StageFailed`` naming the stage, so the caller can report the module
and restart the symbol's engines with ``restart``.
"""

from __future__ import annotations

from collections.abc import Callable

from failover.domain.enums import FailureSource
from trading.domain.config import TradingConfig
from trading.domain.features import FeatureEngine
from trading.domain.orders import OrderRequest
from trading.domain.regime import RegimeEngine
from trading.domain.scoring import ScoringEngine
from trading.domain.statemachine import EntryGate, StateMachine, Transition
from trading.marketdata.events import MarketEvent

# The stages, named as the failure sources a MODULE_CRASH reports (plain strings: they key counters and logs).
FEATURE_ENGINE: str = FailureSource.FEATURE_ENGINE.value
REGIME_ENGINE: str = FailureSource.REGIME_ENGINE.value
SCORING_ENGINE: str = FailureSource.SCORING_ENGINE.value
STATE_MACHINE: str = FailureSource.STATE_MACHINE.value


class StageFailed(Exception):
    """A stage raised ``error`` while it handled one event."""

    def __init__(self, stage: str, error: Exception) -> None:
        super().__init__(f"{stage}: {type(error).__name__}: {error}")
        self.stage = stage
        self.error = error


class SymbolSignals:
    """The per-symbol engines."""

    __slots__ = ("features", "regime", "scoring")

    def __init__(self, symbol: str, config: TradingConfig) -> None:
        self.features = FeatureEngine(symbol, config.features)
        self.regime = RegimeEngine(config.regime)
        self.scoring = ScoringEngine(config.scoring)

    def apply_config(self, config: TradingConfig) -> None:
        """Pass a new config to each engine."""
        self.features.apply_config(config.features)
        self.regime.apply_config(config.regime)
        self.scoring.apply_config(config.scoring)


class SignalPipeline:
    """Turn market events into order requests."""

    def __init__(
        self,
        config: TradingConfig,
        gate: EntryGate,
        on_transition: Callable[[Transition], None] | None = None,
        on_suppressed: Callable[[str, str], None] | None = None,
    ) -> None:
        self._config = config
        self._symbols: dict[str, SymbolSignals] = {}
        self.machine = StateMachine(config, gate, on_transition, on_suppressed=on_suppressed)

    def on_event(self, event: MarketEvent) -> OrderRequest | None:
        """Run one market event through every stage; return an entry request if one fires.

        Raises ``StageFailed`` when a stage raises.
        """
        symbol = event.symbol
        signals = self._symbols.get(symbol)
        if signals is None:
            signals = self._symbols[symbol] = SymbolSignals(symbol, self._config)
        # The stage is tracked in a local, not with a try per stage: the hot path pays nothing for it.
        stage = FEATURE_ENGINE
        try:
            features = signals.features.update(event)
            stage = REGIME_ENGINE
            regime = signals.regime.update(features)
            stage = SCORING_ENGINE
            score = signals.scoring.update(features, regime)
            stage = STATE_MACHINE
            return self.machine.on_signal(symbol, score, features, event.ts_ms)
        except Exception as exc:
            raise StageFailed(stage, exc) from exc

    def signals(self, symbol: str) -> SymbolSignals | None:
        """Return ``symbol``'s engines to read (None before its first event and right after a restart)."""
        return self._symbols.get(symbol)

    def restart(self, symbol: str) -> None:
        """Drop ``symbol``'s engines: fresh ones are built, and warmed up again, on its next event."""
        self._symbols.pop(symbol, None)

    def apply_config(self, config: TradingConfig) -> None:
        """Switch every stage to ``config``; accumulated statistics and states are kept."""
        self._config = config
        for signals in self._symbols.values():
            signals.apply_config(config)
        self.machine.apply_config(config)
