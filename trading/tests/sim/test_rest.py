"""Every REST endpoint and error case, through the real pybit HTTP client."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests
from pybit.exceptions import FailedRequestError, InvalidRequestError

from trading.simexchange import errors as E
from trading.simexchange.auth import sign
from trading.simexchange.constants import DEFAULT_API_KEY, DEFAULT_API_SECRET
from trading.simexchange.control import SimControl
from trading.simexchange.pybit_target import sim_http
from trading.simexchange.server import SimServer


def code_of(call: Any) -> int:
    with pytest.raises(InvalidRequestError) as info:
        call()
    return info.value.status_code


def all_strings(obj: Any, allowed: frozenset[str] = frozenset({"positionIdx", "seq", "triggerDirection",
                                                                "smpGroup", "tradeMode", "riskId",
                                                                "autoAddMargin", "adlRankIndicator",
                                                                "fundingInterval"})) -> bool:
    """Say whether every number inside ``obj`` is a string (Bybit's rule), ints aside for known fields."""
    if isinstance(obj, dict):
        return all((k in allowed or not isinstance(v, (int, float)) or isinstance(v, bool)) and all_strings(v)
                   for k, v in obj.items())
    if isinstance(obj, list):
        return all(all_strings(v) for v in obj)
    return True


def test_market_endpoints(sim: SimServer, ctl: SimControl, http: Any) -> None:
    t = http.get_server_time()
    assert set(t) == {"retCode", "retMsg", "result", "retExtInfo", "time"}
    assert abs(int(t["result"]["timeSecond"]) - time.time()) < 5
    info = http.get_instruments_info(category="linear", symbol="BTCUSDT")["result"]["list"][0]
    assert info["priceFilter"]["tickSize"] == "0.10" and info["lotSizeFilter"]["qtyStep"] == "0.001"
    assert info["contractType"] == "LinearPerpetual"
    assert len(http.get_instruments_info(category="linear")["result"]["list"]) == 10
    tick = http.get_tickers(category="linear", symbol="BTCUSDT")["result"]["list"][0]
    assert tick["lastPrice"] == "50000.50"
    assert tick["bid1Price"] == "50000.00" and tick["ask1Price"] == "50001.00"
    book = http.get_orderbook(category="linear", symbol="BTCUSDT", limit=2)["result"]
    assert book["b"] == [["50000.00", "0.500"], ["49999.00", "1.000"]] and book["a"][0] == ["50001.00", "0.500"]
    ctl.trade("BTCUSDT", "50010.0", "0.2")
    kl = http.get_kline(category="linear", symbol="BTCUSDT", interval="1")["result"]
    row = kl["list"][0]
    assert len(row) == 7 and row[2] == "50010.0" and row[4] == "50010.0"
    assert all_strings(info) and all_strings(tick) and all_strings(kl)


def test_order_lifecycle_and_queries(sim: SimServer, ctl: SimControl, http: Any) -> None:
    placed = http.place_order(category="linear", symbol="BTCUSDT", side="Buy", orderType="Limit", qty="0.01",
                              price="49000", orderLinkId="life-1")["result"]
    assert placed["orderLinkId"] == "life-1"
    open_ = http.get_open_orders(category="linear", symbol="BTCUSDT")["result"]["list"]
    assert [o["orderId"] for o in open_] == [placed["orderId"]]
    assert open_[0]["orderStatus"] == "New" and open_[0]["price"] == "49000.00" and all_strings(open_[0])
    by_link = http.get_open_orders(category="linear", symbol="BTCUSDT", orderLinkId="life-1")["result"]["list"]
    assert by_link[0]["orderId"] == placed["orderId"]
    amended = http.amend_order(category="linear", symbol="BTCUSDT", orderLinkId="life-1", price="49100")
    assert amended["result"]["orderId"] == placed["orderId"]
    assert http.get_open_orders(category="linear", symbol="BTCUSDT")["result"]["list"][0]["price"] == "49100.00"
    http.cancel_order(category="linear", symbol="BTCUSDT", orderId=placed["orderId"])
    assert http.get_open_orders(category="linear", symbol="BTCUSDT")["result"]["list"] == []
    closed = http.get_open_orders(category="linear", symbol="BTCUSDT", openOnly=1)["result"]["list"]
    assert closed[0]["orderStatus"] == "Cancelled" and closed[0]["cancelType"] == "CancelByUser"
    hist = http.get_order_history(category="linear", symbol="BTCUSDT")["result"]["list"]
    assert hist[0]["orderId"] == placed["orderId"]
    for i in range(3):
        http.place_order(category="linear", symbol="ETHUSDT", side="Sell", orderType="Limit", qty="0.1",
                         price=str(3100 + i))
    res = http.cancel_all_orders(category="linear", settleCoin="USDT")["result"]
    assert res["success"] == "1" and len(res["list"]) == 3


def test_fill_position_executions_wallet_and_leverage(sim: SimServer, ctl: SimControl, http: Any) -> None:
    http.set_leverage(category="linear", symbol="BTCUSDT", buyLeverage="5", sellLeverage="5")
    assert code_of(lambda: http.set_leverage(category="linear", symbol="BTCUSDT", buyLeverage="5",
                                             sellLeverage="5")) == E.LEVERAGE_NOT_MODIFIED
    http.place_order(category="linear", symbol="BTCUSDT", side="Buy", orderType="Market", qty="0.6",
                     orderLinkId="fill-1")
    pos = http.get_positions(category="linear", symbol="BTCUSDT")["result"]["list"][0]
    assert pos["side"] == "Buy" and pos["size"] == "0.600" and pos["leverage"] == "5"
    assert float(pos["avgPrice"]) == pytest.approx((50001 * 0.5 + 50002 * 0.1) / 0.6)
    assert all_strings(pos)
    ex = http.get_executions(category="linear", symbol="BTCUSDT")["result"]["list"]
    assert [(x["execPrice"], x["execQty"]) for x in ex] == [("50002.00", "0.100"), ("50001.00", "0.500")]
    assert ex[0]["orderLinkId"] == "fill-1" and ex[0]["feeRate"] == "0.00055" and ex[0]["isMaker"] is False
    wallet = http.get_wallet_balance(accountType="UNIFIED")["result"]["list"][0]
    fees = (50001 * 0.5 + 50002 * 0.1) * 0.00055
    assert float(wallet["totalWalletBalance"]) == pytest.approx(10000 - fees)
    assert all_strings(wallet)
    ctl.trade("BTCUSDT", "51000.0", "0.01")
    wallet = http.get_wallet_balance(accountType="UNIFIED")["result"]["list"][0]
    upl = 0.6 * 51000 - (50001 * 0.5 + 50002 * 0.1)
    assert float(wallet["totalPerpUPL"]) == pytest.approx(upl)
    assert float(wallet["totalEquity"]) == pytest.approx(10000 - fees + upl)
    flat = http.get_positions(category="linear", symbol="ETHUSDT")["result"]["list"][0]
    assert flat["size"] == "0" and flat["side"] == ""
    assert len(http.get_positions(category="linear", settleCoin="USDT")["result"]["list"]) == 1


def test_rate_limit_headers_on_every_answer(sim: SimServer, ctl: SimControl, http: Any) -> None:
    resp = requests.get(f"{sim.base_url}/v5/market/time", timeout=5)
    for h in ("X-Bapi-Limit", "X-Bapi-Limit-Status", "X-Bapi-Limit-Reset-Timestamp"):
        assert resp.headers[h].isdigit()


def test_business_errors_have_bybit_codes(sim: SimServer, ctl: SimControl, http: Any) -> None:
    order = {"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit", "price": "49000"}
    http.place_order(**order, qty="0.01", orderLinkId="dup-1")
    assert code_of(lambda: http.place_order(**order, qty="0.01", orderLinkId="dup-1")) == E.ORDER_LINK_ID_DUPLICATE
    assert code_of(lambda: http.place_order(**order, qty="0.0015")) == E.PARAM_ERROR
    assert code_of(lambda: http.place_order(**order, qty="0.0001")) == E.REDUCE_ONLY_NOT_SATISFIED
    assert code_of(lambda: http.place_order(**{**order, "price": "49000.05"}, qty="0.01")) == E.PARAM_ERROR
    assert code_of(lambda: http.place_order(**{**order, "price": "90000"}, qty="0.01")) == E.PRICE_OUT_OF_RANGE
    assert code_of(lambda: http.place_order(category="linear", symbol="BTCUSDT", side="Sell", orderType="Market",
                                            qty="0.01", reduceOnly=True)) == E.REDUCE_ONLY_NOT_SATISFIED
    assert code_of(lambda: http.place_order(category="linear", symbol="BTCUSDT", side="Buy", orderType="Market",
                                            qty="3")) == E.INSUFFICIENT_AVAILABLE
    assert code_of(lambda: http.cancel_order(category="linear", symbol="BTCUSDT",
                                             orderId="no-such")) == E.ORDER_NOT_EXISTS
    assert code_of(lambda: http.get_positions(category="linear", symbol="NOPEUSDT")) == E.PARAM_ERROR
    assert code_of(lambda: http.get_tickers(category="linear", symbol="NOPEUSDT")) == E.PARAM_ERROR
    assert code_of(lambda: http.get_positions(category="linear")) == E.PARAM_ERROR


def test_auth_errors(sim: SimServer, ctl: SimControl, monkeypatch: pytest.MonkeyPatch) -> None:
    bad_key = sim_http(sim.base_url, api_key="NOTAKEY", retry_codes={-1})
    assert code_of(lambda: bad_key.get_positions(category="linear", symbol="BTCUSDT")) == E.INVALID_API_KEY
    bad_secret = sim_http(sim.base_url, api_secret="wrong", retry_codes={-1})
    assert code_of(lambda: bad_secret.get_positions(category="linear", symbol="BTCUSDT")) == E.SIGN_ERROR
    stale = sim_http(sim.base_url, retry_codes={-1})
    import pybit._helpers

    real = pybit._helpers.generate_timestamp
    monkeypatch.setattr(pybit._helpers, "generate_timestamp", lambda: real() - 60_000)
    with pytest.raises(InvalidRequestError) as info:
        stale.get_positions(category="linear", symbol="BTCUSDT")
    assert info.value.status_code == E.TIMESTAMP_ERROR
    assert "invalid request, please check your server timestamp or recv_window param. req_timestamp[" in (
        info.value.message)
    assert "],server_timestamp[" in info.value.message and "],recv_window[5000]" in info.value.message
    # With its default retry codes pybit widens recv_window itself and finally gives up.
    default = sim_http(sim.base_url, retry_delay=0, max_retries=2)
    with pytest.raises(FailedRequestError) as failed:
        default.get_positions(category="linear", symbol="BTCUSDT")
    assert "Retries exceeded" in failed.value.message


def signed(method: str, url: str, payload: str, *, path_qs: str = "") -> requests.Response:
    ts = str(int(time.time() * 1000))
    sig = sign(DEFAULT_API_SECRET, f"{ts}{DEFAULT_API_KEY}5000{payload}")
    headers = {"X-BAPI-API-KEY": DEFAULT_API_KEY, "X-BAPI-TIMESTAMP": ts, "X-BAPI-RECV-WINDOW": "5000",
               "X-BAPI-SIGN": sig, "Content-Type": "application/json"}
    if method == "GET":
        return requests.get(f"{url}?{payload}", headers=headers, timeout=5)
    return requests.post(url, data=payload.encode(), headers=headers, timeout=5)


@pytest.mark.parametrize(
    "body",
    [
        "{not json",
        "[1, 2]",
        '{"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit", "qty": 1, "price": true}',
        '{"category": "linear", "symbol": "BTCUSDT", "side": "Up", "orderType": "Limit", "qty": "0.01"}',
        '{"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit", "qty": "abc"}',
        '{"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit", "qty": "0.01"}',
        '{"category": "spot", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Market", "qty": "0.01"}',
        '{"category": "linear", "symbol": "FOOUSDT", "side": "Buy", "orderType": "Market", "qty": "0.01"}',
        '{"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Market", "qty": "0.01",'
        ' "positionIdx": "x"}',
        '{"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Market", "qty": "NaN"}',
    ],
)
def test_bad_input_gets_10001_envelope_and_changes_nothing(sim: SimServer, ctl: SimControl, body: str) -> None:
    before = ctl.state()
    resp = signed("POST", f"{sim.base_url}/v5/order/create", body)
    assert resp.status_code == 200
    env = resp.json()
    assert env["retCode"] == E.PARAM_ERROR and env["result"] == {} and "Traceback" not in resp.text
    after = ctl.state()
    assert after["orders"] == before["orders"] and after["positions"] == before["positions"]
    assert after["wallet"] == before["wallet"]


def test_get_signature_is_checked_over_the_raw_query(sim: SimServer, ctl: SimControl) -> None:
    # Unsorted keys and an encoded cursor: the server must not re-encode before checking.
    qs = "symbol=BTCUSDT&category=linear&cursor=page_args%3D0"
    resp = signed("GET", f"{sim.base_url}/v5/order/realtime", qs)
    assert resp.json()["retCode"] == E.PARAM_ERROR  # signature fine; the cursor is not ours
    resp = signed("GET", f"{sim.base_url}/v5/order/realtime", "symbol=BTCUSDT&category=linear")
    assert resp.json()["retCode"] == 0
    assert json.loads(resp.text)["result"]["list"] == []


def test_unknown_path_is_404(sim: SimServer) -> None:
    assert requests.get(f"{sim.base_url}/v5/nothing/here", timeout=5).status_code == 404
