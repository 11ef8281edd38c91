"""Reconciliation diffs: every case of spec 6, with the evidence a step stores."""

from __future__ import annotations

import pytest

from failover.domain.reconcile import diff_orders, diff_positions, is_in_sync
from failover.tests.domain.kit import order, position

NOW_MS = 1_763_479_200_000
WINDOW_MS = 10_000


def _orders(local, exchange, created=None):
    created = created or {}
    return diff_orders(local, exchange, now_ms=NOW_MS, recent_window_ms=WINDOW_MS,
                       created_ms_of=lambda o: created.get(o.client_order_id))


def test_resync_positions_adopts_a_position_only_on_the_exchange():
    external = position("ETHUSDT", qty=0.5)
    diff = diff_positions([], [external])
    assert diff.adopt == (external,) and not diff.in_sync
    [entry] = diff.to_details()["differences"]
    assert entry["kind"] == "EXTERNAL_POSITION_RECOVERED" and entry["action"] == "ADOPT_AS_EXTERNAL_POSITION"
    assert entry["local"] is None and entry["exchange"] == external.to_dict()


def test_resync_positions_closes_a_position_only_local():
    gone = position("BTCUSDT")
    diff = diff_positions([gone], [])
    assert diff.close == (gone,)
    [entry] = diff.to_details()["differences"]
    assert (entry["kind"], entry["action"]) == ("POSITION_CLOSED_BY_EXCHANGE", "CLOSE_LOCAL_POSITION")
    assert entry["local"] == gone.to_dict() and entry["exchange"] is None


def test_resync_positions_corrects_size_and_side_to_exchange_truth():
    diff = diff_positions([position("BTCUSDT", qty=0.01), position("ETHUSDT", side="LONG")],
                          [position("BTCUSDT", qty=0.02), position("ETHUSDT", side="SHORT")])
    assert [m.local.symbol for m in diff.correct] == ["BTCUSDT", "ETHUSDT"]
    btc, eth = diff.to_details()["differences"]
    assert btc["difference"] == {"qty": {"local": 0.01, "exchange": 0.02, "delta": 0.01}}
    assert btc["action"] == "SET_LOCAL_TO_EXCHANGE"
    assert eth["difference"] == {"side": {"local": "LONG", "exchange": "SHORT"}}


def test_resync_positions_matches_equal_positions_despite_float_noise():
    diff = diff_positions([position(qty=0.1 + 0.2)], [position(qty=0.3, entry_price=91240.0)])
    assert diff.in_sync and len(diff.matched) == 1
    assert diff.to_details() == {"inSync": True, "matched": ["BTCUSDT"], "differences": []}


def test_two_positions_for_one_symbol_are_refused():
    with pytest.raises(ValueError, match="one-way mode"):
        diff_positions([], [position(side="LONG"), position(side="SHORT")])


def test_resync_orders_adopts_an_order_only_on_the_exchange():
    external = order("manual-1", "ex-9")
    diff = _orders([], [external])
    assert diff.adopt == (external,)
    [entry] = diff.to_details()["differences"]
    assert (entry["kind"], entry["action"]) == ("EXTERNAL_ORDER_RECOVERED", "TRACK_AS_EXTERNAL_ORDER")


def test_resync_orders_marks_missing_order_canceled():
    missing = order("c-1", "ex-1")
    diff = _orders([missing], [], created={"c-1": NOW_MS - 60_000})
    assert diff.cancel == (missing,) and diff.in_flight == ()
    [entry] = diff.to_details()["differences"]
    assert (entry["kind"], entry["action"]) == ("ORDER_MISSING_ON_EXCHANGE", "MARK_LOCAL_ORDER_CANCELED")


def test_resync_orders_leaves_a_recent_order_in_flight():
    young = order("c-2", None)
    diff = _orders([young], [], created={"c-2": NOW_MS - 2_000})
    assert diff.cancel == () and diff.in_sync
    assert [(f.order, f.age_ms) for f in diff.in_flight] == [(young, 2_000)]
    details = diff.to_details()
    assert details["differences"] == [] and details["inFlight"][0]["action"] == "LEAVE_UNTOUCHED"
    assert details["inFlight"][0]["ageMs"] == 2_000


def test_order_exactly_at_the_window_edge_is_old_enough_to_cancel():
    diff = _orders([order("c-3", None)], [], created={"c-3": NOW_MS - WINDOW_MS})
    assert len(diff.cancel) == 1


def test_order_of_unknown_age_counts_as_old():
    assert len(_orders([order("c-4", "ex-4")], []).cancel) == 1


def test_orders_match_by_client_order_id_when_never_acked():
    local = order("AISCLP-7", None)
    remote = order("AISCLP-7", "ex-7")
    diff = _orders([local], [remote])
    assert diff.adopt == () and diff.cancel == ()
    [mismatch] = diff.correct
    assert mismatch.difference() == {"exchangeOrderId": {"local": None, "exchange": "ex-7"}}


def test_orders_match_by_exchange_order_id_first():
    diff = _orders([order("c-1", "ex-1")], [order("other-link", "ex-1")])
    assert diff.adopt == () and len(diff.correct) == 1
    assert diff.correct[0].difference() == {"clientOrderId": {"local": "c-1", "exchange": "other-link"}}


def test_partially_filled_on_exchange_corrects_local_status():
    diff = _orders([order(status="NEW")], [order(status="PARTIALLY_FILLED")])
    assert diff.to_details()["differences"][0]["difference"] == {
        "status": {"local": "NEW", "exchange": "PARTIALLY_FILLED"}
    }


def test_local_closed_order_still_open_on_exchange_is_corrected_not_adopted():
    diff = _orders([order(status="CANCELED")], [order(status="NEW")])
    assert diff.adopt == () and len(diff.correct) == 1


def test_local_history_missing_on_exchange_is_ignored():
    diff = _orders([order("c-1", "ex-1", status="FILLED")], [])
    assert diff.in_sync and diff.cancel == ()


def test_identical_orders_are_in_sync():
    diff = _orders([order()], [order()])
    assert diff.in_sync and diff.to_details()["matched"] == ["ex-1"]


def test_is_in_sync_combines_both_diffs():
    good_positions = diff_positions([position()], [position()])
    bad_orders = _orders([], [order()])
    assert is_in_sync(good_positions, _orders([], []))
    assert not is_in_sync(good_positions, bad_orders)
    assert is_in_sync()
