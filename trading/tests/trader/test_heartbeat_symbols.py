"""The heartbeat's per-symbol section: what the stages see of each symbol, why entries are blocked; bounded."""

from __future__ import annotations

import json
from decimal import Decimal
from types import SimpleNamespace

from trading.domain.config import DEFAULT_CONFIG
from trading.domain.regime import Regime
from trading.domain.statemachine import State
from trading.engine.execution import InlineDispatcher
from trading.engine.localstate import LocalPosition
from trading.exchange.port import StreamStatus
from trading.tests.kit import build_rig, warm_market
from trading.trader.blackbox import MAX_SYMBOLS_IN_BEAT, Blackbox

UNKNOWN = {"lastPrice": None, "spreadBps": None, "featuresReady": False, "regime": None, "regimeSinceMs": None,
           "score": None, "state": "IDLE", "stateSinceMs": None, "stateReason": "", "side": None,
           "entryBlockedBy": [], "marketDataAgeMs": None}


def _box(rig, symbols: list[str]) -> Blackbox:
    streams = {name: SimpleNamespace(status=StreamStatus(name, connected=True, opens=1), hostile_messages=0)
               for name in ("public", "private")}
    ctx = SimpleNamespace(
        clock=rig.clock, settings=SimpleNamespace(symbols=symbols, mode="SIM", run_id=""), state=SimpleNamespace(
            value="RUNNING"), link=SimpleNamespace(is_safe_mode=lambda: rig.safe[0]), streams=streams,
        config_engine=SimpleNamespace(last_errors=[], source="default", config=DEFAULT_CONFIG), role="LEADER",
        lease=None)
    engine = SimpleNamespace(core=rig.core, watchdog=SimpleNamespace(rest_failures_in_a_row=0, detector_status=dict),
                             rest=None, dispatcher=InlineDispatcher())
    return Blackbox(ctx, engine)


def _traded(tmp_path):
    """A core that has seen enough of BTCUSDT's market for its features to be ready; ETHUSDT none."""
    rig = build_rig(["BTCUSDT", "ETHUSDT"], tmp_path)
    for message in warm_market(["BTCUSDT"], messages=1_500, seed=3):
        rig.clock.set(max(rig.clock.now_ms(), int(message["ts"])))
        rig.core.on_public(message)
    assert not rig.crashes
    return rig


def test_each_symbol_reports_price_regime_scores_state_and_data_age(tmp_path):
    rig = _traded(tmp_path)
    box = _box(rig, ["BTCUSDT", "ETHUSDT"])
    box.last_data_ms["BTCUSDT"] = rig.clock.now_ms() - 250
    status = box.symbol_status()

    btc = status["BTCUSDT"]
    features = rig.core.pipeline.signals("BTCUSDT").features.features
    assert btc["lastPrice"] == features.price > 0 and btc["featuresReady"] is True
    assert btc["regime"] in {r.value for r in Regime} and btc["state"] in {s.value for s in State}
    assert set(btc["score"]) == {"long", "short", "atMs"} and 0 <= btc["score"]["long"] <= 1
    assert btc["score"]["atMs"] == features.ts_ms and btc["marketDataAgeMs"] == 250
    assert btc["entryBlockedBy"] == []
    assert status["ETHUSDT"] == UNKNOWN  # no market data yet: nothing known, nothing invented
    assert json.loads(json.dumps(status)) == status


def test_every_reason_that_blocks_an_entry_is_named(tmp_path):
    rig = _traded(tmp_path)
    box = _box(rig, ["BTCUSDT", "ETHUSDT"])
    rig.safe[0] = True
    rig.core.risk.set_trading_enabled(False)
    rig.core.state.positions["BTCUSDT"] = LocalPosition(symbol="BTCUSDT", side="LONG", qty=Decimal("0.01"),
                                                        entry_price=Decimal("90000"))
    status = box.symbol_status()
    assert status["BTCUSDT"]["entryBlockedBy"] == ["SAFE_MODE_ACTIVE", "TRADING_DISABLED", "POSITION_ALREADY_OPEN"]
    assert status["ETHUSDT"]["entryBlockedBy"] == ["SAFE_MODE_ACTIVE", "TRADING_DISABLED"]
    rig.safe[0] = False
    rig.core.risk.set_trading_enabled(True)
    assert box.symbol_status()["ETHUSDT"]["entryBlockedBy"] == []


def test_the_beat_carries_the_section_bounded_beside_the_list_of_symbols(tmp_path):
    rig = build_rig(["BTCUSDT"], tmp_path)
    symbols = ["BTCUSDT", *(f"X{i}USDT" for i in range(2 * MAX_SYMBOLS_IN_BEAT))]
    beat = _box(rig, symbols).beat()
    assert beat["symbols"] == symbols  # the list /api/health reads stays as it was
    assert list(beat["symbolStatus"]) == symbols[:MAX_SYMBOLS_IN_BEAT]
    assert json.loads(json.dumps(beat))["symbolStatus"]["BTCUSDT"]["state"] == "IDLE"
