from __future__ import annotations

from trading.domain.regime import Regime, RegimeEngine
from trading.tests.domain.kit import make_config, make_features

CONFIG = make_config(
    regime={
        "high_vol_enter_bps": 60,
        "high_vol_exit_bps": 45,
        "trend_enter": 1.0,
        "trend_exit": 0.5,
        "confirm_updates": 2,
    }
).regime


def run(engine: RegimeEngine, vol: float, mom: float, ts: int = 0) -> Regime:
    return engine.update(make_features(vol_bps=vol, mom_slow_bps=mom, ts_ms=ts))


def test_regime_enters_trend_up_after_confirmation() -> None:
    engine = RegimeEngine(CONFIG)

    assert run(engine, 10, 12, ts=1) is Regime.RANGE  # strength 1.2, first sighting
    assert run(engine, 10, 12, ts=2) is Regime.TREND_UP

    assert engine.since_ms == 2
    assert engine.transitions == 1


def test_regime_trend_holds_between_exit_and_enter_thresholds() -> None:
    engine = RegimeEngine(CONFIG)
    run(engine, 10, -12)
    run(engine, 10, -12)

    assert run(engine, 10, -6) is Regime.TREND_DOWN  # strength -0.6: above exit, below enter
    assert run(engine, 10, -6) is Regime.TREND_DOWN
    assert run(engine, 10, -4) is Regime.TREND_DOWN  # -0.4: candidate RANGE, not yet confirmed
    assert run(engine, 10, -4) is Regime.RANGE
    assert engine.transitions == 2


def test_regime_does_not_flap_on_alternating_signals() -> None:
    engine = RegimeEngine(CONFIG)

    results = [run(engine, 10, 12 if i % 2 == 0 else 0) for i in range(20)]

    assert set(results) == {Regime.RANGE}
    assert engine.transitions == 0


def test_regime_high_vol_has_its_own_hysteresis() -> None:
    engine = RegimeEngine(CONFIG)
    run(engine, 70, 0)

    assert run(engine, 70, 0) is Regime.HIGH_VOL
    assert run(engine, 50, 0) is Regime.HIGH_VOL  # below enter, above exit: stays
    assert run(engine, 50, 0) is Regime.HIGH_VOL
    assert run(engine, 40, 0) is Regime.HIGH_VOL
    assert run(engine, 40, 0) is Regime.RANGE


def test_regime_high_vol_wins_over_trend() -> None:
    engine = RegimeEngine(CONFIG)

    assert engine.classify(make_features(vol_bps=80, mom_slow_bps=500)) is Regime.HIGH_VOL


def test_regime_ignores_features_before_warmup() -> None:
    engine = RegimeEngine(CONFIG)

    for _ in range(5):
        engine.update(make_features(vol_bps=100, ready=False))

    assert engine.regime is Regime.RANGE
    assert engine.transitions == 0
