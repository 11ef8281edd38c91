from __future__ import annotations

import json
import os
import threading
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


def _full(log: EventLog, symbol: str = "_SYSTEM"):
    """Point ``symbol``'s file at /dev/full: every write fails with ENOSPC, as on a full disk."""
    path = log.path_for(symbol)
    path.unlink(missing_ok=True)
    path.symlink_to("/dev/full")
    return path


def test_a_write_the_disk_refuses_is_counted_never_raised_and_the_file_resumes_once_it_can(tmp_path):
    log = EventLog(tmp_path, clock_ms=lambda: 1_700_000_000_000)
    log.write("BTCUSDT", "SIGNAL", score=1)
    path = _full(log)
    log.write("_SYSTEM", "FAILOVER_STATE", safeMode=True)  # no exception
    log.write("_SYSTEM", "FAILOVER_STATE", safeMode=False)
    assert set(log.failing) == {"_SYSTEM"} and "No space left" in log.failing["_SYSTEM"] and log.lost == 2
    assert not log.retry_failing() and log.lost == 3  # still full: the retry is lost too
    log.write("BTCUSDT", "SIGNAL", score=2)  # another file is unaffected, and does not clear this one
    assert set(log.failing) == {"_SYSTEM"}
    log.sync()  # a stop on a full disk does not raise either

    path.unlink()  # space back
    assert log.retry_failing() and log.failing == {}
    [resumed] = read_events(path)
    assert resumed["event"] == "EVENT_LOG_RESUMED" and resumed["lost"] == 3
    assert [e["score"] for e in read_events(log.path_for("BTCUSDT"))] == [1, 2]


def test_the_next_write_after_a_failure_ends_the_torn_line_a_failed_write_left(tmp_path):
    log = EventLog(tmp_path, clock_ms=lambda: 1_700_000_000_000)
    path = _full(log)
    log.write("_SYSTEM", "LOST")
    path.unlink()
    path.write_text('{"ts":"2026-12-04T00:00:00.000Z","event":"FIRST"}\n{"ts":"2026-12-04T00:00:01.0')  # torn
    log.write("_SYSTEM", "AFTER")
    assert [e["event"] for e in read_events(path)] == ["FIRST", "AFTER"]
    assert path.read_text().count("\n") == 3  # the fragment was ended on its own line, not glued to the next


@pytest.mark.parametrize("garbage", ["not json", "[1, 2]", "[" * 100_000, '"a string"', "\udcff"])
def test_a_reader_skips_lines_that_are_not_events_and_keeps_the_rest(tmp_path, garbage):
    path = tmp_path / "X.jsonl"
    path.write_text('{"event":"A"}\n' + garbage + '\n{"event":"B"}\n', errors="surrogateescape")
    assert [e["event"] for e in read_events(path)] == ["A", "B"]


def _directory(path):
    path.mkdir()


def _fifo(path):
    os.mkfifo(path)  # no reader: opening it to write would block for ever


def _loop(path):
    path.symlink_to(path)


@pytest.mark.parametrize("plant", [_directory, _fifo, _loop])
def test_something_planted_in_a_files_place_is_moved_aside_and_never_blocks_the_writer(tmp_path, plant):
    log = EventLog(tmp_path, clock_ms=lambda: 1_700_000_000_000)
    path = log.path_for("BTCUSDT")
    plant(path)
    writer = threading.Thread(target=log.write, args=("BTCUSDT", "SIGNAL"), kwargs={"score": 1}, daemon=True)
    writer.start()
    writer.join(10)
    assert not writer.is_alive(), "the write blocked"
    assert [e["score"] for e in read_events(path)] == [1] and log.failing == {}
    [moved] = [p for p in tmp_path.iterdir() if p.name.startswith("BTCUSDT.jsonl.unusable-")]
    assert os.path.lexists(moved)


def test_a_folder_that_cannot_be_made_at_start_is_made_at_the_first_write_that_can(tmp_path):
    blocker = tmp_path / "data"
    blocker.write_text("")  # nothing can be made under a file: as on a full disk, making events/ fails
    log = EventLog(blocker / "events", clock_ms=lambda: 1763479195000)  # never raises

    log.write("_SYSTEM", "TRADER_STARTED")
    assert log.lost == 1 and "_SYSTEM" in log.failing

    blocker.unlink()  # the cause goes
    assert log.retry_failing()
    log.close()
    assert [e["event"] for e in read_events(blocker / "events" / "_SYSTEM.jsonl")] == ["EVENT_LOG_RESUMED"]


def test_a_folder_removed_under_a_running_log_is_made_again_at_the_next_write(tmp_path):
    folder = tmp_path / "events"
    log = EventLog(folder, clock_ms=lambda: 1763479195000)
    log.write("BTCUSDT", "A")
    log.close()  # files are opened again at the next write, as after a failure
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()

    log.write("BTCUSDT", "B")
    log.close()
    assert [e["event"] for e in read_events(folder / "BTCUSDT.jsonl")] == ["B"] and log.lost == 0
