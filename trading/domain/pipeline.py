"""The signal half of the hot loop: event -> features -> regime -> score -> state machine.

One ``SignalPipeline`` serves every symbol; per symbol it keeps a
``FeatureEngine``, ``RegimeEngine`` and ``ScoringEngine``, and it shares one
``StateMachine``. What comes out is an ``OrderRequest`` (rarely) or None; the
trader hands requests to risk and execution.
"""

from __future__ import annotations

from collections.abc import Callable

from trading.domain.config import ConfigApplied, ConfigEvent, TradingConfig
from trading.domain.features import FeatureEngine
from trading.domain.orders import OrderRequest
from trading.domain.regime import RegimeEngine
from trading.domain.scoring import ScoringEngine
from trading.domain.statemachine import EntryGate, StateMachine, Transition
from trading.marketdata.events import MarketEvent


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
    ) -> None:
        self._config = config
        self._symbols: dict[str, SymbolSignals] = {}
        self.machine = StateMachine(config, gate, on_transition)

    def symbol(self, symbol: str) -> SymbolSignals:
        """Return the engines of ``symbol``, creating them on first use."""
        signals = self._symbols.get(symbol)
        if signals is None:
            signals = self._symbols[symbol] = SymbolSignals(symbol, self._config)
        return signals

    def on_event(self, event: MarketEvent) -> OrderRequest | None:
        """Run one market event through every stage; return an entry request if one fires."""
        signals = self._symbols.get(event.symbol)
        if signals is None:
            signals = self.symbol(event.symbol)
        features = signals.features.update(event)
        regime = signals.regime.update(features)
        score = signals.scoring.update(features, regime)
        return self.machine.on_signal(event.symbol, score, features, event.ts_ms)

    def apply_config(self, config: TradingConfig) -> None:
        """Switch every stage to ``config``; accumulated statistics and states are kept."""
        self._config = config
        for signals in self._symbols.values():
            signals.apply_config(config)
        self.machine.apply_config(config)

    def on_config_event(self, event: ConfigEvent) -> None:
        """Follow a ``ConfigEngine``: apply every config it puts in force."""
        if isinstance(event, ConfigApplied):
            self.apply_config(event.config)
