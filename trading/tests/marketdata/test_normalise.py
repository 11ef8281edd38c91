"""The normaliser: exact events from hand-written messages, and hostile input that must not hurt."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from trading.marketdata.events import BOOK, TICKER, TRADE, MarketEvent
from trading.marketdata.generator import generate_messages
from trading.marketdata.normalise import Normaliser

from .kit import START_MS, book_delta, book_snapshot

SNAPSHOT = book_snapshot(
    "BTCUSDT",
    bids=[["100.50", "1.000"], ["100.40", "2.000"], ["100.00", "3.000"]],
    asks=[["100.60", "0.500"], ["100.70", "1.500"]],
)

TICKER_SNAPSHOT = {
    "topic": "tickers.BTCUSDT",
    "type": "snapshot",
    "data": {"symbol": "BTCUSDT", "lastPrice": "100.50", "bid1Price": "100.50", "bid1Size": "1.000",
             "ask1Price": "100.60", "ask1Size": "0.500", "markPrice": "100.55"},
    "cs": 1,
    "ts": 2000,
}  # fmt: skip


def _fresh() -> Normaliser:
    normaliser = Normaliser()
    assert normaliser.normalise(copy.deepcopy(SNAPSHOT))
    return normaliser


def test_snapshot_gives_the_touch_with_mid_as_price() -> None:
    events = Normaliser().normalise(SNAPSHOT)
    assert events == [
        MarketEvent(BOOK, "BTCUSDT", 1000, 100.55, bid=100.5, ask=100.6, bid_qty=1.0, ask_qty=0.5),
    ]


def test_delta_updates_inserts_and_deletes_levels() -> None:
    normaliser = _fresh()
    events = normaliser.normalise(
        book_delta("BTCUSDT", bids=[["100.50", "0"], ["100.45", "4.000"]], asks=[["100.60", "0.250"]])
    )
    assert events == [MarketEvent(BOOK, "BTCUSDT", 1100, 100.525, bid=100.45, ask=100.6, bid_qty=4.0, ask_qty=0.25)]
    events = normaliser.normalise(book_delta("BTCUSDT", bids=[], asks=[["100.60", "0"], ["100.55", "0.100"]], u=102))
    assert events[0].ask == 100.55 and events[0].ask_qty == 0.1 and events[0].bid == 100.45
    assert normaliser.rejected == {}


def test_u_equal_one_resets_the_book() -> None:
    normaliser = _fresh()
    events = normaliser.normalise(book_delta("BTCUSDT", bids=[["90.00", "1.000"]], asks=[["91.00", "2.000"]], u=1))
    assert events[0].bid == 90.0 and events[0].ask == 91.0
    assert normaliser.best("BTCUSDT") == (90.0, 1.0, 91.0, 2.0)


def test_trade_message_gives_one_event_per_fill_at_match_time() -> None:
    message = {
        "topic": "publicTrade.BTCUSDT",
        "type": "snapshot",
        "ts": 1672304486868,
        "data": [
            {"T": 1672304486865, "s": "BTCUSDT", "S": "Buy", "v": "0.001", "p": "16578.50", "L": "PlusTick",
             "i": "20f43950-d8dd-5b31-9112-a178eb6023af", "BT": False, "seq": 1783284617},
            {"T": 1672304486865, "s": "BTCUSDT", "S": "Sell", "v": "0.250", "p": "16578.00", "L": "MinusTick",
             "i": "30f43950-d8dd-5b31-9112-a178eb6023af", "BT": False, "seq": 1783284618},
        ],
    }  # fmt: skip
    assert Normaliser().normalise(message) == [
        MarketEvent(TRADE, "BTCUSDT", 1672304486865, 16578.5, 0.001, 1),
        MarketEvent(TRADE, "BTCUSDT", 1672304486865, 16578.0, 0.25, -1),
    ]


def test_ticker_delta_merges_into_the_snapshot() -> None:
    normaliser = Normaliser()
    assert normaliser.normalise(TICKER_SNAPSHOT) == [
        MarketEvent(TICKER, "BTCUSDT", 2000, 100.5, bid=100.5, ask=100.6, bid_qty=1.0, ask_qty=0.5)
    ]
    delta = {"topic": "tickers.BTCUSDT", "type": "delta", "data": {"symbol": "BTCUSDT", "lastPrice": "100.60",
             "ask1Size": "0.300"}, "cs": 2, "ts": 2100}  # fmt: skip
    assert normaliser.normalise(delta) == [
        MarketEvent(TICKER, "BTCUSDT", 2100, 100.6, bid=100.5, ask=100.6, bid_qty=1.0, ask_qty=0.3)
    ]


def test_a_bad_ticker_delta_is_refused_whole_and_the_next_good_one_merges_into_what_was_known() -> None:
    normaliser = Normaliser()
    normaliser.normalise(TICKER_SNAPSHOT)
    for bad in ({"lastPrice": "100.7", "bid1Price": None}, {"lastPrice": "NaN"}, {"ask1Size": "-1"}):
        delta = {"topic": "tickers.BTCUSDT", "type": "delta", "data": {"symbol": "BTCUSDT", **bad}, "ts": 2100}
        assert normaliser.normalise(delta) == [], bad
    assert normaliser.rejected == {"bad_number": 3}
    delta = {"topic": "tickers.BTCUSDT", "type": "delta", "data": {"symbol": "BTCUSDT", "bid1Size": "2"}, "ts": 2200}
    assert normaliser.normalise(delta) == [
        MarketEvent(TICKER, "BTCUSDT", 2200, 100.5, bid=100.5, ask=100.6, bid_qty=2.0, ask_qty=0.5)
    ]


def test_kline_is_known_but_carries_no_event() -> None:
    normaliser = Normaliser()
    message = {"topic": "kline.1.BTCUSDT", "type": "snapshot", "ts": 1, "data": []}
    assert normaliser.normalise(message) == []
    assert normaliser.ignored == 1 and normaliser.rejected == {}


def _with(message: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(message)
    target = out
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return out


_DELETE = object()
TRADE_MSG = {"topic": "publicTrade.BTCUSDT", "type": "snapshot", "ts": 5, "data": [
    {"T": 4, "s": "BTCUSDT", "S": "Buy", "v": "0.001", "p": "100.60", "L": "PlusTick", "i": "x", "BT": False,
     "seq": 1}]}  # fmt: skip
DELTA = book_delta("BTCUSDT", bids=[["100.40", "5.000"]], asks=[])

HOSTILE: list[tuple[str, Any, str]] = [
    ("list instead of object", [1, 2], "not_object"),
    ("string", "orderbook.50.BTCUSDT", "not_object"),
    ("subscription ack", {"success": True, "op": "subscribe"}, "missing_topic"),
    ("unknown topic", {"topic": "liquidation.BTCUSDT", "ts": 1, "data": {}}, "unknown_topic"),
    ("sample topic name", _with(TRADE_MSG, ("topic",), "trade.linear.BTCUSDT"), "unknown_topic"),
    ("missing ts", _with(DELTA, ("ts",), _DELETE), "missing_field"),
    ("string ts", _with(DELTA, ("ts",), "1100"), "bad_number"),
    ("missing data", _with(DELTA, ("data",), _DELETE), "missing_field"),
    ("missing asks", _with(DELTA, ("data", "a"), _DELETE), "missing_field"),
    ("non-numeric price", _with(DELTA, ("data", "b"), [["abc", "1"]]), "bad_number"),
    ("NaN size", _with(DELTA, ("data", "b"), [["100.40", "nan"]]), "bad_number"),
    ("negative size", _with(DELTA, ("data", "b"), [["100.40", "-1"]]), "bad_number"),
    ("level of three", _with(DELTA, ("data", "b"), [["100.40", "1", "2"]]), "bad_number"),
    ("level not a list", _with(DELTA, ("data", "b"), "100.40"), "bad_number"),
    ("delete of absent level", _with(DELTA, ("data", "b"), [["99.00", "0"]]), "absent_level_delete"),
    ("stale u", _with(DELTA, ("data", "u"), 100), "stale_update"),
    ("u not a number", _with(DELTA, ("data", "u"), "101"), "bad_number"),
    ("unknown type", _with(DELTA, ("type",), "patch"), "bad_type"),
    ("symbol mismatch", _with(DELTA, ("data", "s"), "ETHUSDT"), "symbol_mismatch"),
    ("crossing delta", _with(DELTA, ("data", "b"), [["101.00", "1.000"]]), "crossed_book"),
    ("price twice", _with(DELTA, ("data", "b"), [["100.50", "0"], ["100.50", "0"]]), "malformed"),
    ("trade without price", _with(TRADE_MSG, ("data", 0, "p"), _DELETE), "missing_field"),
    ("trade bad side", _with(TRADE_MSG, ("data", 0, "S"), "Up"), "missing_field"),
    ("trade non-numeric size", _with(TRADE_MSG, ("data", 0, "v"), "lots"), "bad_number"),
    ("trade string time", _with(TRADE_MSG, ("data", 0, "T"), "4"), "bad_number"),
    ("trade data not list", _with(TRADE_MSG, ("data",), {"p": "1"}), "missing_field"),
    ("trade fill not object", _with(TRADE_MSG, ("data",), ["x"]), "malformed"),
    ("ticker delta before snapshot", _with(TICKER_SNAPSHOT, ("type",), "delta"), "delta_before_snapshot"),
    ("ticker bad last price", _with(TICKER_SNAPSHOT, ("data", "lastPrice"), "n/a"), "bad_number"),
    ("ticker without last price", _with(TICKER_SNAPSHOT, ("data", "lastPrice"), _DELETE), "missing_field"),
    ("ticker data not object", _with(TICKER_SNAPSHOT, ("data",), []), "missing_field"),
]


@pytest.mark.parametrize(("message", "reason"), [pytest.param(m, r, id=i) for i, m, r in HOSTILE])
def test_hostile_message_gives_no_events_and_is_counted(message: Any, reason: str) -> None:
    normaliser = _fresh()
    before = normaliser.best("BTCUSDT")
    assert normaliser.normalise(message) == []
    assert normaliser.rejected == {reason: 1}
    if reason != "crossed_book":
        assert normaliser.best("BTCUSDT") == before, "a rejected message must not touch the book"


def test_delta_before_snapshot_is_rejected() -> None:
    normaliser = Normaliser()
    assert normaliser.normalise(DELTA) == []
    assert normaliser.rejected == {"delta_before_snapshot": 1}


def test_rejected_delta_is_not_half_applied() -> None:
    normaliser = _fresh()
    bad = book_delta("BTCUSDT", bids=[["100.50", "9.000"]], asks=[["100.60", "oops"]])
    assert normaliser.normalise(bad) == []
    assert normaliser.best("BTCUSDT") == (100.5, 1.0, 100.6, 0.5)
    assert normaliser.normalise(book_delta("BTCUSDT", bids=[["100.50", "9.000"]], asks=[["105.00", "0"]])) == []
    assert normaliser.best("BTCUSDT") == (100.5, 1.0, 100.6, 0.5)


def test_crossed_book_is_dropped_until_the_next_snapshot() -> None:
    normaliser = _fresh()
    assert normaliser.normalise(_with(DELTA, ("data", "b"), [["101.00", "1.000"]])) == []
    assert normaliser.normalise(book_delta("BTCUSDT", bids=[["100.40", "1.000"]], asks=[], u=102)) == []
    assert normaliser.rejected == {"crossed_book": 1, "delta_before_snapshot": 1}
    assert normaliser.normalise(SNAPSHOT)


def test_update_gap_still_applies_but_is_reported() -> None:
    normaliser = _fresh()
    assert normaliser.normalise(_with(DELTA, ("data", "u"), 105))
    assert normaliser.warnings == {"update_gap": 1} and normaliser.rejected == {}


def test_garbage_in_a_real_stream_costs_only_the_garbage() -> None:
    messages = list(generate_messages(["BTCUSDT", "ETHUSDT"], 4, START_MS, max_messages=3_000))
    clean = Normaliser()
    expected = list(clean.normalise_all(messages))
    noisy = messages[:2] + [None, {"topic": 5}, {"topic": "tickers.BTCUSDT", "ts": 1, "type": "delta", "data": 7}]
    noisy += messages[2:]
    dirty = Normaliser()
    assert list(dirty.normalise_all(noisy)) == expected
    assert sum(dirty.rejected.values()) == 3
    assert clean.rejected == {} and clean.warnings == {}


def test_the_touch_matches_an_independent_book_through_a_generated_stream() -> None:
    from .kit import ReferenceBook

    normaliser, books, checked = Normaliser(), {}, 0
    for message in generate_messages(["BTCUSDT", "SOLUSDT"], 4, START_MS, max_messages=20_000):
        events = normaliser.normalise(message)
        if not message["topic"].startswith("orderbook"):
            continue
        symbol = message["data"]["s"]
        if message["type"] == "snapshot":
            books[symbol] = ReferenceBook(message)
        else:
            books[symbol].apply(message)
        book = books[symbol]
        bid, ask = book.best_bid, book.best_ask
        assert [(e.bid, e.bid_qty, e.ask, e.ask_qty) for e in events] == [
            (float(bid), float(book.bids[bid]), float(ask), float(book.asks[ask]))]
        checked += 1
    assert checked > 5_000 and normaliser.rejected == {}


def test_deleting_the_best_level_finds_the_next_one_and_a_better_price_takes_the_touch() -> None:
    normaliser = Normaliser()
    normaliser.normalise(book_snapshot("BTCUSDT", [["100.0", "1"], ["99.0", "2"], ["98.0", "3"]],
                                       [["101.0", "1"], ["102.0", "2"]]))
    # The best bid deleted after a better one was set in the same delta, then the best ask deleted.
    events = normaliser.normalise(book_delta("BTCUSDT", bids=[["100.5", "4"], ["100.0", "0"]],
                                             asks=[["101.0", "0"]]))
    assert (events[0].bid, events[0].bid_qty, events[0].ask, events[0].ask_qty) == (100.5, 4.0, 102.0, 2.0)
    events = normaliser.normalise(book_delta("BTCUSDT", bids=[["100.5", "0"], ["99.0", "0"]], asks=[], u=102))
    assert (events[0].bid, events[0].ask) == (98.0, 102.0)
    assert normaliser.best("BTCUSDT") == (98.0, 3.0, 102.0, 2.0)


def test_shared_levels_parse_a_list_once_for_two_readers_and_forget_it_after_two_others() -> None:
    from trading.marketdata import normalise

    calls: list[Any] = []
    real = normalise.parse_levels
    shared = normalise.SharedLevels()
    bids, asks, other = [["100.5", "1"]], [["100.6", "2"]], [["99", "3"]]
    try:
        normalise.parse_levels = lambda raw: calls.append(raw) or real(raw)  # type: ignore[assignment]
        first = (shared(bids), shared(asks))
        assert (shared(bids), shared(asks)) == first and shared(bids) is first[0]
        assert calls == [bids, asks]  # the second reader parsed nothing
        assert shared(other) == {99.0: 3.0} and shared(bids) == {100.5: 1.0}
        assert calls == [bids, asks, other, bids]  # three lists ago is forgotten
        assert shared([["1", "x"]]) is None
    finally:
        normalise.parse_levels = real
