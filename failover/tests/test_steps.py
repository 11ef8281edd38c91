"""Step handlers against the real simulator: evidence, exchange truth adopted, nothing sent twice."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from failover.domain.process_state import ProcessStateStore
from failover.domain.types import OrderSnapshot, PositionSnapshot, ProcessState
from failover.models import PlanStatus
from failover.tests.conftest import Env
from trading.engine.eventlog import read_events
from trading.exchange.connect import ExchangeTarget, rest_for
from trading.exchange.port import AmbiguousSubmitError, PlaceOrder
from trading.models import Order, OrderStatus, Position

pytestmark = pytest.mark.django_db(transaction=True)


def _old() -> datetime:
    return datetime.now(UTC) - timedelta(minutes=5)  # older than the recent-order window


def _position(env: Env, symbol: str, side: str = "LONG", qty: str = "0.01") -> Position:
    return Position.objects.create(run_id=env.run_id, symbol=symbol, side=side, qty=Decimal(qty),
                                   entry_price=Decimal("3000"), opened_at=_old())


def _order(env: Env, link: str, status: str, **extra) -> Order:
    fields = {"symbol": "BTCUSDT", "side": "BUY", "order_type": "Limit", "qty": Decimal("0.01"),
              "price": Decimal("49000"), **extra}
    return Order.objects.create(run_id=env.run_id, order_link_id=link, status=status, created_at=_old(),
                                updated_at=_old(), **fields)


def _events(env: Env, symbol: str) -> list[dict]:
    return list(read_events(env.folder / "events" / f"{symbol}.jsonl"))


def test_resync_positions_adopts_a_position_opened_behind_the_back_and_closes_a_local_only_one(env: Env, ctl):
    ctl.open_position("BTCUSDT", "Buy", "0.02")
    _position(env, "ETHUSDT")
    env.report("NON_SYNC_STATE")
    adopted = Position.objects.get(run_id=env.run_id, symbol="BTCUSDT")
    assert adopted.status == "OPEN" and adopted.origin == "EXTERNAL_POSITION_RECOVERED"
    assert adopted.side == "LONG" and adopted.qty == Decimal("0.02")
    closed = Position.objects.get(run_id=env.run_id, symbol="ETHUSDT")
    assert closed.status == "CLOSED" and closed.close_reason == "POSITION_CLOSED_BY_EXCHANGE"
    details = env.step("RESYNC_POSITIONS").details
    kinds = {d["symbol"]: d["kind"] for d in details["differences"]}
    assert kinds == {"BTCUSDT": "EXTERNAL_POSITION_RECOVERED", "ETHUSDT": "POSITION_CLOSED_BY_EXCHANGE"}
    eth = next(d for d in details["differences"] if d["symbol"] == "ETHUSDT")
    assert eth["local"]["qty"] == 0.01 and eth["exchange"] is None and eth["action"] == "CLOSE_LOCAL_POSITION"
    assert details["trader"]["sent"] is False  # no trader: nothing to reload
    assert {e["event"] for e in _events(env, "ETHUSDT")} >= {"POSITION_RESYNC", "POSITION_CLOSED_BY_EXCHANGE"}
    assert "POSITION_RESYNC" in {e["event"] for e in _events(env, "BTCUSDT")}
    # The CLEAR_LOCAL_STATE step afterwards keeps the symbol that still holds a position.
    assert env.step("CLEAR_LOCAL_STATE").details["keep"] == ["BTCUSDT"]


def test_resync_positions_adopts_the_runs_own_unstored_entry_as_local_not_external(env: Env, ctl):
    """The trader died between the fill and storing it: its ENTRY intent explains the position."""
    _position(env, "ETHUSDT")
    Position.objects.filter(run_id=env.run_id, symbol="ETHUSDT").update(status="CLOSED", closed_at=_old())
    _order(env, "entry-1", OrderStatus.SUBMITTED, symbol="ETHUSDT", purpose="ENTRY")
    # Sent 29 s ago, after the last position closed: RESYNC_ORDERS resolves it a second later.
    Order.objects.filter(run_id=env.run_id, order_link_id="entry-1").update(
        created_at=datetime.now(UTC) - timedelta(seconds=29))
    ctl.open_position("ETHUSDT", "Buy", "0.10")
    ctl.open_position("BTCUSDT", "Sell", "0.01")  # nobody's entry explains this one
    env.report("NON_SYNC_STATE")
    origins = dict(Position.objects.filter(run_id=env.run_id, status="OPEN").values_list("symbol", "origin"))
    assert origins == {"ETHUSDT": "LOCAL", "BTCUSDT": "EXTERNAL_POSITION_RECOVERED"}


def test_resync_positions_corrects_a_size_to_exchange_truth_and_is_idempotent(env: Env, ctl):
    ctl.open_position("ETHUSDT", "Sell", "0.05")
    _position(env, "ETHUSDT", side="SHORT", qty="0.02")
    env.report("NON_SYNC_STATE")
    row = Position.objects.get(run_id=env.run_id, symbol="ETHUSDT", status="OPEN")
    assert row.qty == Decimal("0.05") and row.origin == "LOCAL"
    (diff,) = env.step("RESYNC_POSITIONS").details["differences"]
    assert diff["kind"] == "POSITION_MISMATCH" and diff["difference"]["qty"]["delta"] == 0.03
    env.report("NON_SYNC_STATE")  # a second plan finds nothing left to do
    assert env.step("RESYNC_POSITIONS").details["inSync"] is True
    assert Position.objects.filter(run_id=env.run_id).count() == 1


def test_resync_orders_resolves_intents_without_ever_sending_an_order_twice(env: Env, ctl, sim):
    rest = rest_for(ExchangeTarget(base_url=sim.base_url), timeout_s=5)
    ctl.inject("ambiguous_submit", count=1)
    with pytest.raises(AmbiguousSubmitError):
        rest.place_order(PlaceOrder(symbol="BTCUSDT", side="Buy", qty=Decimal("0.01"), order_link_id="amb-1",
                                    order_type="Limit", price=Decimal("49000")))
    _order(env, "amb-1", OrderStatus.SUBMITTED)  # sent, answer lost: it did reach the exchange
    _order(env, "lost-1", OrderStatus.INTENT)  # recorded, never sent
    sent_before = env.link_ids()
    env.report("UNEXPECTED_SHUTDOWN")
    assert env.plan().status == PlanStatus.DONE
    found = Order.objects.get(run_id=env.run_id, order_link_id="amb-1")
    assert found.status == OrderStatus.NEW and found.exchange_order_id
    lost = Order.objects.get(run_id=env.run_id, order_link_id="lost-1")
    assert lost.status == OrderStatus.CANCELED and lost.reject_reason == "never reached the exchange"
    assert env.link_ids() == sent_before  # recovery looked orders up; it placed none
    assert len(ctl.state()["orders"]) == 1
    intents = {i["orderLinkId"]: i["action"] for i in env.step("RESYNC_ORDERS").details["intents"]}
    assert intents == {"amb-1": "ADOPTED_NEW", "lost-1": "CANCELED_NEVER_SENT"}
    assert Order.objects.filter(run_id=env.run_id).count() == 2  # matched afterwards, not adopted again


def test_resync_orders_marks_missing_order_canceled_and_tracks_an_external_one(env: Env, ctl):
    _order(env, "gone-1", OrderStatus.NEW, exchange_order_id="no-such-id")
    young = _order(env, "young-1", OrderStatus.NEW)
    # Younger than the 30 s window by about a second: the step asks again until it is old enough.
    Order.objects.filter(pk=young.pk).update(created_at=datetime.now(UTC) - timedelta(seconds=29))
    external = ctl.place_order("ETHUSDT", "Sell", "0.5", order_type="Limit", price="3100")
    env.report("PRIVATE_WS_DISCONNECTED")
    assert env.plan().status == PlanStatus.DONE
    gone = Order.objects.get(run_id=env.run_id, order_link_id="gone-1")
    assert gone.status == OrderStatus.CANCELED and gone.reject_reason == "ORDER_MISSING_ON_EXCHANGE"
    assert Order.objects.get(pk=young.pk).status == OrderStatus.CANCELED  # judged once old enough, not skipped
    tracked = Order.objects.get(run_id=env.run_id, origin="EXTERNAL_ORDER_RECOVERED")
    assert tracked.symbol == "ETHUSDT" and tracked.side == "SELL" and tracked.qty == Decimal("0.5")
    assert tracked.exchange_order_id == str(external.get("orderId", tracked.exchange_order_id))
    details = env.step("RESYNC_ORDERS").details
    assert details["converged"] is True and details["skipped"] == [] and details["passes"] >= 2
    actions = {a["orderLinkId"]: a["action"] for a in details["applied"]}
    assert actions["gone-1"] == actions["young-1"] == "CANCELED_NEVER_SEEN"
    assert {d["kind"] for d in details["differences"]} >= {"EXTERNAL_ORDER_RECOVERED"}
    assert "ORDER_MISSING_ON_EXCHANGE" in {e["event"] for e in _events(env, "BTCUSDT")}


def test_resync_orders_takes_a_vanished_order_final_state_from_the_exchange_never_a_guess(env: Env, ctl, sim):
    """The zombie: an order placed behind the back, tracked NEW, then filled on the exchange while nobody looked.

    It is young (tracked a moment ago) and no longer open on the exchange: it must become FILLED with its
    filled quantity from the exchange's order history, not be left NEW, nor later be marked CANCELED.
    """
    bid = Decimal(sim.call(lambda s: str(s.engine.books["ETHUSDT"].best_bid()[0])))
    outside = ctl.place_order("ETHUSDT", "Buy", "0.10", order_type="Limit", price=str(bid))
    env.report("PRIVATE_WS_DISCONNECTED")
    tracked = Order.objects.get(run_id=env.run_id, origin="EXTERNAL_ORDER_RECOVERED")
    assert tracked.status == OrderStatus.NEW and tracked.order_link_id.startswith("EXT-")
    # Dated by the exchange's createdTime, not by the moment recovery saw it.
    created_ms = sim.call(lambda s: s.engine.orders[outside["orderId"]].created_ms)
    assert int(tracked.created_at.timestamp() * 1000) == created_ms
    ctl.trade("ETHUSDT", str(bid - 1), "5", side="Sell")  # the market trades through it: filled behind our back
    assert not ctl.state()["orders"]
    env.report("PRIVATE_WS_DISCONNECTED")
    row = Order.objects.get(pk=tracked.pk)
    assert row.status == OrderStatus.FILLED and row.filled_qty == Decimal("0.10")
    applied = {a["orderLinkId"]: a for a in env.step("RESYNC_ORDERS").details["applied"]}
    assert applied[tracked.order_link_id]["action"] == "FINAL_STATE_FILLED"
    assert applied[tracked.order_link_id]["exchange"]["orderId"] == outside["orderId"]


def test_read_process_state_records_what_the_previous_process_believed(env: Env):
    store = ProcessStateStore(env.folder / "system" / "process_state.previous.json")
    store.save(ProcessState(
        last_update=_old(), pid=4242, run_mode="SIM", phase="RUNNING", active_symbols=("BTCUSDT",),
        open_positions_snapshot=(PositionSnapshot("BTCUSDT", "LONG", 50000, 0.01, 5, 0.0),),
        open_orders_snapshot=(OrderSnapshot("BTCUSDT", "SELL", "tp-1", None, 51000, 0.01, "NEW"),),
    ))
    env.report("UNEXPECTED_SHUTDOWN")
    details = env.step("READ_PROCESS_STATE").details
    assert details["found"] is True and details["previous"]["pid"] == 4242
    assert details["previous"]["phase"] == "RUNNING" and details["previous"]["positions"][0]["symbol"] == "BTCUSDT"
    # The snapshot's position is gone on the exchange: evidence of it, though it never reached the database.
    positions = env.step("RESYNC_POSITIONS").details
    assert positions["snapshotOnly"] == ["BTCUSDT"]
    assert positions["differences"][0]["kind"] == "POSITION_CLOSED_BY_EXCHANGE"


def test_read_process_state_survives_a_corrupt_file_and_continues_from_exchange_truth(env: Env):
    path = env.folder / "system" / "process_state.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    env.report("PROCESS_RESTART")
    step = env.step("READ_PROCESS_STATE")
    assert step.status == "DONE" and step.details["dataCorruption"]["movedTo"].startswith("process_state.json.corrupt-")
    assert not path.exists() and list(path.parent.glob("process_state.json.corrupt-*"))
    assert env.plan().status == PlanStatus.DONE


def test_resync_exchange_connection_fails_with_the_error_when_rest_is_down(env: Env, ctl):
    ctl.inject("http_error", status=503)
    env.report("EXCHANGE_UNAVAILABLE")
    step = env.step("RESYNC_EXCHANGE_CONNECTION")
    assert step.status == "FAILED" and "exchange REST did not answer" in step.error_message
    assert step.details["rest"]["ok"] is False
    assert env.step("RESYNC_POSITIONS").status == "PENDING"  # a failed step blocks the rest of the plan
    ctl.clear()


def test_resync_exchange_connection_records_server_time_evidence(env: Env):
    env.report("PACKET_LOSS")
    details = env.step("RESYNC_EXCHANGE_CONNECTION").details
    assert details["rest"]["ok"] is True and details["rest"]["serverTimeMs"] > 0
    assert details["connections"] == ["rest", "privateWs", "publicWs"]
    assert "no trader running" in details["streams"]["note"]
    plan_file = json.loads((env.folder / "system" / "recovery_plan.json").read_text())
    assert plan_file["completedSteps"][0]["details"]["rest"]["ok"] is True
