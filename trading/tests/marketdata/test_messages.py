"""Message builders and generated messages against Bybit's reference shapes."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from trading.marketdata import messages as m
from trading.marketdata.generator import generate_messages
from trading.marketdata.instruments import DEFAULT_INSTRUMENTS
from trading.marketdata.market_model import MarketModelConfig

from .kit import START_MS, load_capture

# Fields Bybit's V5 docs show that the reference samples happen to leave out.
DOCUMENTED_EXTRAS = {"orderbook": {"cts"}, "trade": {"L", "seq"}}


def _first(kind: str, symbol: str = "BTCUSDT", **kwargs: Any) -> list[dict[str, Any]]:
    messages = list(generate_messages([symbol], 3, START_MS, max_messages=400, **kwargs))
    return [msg for msg in messages if msg["topic"].startswith(kind)]


def _assert_same_shape(ours: dict[str, Any], reference: dict[str, Any], extras: set[str] = frozenset()) -> None:
    """Every reference key is present with the same JSON type; anything more must be a documented extra."""
    missing = set(reference) - set(ours)
    assert not missing, f"missing fields {missing}"
    assert set(ours) - set(reference) <= extras, f"unexpected fields {set(ours) - set(reference) - extras}"
    for key, value in reference.items():
        assert type(ours[key]) is type(value), f"{key}: {type(ours[key]).__name__} != {type(value).__name__}"


@pytest.mark.parametrize(
    ("step", "n", "text"),
    [("0.10", 912345, "91234.50"), ("0.001", 7, "0.007"), ("0.010", 14235, "142.350"), ("1", 42, "42"),
     ("0.00001", 15872, "0.15872"), ("0.1", 5, "0.5"), ("0.01", -3, "-0.03"), ("0.5", 3, "1.5")],
)  # fmt: skip
def test_unit_formatter_prints_bybit_precision(step: str, n: int, text: str) -> None:
    fmt = m.unit_formatter(Decimal(step))
    assert fmt(n) == text
    assert fmt(n) == text  # the cached path gives the same


@pytest.mark.parametrize(
    ("topic", "parsed"),
    [
        ("orderbook.50.BTCUSDT", ("orderbook", "BTCUSDT")),
        ("publicTrade.ETHUSDT", ("publicTrade", "ETHUSDT")),
        ("tickers.SOLUSDT", ("tickers", "SOLUSDT")),
        ("kline.1.BTCUSDT", ("kline", "BTCUSDT")),
        ("trade.linear.BTCUSDT", None),
        ("orderbook.BTCUSDT", None),
        ("publicTrade.", None),
        ("tickers.A.B", None),
        ("", None),
    ],
)
def test_split_topic_accepts_only_public_topics(topic: str, parsed: tuple[str, str] | None) -> None:
    assert m.split_topic(topic) == parsed


def test_orderbook_snapshot_matches_reference_shape() -> None:
    reference = load_capture("ws_orderbook_snapshot.json")
    ours = _first("orderbook")[0]
    assert ours["type"] == "snapshot"
    _assert_same_shape(ours, reference, DOCUMENTED_EXTRAS["orderbook"])
    _assert_same_shape(ours["data"], reference["data"])
    assert len(ours["data"]["b"]) == len(ours["data"]["a"]) == 50
    for level in ours["data"]["b"][:3] + ours["data"]["a"][:3]:
        assert [type(x) for x in level] == [str, str]


def test_orderbook_delta_matches_reference_shape() -> None:
    reference = load_capture("ws_orderbook_delta.json")
    ours = _first("orderbook")[1]
    assert ours["type"] == "delta"
    _assert_same_shape(ours, reference, DOCUMENTED_EXTRAS["orderbook"])
    _assert_same_shape(ours["data"], reference["data"])


def test_public_trade_matches_reference_shape_apart_from_topic() -> None:
    reference = load_capture("ws_public_trade.json")
    ours = _first("publicTrade")[0]
    assert ours["topic"] == "publicTrade.BTCUSDT"
    _assert_same_shape(ours, reference)
    for fill in ours["data"]:
        _assert_same_shape(fill, reference["data"][0], DOCUMENTED_EXTRAS["trade"])
        assert fill["S"] in ("Buy", "Sell")
        assert fill["L"] in ("PlusTick", "ZeroPlusTick", "MinusTick", "ZeroMinusTick")
        assert len(fill["i"]) == 36 and fill["i"].count("-") == 4


def test_ticker_snapshot_has_exactly_the_reference_fields_and_deltas_a_subset() -> None:
    reference = load_capture("ws_ticker_linear.json")
    tickers = _first("tickers")
    snapshot, deltas = tickers[0], tickers[1:]
    assert snapshot["type"] == "snapshot"
    _assert_same_shape(snapshot, reference)
    assert list(snapshot["data"]) == list(reference["data"])  # same fields, in Bybit's order
    assert all(type(v) is str for v in snapshot["data"].values())
    assert deltas
    for delta in deltas:
        assert delta["type"] == "delta"
        assert delta["data"]["symbol"] == "BTCUSDT"
        assert len(delta["data"]) > 1
        assert set(delta["data"]) <= set(reference["data"])
        assert all(type(v) is str for v in delta["data"].values())


def test_kline_matches_reference_shape_when_enabled() -> None:
    reference = load_capture("ws_kline.json")
    klines = _first("kline", config=MarketModelConfig(klines=True))
    assert klines and klines[0]["topic"] == "kline.1.BTCUSDT"
    _assert_same_shape(klines[0], reference)
    _assert_same_shape(klines[0]["data"][0], reference["data"][0])
    assert klines[0]["data"][0]["interval"] == "1"


def test_klines_are_off_by_default() -> None:
    assert not _first("kline")


@pytest.mark.parametrize("symbol", sorted(DEFAULT_INSTRUMENTS))
def test_every_default_instrument_prints_at_its_tick_and_step(symbol: str) -> None:
    spec = DEFAULT_INSTRUMENTS[symbol]
    places_p, places_q = m.decimals_of(spec.tick_size), m.decimals_of(spec.qty_step)
    snapshot = _first("orderbook", symbol)[0]
    for price, size in snapshot["data"]["b"] + snapshot["data"]["a"]:
        assert Decimal(price) % spec.tick_size == 0
        assert Decimal(size) % spec.qty_step == 0 and Decimal(size) >= spec.min_qty
        assert len(price.partition(".")[2]) == places_p
        assert len(size.partition(".")[2]) == places_q
