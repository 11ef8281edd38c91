"""Stub builders shared by the domain tests."""

from __future__ import annotations

from typing import Any

from trading.domain.config import TradingConfig
from trading.domain.features import Features
from trading.domain.scoring import Score

T0 = 1_763_479_260_000  # 2025-11-18T15:21:00.000Z


def make_config(**sections: dict[str, Any]) -> TradingConfig:
    """Build a validated config from the default with some sections overridden."""
    return TradingConfig.model_validate(sections)


def make_features(
    *,
    price: float = 100.0,
    vol_bps: float = 20.0,
    mom_fast_bps: float = 0.0,
    mom_slow_bps: float = 0.0,
    ofi: float = 0.0,
    vwap_dev_bps: float = 0.0,
    spread_bps: float = 0.0,
    ts_ms: int = 0,
    ready: bool = True,
    symbol: str = "BTCUSDT",
) -> Features:
    """Build a ``Features`` value with the given statistics."""
    f = Features(symbol)
    f.price = price
    f.vol_bps = vol_bps
    f.mom_fast_bps = mom_fast_bps
    f.mom_slow_bps = mom_slow_bps
    f.ofi = ofi
    f.vwap_dev_bps = vwap_dev_bps
    f.spread_bps = spread_bps
    f.ts_ms = ts_ms
    f.ready = ready
    return f


def make_score(long: float = 0.0, short: float = 0.0) -> Score:
    """Build a ``Score`` with the given long and short values."""
    s = Score()
    s.long = long
    s.short = short
    return s
