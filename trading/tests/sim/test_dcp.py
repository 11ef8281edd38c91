"""Bybit's DCP: the simulator's endpoints and dcp.future watch, and the trader arming it (or saying it cannot)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from pybit.exceptions import InvalidRequestError

from trading.exchange.pybit_rest import PybitRest
from trading.simexchange import errors as E
from trading.simexchange.control import SimControl
from trading.simexchange.pybit_target import SimWebSocket, sim_http
from trading.simexchange.server import SimServer
from trading.trader import dcp as trader_dcp
from trading.trader.dcp import DcpArming

from .conftest import Collector, wait_for


def infos(http: Any) -> dict[str, str]:
    return {i["product"]: i["timeWindow"] for i in http.query_dcp_info()["result"]["dcpInfos"]}


def refused(call: Callable[[], Any]) -> int:
    with pytest.raises(InvalidRequestError) as info:
        call()
    return int(info.value.status_code)


def test_set_dcp_sets_the_named_product_and_defaults_to_options(sim: SimServer, http: Any) -> None:
    assert infos(http) == {"OPTIONS": "10", "DERIVATIVES": "10", "SPOT": "10"}
    assert http.set_dcp(product="DERIVATIVES", timeWindow=40)["retCode"] == 0
    http.set_dcp(timeWindow=7)  # no product: OPTIONS, as on Bybit
    assert infos(http) == {"OPTIONS": "7", "DERIVATIVES": "40", "SPOT": "10"}


@pytest.mark.parametrize("body", [{"timeWindow": 2}, {"timeWindow": 301}, {"product": "DERIVATIVES"},
                                  {"product": "FUTURES", "timeWindow": 10}, {"timeWindow": "ten"}])
def test_set_dcp_refuses_a_window_out_of_range_with_bybits_envelope(sim: SimServer, http: Any,
                                                                    body: dict[str, Any]) -> None:
    assert refused(lambda: http.set_dcp(**body)) == E.PARAM_ERROR
    assert infos(http)["DERIVATIVES"] == "10"  # a refusal changes nothing


def test_an_account_without_dcp_is_refused_and_reads_no_infos(sim: SimServer, http: Any,
                                                              open_ws: Callable[..., SimWebSocket]) -> None:
    SimControl(sim.base_url, token=sim.token).set_dcp(enabled=False)
    assert refused(lambda: http.set_dcp(product="DERIVATIVES", timeWindow=10)) == E.PERMISSION_DENIED
    assert infos(http) == {}
    raw = Collector()
    ws = open_ws("private", callback_function=raw)
    ws.subscribe(topic="dcp.future", callback=raw, symbol="")
    wait_for(lambda: [m for m in raw.messages if m.get("op") == "subscribe"], what="subscribe answer")
    assert [m["success"] for m in raw.messages if m.get("op") == "subscribe"] == [False]


def _resting(http: Any, link: str) -> None:
    http.place_order(category="linear", symbol="BTCUSDT", side="Buy", orderType="Limit", qty="0.010",
                     price="49000", orderLinkId=link)


def _dcp_socket(open_ws: Callable[..., SimWebSocket]) -> SimWebSocket:
    raw = Collector()
    ws = open_ws("private", callback_function=raw)
    ws.subscribe(topic="dcp.future", callback=raw, symbol="")
    wait_for(lambda: [m for m in raw.messages if m.get("op") == "subscribe" and m["success"]], what="dcp.future")
    return ws


def test_orders_are_cancelled_once_every_dcp_connection_is_gone_for_the_window(
        sim: SimServer, ctl: SimControl, http: Any, open_ws: Callable[..., SimWebSocket]) -> None:
    http.set_dcp(product="DERIVATIVES", timeWindow=3)
    first, second = _dcp_socket(open_ws), _dcp_socket(open_ws)
    _resting(http, "dcp-1")
    _resting(http, "dcp-2")
    first.exit()
    time.sleep(3.5)  # one subscriber is still there: nothing fires
    assert len(ctl.state()["orders"]) == 2
    gone = time.monotonic()
    second.exit()
    wait_for(lambda: not ctl.state()["orders"], timeout=6, what="DCP to cancel the orders")
    assert time.monotonic() - gone >= 2.9  # not before the window
    cancels = [r for r in ctl.history_all() if r["type"] == "order" and r["status"] == "Cancelled"]
    assert {(r["orderLinkId"], r["cancelType"], r["origin"]) for r in cancels} == {
        ("dcp-1", "CancelByDCP", "dcp"), ("dcp-2", "CancelByDCP", "dcp")}
    _resting(http, "dcp-3")  # fired once: nothing is armed until a connection subscribes again
    time.sleep(3.5)
    assert [o["orderLinkId"] for o in ctl.state()["orders"]] == ["dcp-3"]


def _arming(sim: SimServer, *, window: int | None = 5, leader: bool = True) -> tuple[DcpArming, PybitRest]:
    rest = PybitRest(sim_http(sim.base_url, retry_codes={-1}, max_retries=1, timeout=5))
    return DcpArming(rest, window_s=lambda: window, is_leader=lambda: leader), rest


def test_the_leader_arms_dcp_and_its_private_stream_subscribes_the_topic(
        sim: SimServer, open_ws: Callable[..., SimWebSocket]) -> None:
    arming, _ = _arming(sim)
    ws = open_ws("private")
    arming.subscriber(lambda socket: socket.subscribe(topic="order", callback=lambda m: None))(ws)
    assert arming.status.as_json() == {"armed": True, "windowS": 5, "supported": True, "reason": ""}
    assert sim.sim.dcp.windows["DERIVATIVES"] == 5
    wait_for(lambda: any(set(c["topics"]) == {"order", "dcp.future"} for c in sim.sim.describe()["connections"]),
             what="the private connection subscribed to dcp.future")


def test_no_dcp_account_is_said_so_and_the_stream_never_asks_for_the_topic(
        sim: SimServer, open_ws: Callable[..., SimWebSocket]) -> None:
    SimControl(sim.base_url, token=sim.token).set_dcp(enabled=False)
    arming, _ = _arming(sim)
    ws = open_ws("private")
    arming.subscriber(lambda socket: socket.subscribe(topic="order", callback=lambda m: None))(ws)
    assert arming.status.as_json() == {"armed": False, "windowS": 5, "supported": False,
                                       "reason": trader_dcp.NO_DCP}
    wait_for(lambda: any(c["topics"] == ["order"] for c in sim.sim.describe()["connections"]), what="order topic")
    assert ws.is_connected()  # no refused subscription killed pybit's stream


def test_a_standby_or_an_unset_window_arms_nothing(sim: SimServer) -> None:
    standby, _ = _arming(sim, leader=False)
    assert standby.arm().reason == trader_dcp.STANDBY and not standby.status.armed
    unset, _ = _arming(sim, window=None)
    assert unset.arm() == trader_dcp.DcpStatus()
    assert sim.sim.dcp.windows["DERIVATIVES"] == 10  # nobody set it
