from __future__ import annotations

from failover.domain.clock import ManualClock
from failover.domain.enums import OrderSide
from trading.domain import reasons
from trading.domain.config import ConfigApplied
from trading.domain.orders import OrderRequest
from trading.domain.pipeline import SignalPipeline
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

    pipeline.on_config_event(ConfigApplied(config=strict, previous=CONFIG, source="file", at=ManualClock(T0).now_ms()))

    assert run(pipeline, rising_market(20)) == []
    assert pipeline.machine.state("BTCUSDT") is State.IDLE
