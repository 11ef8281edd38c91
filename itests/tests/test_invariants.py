"""The chaos verdict over hand-made histories: each invariant catches its violation and passes a clean run."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from itests.chaos import invariants
from itests.chaos.invariants import History

T0 = 1_800_000_000_000
BOUNDS = {"livenessS": 45, "restartS": 30, "entryGraceMs": 250}


def _iso(ms: int) -> str:
    at = datetime.fromtimestamp(ms / 1000, UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def _state(version: int, ms: int, safe: bool, *, trading: bool = True, reason: str | None = None) -> dict[str, Any]:
    return {"version": version, "at": _iso(ms), "safeMode": safe, "tradingEnabled": trading,
            "reason": reason, "activeFailures": [reason] if reason else []}


def _order(seq: int, ms: int, order_id: str, link: str, *, origin: str = "api", reduce_only: bool = False,
           symbol: str = "BTCUSDT", side: str = "Buy", status: str = "New") -> dict[str, Any]:
    return {"seq": seq, "ts": ms, "type": "order", "orderId": order_id, "orderLinkId": link, "symbol": symbol,
            "side": side, "qty": "0.01", "reduceOnly": reduce_only, "status": status, "origin": origin}


def _fill(seq: int, ms: int, order_id: str, qty: str, *, side: str = "Buy", symbol: str = "BTCUSDT") -> dict:
    return {"seq": seq, "ts": ms, "type": "execution", "orderId": order_id, "orderLinkId": f"L-{order_id}",
            "symbol": symbol, "side": side, "execQty": qty, "execPrice": "50000", "origin": "api"}


def _clean() -> History:
    """A run that did everything right: a kill, a restart, safe mode on and off, an entry after."""
    return History(
        exchange=[_order(1, T0 + 1_000, "o1", "L1"), _fill(2, T0 + 1_000, "o1", "0.01"),
                  _order(3, T0 + 40_000, "o2", "L2", side="Sell", reduce_only=True),
                  _fill(4, T0 + 40_000, "o2", "0.01", side="Sell"),
                  _order(5, T0 + 60_000, "o3", "L3"), _fill(6, T0 + 60_000, "o3", "0.01")],
        states=[_state(1, T0, False), _state(2, T0 + 12_000, True, reason="UNEXPECTED_SHUTDOWN"),
                _state(3, T0 + 15_000, False)],
        timeline=[{"at": T0 + 10_000, "kind": "kill", "how": "random", "target": "trader"},
                  {"at": T0 + 11_000, "kind": "restart", "target": "trader", "runningAfterMs": 2_000},
                  {"at": T0 + 16_000, "kind": "checkpoint", "phase": "after_recovery", "agreed": True},
                  {"at": T0 + 70_000, "kind": "end"}],
        meta={"bounds": BOUNDS},
    )


def test_a_clean_run_has_no_violation_and_reports_its_figures():
    verdict = invariants.check(_clean())
    assert verdict.ok, verdict.to_dict()
    metrics = verdict.metrics
    assert metrics["entries"] == 2 and metrics["kills"] == 1 and metrics["restarts"] == 1
    assert metrics["restartToRunningMs"] == {"count": 1, "p50": 2_000, "p99": 2_000}
    assert metrics["clearToSafeModeOffMs"]["max"] == 4_000  # the restart's own safe mode, 4 s after it
    assert metrics["safeModeEpisodes"] == 1 and metrics["largestPosition"] == {"BTCUSDT": "0.01"}


def test_an_order_link_id_on_two_exchange_orders_is_a_violation():
    history = _clean()
    history.exchange.append(_order(7, T0 + 61_000, "o4", "L3", reduce_only=True))
    found = invariants.check(history).violations[invariants.UNIQUE_LINK]
    assert found == [{"orderLinkId": "L3", "orderIds": ["o3", "o4"]}]


def test_an_entry_accepted_in_safe_mode_is_a_violation_but_one_at_its_edge_is_only_counted():
    history = _clean()
    history.exchange += [_order(7, T0 + 12_100, "edge", "LE"), _order(8, T0 + 13_000, "bad", "LB"),
                         _order(9, T0 + 13_500, "exit", "LX", reduce_only=True),
                         _order(10, T0 + 13_600, "outside", "LO", origin="sim")]
    verdict = invariants.check(history)
    found = verdict.violations[invariants.NO_ENTRY_IN_SAFE_MODE]
    assert [v["orderLinkId"] for v in found] == ["LB"]  # exits and other clients' orders are not entries
    assert found[0]["reason"] == "UNEXPECTED_SHUTDOWN" and found[0]["safeModeToMs"] == T0 + 15_000
    assert verdict.metrics["entriesAtSafeModeEdge"] == 1


def test_rest_latency_injected_at_the_time_widens_the_edge():
    history = _clean()
    history.exchange.append(_order(7, T0 + 13_000, "late", "LL"))
    history.timeline.insert(0, {"at": T0 + 5_000, "kind": "fault", "id": "f1", "faultKind": "latency",
                                "params": {"target": "rest", "fixed_ms": 1500, "jitter_ms": 0}, "durationS": 30})
    assert invariants.check(history).violations[invariants.NO_ENTRY_IN_SAFE_MODE] == []


def test_a_halt_blocks_entries_like_safe_mode():
    history = _clean()
    history.states.append(_state(4, T0 + 50_000, False, trading=False))
    history.states.append(_state(5, T0 + 58_000, False))
    history.exchange.append(_order(7, T0 + 55_000, "halted", "LH"))
    found = invariants.check(history).violations[invariants.NO_ENTRY_IN_SAFE_MODE]
    assert [(v["orderLinkId"], v["halted"]) for v in found] == [("LH", True)]


def test_a_second_entry_stacked_on_an_open_position_is_a_violation_partial_fills_are_not():
    history = _clean()
    history.exchange += [_order(7, T0 + 61_000, "o3b", "L3b"), _fill(8, T0 + 61_000, "o3", "0.01"),
                         _fill(9, T0 + 62_000, "o3b", "0.01")]
    found = invariants.check(history).violations[invariants.ONE_ENTRY_PER_POSITION]
    assert [(v["orderId"], v["positionBefore"], v["positionAfter"]) for v in found] == [("o3b", "0.02", "0.03")]


def test_an_entry_on_top_of_a_position_opened_behind_the_back_is_a_violation():
    history = _clean()
    history.exchange += [_order(7, T0 + 20_000, "ext", "", origin="sim", symbol="ETHUSDT"),
                         _fill(8, T0 + 20_000, "ext", "1", symbol="ETHUSDT"),
                         _order(9, T0 + 30_000, "mine", "LM", symbol="ETHUSDT"),
                         _fill(10, T0 + 30_000, "mine", "1", symbol="ETHUSDT")]
    found = invariants.check(history).violations[invariants.ONE_ENTRY_PER_POSITION]
    assert [v["orderId"] for v in found] == ["mine"]


def test_a_checkpoint_that_never_agreed_is_a_violation_with_both_sides():
    history = _clean()
    history.timeline.insert(2, {"at": T0 + 16_500, "kind": "checkpoint", "phase": "end", "agreed": False,
                                "local": {"orders": ["x"]}, "exchange": {"orders": []}})
    found = invariants.check(history).violations[invariants.LOCAL_EQUALS_EXCHANGE]
    assert found == [{"atMs": T0 + 16_500, "phase": "end", "local": {"orders": ["x"]}, "exchange": {"orders": []}}]


def test_safe_mode_still_on_long_after_the_last_fault_cleared_is_a_violation():
    history = _clean()
    history.timeline += [{"at": T0 + 20_000, "kind": "storm"}, {"at": T0 + 25_000, "kind": "all_clear"},
                         {"at": T0 + 71_000, "kind": "end"}]
    history.states.append(_state(4, T0 + 21_000, True, reason="PRIVATE_WS_DISCONNECTED"))
    history.timeline.sort(key=lambda e: e["at"])
    found = invariants.check(history).violations[invariants.SAFE_MODE_ENDS]
    assert len(found) == 1 and found[0]["clearedAtMs"] == T0 + 25_000 and found[0]["stillOnAtMs"] == T0 + 71_000
    assert found[0]["reason"] == "PRIVATE_WS_DISCONNECTED"


def test_safe_mode_on_past_the_bound_but_ended_before_the_next_storm_is_a_violation_with_the_wait():
    history = _clean()
    history.timeline += [{"at": T0 + 20_000, "kind": "storm"}, {"at": T0 + 21_000, "kind": "all_clear"},
                         {"at": T0 + 90_000, "kind": "end"}]
    history.states += [_state(4, T0 + 20_500, True, reason="EXCHANGE_UNAVAILABLE"), _state(5, T0 + 80_000, False)]
    history.timeline.sort(key=lambda e: e["at"])
    found = invariants.check(history).violations[invariants.SAFE_MODE_ENDS]
    assert [(v["waitedMs"], v["reason"]) for v in found] == [(59_000, "EXCHANGE_UNAVAILABLE")]


def test_a_storm_too_short_to_judge_is_not_a_violation():
    history = _clean()
    history.timeline += [{"at": T0 + 20_000, "kind": "storm"}, {"at": T0 + 21_000, "kind": "all_clear"},
                         {"at": T0 + 30_000, "kind": "storm"}, {"at": T0 + 31_000, "kind": "all_clear"}]
    history.states += [_state(4, T0 + 20_500, True, reason="EXCHANGE_UNAVAILABLE"), _state(5, T0 + 33_000, False)]
    history.timeline.sort(key=lambda e: e["at"])
    assert invariants.check(history).violations[invariants.SAFE_MODE_ENDS] == []


def test_a_restart_that_never_reached_running_and_no_entry_after_the_last_kill_are_violations():
    history = _clean()
    history.timeline.insert(2, {"at": T0 + 12_000, "kind": "restart", "target": "trader", "runningAfterMs": None})
    history.exchange = [r for r in history.exchange if r["orderId"] != "o3"]
    verdict = invariants.check(history)
    assert [v["runningAfterMs"] for v in verdict.violations[invariants.RESTART_RUNNING]] == [None]
    assert verdict.violations[invariants.TRADES_AGAIN] == [{"lastDisturbanceMs": T0 + 12_000, "entriesAfter": 0}]


def test_a_recorded_folder_is_read_back_with_a_torn_last_line_skipped(tmp_path: Path):
    history = _clean()
    for name, records in (("exchange", history.exchange), ("failover_states", history.states),
                          ("timeline", history.timeline)):
        text = "".join(json.dumps(r) + "\n" for r in records)
        (tmp_path / f"{name}.jsonl").write_text(text + '{"seq": 99, "ty')  # the writer died mid-line
    (tmp_path / "meta.json").write_text(json.dumps(history.meta))
    loaded = invariants.load(tmp_path)
    assert loaded.exchange == history.exchange and loaded.timeline == history.timeline
    assert invariants.check(loaded).ok


@pytest.mark.django_db
def test_itest_check_judges_a_folder_offline_and_exits_1_on_a_violation(tmp_path: Path):
    from django.core.management import call_command

    history = _clean()
    history.exchange.append(_order(7, T0 + 61_000, "o4", "L3"))
    for name, records in (("exchange", history.exchange), ("failover_states", history.states),
                          ("timeline", history.timeline)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "meta.json").write_text(json.dumps(history.meta))
    with pytest.raises(SystemExit) as exited:
        call_command("itest", "check", str(tmp_path))
    assert exited.value.code == 1


def test_a_stacked_entry_names_its_opener_the_acts_and_the_traders_own_events_before_it(tmp_path):
    history = _clean()
    history.exchange += [_order(7, T0 + 61_000, "o3b", "L3b"), _fill(8, T0 + 62_000, "o3b", "0.01")]
    history.timeline.append({"at": T0 + 50_000, "kind": "kill", "how": "crash_point", "target": "trader"})
    folder = tmp_path / "run" / "history"
    folder.mkdir(parents=True)
    for name, records in (("exchange.jsonl", history.exchange), ("failover_states.jsonl", history.states),
                          ("timeline.jsonl", history.timeline)):
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in records))
    (folder / "meta.json").write_text(json.dumps(history.meta))
    events = tmp_path / "run" / "data" / "events"
    events.mkdir(parents=True)
    (events / "BTCUSDT.jsonl").write_text("".join(json.dumps(e) + "\n" for e in (
        {"tsMs": T0 + 61_000, "event": "ORDER_REQUEST", "orderLinkId": "L3b", "runId": "r"},
        {"tsMs": T0 + 61_001, "event": "STATE_CHANGE", "toState": "IDLE"},  # noise: left out
        {"tsMs": T0 + 1_000, "event": "ORDER_REQUEST", "orderLinkId": "L1"},  # long before: left out
    )))
    (events / "_SYSTEM.jsonl").write_text(json.dumps({"tsMs": T0 + 55_000, "event": "LEASE_ACQUIRED"}) + "\n")

    (found,) = invariants.check(invariants.load(folder)).violations[invariants.ONE_ENTRY_PER_POSITION]
    assert found["orderLinkId"] == "L-o3b" and [o["orderLinkId"] for o in found["openers"]] == ["L3"]
    assert [e["kind"] for e in found["timeline"]] == ["kill"]
    assert [(e["event"], e.get("orderLinkId")) for e in found["traderEvents"]] == [
        ("LEASE_ACQUIRED", None), ("ORDER_REQUEST", "L3b")]
