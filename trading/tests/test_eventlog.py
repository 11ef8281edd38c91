from __future__ import annotations

import json
from decimal import Decimal

import pytest

from trading.engine.eventlog import EventLog, read_events


def test_events_are_appended_per_symbol_with_exact_decimals(tmp_path):
    now = iter([1763479195000, 1763479196500])
    log = EventLog(tmp_path, clock_ms=lambda: next(now), run_id="run-1")
    log.write("BTCUSDT", "ORDER_REQUEST", side="BUY", qty=Decimal("0.010"))
    log.write("BTCUSDT", "POSITION_RESYNC", action="adopted")
    log.close()
    events = list(read_events(tmp_path / "BTCUSDT.jsonl"))
    assert events == [
        {
            "ts": "2025-11-18T15:19:55.000Z",
            "tsMs": 1763479195000,
            "symbol": "BTCUSDT",
            "event": "ORDER_REQUEST",
            "side": "BUY",
            "qty": "0.010",
            "runId": "run-1",
        },
        {
            "ts": "2025-11-18T15:19:56.500Z",
            "tsMs": 1763479196500,
            "symbol": "BTCUSDT",
            "event": "POSITION_RESYNC",
            "action": "adopted",
            "runId": "run-1",
        },
    ]


def test_torn_last_line_is_skipped_and_earlier_lines_survive(tmp_path):
    log = EventLog(tmp_path, clock_ms=lambda: 0)
    log.write("ETHUSDT", "FILL", price="3050.25")
    log.close()
    with open(tmp_path / "ETHUSDT.jsonl", "a") as handle:
        handle.write('{"ts": "2025-')
    assert [e["event"] for e in read_events(tmp_path / "ETHUSDT.jsonl")] == ["FILL"]


@pytest.mark.parametrize("bad", ["../etc", "btc/usdt", "", "A" * 41])
def test_a_symbol_that_is_not_a_name_is_refused(tmp_path, bad):
    log = EventLog(tmp_path, clock_ms=lambda: 0)
    with pytest.raises(ValueError, match="not a symbol name"):
        log.write(bad, "X")
    assert list(tmp_path.iterdir()) == []


def test_lines_are_valid_json_objects(tmp_path):
    log = EventLog(tmp_path, clock_ms=lambda: 5)
    for i in range(50):
        log.write("SOLUSDT", "SIGNAL", score=i / 7)
    log.sync()
    lines = (tmp_path / "SOLUSDT.jsonl").read_text().splitlines()
    assert len(lines) == 50 and all(isinstance(json.loads(line), dict) for line in lines)
