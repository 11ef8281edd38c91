from __future__ import annotations

import pytest

from trading.domain.regime import Regime
from trading.domain.scoring import Score, ScoringEngine
from trading.tests.domain.kit import make_config, make_features

WEIGHTS = {"momentum_fast": 0.3, "momentum_slow": 0.2, "order_flow": 0.3, "vwap": 0.1, "regime": 0.1}
CONFIG = make_config(
    scoring={
        "weights": WEIGHTS,
        "momentum_scale_bps": 10,
        "vwap_scale_bps": 20,
        "max_spread_bps": 10,
        "spread_penalty": 0.5,
        "high_vol_factor": 0.5,
    }
).scoring


def approx(x: float) -> object:
    return pytest.approx(x, rel=1e-12, abs=1e-12)


def bullish(spread_bps: float = 2.0):  # noqa: ANN201 - a test builder
    return make_features(mom_fast_bps=5, mom_slow_bps=20, ofi=0.5, vwap_dev_bps=-10, spread_bps=spread_bps)


def test_scoring_long_score_with_contributions() -> None:
    engine = ScoringEngine(CONFIG)

    s = engine.update(bullish(), Regime.TREND_UP)

    assert s.momentum_fast == approx(0.15)  # 0.3 * (5 / 10)
    assert s.momentum_slow == approx(0.2)  # 0.2 * clip(20 / 10)
    assert s.order_flow == approx(0.15)  # 0.3 * 0.5
    assert s.vwap == approx(-0.05)  # 0.1 * (-10 / 20)
    assert s.regime == approx(0.1)
    assert s.direction == approx(0.55)
    assert s.factor == approx(0.9)  # 1 - 0.5 * (2 / 10)
    assert s.long == approx(0.495)
    assert s.short == 0.0
    assert s.momentum_fast + s.momentum_slow + s.order_flow + s.vwap + s.regime == approx(s.direction)


def test_scoring_high_vol_halves_and_drops_regime_term() -> None:
    engine = ScoringEngine(CONFIG)

    s = engine.update(bullish(), Regime.HIGH_VOL)

    assert s.regime == 0.0
    assert s.direction == approx(0.45)
    assert s.factor == approx(0.45)
    assert s.long == approx(0.2025)


def test_scoring_short_score_on_bearish_features() -> None:
    engine = ScoringEngine(CONFIG)
    f = make_features(mom_fast_bps=-10, mom_slow_bps=-10, ofi=-1.0, vwap_dev_bps=-40, spread_bps=50)

    s = engine.update(f, Regime.TREND_DOWN)

    assert s.direction == approx(-1.0)
    assert s.factor == approx(0.5)  # spread above max: full penalty
    assert s.long == 0.0
    assert s.short == approx(0.5)


def test_scoring_normalises_weights_by_their_absolute_sum() -> None:
    config = make_config(
        scoring={"weights": {"momentum_fast": 2, "momentum_slow": 0, "order_flow": 0, "vwap": 0, "regime": 0}}
    )
    engine = ScoringEngine(config.scoring)

    s = engine.update(make_features(mom_fast_bps=5), Regime.RANGE)

    assert s.direction == approx(0.5)
    assert s.long == approx(0.5)


def test_scoring_is_zero_before_features_are_ready() -> None:
    engine = ScoringEngine(CONFIG)
    engine.update(bullish(), Regime.TREND_UP)

    s = engine.update(make_features(mom_fast_bps=50, ready=False), Regime.TREND_UP)

    assert (s.long, s.short, s.direction, s.momentum_fast) == (0.0, 0.0, 0.0, 0.0)


def test_scoring_is_deterministic() -> None:
    first = ScoringEngine(CONFIG).update(bullish(), Regime.RANGE)
    second = ScoringEngine(CONFIG).update(bullish(), Regime.RANGE)

    assert first is not second
    assert [getattr(first, name) for name in Score.__slots__] == [getattr(second, name) for name in Score.__slots__]
