from __future__ import annotations

import pytest

from failover.domain.clock import ManualClock
from failover.domain.enums import OrderSide
from trading.domain.quality import ExecutionQuality, slippage_bps
from trading.tests.domain.kit import T0, make_config

CONFIG = make_config(
    quality={
        "slippage_window": 3,
        "slippage_window_s": 60,
        "max_slippage_bps": 20,
        "quality_threshold": 50,
        "recovery_threshold": 70,
    }
).quality


def approx(x: float) -> object:
    return pytest.approx(x, rel=1e-9, abs=1e-9)


def tracker() -> tuple[ExecutionQuality, ManualClock]:
    clock = ManualClock(T0)
    return ExecutionQuality(CONFIG, clock), clock


def test_slippage_is_signed_adverse_positive() -> None:
    assert slippage_bps(OrderSide.BUY, 100.0, 100.1) == approx(10.0)
    assert slippage_bps(OrderSide.SELL, 100.0, 99.9) == approx(10.0)
    assert slippage_bps(OrderSide.BUY, 100.0, 99.9) == approx(-10.0)
    assert slippage_bps(OrderSide.SELL, 100.0, 100.1) == approx(-10.0)


def test_quality_score_from_mean_adverse_slippage() -> None:
    quality, _ = tracker()

    assert quality.score("BTCUSDT") == 100.0
    assert quality.record_fill("BTCUSDT", OrderSide.BUY, 100.0, 100.08) == approx(8.0)
    assert quality.score("BTCUSDT") == approx(60.0)
    assert quality.block_new_entries("BTCUSDT") is False

    quality.record_fill("BTCUSDT", OrderSide.BUY, 100.0, 100.2)  # 20 bps: mean 14 -> score 30
    assert quality.score("BTCUSDT") == approx(30.0)
    assert quality.block_new_entries("BTCUSDT") is True

    quality.record_fill("BTCUSDT", OrderSide.BUY, 100.0, 100.5)  # 50 bps: mean 26 -> clamped at 0
    assert quality.score("BTCUSDT") == 0.0


def test_quality_spike_on_one_symbol_blocks_only_that_symbol() -> None:
    quality, _ = tracker()
    quality.record_fill("ETHUSDT", OrderSide.SELL, 3000.0, 3000.0)

    quality.record_fill("BTCUSDT", OrderSide.BUY, 50000.0, 50500.0)  # 100 bps

    assert quality.block_new_entries("BTCUSDT") is True
    assert quality.block_new_entries("ETHUSDT") is False
    assert quality.block_new_entries("SOLUSDT") is False


def test_quality_block_lifts_only_above_recovery_threshold() -> None:
    quality, _ = tracker()
    quality.record_fill("BTCUSDT", OrderSide.BUY, 100.0, 100.1)  # 10
    quality.record_fill("BTCUSDT", OrderSide.BUY, 100.0, 100.3)  # 30 -> blocked

    quality.record_fill("BTCUSDT", OrderSide.BUY, 100.0, 100.0)  # [10, 30, 0]: 33.3
    assert quality.block_new_entries("BTCUSDT") is True
    quality.record_fill("BTCUSDT", OrderSide.BUY, 100.0, 100.0)  # [30, 0, 0]: 50, above the threshold, below recovery
    assert quality.score("BTCUSDT") == approx(50.0)
    assert quality.block_new_entries("BTCUSDT") is True
    quality.record_fill("BTCUSDT", OrderSide.BUY, 100.0, 99.95)  # favourable counts as 0: [0, 0, 0]
    assert quality.score("BTCUSDT") == 100.0
    assert quality.block_new_entries("BTCUSDT") is False


def test_quality_block_lifts_when_the_spike_ages_out() -> None:
    quality, clock = tracker()
    quality.record_fill("BTCUSDT", OrderSide.BUY, 100.0, 101.0)
    assert quality.block_new_entries("BTCUSDT") is True

    clock.advance(60_000)
    assert quality.block_new_entries("BTCUSDT") is True  # exactly at the bound it still counts
    clock.advance(1)

    assert quality.block_new_entries("BTCUSDT") is False
    assert quality.score("BTCUSDT") == 100.0
