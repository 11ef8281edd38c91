"""Public and private WebSocket streams, through the real pybit WebSocket class."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import websocket

from trading.simexchange.auth import sign
from trading.simexchange.constants import DEFAULT_API_KEY, DEFAULT_API_SECRET
from trading.simexchange.control import SimControl
from trading.simexchange.pybit_target import SimWebSocket
from trading.simexchange.server import SimServer

from .conftest import Collector, wait_for


def test_public_topics_snapshot_then_deltas(
    sim: SimServer, ctl: SimControl, open_ws: Callable[..., SimWebSocket]
) -> None:
    raw = Collector()
    # callback_function replaces pybit's dispatcher: every raw message lands in ``raw``.
    ws = open_ws("linear", callback_function=raw)
    merged = raw
    ws.orderbook_stream(50, "BTCUSDT", merged)
    ws.orderbook_stream(1, "BTCUSDT", merged)
    ws.ticker_stream("BTCUSDT", merged)
    ws.trade_stream("BTCUSDT", merged)
    ws.kline_stream(1, "BTCUSDT", merged)
    wait_for(lambda: raw.topic("orderbook.50.BTCUSDT") and raw.topic("tickers.BTCUSDT")
             and raw.topic("orderbook.1.BTCUSDT")
             and len([m for m in raw.messages if m.get("op") == "subscribe"]) == 5, what="snapshots and acks")
    acks = [m for m in raw.messages if m.get("op") == "subscribe"]
    assert len(acks) == 5 and all(m["success"] for m in acks)
    assert {m["req_id"] for m in acks} == set(ws.subscriptions)  # req_id echoed
    first = raw.topic("orderbook.50.BTCUSDT")[0]
    assert first["type"] == "snapshot" and first["data"]["b"][0] == ["50000.00", "0.500"]
    assert raw.topic("tickers.BTCUSDT")[0]["type"] == "snapshot"
    # The market moves: a level goes, one appears, a trade prints.
    ctl.publish({"topic": "orderbook.50.BTCUSDT", "type": "delta", "ts": 0,
                 "data": {"s": "BTCUSDT", "b": [["50000.0", "0"], ["49999.5", "2"]], "a": [], "u": 2, "seq": 2}})
    ctl.trade("BTCUSDT", "50001.0", "0.1")
    wait_for(lambda: raw.topic("publicTrade.BTCUSDT") and raw.topic("kline.1.BTCUSDT")
             and len(raw.topic("orderbook.50.BTCUSDT")) >= 2, what="deltas")
    delta = raw.topic("orderbook.50.BTCUSDT")[1]
    assert delta["type"] == "delta" and delta["data"]["u"] > first["data"]["u"]
    assert sorted(delta["data"]["b"]) == [["49999.50", "2.000"], ["50000.00", "0"]]
    top = raw.topic("orderbook.1.BTCUSDT")
    assert all(m["type"] == "snapshot" for m in top) and top[-1]["data"]["b"] == [["49999.50", "2.000"]]
    trade = raw.topic("publicTrade.BTCUSDT")[-1]["data"][0]
    assert trade["p"] == "50001.0" and trade["S"] == "Buy" and isinstance(trade["T"], int)
    wait_for(lambda: any(m["type"] == "delta" for m in raw.topic("tickers.BTCUSDT")), what="ticker delta")
    tick = [m for m in raw.topic("tickers.BTCUSDT") if m["type"] == "delta"][-1]["data"]
    assert tick["lastPrice"] == "50001.00"
    kline = raw.topic("kline.1.BTCUSDT")[-1]["data"][0]
    assert kline["close"] == "50001.0" and kline["confirm"] is False
    assert ws.is_connected()


def test_pybit_merged_book_survives_many_deltas(sim: SimServer, ctl: SimControl,
                                                open_ws: Callable[..., SimWebSocket]) -> None:
    got = Collector()
    ws = open_ws("linear")
    ws.orderbook_stream(50, "BTCUSDT", got)
    wait_for(lambda: got.messages, what="snapshot")
    for i in range(30):
        px = f"{49000 + i}.0"
        ctl.publish({"topic": "orderbook.50.BTCUSDT", "type": "delta", "ts": 0,
                     "data": {"s": "BTCUSDT", "b": [[px, "1"]], "a": [], "u": 3 + i, "seq": 3 + i}})
        # A delete of a level that does not exist: the simulator must not forward it (pybit #369).
        ctl.publish({"topic": "orderbook.50.BTCUSDT", "type": "delta", "ts": 0,
                     "data": {"s": "BTCUSDT", "b": [["1.0", "0"]], "a": [], "u": 100 + i, "seq": 100 + i}})
    wait_for(lambda: len(got.messages) >= 31, what="deltas")
    assert ws.is_connected() and not ws.exited
    book = got.messages[-1]["data"]
    assert len(book["b"]) == 33


def test_text_ping_pong_formats_and_unknown_topic(sim: SimServer, ctl: SimControl) -> None:
    pub = websocket.create_connection(f"{sim.ws_base}/v5/public/linear", timeout=5)
    try:
        pub.send(json.dumps({"op": "ping", "req_id": "p1"}))
        pong = json.loads(pub.recv())
        assert pong["op"] == "ping" and pong["ret_msg"] == "pong" and pong["success"] is True
        assert pong["req_id"] == "p1" and pong["conn_id"]
        pub.ping(b"x")
        pub.send(json.dumps({"op": "subscribe", "req_id": "s1", "args": ["orderbook.7.BTCUSDT"]}))
        opcode, data = pub.recv_data(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_PONG and data == b"x"
        reply = json.loads(pub.recv())
        assert reply["success"] is False and reply["req_id"] == "s1"
    finally:
        pub.close()
    priv = websocket.create_connection(f"{sim.ws_base}/v5/private", timeout=5)
    try:
        priv.send(json.dumps({"op": "ping"}))
        pong = json.loads(priv.recv())
        assert pong["op"] == "pong" and pong["args"][0].isdigit() and pong["conn_id"]
    finally:
        priv.close()


def private_ws(open_ws: Callable[..., SimWebSocket], got: Collector) -> SimWebSocket:
    ws = open_ws("private")
    for topic in ("order", "execution", "position", "wallet"):
        ws.subscribe(topic, got)
    wait_for(lambda: ws.auth, what="auth")
    return ws


def test_private_auth_and_push_order(sim: SimServer, ctl: SimControl, http: Any,
                                     open_ws: Callable[..., SimWebSocket]) -> None:
    raw = Collector()
    ws = open_ws("private", callback_function=raw)
    for topic in ("order", "execution", "position", "wallet"):
        ws.subscribe(topic, raw)
    wait_for(lambda: len([m for m in raw.messages if m.get("op") == "subscribe"]) == 4, what="acks")
    auth = [m for m in raw.messages if m.get("op") == "auth"][0]
    assert auth["success"] is True
    http.place_order(category="linear", symbol="BTCUSDT", side="Buy", orderType="Market", qty="0.1",
                     orderLinkId="ws-1", takeProfit="52000", stopLoss="48000")
    wait_for(lambda: raw.topic("wallet"), what="wallet push")
    topics = [m["topic"] for m in raw.messages if "topic" in m]
    assert topics == ["order", "execution", "position", "wallet"]  # Bybit's push order
    order = raw.data("order")[0]
    assert order["orderStatus"] == "Filled" and order["orderLinkId"] == "ws-1" and order["category"] == "linear"
    execution = raw.data("execution")[0]
    assert execution["execPrice"] == "50001.00" and execution["execQty"] == "0.100"
    position = raw.data("position")[0]
    assert position["size"] == "0.100" and position["entryPrice"] == "50001"
    assert position["takeProfit"] == "52000.00" and position["stopLoss"] == "48000.00"
    for m in raw.messages:
        if "topic" in m:
            assert set(m) == {"id", "topic", "creationTime", "data"}
    # The take-profit triggers when the last price crosses it: a reduce-only market close.
    ctl.set_book("BTCUSDT", [("52000.0", "1")], [("52001.0", "1")])
    raw.clear()
    ctl.trade("BTCUSDT", "52000.0", "0.01")
    wait_for(lambda: any(p["size"] == "0" for p in raw.data("position")), what="TP close")
    closing = [o for o in raw.data("order") if o["createType"] == "CreateByTakeProfit"][0]
    assert closing["reduceOnly"] is True and closing["orderStatus"] == "Filled"
    assert closing["stopOrderType"] == "TakeProfit"


def test_resting_limit_fills_partially_then_fully_on_public_trades(
    sim: SimServer, ctl: SimControl, http: Any, open_ws: Callable[..., SimWebSocket]
) -> None:
    got = Collector()
    private_ws(open_ws, got)
    http.place_order(category="linear", symbol="BTCUSDT", side="Buy", orderType="Limit", qty="0.3", price="49995",
                     orderLinkId="rest-1")
    wait_for(lambda: got.data("order"), what="New push")
    assert got.data("order")[0]["orderStatus"] == "New"
    ctl.trade("BTCUSDT", "49995.0", "0.1", side="Sell")
    wait_for(lambda: got.data("execution"), what="partial fill")
    assert got.data("execution")[0]["isMaker"] is True and got.data("execution")[0]["execQty"] == "0.100"
    assert got.data("order")[-1]["orderStatus"] == "PartiallyFilled"
    ctl.trade("BTCUSDT", "49990.0", "0.05", side="Sell")
    # The order's push comes before its execution's (separate topics, as on Bybit): wait for both.
    wait_for(lambda: got.data("order")[-1]["orderStatus"] == "Filled" and len(got.data("execution")) >= 2,
             what="full fill and its execution")
    assert [x["execQty"] for x in got.data("execution")] == ["0.100", "0.200"]
    assert got.data("execution")[-1]["feeRate"] == "0.0002"


def test_bad_ws_auth_is_refused(sim: SimServer) -> None:
    conn = websocket.create_connection(f"{sim.ws_base}/v5/private", timeout=5)
    try:
        expires = 1  # long past
        conn.send(json.dumps({"op": "auth", "args": [DEFAULT_API_KEY, expires,
                                                     sign(DEFAULT_API_SECRET, f"GET/realtime{expires}")]}))
        assert json.loads(conn.recv())["success"] is False
        conn.send(json.dumps({"op": "auth", "args": [DEFAULT_API_KEY, 9_999_999_999_999, "00" * 32]}))
        assert json.loads(conn.recv())["success"] is False
        conn.send(json.dumps({"op": "subscribe", "req_id": "x", "args": ["order"]}))
        reply = json.loads(conn.recv())
        assert reply["success"] is False and reply["req_id"] == "x"
    finally:
        conn.close()


def test_pybit_with_wrong_secret_dies_on_auth(sim: SimServer, open_ws: Callable[..., SimWebSocket]) -> None:
    ws = open_ws("private", api_secret="wrong-secret")
    wait_for(lambda: not ws.is_connected(), what="pybit to give up")
    assert ws.auth is False


@pytest.mark.parametrize("symbols", [["BTCUSDT", "ETHUSDT"]])
def test_multi_symbol_subscribe(sim: SimServer, ctl: SimControl, open_ws: Callable[..., SimWebSocket],
                                symbols: list[str]) -> None:
    got = Collector()
    ws = open_ws("linear")
    ws.ticker_stream(symbols, got)
    wait_for(lambda: got.topic("tickers.BTCUSDT") and got.topic("tickers.ETHUSDT"), what="both tickers")
    assert ws.is_connected()
