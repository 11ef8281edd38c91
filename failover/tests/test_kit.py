"""The step kit: what every handler works with."""

from __future__ import annotations

import json
from pathlib import Path

from failover.domain.clock import ManualClock
from failover.recovery.kit import write_event
from trading.engine.eventlog import EventLog


def test_an_event_for_a_symbol_the_log_refuses_goes_to_the_system_file(tmp_path: Path) -> None:
    log = EventLog(tmp_path, clock_ms=ManualClock(1_763_479_260_000).now_ms)
    try:
        write_event(log, "not/a/symbol", "POSITION_RESYNC", kind="IN_SYNC")
        write_event(log, "BTCUSDT", "POSITION_RESYNC", kind="IN_SYNC")
    finally:
        log.close()
    system = json.loads((tmp_path / "_SYSTEM.jsonl").read_text(encoding="utf-8"))
    assert (system["symbol"], system["forSymbol"], system["kind"]) == ("_SYSTEM", "not/a/symbol", "IN_SYNC")
    assert json.loads((tmp_path / "BTCUSDT.jsonl").read_text(encoding="utf-8"))["symbol"] == "BTCUSDT"
