from __future__ import annotations

import math

import pytest

from trading.domain.features import FeatureEngine
from trading.marketdata.events import BOOK, TICKER, TRADE, MarketEvent
from trading.tests.domain.kit import make_config

SYMBOL = "BTCUSDT"
# Every half-life is 1 s, so one second between events halves every decayed sum.
CONFIG = make_config(
    features={
        "vol_half_life_ms": 1000,
        "vol_horizon_ms": 1000,
        "flow_half_life_ms": 1000,
        "vwap_half_life_ms": 1000,
        "momentum_fast_half_life_ms": 1000,
        "momentum_slow_half_life_ms": 2000,
        "warmup_events": 2,
    }
).features


def approx(x: float) -> object:
    return pytest.approx(x, rel=1e-12, abs=1e-12)


def trade(ts: int, price: float, qty: float, side: int) -> MarketEvent:
    return MarketEvent(kind=TRADE, symbol=SYMBOL, ts_ms=ts, price=price, qty=qty, side=side)


def book(ts: int, bid: float, ask: float) -> MarketEvent:
    return MarketEvent(kind=BOOK, symbol=SYMBOL, ts_ms=ts, price=(bid + ask) / 2, bid=bid, ask=ask)


def test_features_first_trade_sets_flow_and_vwap_but_no_return() -> None:
    engine = FeatureEngine(SYMBOL, CONFIG)

    f = engine.update(trade(0, 100.0, 1.0, +1))

    assert f.price == 100.0
    assert f.ret_bps == 0.0
    assert f.vol_bps == 0.0
    assert f.ofi == 1.0
    assert f.vwap == 100.0
    assert f.vwap_dev_bps == 0.0
    assert f.updates == 0
    assert f.ready is False


def test_features_second_trade_decays_by_half_life() -> None:
    engine = FeatureEngine(SYMBOL, CONFIG)
    engine.update(trade(0, 100.0, 1.0, +1))

    f = engine.update(trade(1000, 110.0, 1.0, -1))

    r = math.log(1.1)
    assert f.ret_bps == approx(r * 1e4)
    # variance per ms = r^2 / 1000 ms; over a 1000 ms horizon that is r^2.
    assert f.vol_bps == approx(abs(r) * 1e4)
    assert f.ofi == approx((0.5 - 1.0) / 1.5)  # signed: +1 halved, then -1; total: 1 halved + 1
    assert f.vwap == approx((100.0 * 0.5 + 110.0) / 1.5)
    assert f.vwap_dev_bps == approx(312.5)  # (110 - 106.66..) / 106.66.. = 1/32
    assert f.mom_fast_bps == approx(r * 1e4)
    assert f.mom_slow_bps == approx(r * 1e4)
    assert f.updates == 1
    assert f.ready is False


def test_features_switch_to_mid_once_quotes_arrive_and_become_ready() -> None:
    engine = FeatureEngine(SYMBOL, CONFIG)
    engine.update(trade(0, 100.0, 1.0, +1))
    engine.update(trade(1000, 110.0, 1.0, -1))

    f = engine.update(book(2000, 99.0, 101.0))

    r1, r2 = math.log(1.1), math.log(100.0 / 110.0)
    assert f.price == 100.0
    assert f.bid == 99.0 and f.ask == 101.0
    assert f.spread_bps == approx(200.0)
    assert f.ret_bps == approx(r2 * 1e4)
    assert f.vol_bps == approx(math.sqrt((r1 * r1 * 0.5 + r2 * r2) / 1500.0 * 1000.0) * 1e4)
    assert f.mom_fast_bps == approx((r1 * 0.5 + r2) * 1e4)
    assert f.mom_slow_bps == approx((r1 * math.sqrt(0.5) + r2) * 1e4)
    assert f.ofi == approx(-1.0 / 3.0)
    assert f.vwap_dev_bps == approx(-625.0)
    assert f.updates == 2
    assert f.ready is True


def test_features_trade_in_quoted_feed_moves_flow_not_price() -> None:
    engine = FeatureEngine(SYMBOL, CONFIG)
    engine.update(trade(0, 100.0, 1.0, +1))
    engine.update(trade(1000, 110.0, 1.0, -1))
    quoted = engine.update(book(2000, 99.0, 101.0))
    vol_before, mom_before = quoted.vol_bps, quoted.mom_fast_bps  # the engine reuses the object: keep the values

    f = engine.update(trade(2000, 120.0, 1.0, +1))

    assert f.price == 100.0
    assert f.ret_bps == 0.0
    assert f.updates == 2
    assert f.vol_bps == vol_before
    assert f.mom_fast_bps == mom_before
    assert f.ofi == approx(0.75 / 1.75)
    assert f.vwap == approx(200.0 / 1.75)
    assert f.vwap_dev_bps == approx(-1250.0)


def test_features_out_of_order_event_adds_no_time() -> None:
    engine = FeatureEngine(SYMBOL, CONFIG)
    engine.update(book(0, 99.0, 101.0))
    engine.update(book(1000, 100.0, 102.0))

    f = engine.update(book(500, 101.0, 103.0))

    r1, r2 = math.log(101.0 / 100.0), math.log(102.0 / 101.0)
    assert f.ts_ms == 500
    # Nothing decays and no time is added: both returns count in full over the same 1000 ms.
    assert f.vol_bps == approx(math.sqrt((r1 * r1 + r2 * r2) / 1000.0 * 1000.0) * 1e4)
    assert f.mom_fast_bps == approx((r1 + r2) * 1e4)
    assert f.updates == 2
    assert f.ready is True


def test_features_ticker_without_quotes_is_ignored_for_returns_in_quoted_feed() -> None:
    engine = FeatureEngine(SYMBOL, CONFIG)
    engine.update(book(0, 99.0, 101.0))

    f = engine.update(MarketEvent(kind=TICKER, symbol=SYMBOL, ts_ms=1000, price=150.0))

    assert f.price == 100.0
    assert f.updates == 0


def test_features_returns_the_same_object_each_time() -> None:
    engine = FeatureEngine(SYMBOL, CONFIG)

    first = engine.update(book(0, 99.0, 101.0))
    second = engine.update(book(1000, 100.0, 102.0))

    assert first is second is engine.features
