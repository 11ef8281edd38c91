"""The ExecutionEngine against the simulator's own matching engine, in process."""

from __future__ import annotations

from decimal import Decimal

import pytest

from failover.domain.enums import OrderSide
from trading.domain import reasons
from trading.engine.eventlog import read_events
from trading.engine.execution import panic_close_all
from trading.engine.localstate import FILLED, REJECTED
from trading.exchange.port import AmbiguousSubmitError, ExchangeError, PlaceOrder
from trading.exchange.venue import InProcessVenue
from trading.marketdata.instruments import DEFAULT_INSTRUMENTS
from trading.tests.kit import T0, build_rig


def test_entry_fills_opens_a_local_position_and_exit_records_the_trade(tmp_path):
    rig = build_rig(["BTCUSDT"], tmp_path)
    result = rig.enter("BTCUSDT")
    assert result.success and result.reason == reasons.ALLOWED
    order = rig.core.state.orders[result.order_link_id]
    assert order.status == FILLED and order.exchange_order_id
    assert order.order_link_id.startswith("AISCLP-20251118-")
    position = rig.core.state.positions["BTCUSDT"]
    exchange = rig.venue.positions("BTCUSDT")[0]
    assert (position.side, position.qty, position.entry_price) == ("LONG", exchange.size, exchange.avg_price)
    assert position.origin == "LOCAL"

    exit_result = rig.core.execution.submit_exit("BTCUSDT", reason="TEST_EXIT")
    rig.pump()
    assert exit_result.success and exit_result.reason == reasons.REDUCE_ONLY_ALLOWED
    assert rig.core.state.positions == {} and rig.venue.positions() == []
    (trade,) = rig.persistence.trades
    assert trade.qty == position.qty and trade.entry_price == position.entry_price
    expected = (trade.exit_price - trade.entry_price) * trade.qty - trade.fees
    assert trade.realized_pnl == expected and trade.fees > 0
    assert rig.core.risk.daily_pnl == trade.realized_pnl
    events = [e["event"] for e in read_events(tmp_path / "BTCUSDT.jsonl")]
    assert events.index("ORDER_REQUEST") < events.index("FILL") < events.index("POSITION_CLOSED")


def test_safe_mode_refuses_entries_but_lets_a_reduce_only_close_through(tmp_path):
    rig = build_rig(["BTCUSDT"], tmp_path)
    assert rig.enter("BTCUSDT").success
    rig.safe[0] = True
    refused = rig.enter("BTCUSDT")
    assert refused.to_dict() == {"success": False, "reason": "SAFE_MODE_ACTIVE", "message": "new entries are blocked"}
    assert len(rig.venue.engine.orders) == 1  # nothing reached the exchange
    closing = rig.core.execution.submit_exit("BTCUSDT", reason="OPERATOR")
    rig.pump()
    assert closing.success
    assert rig.venue.positions() == [] and rig.core.state.positions == {}
    refusals = [e["reason"] for e in read_events(tmp_path / "BTCUSDT.jsonl") if e["event"] == "ORDER_REFUSED"]
    assert refusals == ["SAFE_MODE_ACTIVE"]


def test_a_slippage_spike_blocks_new_entries_for_that_symbol_only(tmp_path):
    rig = build_rig(["BTCUSDT", "ETHUSDT"], tmp_path)
    rig.venue.engine.slippage_bps["BTCUSDT"] = Decimal(80)  # the simulator's extreme-slippage fault
    assert rig.enter("BTCUSDT").success
    assert rig.core.quality.score("BTCUSDT") < rig.core.config.quality.quality_threshold
    assert rig.core.risk.entry_block_reason("BTCUSDT") == reasons.SYMBOL_BLOCKED_EXECUTION_QUALITY
    assert rig.core.risk.entry_block_reason("ETHUSDT") is None
    rig.core.execution.submit_exit("BTCUSDT", reason="TEST")
    rig.pump()
    refused = rig.enter("BTCUSDT")
    assert (refused.success, refused.reason) == (False, reasons.SYMBOL_BLOCKED_EXECUTION_QUALITY)
    assert rig.enter("ETHUSDT").success


def test_max_open_positions_refuses_with_its_reason(tmp_path):
    from trading.domain.config import DEFAULT_CONFIG

    config = DEFAULT_CONFIG.model_copy(
        update={"risk": DEFAULT_CONFIG.risk.model_copy(update={"max_open_positions": 1})}
    )
    rig = build_rig(["BTCUSDT", "ETHUSDT"], tmp_path, config=config)
    assert rig.enter("BTCUSDT").success
    refused = rig.enter("ETHUSDT")
    assert (refused.success, refused.reason) == (False, reasons.MAX_OPEN_POSITIONS)


class LosesResponses(InProcessVenue):
    """The exchange takes the order but the answer never comes back (the ambiguous-submit fault)."""

    lose_next = True

    def place_order(self, order: PlaceOrder):
        ack = super().place_order(order)
        if self.lose_next:
            self.lose_next = False
            raise AmbiguousSubmitError("read timed out", order_link_id=order.order_link_id)
        return ack


def test_ambiguous_submit_is_resolved_by_lookup_never_by_resending(tmp_path):
    instruments = {"BTCUSDT": DEFAULT_INSTRUMENTS["BTCUSDT"]}
    venue = LosesResponses(instruments, clock_ms=lambda: T0)
    rig = build_rig(["BTCUSDT"], tmp_path, venue=venue)
    venue.lose_next = True
    result = rig.core.execution.submit_entry(rig.request("BTCUSDT"))
    venue.drain()  # the private stream lost the fill too: only the lookup can tell
    link_id = result.order_link_id
    order = rig.core.state.orders[link_id]
    assert order.status == FILLED and order.exchange_order_id
    assert len(venue.engine.orders) == 1  # one order on the exchange: never sent twice
    events = [e["event"] for e in read_events(tmp_path / "BTCUSDT.jsonl")]
    assert events.index("ORDER_OUTCOME_UNKNOWN") < events.index("ORDER_FOUND_ON_EXCHANGE")


class NeverReaches(InProcessVenue):
    def place_order(self, order: PlaceOrder):
        raise AmbiguousSubmitError("connection reset", order_link_id=order.order_link_id)


def test_an_intent_the_exchange_never_saw_is_rejected_after_the_give_up_window(tmp_path):
    instruments = {"BTCUSDT": DEFAULT_INSTRUMENTS["BTCUSDT"]}
    rig = build_rig(["BTCUSDT"], tmp_path, venue=NeverReaches(instruments, clock_ms=lambda: T0))
    result = rig.core.execution.submit_entry(rig.request("BTCUSDT"))
    rig.clock.advance(5_000)
    rig.core.execution.resolve_unconfirmed()
    assert rig.core.state.orders[result.order_link_id].status == "SUBMITTED"  # not yet: might still appear
    rig.clock.advance(20_000)
    rig.core.execution.resolve_unconfirmed()
    order = rig.core.state.orders[result.order_link_id]
    assert order.status == REJECTED and order.reject_reason.startswith("NOT_FOUND_ON_EXCHANGE")
    assert rig.venue.engine.orders == {}


def test_replayed_fills_are_counted_once(tmp_path):
    rig = build_rig(["BTCUSDT"], tmp_path)
    rig.enter("BTCUSDT")
    execution = next(iter(rig.venue.engine.executions))
    from trading.simexchange import payloads

    message = {"topic": "execution", "data": [payloads.execution_item(rig.venue.engine, execution, ws=True)]}
    fees_before = rig.core.state.positions["BTCUSDT"].fees
    rig.core.on_private(message)
    rig.core.on_private(message)
    assert rig.core.state.positions["BTCUSDT"].fees == fees_before


@pytest.mark.parametrize(
    "hostile",
    [
        {"topic": "order", "data": "not a list"},
        {"topic": "order", "data": [{"no": "symbol"}]},
        {"topic": "position", "data": [{"symbol": "BTCUSDT", "size": "abc"}]},
        {"topic": "wallet", "data": [{"coin": "nope"}]},
        {"data": []},
    ],
)
def test_hostile_private_messages_never_take_the_engine_down(tmp_path, hostile):
    rig = build_rig(["BTCUSDT"], tmp_path)
    rig.core.on_private(hostile)
    assert rig.enter("BTCUSDT").success  # still trading afterwards


def test_panic_close_cancels_orders_closes_positions_and_refreshes_risk(tmp_path):
    rig = build_rig(["BTCUSDT", "ETHUSDT"], tmp_path)
    rig.enter("BTCUSDT")
    rig.enter("ETHUSDT", OrderSide.SELL)
    book = rig.venue.engine.books["BTCUSDT"]
    far_below = (book.best_bid()[0] * Decimal("0.95")).quantize(Decimal("0.1"))
    rig.venue.place_order(
        PlaceOrder(
            symbol="BTCUSDT",
            side="Buy",
            qty=Decimal("0.001"),
            order_link_id="manual-1",
            order_type="Limit",
            price=far_below,
        )
    )
    rig.pump()
    assert rig.core.risk.open_positions == 2
    report = panic_close_all(rig.core.execution)
    rig.pump()
    assert report["success"] is True and report["openPositions"] == []
    assert "manual-1" in report["canceledOrders"]
    assert rig.venue.positions() == [] and rig.venue.open_orders() == []
    assert rig.core.state.positions == {} and rig.core.state.open_orders() == []
    assert len(rig.persistence.trades) == 2
    assert rig.core.risk.open_positions == 0 and rig.core.risk.exposure == 0
    assert rig.core.risk.daily_pnl == sum(t.realized_pnl for t in rig.persistence.trades)


class FillsThenLosesTheAnswer(InProcessVenue):
    """The fill arrives on the private stream first; then the HTTP answer is lost."""

    core = None

    def place_order(self, order: PlaceOrder):
        super().place_order(order)
        for message in self.drain():  # the stream is faster than the lost answer
            self.core.on_private(message)
        raise AmbiguousSubmitError("read timed out", order_link_id=order.order_link_id)

    def get_order(self, symbol: str, order_link_id: str, *, order_id: str = ""):
        raise ExchangeError("the lookup goes unanswered too")  # only the stream's word counts here


def test_a_lost_answer_never_moves_an_order_the_stream_already_filled_back_to_submitted(tmp_path):
    instruments = {"BTCUSDT": DEFAULT_INSTRUMENTS["BTCUSDT"]}
    venue = FillsThenLosesTheAnswer(instruments, clock_ms=lambda: T0)
    rig = build_rig(["BTCUSDT"], tmp_path, venue=venue)
    venue.core = rig.core
    result = rig.core.execution.submit_entry(rig.request("BTCUSDT"))
    order = rig.core.state.orders[result.order_link_id]
    assert order.status == FILLED and rig.core.state.positions["BTCUSDT"].qty == order.qty
    assert len(venue.engine.orders) == 1


def test_panic_close_orders_are_confirmed_by_the_answer_and_settled_by_its_final_resync(tmp_path):
    """Without the private stream, the closing orders still end FILLED: not left INTENT to be looked up."""
    rig = build_rig(["BTCUSDT", "ETHUSDT"], tmp_path)
    rig.enter("BTCUSDT")
    rig.enter("ETHUSDT", OrderSide.SELL)
    report = panic_close_all(rig.core.execution)  # no pump: the stream says nothing
    assert report["success"] is True
    closing = [o for o in rig.core.state.orders.values() if o.purpose == "PANIC_CLOSE"]
    assert len(closing) == 2
    assert all(o.status == FILLED and o.exchange_order_id for o in closing)
    assert rig.core.state.positions == {}


# -- the pre-entry check: the first entry after a doubt asks the exchange ---------------------------------


class CountsReads(InProcessVenue):
    """Counts the position reads: the pre-entry check's cost."""

    position_reads = 0

    def positions(self, symbol=None):
        self.position_reads += 1
        return super().positions(symbol)


def _behind_the_back(rig, order: PlaceOrder) -> None:
    """Another client of the account acts; the trader's private stream never hears of it."""
    rig.venue.place_order(order)
    rig.venue.drain()


def test_an_entry_that_would_stack_on_a_position_the_trader_does_not_know_is_not_sent_and_reported(tmp_path):
    rig = build_rig(["BTCUSDT"], tmp_path)
    said = []
    rig.core.ledger.on_mismatch = lambda kind, details: said.append((kind, details))
    _behind_the_back(rig, PlaceOrder(symbol="BTCUSDT", side="Buy", qty=Decimal("0.010"), order_link_id="OWNER-1"))
    result = rig.enter("BTCUSDT")
    order = rig.core.state.orders[result.order_link_id]
    assert order.status == REJECTED and order.reject_reason.startswith("EXCHANGE_DISAGREES")
    assert len(rig.venue.engine.orders) == 1  # only the owner's: nothing stacked
    assert rig.venue.positions("BTCUSDT")[0].size == Decimal("0.010")
    assert [kind for kind, _ in said] == ["UNKNOWN_POSITION"] and said[0][1]["symbol"] == "BTCUSDT"
    events = [e for e in read_events(tmp_path / "BTCUSDT.jsonl") if e["event"] == "ORDER_REJECTED"]
    assert events[-1]["reason"] == "EXCHANGE_DISAGREES"


def test_a_resting_entry_order_the_trader_does_not_know_refuses_the_entry_but_a_known_one_does_not(tmp_path):
    rig = build_rig(["BTCUSDT"], tmp_path)
    said = []
    rig.core.ledger.on_mismatch = lambda kind, details: said.append(kind)
    far = Decimal(int(rig.mid("BTCUSDT") * 0.8))
    _behind_the_back(rig, PlaceOrder(symbol="BTCUSDT", side="Buy", qty=Decimal("0.010"), order_link_id="OWNER-2",
                                     order_type="Limit", price=far))
    refused = rig.core.state.orders[rig.enter("BTCUSDT").order_link_id]
    assert refused.reject_reason.startswith("EXCHANGE_DISAGREES") and said == ["UNKNOWN_ORDER"]

    from trading.engine.execution import sync_from_exchange

    sync_from_exchange(rig.core.execution)  # the resync adopts the owner's order: now the trader knows it
    said.clear()  # the adoption says UNKNOWN_ORDER too; what follows is the check's alone
    sent = rig.core.state.orders[rig.enter("BTCUSDT").order_link_id]
    assert sent.status == FILLED and said == []


def test_the_check_runs_once_per_symbol_until_something_casts_doubt_again(tmp_path):
    instruments = {s: DEFAULT_INSTRUMENTS[s] for s in ("BTCUSDT", "ETHUSDT")}
    venue = CountsReads(instruments, clock_ms=lambda: T0)
    rig = build_rig(["BTCUSDT", "ETHUSDT"], tmp_path, venue=venue)
    assert rig.enter("BTCUSDT").success and venue.position_reads == 1
    rig.core.execution.submit_exit("BTCUSDT", reason="TEST")
    rig.pump()
    assert rig.enter("BTCUSDT").success and venue.position_reads == 1  # verified: the stream follows it
    assert rig.enter("ETHUSDT").success and venue.position_reads == 2  # another symbol: checked once
    for symbol in ("BTCUSDT", "ETHUSDT"):
        rig.core.execution.submit_exit(symbol, reason="TEST")
    rig.pump()

    rig.safe[0] = True
    rig.core.tick()  # safe mode (however short) is a doubt: the next entries ask again
    rig.safe[0] = False
    assert rig.enter("BTCUSDT").success and venue.position_reads == 3
    rig.core.execution.submit_exit("BTCUSDT", reason="TEST")
    rig.pump()
    rig.core.execution.distrust()  # what a state reload or a resync says
    assert rig.enter("BTCUSDT").success and venue.position_reads == 4
