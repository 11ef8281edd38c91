from __future__ import annotations

import pytest

from failover.domain.enums import OrderSide
from trading.domain import reasons
from trading.domain.orders import OrderRequest
from trading.domain.pipeline import REGIME_ENGINE, SignalPipeline, StageFailed
from trading.domain.statemachine import State
from trading.marketdata.events import BOOK, TRADE, MarketEvent
from trading.tests.domain.kit import T0, make_config

CONFIG = make_config(features={"warmup_events": 5}, regime={"confirm_updates": 2})


def rising_market(n: int) -> list[MarketEvent]:
    """Book mids climbing 1 bps per 100 ms, each followed by an aggressive buy."""
    events = []
    for i in range(n):
        ts = T0 + i * 100
        mid = 100.0 * (1.0001**i)
        events.append(MarketEvent(kind=BOOK, symbol="BTCUSDT", ts_ms=ts, price=mid, bid=mid - 0.005, ask=mid + 0.005))
        events.append(MarketEvent(kind=TRADE, symbol="BTCUSDT", ts_ms=ts, price=mid + 0.005, qty=1.0, side=1))
    return events


def run(pipeline: SignalPipeline, events: list[MarketEvent]) -> list[tuple[int, OrderRequest]]:
    return [(i, r) for i, e in enumerate(events) if (r := pipeline.on_event(e)) is not None]


def test_pipeline_turns_a_rising_market_into_one_long_request() -> None:
    pipeline = SignalPipeline(CONFIG, gate=lambda symbol: None)
    events = rising_market(20)

    fired = run(pipeline, events)

    # Ready on the 6th book (index 10, five returns) with long 0.52: WATCH. The long score passes the
    # 0.6 entry threshold on the 8th book (index 14): ARM. The trade right after it fires.
    assert [i for i, _ in fired] == [15]
    request = fired[0][1]
    assert (request.symbol, request.side, request.reason) == ("BTCUSDT", OrderSide.BUY, "ENTRY_SIGNAL_LONG")
    assert request.reference_price == events[14].price  # the mid, not the trade print
    assert request.ts == events[15].ts_ms
    assert request.stop_distance > 0.0
    assert pipeline.machine.state("BTCUSDT") is State.ORDER_REQUEST


def test_pipeline_gate_suppresses_the_request() -> None:
    pipeline = SignalPipeline(CONFIG, gate=lambda symbol: reasons.SAFE_MODE_ACTIVE)

    assert run(pipeline, rising_market(20)) == []
    assert pipeline.machine.state("BTCUSDT") is State.ARM
    assert pipeline.machine.suppressed_by_reason == {reasons.SAFE_MODE_ACTIVE: 1}


def test_pipeline_follows_config_reloads() -> None:
    pipeline = SignalPipeline(CONFIG, gate=lambda symbol: None)
    strict = make_config(features={"warmup_events": 5}, scoring={"watch_threshold": 1.0, "entry_threshold": 1.0})

    pipeline.apply_config(strict)

    assert run(pipeline, rising_market(20)) == []
    assert pipeline.machine.state("BTCUSDT") is State.IDLE


class Broken(Exception):
    pass


class BrokenRegime:
    def update(self, features: object) -> None:
        raise Broken("regime")


def test_a_stage_that_raises_is_named_and_restart_gives_the_symbol_fresh_engines() -> None:
    pipeline = SignalPipeline(CONFIG, gate=lambda symbol: None)
    events = rising_market(20)
    pipeline.on_event(events[0])
    engines = pipeline._symbols["BTCUSDT"]
    engines.regime = BrokenRegime()
    with pytest.raises(StageFailed) as failed:
        pipeline.on_event(events[1])
    assert failed.value.stage == REGIME_ENGINE and isinstance(failed.value.error, Broken)

    pipeline.restart("BTCUSDT")
    pipeline.on_event(events[1])
    assert pipeline._symbols["BTCUSDT"] is not engines
