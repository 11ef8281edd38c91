"""The seeded market generator: determinism, book consistency, trades and microstructure."""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from decimal import Decimal
from typing import Any

import pytest

from trading.marketdata.generator import MarketGenerator, generate_messages
from trading.marketdata.instruments import DEFAULT_INSTRUMENTS
from trading.marketdata.market_model import MarketModelConfig
from trading.marketdata.normalise import Normaliser

from .kit import START_MS, ReferenceBook, dumps

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]


@pytest.fixture(scope="module")
def run() -> list[dict[str, Any]]:
    return list(generate_messages(SYMBOLS, 11, START_MS, max_messages=30_000))


def _short_dwell_config(**changes: Any) -> MarketModelConfig:
    base = MarketModelConfig()
    regimes = tuple(dataclasses.replace(r, mean_dwell_s=20.0) for r in base.regimes)
    return dataclasses.replace(base, regimes=regimes, **changes)


def test_same_seed_gives_identical_bytes() -> None:
    first = "\n".join(dumps(x) for x in generate_messages(SYMBOLS, 5, START_MS, max_messages=5_000))
    second = "\n".join(dumps(x) for x in generate_messages(SYMBOLS, 5, START_MS, max_messages=5_000))
    assert first == second


def test_different_seed_gives_different_market() -> None:
    first = [dumps(x) for x in generate_messages(SYMBOLS, 5, START_MS, max_messages=2_000)]
    second = [dumps(x) for x in generate_messages(SYMBOLS, 6, START_MS, max_messages=2_000)]
    assert first != second
    assert len(set(first) & set(second)) < len(first) // 10


def test_max_messages_and_duration_bound_the_stream() -> None:
    assert len(list(generate_messages(["BTCUSDT"], 1, START_MS, max_messages=123))) == 123
    assert list(generate_messages(["BTCUSDT"], 1, START_MS, max_messages=0)) == []
    timed = list(generate_messages(["BTCUSDT", "ETHUSDT"], 1, START_MS, duration_ms=20_000))
    assert timed and all(START_MS <= x["ts"] < START_MS + 20_000 for x in timed)
    assert timed[-1]["ts"] > START_MS + 19_000  # it runs to the end, not stops early


def test_unknown_or_repeated_symbols_are_refused() -> None:
    with pytest.raises(ValueError, match="NOPEUSDT"):
        MarketGenerator(["NOPEUSDT"], 1, START_MS)
    with pytest.raises(ValueError, match="distinct"):
        MarketGenerator(["BTCUSDT", "BTCUSDT"], 1, START_MS)


def test_each_symbol_starts_with_book_then_ticker_snapshots(run: list[dict[str, Any]]) -> None:
    first: dict[str, list[str]] = defaultdict(list)
    for msg in run:
        symbol = msg["topic"].rsplit(".", 1)[1]
        kind = msg["topic"].split(".")[0]
        if kind not in {k for k, _ in first[symbol]} and kind != "publicTrade":
            first[symbol].append((kind, msg["type"]))  # type: ignore[arg-type]
    for symbol in SYMBOLS:
        assert first[symbol] == [("orderbook", "snapshot"), ("tickers", "snapshot")]
    snapshots = [msg for msg in run if msg["type"] == "snapshot" and not msg["topic"].startswith("publicTrade")]
    assert len(snapshots) == 2 * len(SYMBOLS)  # no further snapshots: the rest are deltas


def test_messages_are_time_ordered_across_symbols(run: list[dict[str, Any]]) -> None:
    stamps = [msg["ts"] for msg in run]
    assert stamps == sorted(stamps)
    assert stamps[-1] - stamps[0] > 60_000


def test_every_delta_applies_cleanly_and_trades_hit_the_shown_book(run: list[dict[str, Any]]) -> None:
    books: dict[str, ReferenceBook] = {}
    taken: dict[tuple[str, str, Decimal], Decimal] = defaultdict(Decimal)  # size filled since the last delta
    last_trade_time: dict[str, int] = {}
    trade_seq: dict[str, int] = {}
    fills = 0
    for msg in run:
        topic = msg["topic"]
        symbol = topic.rsplit(".", 1)[1]
        if topic.startswith("orderbook"):
            if msg["type"] == "snapshot":
                books[symbol] = ReferenceBook(msg)
            else:
                books[symbol].apply(msg)
                assert len(books[symbol].bids) <= 50 and len(books[symbol].asks) <= 50
            for key in [k for k in taken if k[0] == symbol]:
                del taken[key]
        elif topic.startswith("publicTrade"):
            book = books[symbol]
            for fill in msg["data"]:
                price, size = Decimal(fill["p"]), Decimal(fill["v"])
                assert fill["T"] <= msg["ts"]
                assert fill["T"] >= last_trade_time.get(symbol, 0), "trade times go backwards"
                assert fill["seq"] > trade_seq.get(symbol, 0)
                last_trade_time[symbol], trade_seq[symbol] = fill["T"], fill["seq"]
                side = book.asks if fill["S"] == "Buy" else book.bids
                if fill["S"] == "Buy":
                    assert price >= book.best_ask, "a buy must trade at or through the ask"
                else:
                    assert price <= book.best_bid, "a sell must trade at or through the bid"
                assert price in side, "a fill must consume a level the book showed"
                taken[(symbol, fill["S"], price)] += size
                assert taken[(symbol, fill["S"], price)] <= side[price], "filled more than the level showed"
                fills += 1
    assert fills > 1_000


def test_prices_and_sizes_lie_on_the_instrument_grid(run: list[dict[str, Any]]) -> None:
    for msg in run[:5_000]:
        symbol = msg["topic"].rsplit(".", 1)[1]
        spec = DEFAULT_INSTRUMENTS[symbol]
        if msg["topic"].startswith("orderbook"):
            pairs = msg["data"]["b"] + msg["data"]["a"]
        elif msg["topic"].startswith("publicTrade"):
            pairs = [[f["p"], f["v"]] for f in msg["data"]]
        else:
            d = msg["data"]
            pairs = [[d[k], "0"] for k in ("lastPrice", "markPrice", "bid1Price", "ask1Price") if k in d]
        for price, size in pairs:
            assert Decimal(price) % spec.tick_size == 0, price
            assert Decimal(size) % spec.qty_step == 0, size


def test_ticker_touch_agrees_with_the_book(run: list[dict[str, Any]]) -> None:
    normaliser = Normaliser()
    checked = 0
    for msg in run:
        events = normaliser.normalise(msg)
        if msg["topic"].startswith("tickers") and msg["type"] == "delta" and "bid1Price" in msg["data"]:
            bid, _, ask, _ = normaliser.best(msg["data"]["symbol"])  # type: ignore[misc]
            # the ticker reads the live book, the orderbook stream lags it by under one push
            assert abs(events[0].bid - bid) / bid < 0.01 and abs(events[0].ask - ask) / ask < 0.01
            checked += 1
    assert checked > 100
    assert normaliser.rejected == {} and normaliser.warnings == {}


def test_stress_widens_spread_moves_more_and_thins_the_book() -> None:
    generator = MarketGenerator(["BTCUSDT", "SOLUSDT"], 3, START_MS, config=_short_dwell_config())
    normaliser = Normaliser()
    spreads: dict[str, list[float]] = defaultdict(list)
    depth: dict[str, list[float]] = defaultdict(list)
    moves: dict[str, list[float]] = defaultdict(list)
    last: dict[str, tuple[int, float, str]] = {}
    for msg in generator.messages(duration_ms=600_000):
        for event in normaliser.normalise(msg):
            if event.kind != "book":
                continue
            regime = generator.regime(event.symbol)
            spreads[regime].append((event.ask - event.bid) / event.price)
            depth[regime].append((event.bid_qty + event.ask_qty) * event.price)
            second = event.ts_ms // 1000
            previous = last.get(event.symbol)
            if previous is None or previous[0] != second:
                if previous is not None and previous[2] == regime and second - previous[0] == 1:
                    moves[regime].append(abs(math.log(event.price / previous[1])))
                last[event.symbol] = (second, event.price, regime)

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    assert min(len(moves["calm"]), len(moves["stressed"])) > 100, "the run must visit both regimes"
    assert mean(spreads["stressed"]) > 1.5 * mean(spreads["calm"])
    assert mean(moves["stressed"]) > 2.0 * mean(moves["calm"])
    assert mean(depth["stressed"]) < 0.7 * mean(depth["calm"])


def test_trades_cluster_and_taker_flow_leans_with_the_drift() -> None:
    config = MarketModelConfig(regimes=(MarketModelConfig().regimes[0],), transitions=((1.0,),))  # calm only
    counts: dict[int, int] = defaultdict(int)
    flow: dict[int, float] = defaultdict(float)  # signed taker quantity per second
    mids: dict[int, float] = {}  # last mid of each second
    normaliser = Normaliser()
    for msg in generate_messages(["ETHUSDT"], 9, START_MS, duration_ms=900_000, config=config):
        for event in normaliser.normalise(msg):
            second = (event.ts_ms - START_MS) // 1000
            if event.kind == "trade":
                counts[second] += 1
                flow[second] += event.side * event.qty
            elif event.kind == "book":
                mids[second] = event.price
    per_second = [counts.get(s, 0) for s in range(900)]
    mean_count = sum(per_second) / len(per_second)
    variance = sum((c - mean_count) ** 2 for c in per_second) / len(per_second)
    assert variance / mean_count > 1.5, "Hawkes arrivals should be burstier than Poisson (ratio 1)"
    seconds = [s for s in sorted(mids) if s - 1 in mids]
    returns = [math.log(mids[s] / mids[s - 1]) for s in seconds]
    signed = [flow.get(s, 0.0) for s in seconds]
    mr, ms = sum(returns) / len(returns), sum(signed) / len(signed)
    cov = sum((r - mr) * (s - ms) for r, s in zip(returns, signed, strict=True))
    corr = cov / math.sqrt(sum((r - mr) ** 2 for r in returns) * sum((s - ms) ** 2 for s in signed))
    # ~900 samples: without any link the correlation would be 0 +- 0.035
    assert corr > 0.1, f"net taker buying should come with rising prices (corr {corr:.3f})"


def test_config_rejects_a_bad_transition_matrix() -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        MarketModelConfig(transitions=((0.0, 0.5, 0.4), (0.6, 0.0, 0.4), (0.7, 0.3, 0.0)))
    with pytest.raises(ValueError, match="stationary"):
        MarketModelConfig(hawkes_alpha=6.0, hawkes_beta=5.0)
