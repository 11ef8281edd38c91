"""The core's supervisor: a stage that raises is a MODULE_CRASH naming the stage, and the loop goes on."""

from __future__ import annotations

from trading.engine.core import FaultHooks
from trading.tests.kit import build_rig, warm_market


class Broken(Exception):
    pass


class BrokenScoring:
    def update(self, features: object, regime: object) -> None:
        raise Broken("scoring blew up")


def _book_messages(symbol: str, count: int, seed: int = 11) -> list[dict]:
    messages = [m for m in warm_market([symbol], messages=2_000, seed=seed) if m["topic"].startswith("orderbook")]
    return messages[:count]


def test_a_raising_stage_is_reported_by_name_and_the_symbol_gets_fresh_engines(tmp_path):
    rig = build_rig(["BTCUSDT"], tmp_path)
    first, second, third = _book_messages("BTCUSDT", 3)
    rig.core.on_public(first)
    engines = rig.core.pipeline._symbols["BTCUSDT"]
    engines.scoring = BrokenScoring()

    rig.core.on_public(second)

    (crash,) = rig.crashes
    assert crash["module"] == "SCORING_ENGINE" and crash["symbol"] == "BTCUSDT"
    assert crash["error"] == "Broken: scoring blew up" and crash["traceback"]
    assert rig.core.counters.crashes == {"SCORING_ENGINE": 1}
    rig.core.on_public(third)  # the module restarted: fresh engines, no new crash
    assert rig.core.pipeline._symbols["BTCUSDT"] is not engines
    assert len(rig.crashes) == 1


def test_an_armed_fault_crashes_the_feature_engine_until_it_is_disarmed(tmp_path):
    rig = build_rig(["BTCUSDT"], tmp_path)
    rig.core.hooks = FaultHooks(feature_engine_error="deliberate test fault")
    first, second = _book_messages("BTCUSDT", 2)

    rig.core.on_public(first)

    (crash,) = rig.crashes
    assert crash["module"] == "FEATURE_ENGINE" and "deliberate test fault" in crash["error"]
    rig.core.hooks.feature_engine_error = None
    events_before = rig.core.counters.market_events
    rig.core.on_public(second)
    assert len(rig.crashes) == 1 and rig.core.counters.market_events > events_before
