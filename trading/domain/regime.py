"""Market regime per symbol, with hysteresis so it does not flap every event.

Two layers keep the regime stable: each regime has an enter threshold and a
looser exit threshold (the current regime is judged against its exit
threshold), and a new candidate must be seen on ``confirm_updates`` consecutive
updates before the regime switches.

Trend strength is slow momentum divided by volatility (both in bps), so the same
thresholds work for BTC and for a meme coin.
"""

from __future__ import annotations

from enum import StrEnum

from trading.domain.config import RegimeConfig
from trading.domain.features import Features


class Regime(StrEnum):
    TREND_UP = "TREND_UP"
    TREND_DOWN = "TREND_DOWN"
    RANGE = "RANGE"
    HIGH_VOL = "HIGH_VOL"


# The members as module names: on Python 3.11 reading ``Regime.X`` costs several times a global's read,
# and the hot path compares regimes on every event.
TREND_UP, TREND_DOWN, RANGE, HIGH_VOL = Regime.TREND_UP, Regime.TREND_DOWN, Regime.RANGE, Regime.HIGH_VOL


class RegimeEngine:
    """Classify one symbol's features into a ``Regime``."""

    __slots__ = (
        "regime",
        "since_ms",
        "transitions",
        "_candidate",
        "_candidate_count",
        "_vol_enter",
        "_vol_exit",
        "_trend_enter",
        "_trend_exit",
        "_confirm",
    )

    def __init__(self, config: RegimeConfig) -> None:
        self.regime = Regime.RANGE
        self.since_ms = 0
        self.transitions = 0
        self._candidate = Regime.RANGE
        self._candidate_count = 0
        self.apply_config(config)

    def apply_config(self, config: RegimeConfig) -> None:
        """Take new thresholds; the current regime is kept."""
        self._vol_enter = config.high_vol_enter_bps
        self._vol_exit = config.high_vol_exit_bps
        self._trend_enter = config.trend_enter
        self._trend_exit = config.trend_exit
        self._confirm = config.confirm_updates

    def classify(self, features: Features) -> Regime:
        """Return the regime these features point to, judged against the current one."""
        current = self.regime
        vol = features.vol_bps
        if vol >= (self._vol_exit if current is HIGH_VOL else self._vol_enter):
            return HIGH_VOL
        strength = features.mom_slow_bps / vol if vol > 0.0 else 0.0
        if current is TREND_UP and strength >= self._trend_exit:
            return TREND_UP
        if current is TREND_DOWN and strength <= -self._trend_exit:
            return TREND_DOWN
        if strength >= self._trend_enter:
            return TREND_UP
        if strength <= -self._trend_enter:
            return TREND_DOWN
        return RANGE

    def update(self, features: Features) -> Regime:
        """Fold in ``features`` and return the (possibly switched) regime."""
        if not features.ready:
            return self.regime
        raw = self.classify(features)
        if raw is self.regime:
            self._candidate_count = 0
            return self.regime
        if raw is self._candidate:
            self._candidate_count += 1
        else:
            self._candidate = raw
            self._candidate_count = 1
        if self._candidate_count >= self._confirm:
            self.regime = raw
            self.since_ms = features.ts_ms
            self.transitions += 1
            self._candidate_count = 0
        return self.regime
