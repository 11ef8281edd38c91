"""Every injected fault, as the real pybit client experiences it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from pybit.exceptions import FailedRequestError, InvalidRequestError

from trading.simexchange import errors as E
from trading.simexchange.control import SimControl, SimControlError
from trading.simexchange.pybit_target import SimWebSocket, sim_http
from trading.simexchange.server import SimServer

from .conftest import Collector, wait_for

BUY = {"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Market", "qty": "0.01"}


def conn_ids(ctl: SimControl, stream: str) -> set[str]:
    return {c["connId"] for c in ctl.state()["connections"] if c["stream"] == stream}


def test_http_5xx_on_a_path_pattern_and_count(sim: SimServer, ctl: SimControl, http: Any) -> None:
    fid = ctl.inject("http_error", status=502, path="/v5/order/*")
    with pytest.raises(FailedRequestError) as info:
        http.place_order(**BUY)
    assert info.value.status_code == 502
    assert http.get_positions(category="linear", symbol="BTCUSDT")["retCode"] == 0  # other paths unaffected
    assert ctl.state()["orders"] == [] and ctl.state()["positions"] == []  # refused before processing
    assert [f["id"] for f in ctl.faults()] == [fid]
    ctl.clear(fid)
    assert http.place_order(**BUY)["retCode"] == 0
    ctl.inject("http_error", count=1)  # every path, once
    with pytest.raises(FailedRequestError):
        http.get_server_time()
    assert http.get_server_time()["retCode"] == 0 and ctl.faults() == []
    ctl.inject("http_error", fraction=0.0)
    assert all(http.get_server_time()["retCode"] == 0 for _ in range(5))


def test_rate_limit_10006_with_headers(sim: SimServer, ctl: SimControl, http: Any) -> None:
    ctl.inject("rate_limit", path="/v5/order/create", reset_ms=300, count=1)
    with pytest.raises(InvalidRequestError) as info:
        http.place_order(**BUY)
    assert info.value.status_code == E.RATE_LIMITED
    headers = info.value.resp_headers
    assert headers["X-Bapi-Limit-Status"] == "0" and int(headers["X-Bapi-Limit-Reset-Timestamp"]) > time.time() * 1000
    # pybit with its default retry codes sleeps until the reset and succeeds on the next attempt.
    ctl.inject("rate_limit", path="/v5/order/create", reset_ms=300, count=1)
    default = sim_http(sim.base_url)
    started = time.monotonic()
    assert default.place_order(**BUY)["retCode"] == 0
    assert time.monotonic() - started >= 0.2


def test_rest_latency_and_read_timeout(sim: SimServer, ctl: SimControl) -> None:
    ctl.inject("latency", target="rest", fixed_ms=300, jitter_ms=50)
    client = sim_http(sim.base_url, timeout=2)
    started = time.monotonic()
    client.get_server_time()
    assert 0.3 <= time.monotonic() - started < 2
    impatient = sim_http(sim.base_url, timeout=0.1)
    with pytest.raises(requests.exceptions.ReadTimeout):
        impatient.get_server_time()


def test_ws_latency_delays_messages(sim: SimServer, ctl: SimControl, open_ws: Callable[..., SimWebSocket]) -> None:
    got = Collector()
    ws = open_ws("linear")
    ws.trade_stream("BTCUSDT", got)
    time.sleep(0.05)
    ctl.inject("latency", target="ws_public", fixed_ms=400)
    started = time.monotonic()
    ctl.trade("BTCUSDT", "50000.0", "0.01")
    wait_for(lambda: got.messages, what="delayed trade")
    assert time.monotonic() - started >= 0.38


def ready(ctl: SimControl) -> bool:
    """Say whether one private connection is authenticated and subscribed to ``order``."""
    return any(c["authed"] and c["topics"] == ["order"] for c in ctl.state()["connections"])


@pytest.mark.parametrize("mode", ["close", "abort"])
def test_private_drop_pybit_reconnects_reauths_and_resubscribes(
    sim: SimServer, ctl: SimControl, http: Any, open_ws: Callable[..., SimWebSocket], mode: str
) -> None:
    got = Collector()
    ws = open_ws("private")
    ws.order_stream(got)
    wait_for(lambda: ready(ctl), what="auth and subscription")
    before = conn_ids(ctl, "private")
    ctl.inject("ws_drop", stream="private", mode=mode)
    wait_for(lambda: conn_ids(ctl, "private") - before and ready(ctl), what="reconnect, re-auth, resubscribe")
    assert ws.is_connected()
    http.place_order(**BUY)
    wait_for(lambda: got.data("order"), what="order push after reconnect")


def test_public_drop_and_refused_reconnects_kill_pybit(
    sim: SimServer, ctl: SimControl, open_ws: Callable[..., SimWebSocket]
) -> None:
    got = Collector()
    ws = open_ws("linear", retries=3)
    ws.ticker_stream("BTCUSDT", got)
    wait_for(lambda: got.messages, what="snapshot")
    ctl.inject("ws_refuse", stream="public", duration_s=0.6)
    ctl.inject("ws_drop", stream="public", mode="abort")
    wait_for(lambda: any(f["hits"] >= 3 for f in ctl.faults()), what="pybit to burn its 3 retries")
    wait_for(lambda: ctl.faults() == [], what="the refusal to end")
    time.sleep(0.3)
    assert not ws.is_connected() and conn_ids(ctl, "public") == set()  # dead for good, silently


def test_refused_reconnects_recover_with_infinite_retries(
    sim: SimServer, ctl: SimControl, open_ws: Callable[..., SimWebSocket]
) -> None:
    got = Collector()
    ws = open_ws("linear", retries=0)
    ws.ticker_stream("BTCUSDT", got)
    wait_for(lambda: got.messages, what="snapshot")
    ctl.inject("ws_refuse", stream="public", duration_s=0.5)
    ctl.inject("ws_drop", stream="public", mode="close")
    wait_for(lambda: conn_ids(ctl, "public") and ws.is_connected() and len(got.messages) >= 2, timeout=8,
             what="recovery after the refusal ends")
    assert got.messages[-1]["type"] == "snapshot"


def test_malformed_message_kills_pybit_stream(sim: SimServer, ctl: SimControl,
                                              open_ws: Callable[..., SimWebSocket]) -> None:
    got = Collector()
    ws = open_ws("linear")
    ws.trade_stream("BTCUSDT", got)
    wait_for(lambda: conn_ids(ctl, "public"), what="connection")
    ctl.inject("ws_malformed", stream="public")
    wait_for(lambda: not ws.is_connected(), what="pybit thread death")
    time.sleep(0.3)
    assert conn_ids(ctl, "public") == set() and ws.exited  # no reconnect: dead for good


def test_silent_socket_is_detected_by_ping_timeout(sim: SimServer, ctl: SimControl,
                                                   open_ws: Callable[..., SimWebSocket]) -> None:
    got = Collector()
    ws = open_ws("linear")
    ws.trade_stream("BTCUSDT", got)
    wait_for(lambda: conn_ids(ctl, "public"), what="connection")
    before = conn_ids(ctl, "public")
    fid = ctl.inject("ws_silent", stream="public")
    ctl.trade("BTCUSDT", "50000.0", "0.01")
    time.sleep(0.3)
    assert got.messages == []  # open, but no data
    wait_for(lambda: conn_ids(ctl, "public") - before, timeout=10, what="pybit to give up on the silent socket")
    ctl.clear(fid)
    wait_for(lambda: ws.is_connected() and any(c["topics"] for c in ctl.state()["connections"]),
             what="reconnected and resubscribed")
    ctl.trade("BTCUSDT", "50000.0", "0.01")
    wait_for(lambda: got.messages, what="data after silence")


def test_market_freeze_one_symbol_then_snapshot(sim: SimServer, ctl: SimControl,
                                               open_ws: Callable[..., SimWebSocket]) -> None:
    raw = Collector()
    ws = open_ws("linear", callback_function=raw)
    ws.orderbook_stream(50, ["BTCUSDT", "ETHUSDT"], raw)
    ws.trade_stream(["BTCUSDT", "ETHUSDT"], raw)
    wait_for(lambda: raw.topic("orderbook.50.BTCUSDT") and raw.topic("orderbook.50.ETHUSDT"), what="snapshots")
    fid = ctl.inject("market_freeze", symbol="BTCUSDT")
    ctl.trade("BTCUSDT", "50000.0", "0.01")
    ctl.publish({"topic": "orderbook.50.BTCUSDT", "type": "delta", "ts": 0,
                 "data": {"s": "BTCUSDT", "b": [["49000.0", "1"]], "a": [], "u": 5, "seq": 5}})
    ctl.trade("ETHUSDT", "3000.00", "0.1")
    wait_for(lambda: raw.topic("publicTrade.ETHUSDT"), what="ETH still flows")
    time.sleep(0.1)
    assert raw.topic("publicTrade.BTCUSDT") == [] and len(raw.topic("orderbook.50.BTCUSDT")) == 1
    assert ctl.state()["lastPrice"]["BTCUSDT"] == "50000.0"  # the exchange's market kept moving
    ctl.clear(fid)
    ctl.publish({"topic": "orderbook.50.BTCUSDT", "type": "delta", "ts": 0,
                 "data": {"s": "BTCUSDT", "b": [["49001.0", "1"]], "a": [], "u": 6, "seq": 6}})
    wait_for(lambda: len(raw.topic("orderbook.50.BTCUSDT")) == 2, what="book after unfreeze")
    resumed = raw.topic("orderbook.50.BTCUSDT")[1]
    assert resumed["type"] == "snapshot" and ["49000.00", "1.000"] in resumed["data"]["b"]
    assert ws.is_connected()


def test_ambiguous_submit_creates_the_order_but_never_answers(sim: SimServer, ctl: SimControl, http: Any) -> None:
    ctl.inject("ambiguous_submit", count=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        http.place_order(**{**BUY, "orderType": "Limit", "price": "49000", "orderLinkId": "amb-1"})
    found = http.get_open_orders(category="linear", symbol="BTCUSDT", orderLinkId="amb-1")["result"]["list"]
    assert len(found) == 1 and found[0]["orderStatus"] == "New"
    with pytest.raises(InvalidRequestError) as info:
        http.place_order(**{**BUY, "orderType": "Limit", "price": "49000", "orderLinkId": "amb-1"})
    assert info.value.status_code == E.ORDER_LINK_ID_DUPLICATE
    ctl.inject("ambiguous_submit", mode="hang", hold_s=1.0, count=1)
    impatient = sim_http(sim.base_url, timeout=0.3, retry_codes={-1})
    with pytest.raises(requests.exceptions.ReadTimeout):
        impatient.place_order(**BUY, orderLinkId="amb-2")
    assert http.get_open_orders(category="linear", symbol="BTCUSDT", orderLinkId="amb-2")["result"]["list"]


def test_behind_the_back_actions(sim: SimServer, ctl: SimControl, http: Any,
                                 open_ws: Callable[..., SimWebSocket]) -> None:
    got = Collector()
    ws = open_ws("private")
    ws.order_stream(got)
    ws.position_stream(got)
    wait_for(lambda: ws.auth, what="auth")
    http.place_order(**BUY, orderLinkId="mine-1")
    resting = http.place_order(**{**BUY, "orderType": "Limit", "price": "49000", "orderLinkId": "mine-2"})
    ctl.close_position("BTCUSDT")
    assert http.get_positions(category="linear", symbol="BTCUSDT")["result"]["list"][0]["size"] == "0"
    ctl.cancel_order("BTCUSDT", order_id=resting["result"]["orderId"])
    assert http.get_open_orders(category="linear", symbol="BTCUSDT")["result"]["list"] == []
    ghost = ctl.place_order("ETHUSDT", "Sell", "0.1", order_type="Limit", price="3100")
    listed = http.get_open_orders(category="linear", symbol="ETHUSDT")["result"]["list"]
    assert listed[0]["orderId"] == ghost["orderId"] and listed[0]["orderLinkId"] == ""
    ctl.open_position("ETHUSDT", "Buy", "0.5")
    eth = http.get_positions(category="linear", symbol="ETHUSDT")["result"]["list"][0]
    assert eth["side"] == "Buy" and eth["size"] == "0.50"
    wait_for(lambda: any(p["symbol"] == "ETHUSDT" for p in got.data("position")), what="pushes")
    assert any(o["orderStatus"] == "Cancelled" and o["orderLinkId"] == "mine-2" for o in got.data("order"))
    with pytest.raises(SimControlError):
        ctl.close_position("SOLUSDT")  # nothing to close


def test_extreme_slippage_on_one_symbol(sim: SimServer, ctl: SimControl, http: Any) -> None:
    ctl.inject("slippage", symbol="BTCUSDT", bps=300)
    http.place_order(**BUY)
    http.place_order(**{**BUY, "symbol": "ETHUSDT", "qty": "0.1"})
    fills = {x["symbol"]: x["execPrice"] for x in http.get_executions(category="linear")["result"]["list"]}
    assert fills == {"BTCUSDT": "51501.00", "ETHUSDT": "3001.00"}  # 50001 * 1.03; ETH untouched


def test_faults_expire_and_bad_fault_requests_are_refused(sim: SimServer, ctl: SimControl) -> None:
    ctl.inject("latency", target="rest", fixed_ms=1, duration_s=0.2)
    assert ctl.faults()[0]["remainingS"] <= 0.2
    wait_for(lambda: ctl.faults() == [], what="expiry")
    auth = {"X-Sim-Token": sim.token}
    for bad in ({"kind": "nope"}, {"kind": "latency", "params": {"bogus": 1}},
                {"kind": "ws_drop", "params": {"mode": "sideways"}}):
        assert requests.post(f"{sim.base_url}/sim/faults", json=bad, headers=auth, timeout=5).status_code == 400
    oops = {**auth, "Content-Type": "application/json"}
    assert requests.post(f"{sim.base_url}/sim/faults", data="{oops", headers=oops, timeout=5).status_code == 400
    ctl.inject("http_error")
    ctl.inject("slippage")
    assert len(ctl.clear()) == 2 and ctl.faults() == []


def test_reset_clears_the_account(sim: SimServer, ctl: SimControl, http: Any) -> None:
    http.place_order(**BUY, orderLinkId="r-1")
    ctl.inject("http_error", path="/nothing")
    ctl.reset()
    state = ctl.state()
    assert state["positions"] == [] and state["faults"] == [] and state["wallet"]["totalEquity"] == "10000"
    assert http.place_order(**BUY, orderLinkId="r-1")["retCode"] == 0
