"""Market playback from the seeded generator and from JSONL files; record_market round trip."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from trading.marketdata.generator import generate_messages
from trading.marketdata.jsonl import read_messages, write_messages
from trading.simexchange.pybit_target import sim_http, sim_websocket
from trading.simexchange.server import SimServer
from trading.simexchange.sources import file_source

from .conftest import FAST_WS, Collector, wait_for

START = 1_700_000_000_000


def test_generator_playback_feeds_book_streams_and_fills(tmp_path: Path) -> None:
    source = generate_messages(["BTCUSDT", "ETHUSDT"], 7, START, duration_ms=600_000)
    with SimServer(source=source, speed=20.0) as sim:
        raw = Collector()
        ws = sim_websocket("linear", sim.ws_base, callback_function=raw, **FAST_WS)
        try:
            ws.orderbook_stream(50, "BTCUSDT", raw)
            ws.orderbook_stream(1, "BTCUSDT", raw)
            ws.ticker_stream("BTCUSDT", raw)
            ws.trade_stream("BTCUSDT", raw)
            wait_for(lambda: len(raw.topic("orderbook.50.BTCUSDT")) > 5 and raw.topic("publicTrade.BTCUSDT")
                     and len(raw.topic("tickers.BTCUSDT")) > 2, what="played messages")
            book = raw.topic("orderbook.50.BTCUSDT")
            assert book[0]["type"] == "snapshot" and all(m["type"] == "delta" for m in book[1:])
            assert [m["data"]["u"] for m in book] == sorted(m["data"]["u"] for m in book)
            assert abs(book[-1]["ts"] - time.time() * 1000) < 5_000  # re-stamped to the simulator's clock
            # Keep pybit's own book logic honest too: replay our raw stream through it.
            assert ws.is_connected()
        finally:
            ws.exit()
        http = sim_http(sim.base_url, retry_codes={-1})
        http.place_order(category="linear", symbol="BTCUSDT", side="Buy", orderType="Market", qty="0.01")
        pos = http.get_positions(category="linear", symbol="BTCUSDT")["result"]["list"][0]
        assert pos["size"] == "0.010" and float(pos["avgPrice"]) > 80_000


def test_jsonl_file_replays_and_speed_scales_time(tmp_path: Path) -> None:
    path = tmp_path / "market.jsonl"
    write_messages(path, generate_messages(["BTCUSDT"], 3, START, duration_ms=4_000))
    count = sum(1 for _ in read_messages(path))
    started = time.monotonic()
    with SimServer(source=file_source(path), speed=8.0) as sim:
        wait_for(lambda: sim.call(lambda s: s.messages_played) == count, what="the whole file")
        elapsed = time.monotonic() - started
        book = sim.call(lambda s: s.engine.books["BTCUSDT"].best_bid())
    assert 0.3 < elapsed < 2.0  # 4 s of market at 8x
    assert book is not None


@pytest.mark.slow  # records a second and a half of live market
def test_record_market_from_the_simulator_itself(tmp_path: Path) -> None:
    out = tmp_path / "recorded.jsonl"
    source = generate_messages(["BTCUSDT", "ETHUSDT"], 11, START)
    with SimServer(source=source, speed=5.0) as sim:
        call_command("record_market", symbols="BTCUSDT,ETHUSDT", out=str(out), duration=1.5, ws_url=sim.ws_base)
    messages = list(read_messages(out))
    topics = {m["topic"] for m in messages}
    assert {"orderbook.50.BTCUSDT", "publicTrade.BTCUSDT", "tickers.ETHUSDT"} <= topics
    first_book = next(m for m in messages if m["topic"] == "orderbook.50.BTCUSDT")
    assert first_book["type"] == "snapshot"
    # The recording plays back unchanged into a fresh simulator.
    with SimServer(source=file_source(out), speed=0) as replay:
        wait_for(lambda: replay.call(lambda s: s.messages_played) == len(messages), what="replay")
        best: Any = replay.call(lambda s: s.engine.books["BTCUSDT"].best_ask())
        assert best is not None


def test_an_unreadable_market_file_stops_the_market_with_its_reason_and_the_exchange_keeps_serving(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "bad.jsonl"
    good = next(generate_messages(["BTCUSDT"], 7, START, duration_ms=60_000))
    write_messages(path, [good])
    with path.open("a") as fh:
        fh.write("[" * 100_000 + "\n")  # nested far deeper than any message: refused, not a RecursionError
    with caplog.at_level("ERROR", logger="trading.simexchange.server"), SimServer(
        source=file_source(path), speed=0
    ) as sim:
        wait_for(lambda: "market playback stopped" in caplog.text, timeout=10)
        assert f"{path}:2" in caplog.text
        assert sim_http(sim.base_url).get_server_time()["retCode"] == 0
