"""Long and short scores in [0, 1] from features and regime; explainable.

Each signal is squashed into a component in [-1, 1] (positive = bullish):

- ``momentum_fast`` / ``momentum_slow``: momentum in bps / ``momentum_scale_bps``, clipped;
- ``order_flow``: the order-flow imbalance as is;
- ``vwap``: VWAP deviation in bps / ``vwap_scale_bps``, clipped (a negative
  weight turns it into mean reversion);
- ``regime``: +1 TREND_UP, -1 TREND_DOWN, 0 RANGE and HIGH_VOL.

``direction = sum(w_i * c_i) / sum(|w_i|)`` lies in [-1, 1]. Then
``long = max(0, direction) * factor`` and ``short = max(0, -direction) * factor``
where ``factor = (1 - spread_penalty * min(1, spread_bps / max_spread_bps))``,
times ``high_vol_factor`` in HIGH_VOL. Each weighted term is kept in the
``Score`` so a log line can say why a score is what it is.
"""

from __future__ import annotations

from trading.domain.config import ScoringConfig
from trading.domain.features import Features
from trading.domain.regime import HIGH_VOL, TREND_DOWN, TREND_UP, Regime


class Score:
    """One symbol's latest scores; the engine reuses this object, so copy what you keep."""

    __slots__ = (
        "long",
        "short",
        "direction",
        "factor",
        "momentum_fast",
        "momentum_slow",
        "order_flow",
        "vwap",
        "regime",
        "ts_ms",
    )

    def __init__(self) -> None:
        self.long = 0.0
        self.short = 0.0
        self.direction = 0.0  # signed conviction in [-1, 1] before the penalty factor
        self.factor = 1.0  # spread and HIGH_VOL penalty multiplier in [0, 1]
        # Weighted, normalised contributions; they sum to ``direction``.
        self.momentum_fast = 0.0
        self.momentum_slow = 0.0
        self.order_flow = 0.0
        self.vwap = 0.0
        self.regime = 0.0
        self.ts_ms = 0


class ScoringEngine:
    """Score one symbol; deterministic for the same features, regime and config."""

    __slots__ = (
        "_score",
        "_w_fast",
        "_w_slow",
        "_w_flow",
        "_w_vwap",
        "_w_regime",
        "_mom_scale",
        "_vwap_scale",
        "_max_spread",
        "_spread_penalty",
        "_high_vol_factor",
    )

    def __init__(self, config: ScoringConfig) -> None:
        self._score = Score()
        self.apply_config(config)

    def apply_config(self, config: ScoringConfig) -> None:
        """Take new weights; they are pre-divided by the sum of |weights|."""
        w = config.weights
        norm = w.abs_sum()
        self._w_fast = w.momentum_fast / norm
        self._w_slow = w.momentum_slow / norm
        self._w_flow = w.order_flow / norm
        self._w_vwap = w.vwap / norm
        self._w_regime = w.regime / norm
        self._mom_scale = config.momentum_scale_bps
        self._vwap_scale = config.vwap_scale_bps
        self._max_spread = config.max_spread_bps
        self._spread_penalty = config.spread_penalty
        self._high_vol_factor = config.high_vol_factor

    @property
    def score(self) -> Score:
        """Return the latest score (the reused object)."""
        return self._score

    def update(self, features: Features, regime: Regime) -> Score:
        """Score ``features`` under ``regime``; all zero until the features are ready."""
        s = self._score
        s.ts_ms = features.ts_ms
        if not features.ready:
            s.long = s.short = s.direction = 0.0
            s.momentum_fast = s.momentum_slow = s.order_flow = s.vwap = s.regime = 0.0
            s.factor = 1.0
            return s
        scale = self._mom_scale
        fast, slow = features.mom_fast_bps / scale, features.mom_slow_bps / scale
        dev = features.vwap_dev_bps / self._vwap_scale
        # Clipped to [-1, 1] inline: a call per component would cost more than the rest of the score.
        fast = self._w_fast * (1.0 if fast > 1.0 else -1.0 if fast < -1.0 else fast)
        slow = self._w_slow * (1.0 if slow > 1.0 else -1.0 if slow < -1.0 else slow)
        flow = self._w_flow * features.ofi
        dev = self._w_vwap * (1.0 if dev > 1.0 else -1.0 if dev < -1.0 else dev)
        # Identity tests against module names, not a dict: hashing an Enum member runs Python code.
        if regime is TREND_UP:
            trend = self._w_regime
        elif regime is TREND_DOWN:
            trend = -self._w_regime
        else:
            trend = 0.0
        s.momentum_fast, s.momentum_slow, s.order_flow, s.vwap, s.regime = fast, slow, flow, dev, trend
        direction = fast + slow + flow + dev + trend
        spread_ratio = features.spread_bps / self._max_spread
        factor = 1.0 - self._spread_penalty * (1.0 if spread_ratio > 1.0 else spread_ratio)
        if regime is HIGH_VOL:
            factor *= self._high_vol_factor
        s.direction = direction
        s.factor = factor
        s.long = direction * factor if direction > 0.0 else 0.0
        s.short = -direction * factor if direction < 0.0 else 0.0
        return s
