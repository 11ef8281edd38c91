"""Fill rules of the pure matching engine (no server, no Django)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from trading.marketdata.instruments import DEFAULT_INSTRUMENTS
from trading.marketdata.normalise import parse_levels
from trading.simexchange import errors as E
from trading.simexchange.matching import MatchingEngine
from trading.simexchange.orders import OrderRequest


def engine() -> MatchingEngine:
    clock = iter(range(1_000, 10_000_000))
    e = MatchingEngine(DEFAULT_INSTRUMENTS, clock=lambda: next(clock))
    e.books["BTCUSDT"].apply_snapshot(
        parse_levels([["50000.0", "0.5"], ["49999.0", "1.0"]]),
        parse_levels([["50001.0", "0.5"], ["50002.0", "1.0"], ["50010.0", "5"]]),
        1,
        1,
    )
    e.last_price["BTCUSDT"] = D("50000.5")
    return e


def market(side: str, qty: str, **kw: object) -> OrderRequest:
    return OrderRequest("BTCUSDT", side, "Market", D(qty), **kw)  # type: ignore[arg-type]


def limit(side: str, qty: str, price: str, **kw: object) -> OrderRequest:
    return OrderRequest("BTCUSDT", side, "Limit", D(qty), D(price), **kw)  # type: ignore[arg-type]


def test_market_order_walks_the_book_and_pays_taker_fee() -> None:
    e = engine()
    order, changes = e.place_order(market("Buy", "1.2"))
    assert order.status == "Filled"
    fills = [(x.exec_price, x.exec_qty) for x in changes.executions]
    assert fills == [(D("50001.0"), D("0.5")), (D("50002.0"), D("0.7"))]
    assert all(not x.is_maker and x.fee_rate == D("0.00055") for x in changes.executions)
    pos = e.positions["BTCUSDT"]
    assert pos.size == D("1.2")
    assert pos.avg_price == (D("50001") * D("0.5") + D("50002") * D("0.7")) / D("1.2")
    fee = (D("50001") * D("0.5") + D("50002") * D("0.7")) * D("0.00055")
    assert e.wallet.balance == D("10000") - fee
    assert [o.order_id for o in changes.orders] == [order.order_id] and changes.positions == ["BTCUSDT"]


def test_market_remainder_beyond_the_book_is_cancelled() -> None:
    e = engine()
    e.set_leverage("BTCUSDT", D("100"), D("100"))
    order, _ = e.place_order(market("Buy", "7"))
    assert order.status == "Cancelled" and order.cum_qty == D("6.5")


def test_limit_rests_then_fills_partially_at_touch_and_fully_through() -> None:
    e = engine()
    order, changes = e.place_order(limit("Buy", "0.3", "49995.0"))
    assert order.status == "New" and not changes.executions
    changes = e.on_trade("BTCUSDT", D("49995.0"), D("0.1"))
    assert order.status == "PartiallyFilled" and order.cum_qty == D("0.1")
    assert changes.executions[0].is_maker and changes.executions[0].fee_rate == D("0.0002")
    e.on_trade("BTCUSDT", D("49994.0"), D("0.01"))
    assert order.status == "Filled" and order.cum_qty == D("0.3")
    assert e.positions["BTCUSDT"].avg_price == D("49995.0")


def test_crossing_limit_takes_up_to_its_price_and_rests_the_rest() -> None:
    e = engine()
    order, changes = e.place_order(limit("Buy", "1", "50001.0"))
    assert order.status == "PartiallyFilled" and order.cum_qty == D("0.5")
    assert changes.executions[0].exec_price == D("50001.0")


def test_post_only_that_would_take_is_cancelled() -> None:
    e = engine()
    order, _ = e.place_order(limit("Buy", "0.1", "50001.0", time_in_force="PostOnly"))
    assert order.status == "Cancelled" and order.reject_reason == "EC_PostOnlyWillTakeLiquidity"


def test_closing_realises_pnl_and_flip_opens_other_side() -> None:
    e = engine()
    e.place_order(market("Buy", "0.5"))  # long 0.5 @ 50001
    e.place_order(market("Sell", "1.0"))  # 0.5 @ 50000 + 0.5 @ 49999: closes and flips
    pos = e.positions["BTCUSDT"]
    assert pos.size == D("-0.5") and pos.avg_price == D("49999.0")
    pnl = D("0.5") * (D("50000") - D("50001"))
    fees = (D("50001") * D("0.5") + D("50000") * D("0.5") + D("49999") * D("0.5")) * D("0.00055")
    assert e.wallet.balance == D("10000") + pnl - fees


def test_unrealised_pnl_and_equity_follow_last_price() -> None:
    e = engine()
    e.place_order(market("Buy", "0.1"))
    e.on_trade("BTCUSDT", D("51001.0"), D("0.001"))
    assert e.unrealised(e.positions["BTCUSDT"]) == D("100.0")
    assert e.equity() == e.wallet.balance + D("100.0")


def test_take_profit_closes_position_with_reduce_only_market_order() -> None:
    e = engine()
    e.place_order(market("Buy", "0.1", take_profit=D("50500.0"), stop_loss=D("49000.0")))
    pos = e.positions["BTCUSDT"]
    assert pos.take_profit == D("50500.0") and pos.stop_loss == D("49000.0")
    e.on_trade("BTCUSDT", D("50400.0"), D("0.01"))
    assert pos.size == D("0.1")
    changes = e.on_trade("BTCUSDT", D("50500.0"), D("0.01"))
    assert pos.size == 0 and pos.take_profit is None
    closing = [o for o in changes.orders if o.create_type == "CreateByTakeProfit"]
    assert closing and closing[0].reduce_only and closing[0].order_type == "Market"
    assert changes.executions[-1].stop_order_type == "TakeProfit"


def test_stop_loss_triggers_on_short() -> None:
    e = engine()
    e.place_order(market("Sell", "0.1", stop_loss=D("50100.0")))
    changes = e.on_trade("BTCUSDT", D("50100.0"), D("0.01"))
    assert e.positions["BTCUSDT"].size == 0
    assert any(o.create_type == "CreateByStopLoss" for o in changes.orders)


@pytest.mark.parametrize(
    ("req", "code"),
    [
        (market("Buy", "0.0005"), E.REDUCE_ONLY_NOT_SATISFIED),  # truncated to zero
        (market("Buy", "0.0015"), E.PARAM_ERROR),  # off the qty step
        (market("Buy", "5000"), E.PARAM_ERROR),  # above max qty
        (limit("Buy", "0.1", "50000.05"), E.PARAM_ERROR),  # off the tick
        (limit("Buy", "0.1", "60000.0"), E.PRICE_OUT_OF_RANGE),  # far above the mark
        (limit("Sell", "0.1", "40000.0"), E.PRICE_OUT_OF_RANGE),
        (market("Buy", "0.1", reduce_only=True), E.REDUCE_ONLY_NOT_SATISFIED),  # no position
        (market("Buy", "2.5"), E.INSUFFICIENT_AVAILABLE),  # 125k notional at 10x on 10k
        (market("Buy", "0.1", position_idx=1), E.PARAM_ERROR),  # hedge mode index
        (OrderRequest("NOPEUSDT", "Buy", "Market", D("1")), E.PARAM_ERROR),
    ],
)
def test_refusals_have_bybit_codes_and_change_nothing(req: OrderRequest, code: int) -> None:
    e = engine()
    before = e.to_state()
    with pytest.raises(E.ExchangeError) as info:
        e.place_order(req)
    assert info.value.ret_code == code
    after = e.to_state()
    assert {k: v for k, v in after.items() if k != "positions"} == {k: v for k, v in before.items() if k != "positions"}
    assert all(p["size"] == "0" for p in after["positions"])


def test_reduce_only_that_would_increase_is_refused_and_one_that_reduces_is_trimmed() -> None:
    e = engine()
    e.place_order(market("Buy", "0.2"))
    with pytest.raises(E.ExchangeError) as info:
        e.place_order(market("Buy", "0.1", reduce_only=True))
    assert info.value.ret_code == E.REDUCE_ONLY_NOT_SATISFIED
    order, _ = e.place_order(market("Sell", "0.5", reduce_only=True))
    assert order.qty == D("0.2") and e.positions["BTCUSDT"].size == 0


def test_duplicate_order_link_id_is_refused() -> None:
    e = engine()
    e.place_order(limit("Buy", "0.1", "49000.0", link_id="abc"))
    with pytest.raises(E.ExchangeError) as info:
        e.place_order(limit("Buy", "0.1", "49000.0", link_id="abc"))
    assert info.value.ret_code == E.ORDER_LINK_ID_DUPLICATE
    assert len(e.orders) == 1


def test_slippage_shifts_taker_fills_against_the_taker() -> None:
    e = engine()
    e.slippage_bps["BTCUSDT"] = D("100")
    _, changes = e.place_order(market("Buy", "0.1"))
    assert changes.executions[0].exec_price == D("50501.0")  # 50001 + 1 %


def test_state_round_trip() -> None:
    e = engine()
    e.place_order(market("Buy", "0.1", take_profit=D("51000.0")))
    e.place_order(limit("Sell", "0.1", "50500.0", link_id="x1"))
    copy = engine()
    copy.load_state(e.to_state())
    assert copy.to_state() == e.to_state()
    with pytest.raises(E.ExchangeError):
        copy.place_order(limit("Sell", "0.1", "50500.0", link_id="x1"))


def test_the_feed_drops_a_book_message_whose_levels_are_not_numbers_and_keeps_the_book():
    from trading.simexchange.market import MarketFeed

    e = engine()
    feed = MarketFeed(e)
    before = e.books["BTCUSDT"].levels("Buy"), e.books["BTCUSDT"].levels("Sell")
    for levels in ([["50000.5", "NaN"]], [["-1", "2"]], [["50000.5"]], "junk"):
        message = {"topic": "orderbook.50.BTCUSDT", "type": "delta", "ts": 2_000,
                   "data": {"s": "BTCUSDT", "b": levels, "a": [], "u": 2, "seq": 2}}
        feed.ingest(message, 2_000)
    assert feed.rejected == 4
    assert (e.books["BTCUSDT"].levels("Buy"), e.books["BTCUSDT"].levels("Sell")) == before
