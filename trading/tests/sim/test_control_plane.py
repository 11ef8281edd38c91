"""The ``/sim`` control plane: token, JSON only, Host and Origin checked, every value bounded; ``/v5`` untouched."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import requests
from aiohttp.test_utils import make_mocked_request

from trading.simexchange.control import SimControl, SimControlError
from trading.simexchange.control_auth import (
    TOKEN_HEADER,
    is_loopback,
    load_or_create_token,
    read_token,
    refusal,
    token_path_for,
)
from trading.simexchange.pybit_target import SimWebSocket, sim_http
from trading.simexchange.server import SimServer, build_app

from .conftest import Collector, wait_for

EVIL = "http://evil.example"


def _post(sim: SimServer, path: str, body: Any, **headers: str) -> requests.Response:
    """POST a JSON body with the token unless ``headers`` say otherwise."""
    sent = {TOKEN_HEADER: sim.token, "Content-Type": "application/json", **headers}
    data = body if isinstance(body, str) else json.dumps(body)
    return requests.post(f"{sim.base_url}{path}", data=data, headers=sent, timeout=5)


def _faults(sim: SimServer) -> list[Any]:
    return sim.call(lambda s: s.faults.describe())


# -- who may call ---------------------------------------------------------------------


def test_missing_or_wrong_token_is_401_naming_the_header(sim: SimServer) -> None:
    url = f"{sim.base_url}/sim/state"
    for headers in ({}, {TOKEN_HEADER: "not-the-token"}, {TOKEN_HEADER: sim.token + "x"}, {TOKEN_HEADER: "ünï"}):
        resp = requests.get(url, headers={k: v.encode() for k, v in headers.items()}, timeout=5)
        assert resp.status_code == 401, headers
        assert resp.json()["field"] == TOKEN_HEADER and TOKEN_HEADER in resp.json()["error"]
    resp = _post(sim, "/sim/faults", {"kind": "http_error"}, **{TOKEN_HEADER: "wrong"})
    assert resp.status_code == 401 and _faults(sim) == []
    assert requests.get(url, headers={TOKEN_HEADER: sim.token}, timeout=5).status_code == 200


def test_cross_origin_simple_request_creates_no_fault(sim: SimServer) -> None:
    """What a web page on this machine can send: a text/plain POST with its own Origin."""
    body = json.dumps({"kind": "http_error", "params": {"status": 503}})
    url = f"{sim.base_url}/sim/faults"
    page = {"Origin": EVIL, "Content-Type": "text/plain"}
    assert requests.post(url, data=body, headers=page, timeout=5).status_code in (401, 403)
    # Each rule holds on its own, even for a caller that somehow has the token.
    foreign = requests.post(url, data=body, headers={**page, TOKEN_HEADER: sim.token}, timeout=5)
    assert foreign.status_code == 403 and foreign.json()["field"] == "Origin"
    as_json = _post(sim, "/sim/faults", json.loads(body), Origin=EVIL)
    assert as_json.status_code == 403
    plain = requests.post(url, data=body, headers={"Content-Type": "text/plain", TOKEN_HEADER: sim.token}, timeout=5)
    assert plain.status_code == 415 and plain.json()["field"] == "Content-Type"
    form = requests.post(url, data={"kind": "http_error"}, headers={TOKEN_HEADER: sim.token}, timeout=5)
    assert form.status_code == 415
    reset = requests.post(f"{sim.base_url}/sim/reset", headers={TOKEN_HEADER: sim.token}, timeout=5)
    assert reset.status_code == 415  # no body is no excuse: a bodiless simple POST is a CSRF too
    assert _faults(sim) == []
    own = _post(sim, "/sim/faults", json.loads(body), Origin=f"http://127.0.0.1:{sim.port}")
    assert own.status_code == 200 and len(_faults(sim)) == 1


@pytest.mark.parametrize(
    "host",
    ["evil.example", "evil.example:{port}", "127.0.0.1:1", "localhost:{port}0", "127.0.0.2:{port}",
     "user@127.0.0.1:{port}", "127.0.0.1:{port}/x", "127.0.0.1:nope", ""],
)
def test_a_host_that_is_not_the_simulator_is_refused(sim: SimServer, host: str) -> None:
    """DNS rebinding: the page's name resolves to 127.0.0.1, but the Host it sends is still its own."""
    resp = requests.get(f"{sim.base_url}/sim/state",
                        headers={"Host": host.format(port=sim.port), TOKEN_HEADER: sim.token}, timeout=5)
    assert resp.status_code == 421 and resp.json()["field"] == "Host"


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}", "[::1]:{port}"])
def test_loopback_names_with_the_port_are_accepted(sim: SimServer, host: str) -> None:
    resp = requests.get(f"{sim.base_url}/sim/state",
                        headers={"Host": host.format(port=sim.port), TOKEN_HEADER: sim.token}, timeout=5)
    assert resp.status_code == 200


def test_a_peer_off_this_machine_is_refused(sim: SimServer) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and not is_loopback("10.1.2.3")
    app = build_app(sim.sim, control_token=sim.token)
    headers = {"Host": "127.0.0.1", TOKEN_HEADER: sim.token, "Content-Type": "application/json"}

    def status(peer: str) -> int | None:
        request = make_mocked_request("POST", "/sim/reset", headers=headers, app=app, transport=_Transport(peer))
        refused = refusal(request, sim.token)
        return None if refused is None else refused.status

    assert status("192.168.1.9") == 403
    assert status("127.0.0.1") is None


class _Transport:
    def __init__(self, peer: str) -> None:
        self.peer = peer

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return (self.peer, 4242) if name == "peername" else default

    def is_closing(self) -> bool:
        return False


# -- the token on disk ---------------------------------------------------------------------


def test_token_file_is_0600_created_once_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "sim" / "control_token"
    token = load_or_create_token(path)
    assert len(token) >= 43 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_token(path) == token == read_token(path)
    path.chmod(0o644)
    assert load_or_create_token(path) == token and stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("bad", ["empty", "short", "binary", "huge", "directory", "symlink_loop"])
def test_a_token_file_that_holds_no_token_is_moved_aside(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "control_token"
    if bad == "directory":
        path.mkdir()
    elif bad == "symlink_loop":
        os.symlink(path, path)
    else:
        content = {"empty": b"", "short": b"abc", "binary": b"\xff" * 64, "huge": b"a" * 100_000}[bad]
        path.write_bytes(content)
    token = load_or_create_token(path)
    assert read_token(path) == token and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(list(tmp_path.glob("control_token.corrupt-*"))) == 1


def test_sim_server_with_a_state_file_keeps_its_token_next_to_it(tmp_path: Path) -> None:
    state = tmp_path / "sim" / "exchange_state.json"
    with SimServer(state_path=state) as sim:
        token_file = token_path_for(state)
        assert token_file == tmp_path / "sim" / "control_token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600 and read_token(token_file) == sim.token
        assert SimControl(sim.base_url, token_file=token_file).state()["faults"] == []
    with SimServer(state_path=state) as again:
        assert again.token == sim.token


def test_sim_control_needs_the_token_or_its_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        SimControl("http://127.0.0.1:1")
    with pytest.raises(SimControlError, match="no control token"):
        SimControl("http://127.0.0.1:1", token_file=tmp_path / "control_token").state()


# -- every value bounded ------------------------------------------------------------------------

FAULT_REFUSALS = [
    # (body, field named)
    ({"kind": "http_error", "params": {"status": 99999}}, "params.status"),
    ({"kind": "http_error", "params": {"status": 200}}, "params.status"),
    ({"kind": "http_error", "params": {"status": "503"}}, "params.status"),
    ({"kind": "http_error", "params": {"status": 503.5}}, "params.status"),
    ({"kind": "http_error", "params": {"status": True}}, "params.status"),
    ({"kind": "http_error", "params": {"fraction": 1.5}}, "params.fraction"),
    ({"kind": "rate_limit", "params": {"fraction": -0.1}}, "params.fraction"),
    ({"kind": "rate_limit", "params": {"reset_ms": 0}}, "params.reset_ms"),
    ({"kind": "http_error", "params": {"path": ""}}, "params.path"),
    ({"kind": "http_error", "params": {"path": "*" * 1000}}, "params.path"),
    ({"kind": "http_error", "params": {"bogus": 1}}, "params.bogus"),
    ({"kind": "latency", "params": {"fixed_ms": 10**9}}, "params.fixed_ms"),
    ({"kind": "latency", "params": {"jitter_ms": -1}}, "params.jitter_ms"),
    ({"kind": "latency", "params": {"target": "disk"}}, "params.target"),
    ({"kind": "ws_drop", "params": {"mode": "sideways"}}, "params.mode"),
    ({"kind": "ws_refuse", "params": {"stream": "both"}}, "params.stream"),
    ({"kind": "ws_malformed", "params": {"text": "x" * 70_000}}, "params.text"),
    ({"kind": "market_freeze", "params": {"symbol": "btc usdt"}}, "params.symbol"),
    ({"kind": "ambiguous_submit", "params": {"hold_s": 1e9}}, "params.hold_s"),
    ({"kind": "ambiguous_submit", "params": {"hold_s": 0}}, "params.hold_s"),
    ({"kind": "slippage", "params": {"bps": -5}}, "params.bps"),
    ({"kind": "slippage", "params": {"bps": 10**6}}, "params.bps"),
    ({"kind": "http_error", "duration_s": 1e308}, "duration_s"),
    ({"kind": "http_error", "duration_s": 0}, "duration_s"),
    ({"kind": "http_error", "duration_s": -1}, "duration_s"),
    ({"kind": "http_error", "duration_s": "5"}, "duration_s"),
    ({"kind": "http_error", "count": 0}, "count"),
    ({"kind": "http_error", "count": 10**12}, "count"),
    ({"kind": "http_error", "count": 1.5}, "count"),
    ({"kind": "nope"}, "kind"),
    ({"kind": 7}, "kind"),
    ({"kind": "http_error", "params": [1]}, "params"),
    ({"kind": "http_error", "color": "red"}, "color"),
    ({}, "kind"),
]


@pytest.mark.parametrize(("body", "field"), FAULT_REFUSALS, ids=[f for _, f in FAULT_REFUSALS])
def test_a_fault_value_out_of_bounds_is_refused_naming_the_field(sim: SimServer, body: Any, field: str) -> None:
    resp = _post(sim, "/sim/faults", body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["field"] == field and field in resp.json()["error"]
    assert _faults(sim) == []


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('{"kind": "http_error", "duration_s": NaN}', "body"),  # NaN and Infinity are not JSON
        ('{"kind": "http_error", "duration_s": Infinity}', "body"),
        ('{"kind": "http_error", "duration_s": 1e400}', "duration_s"),  # valid JSON that parses to inf
        ('{"kind": "http_error", "params": {"fraction": -1e400}}', "params.fraction"),
        ('{"kind": "http_error", "count": ' + "9" * 5000 + "}", "body"),  # past Python's int digit limit
        ("[" * 100_000 + "]" * 100_000, "body"),  # deeper than the parser goes
        ("[1, 2]", "body"),
        ("{oops", "body"),
    ],
    ids=["nan", "infinity", "1e400", "minus-1e400", "huge-int", "deep", "list", "broken"],
)
def test_non_finite_huge_and_malformed_bodies_are_refused(sim: SimServer, raw: str, field: str) -> None:
    resp = _post(sim, "/sim/faults", raw)
    assert resp.status_code == 400 and resp.json()["field"] == field
    assert _faults(sim) == []


def test_good_values_at_the_bounds_are_accepted(ctl: SimControl) -> None:
    ctl.inject("http_error", status=400, fraction=0, duration_s=86_400, count=1)
    ctl.inject("http_error", status=599, fraction=1, path="/nothing")
    ctl.inject("latency", target="ws", fixed_ms=0, jitter_ms=60_000, path="/nothing", duration_s=0.5)
    assert len(ctl.faults()) == 3


ACTION_REFUSALS = [
    ("place-order", {"symbol": "BTCUSDT", "side": "Buy", "qty": "NaN"}, "qty"),
    ("place-order", {"symbol": "BTCUSDT", "side": "Buy", "qty": "-1"}, "qty"),
    ("place-order", {"symbol": "BTCUSDT", "side": "Buy", "qty": "1e400"}, "qty"),
    ("place-order", {"symbol": "BTCUSDT", "side": "Buy"}, "qty"),
    ("place-order", {"symbol": "BTCUSDT", "side": "Up", "qty": "0.01"}, "side"),
    ("place-order", {"symbol": "BTCUSDT", "qty": "0.01", "orderType": "Limit", "price": "Infinity"}, "price"),
    ("place-order", {"symbol": "BTCUSDT", "qty": "0.01", "takeProfit": "0"}, "takeProfit"),
    ("place-order", {"symbol": "NOPEUSDT", "qty": "0.01"}, "symbol"),
    ("place-order", {"symbol": "BTCUSDT", "qty": "0.01", "qtty": "1"}, "qtty"),
    ("close-position", {"symbol": "X" * 1000}, "symbol"),
    ("close-position", {"symbol": "NOPEUSDT"}, "symbol"),
    ("cancel-order", {"symbol": "BTCUSDT", "orderId": ["a"]}, "orderId"),
]


@pytest.mark.parametrize(("name", "body", "field"), ACTION_REFUSALS, ids=[f"{n}-{f}" for n, _, f in ACTION_REFUSALS])
def test_an_action_value_out_of_bounds_is_refused_naming_the_field(
    sim: SimServer, ctl: SimControl, name: str, body: dict[str, Any], field: str
) -> None:
    resp = _post(sim, f"/sim/actions/{name}", body)
    assert resp.status_code == 400 and resp.json()["field"] == field, resp.text
    state = ctl.state()
    assert state["orders"] == [] and state["positions"] == []


BOOK = {"topic": "orderbook.50.BTCUSDT", "type": "delta", "ts": 0, "data": {"s": "BTCUSDT", "u": 2, "seq": 2}}
TRADE = {"topic": "publicTrade.BTCUSDT", "type": "snapshot", "ts": 0}
MARKET_REFUSALS = [
    ([{**TRADE, "data": [{"p": "NaN", "v": "1", "S": "Buy"}]}], "messages.0.data.0.p"),
    ([{**TRADE, "data": [{"p": "-5", "v": "1", "S": "Buy"}]}], "messages.0.data.0.p"),
    ([{**TRADE, "data": [{"p": "50000", "v": "1e400", "S": "Buy"}]}], "messages.0.data.0.v"),
    ([{**TRADE, "data": "nope"}], "messages.0.data"),
    ([{**BOOK, "data": {**BOOK["data"], "b": [["Infinity", "1"]]}}], "messages.0.data.b.0.0"),
    ([{**BOOK, "data": {**BOOK["data"], "a": [["50001", "-1"]]}}], "messages.0.data.a.0.1"),
    ([{**BOOK, "data": ["not", "an", "object"]}], "messages.0.data"),
    ([{"topic": 5}], "messages.0.topic"),
    ([TRADE | {"data": [{"p": "50000", "v": "1"}]}, "not a message"], "messages.1"),
    ([{"topic": "tickers.BTCUSDT"}] * 10_001, "messages"),
    ("all of them", "messages"),
]


@pytest.mark.parametrize(("messages", "field"), MARKET_REFUSALS, ids=[f for _, f in MARKET_REFUSALS])
def test_a_market_message_that_could_poison_the_book_is_refused(
    sim: SimServer, ctl: SimControl, messages: Any, field: str
) -> None:
    before = ctl.state()
    resp = _post(sim, "/sim/market", {"messages": messages})
    assert resp.status_code == 400 and resp.json()["field"] == field, resp.text
    after = ctl.state()
    assert after["messagesPlayed"] == before["messagesPlayed"]  # nothing of the batch was played
    assert after["lastPrice"] == before["lastPrice"]


# -- the Bybit side is untouched -------------------------------------------------------------------


def test_pybit_against_v5_needs_no_token_and_still_works(
    sim: SimServer, ctl: SimControl, open_ws: Any
) -> None:
    http = sim_http(sim.base_url, retry_codes={-1})
    assert http.get_server_time()["retCode"] == 0
    placed = http.place_order(category="linear", symbol="BTCUSDT", side="Buy", orderType="Market", qty="0.01")
    assert placed["retCode"] == 0
    # A foreign Origin or Host means nothing to /v5: Bybit's API is not a browser's business.
    public = requests.get(f"{sim.base_url}/v5/market/time", headers={"Origin": EVIL, "Host": "evil.example"},
                          timeout=5)
    assert public.status_code == 200 and public.json()["retCode"] == 0
    ws: SimWebSocket = open_ws("linear")
    got = Collector()
    ws.trade_stream("BTCUSDT", got)
    ctl.trade("BTCUSDT", "50000.5", "0.002")
    wait_for(lambda: got.topic("publicTrade.BTCUSDT"), what="a public trade through pybit")


def test_the_guard_runs_before_any_handler(sim: SimServer) -> None:
    """Unknown /sim paths answer 401 too: nothing about the control plane shows without the token."""
    resp = requests.get(f"{sim.base_url}/sim/nothing", timeout=5)
    assert resp.status_code == 401
