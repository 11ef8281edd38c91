"""The account endpoints (trades, PnL summary, equity, symbols status), the API root and the schema pages.

Every response is checked against the OpenAPI schema the API serves; integration
runs' rows never count as the product's.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.staticfiles import finders
from django.test import Client
from knox.models import AuthToken

from scalper_site.api import account_views, selectors
from scalper_site.tests.test_api_hostile import assert_documented
from trading.models import EquitySample, Order, Position, Trade

pytestmark = pytest.mark.django_db

TRADES, PNL, EQUITY, SYMBOLS = "/api/trades", "/api/pnl/summary", "/api/equity", "/api/symbols/status"
ACCOUNT = [TRADES, PNL, EQUITY, SYMBOLS]
NOW = datetime(2026, 3, 10, 0, 30, tzinfo=UTC)  # half an hour into a UTC day


@pytest.fixture(autouse=True)
def _no_trader(monkeypatch: pytest.MonkeyPatch) -> None:
    """No heartbeat unless a test plants one (the fast group has no Redis)."""
    monkeypatch.setattr(selectors, "read_heartbeat", lambda run_id="", max_age_ms=5000: None)


def _get(client: Client, path: str, query: str = "", schema: dict | None = None, **extra: Any) -> Any:
    response = client.get(f"{path}?{query}" if query else path, **extra)
    if schema is not None:
        assert_documented(schema, "GET", path, response)
    return response


def _refused(response: Any) -> str:
    body = response.json()
    assert response.status_code == 400 and body["detail"], body
    return next(iter(body["errors"]))


def _trade(pnl: str, closed: datetime, *, symbol: str = "BTCUSDT", side: str = "LONG", fees: str = "0.1",
           held: timedelta = timedelta(minutes=3), run_id: str = "", reason: str = "CLOSED") -> Trade:
    return Trade.objects.create(run_id=run_id, symbol=symbol, side=side, qty=Decimal("0.01"),
                                entry_price=Decimal("90000"), exit_price=Decimal("90100"), realized_pnl=Decimal(pnl),
                                fees=Decimal(fees), close_reason=reason, opened_at=closed - held, closed_at=closed)


# -- authentication -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ACCOUNT)
def test_the_account_endpoints_need_a_login(client, path):
    response = client.get(path)
    assert response.status_code in (401, 403) and response.json()["detail"]


@pytest.mark.parametrize("path", ACCOUNT)
def test_a_token_reads_the_account_endpoints(client, path, schema):
    _, key = AuthToken.objects.create(user=get_user_model().objects.create_user("script", password="pw-123456-x"))
    assert _get(client, path, schema=schema, HTTP_AUTHORIZATION=f"Token {key}").status_code == 200


# -- trades ---------------------------------------------------------------------------------------------------


def test_trades_newest_first_with_the_trade_log_fields(viewer, schema):
    older = _trade("-2.5", NOW - timedelta(hours=2), symbol="ETHUSDT", side="SHORT", fees="0.3",
                   held=timedelta(seconds=90, milliseconds=250), reason="POSITION_FLIPPED")
    newer = _trade("4", NOW - timedelta(hours=1))
    page = _get(viewer, TRADES, schema=schema).json()
    assert page["count"] == 2 and page["next"] is None and [t["id"] for t in page["results"]] == [newer.id, older.id]
    assert page["results"][1] == {
        "id": older.id, "symbol": "ETHUSDT", "side": "SHORT", "qty": 0.01, "entryPrice": 90000.0, "exitPrice": 90100.0,
        "fees": 0.3, "realizedPnl": -2.5, "exitReason": "POSITION_FLIPPED", "openedAt": "2026-03-09T22:28:29.750Z",
        "closedAt": "2026-03-09T22:30:00.000Z", "durationMs": 90_250}


def test_trades_are_paginated(viewer, schema):
    trades = [_trade("1", NOW - timedelta(minutes=m)) for m in range(5)]  # newest first
    first = _get(viewer, TRADES, "limit=2", schema).json()
    assert first["count"] == 5 and [t["id"] for t in first["results"]] == [trades[0].id, trades[1].id]
    assert first["next"].endswith("limit=2&offset=2") and first["previous"] is None
    last = _get(viewer, TRADES, "limit=2&offset=4", schema).json()
    assert [t["id"] for t in last["results"]] == [trades[4].id] and last["next"] is None and last["previous"]


def test_trades_filter_by_symbol_and_close_time(viewer, schema):
    btc = _trade("1", NOW - timedelta(hours=3))
    eth = _trade("1", NOW - timedelta(hours=2), symbol="ETHUSDT")
    late = _trade("1", NOW - timedelta(hours=1))

    def ids(query: str) -> list[int]:
        return [t["id"] for t in _get(viewer, TRADES, query, schema).json()["results"]]

    assert ids("symbol=btcusdt") == [late.id, btc.id]  # lower case is read as upper case
    assert ids("since=2026-03-09T22:30:00Z") == [late.id, eth.id]  # at or after
    assert ids("until=2026-03-09T22:30:00%2B00:00") == [eth.id, btc.id]  # at or before, an offset is a zone
    assert ids("symbol=ETHUSDT&since=2026-03-09T23:00:00Z") == []
    assert ids("since=2026-03-10T00:00:00Z&until=2026-03-09T00:00:00Z") == []  # an empty window, not an error


def test_trades_of_integration_runs_are_not_the_products(viewer, schema):
    ours = _trade("1", NOW)
    run = _trade("1000", NOW, run_id="run-20260310-000000")
    assert [t["id"] for t in _get(viewer, TRADES, schema=schema).json()["results"]] == [ours.id]
    asked = _get(viewer, TRADES, "runId=run-20260310-000000", schema).json()
    assert [t["id"] for t in asked["results"]] == [run.id]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("symbol=BTC-USDT", "symbol"),
        ("symbol=" + "A" * 33, "symbol"),
        ("symbol=", "symbol"),
        ("since=yesterday", "since"),
        ("since=2026-03-10T00:00:00", "since"),  # no zone: refused, not read in the server's
        ("until=2026-13-01T00:00:00Z", "until"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("offset=-1", "offset"),
        ("runId=../etc", "runId"),
    ],
)
def test_bad_trade_queries_are_a_400_naming_the_parameter(viewer, schema, query, field):
    response = _get(viewer, TRADES, query, schema)
    assert _refused(response) == field and response.json()["detail"].startswith(f"{field}: ")


# -- PnL ------------------------------------------------------------------------------------------------------


def test_pnl_summary_adds_up_today_the_last_7_days_and_all_time_across_a_utc_midnight(viewer, schema, monkeypatch):
    monkeypatch.setattr(account_views, "utc_now", lambda: NOW)
    best = _trade("5", NOW - timedelta(minutes=10), fees="0.5")  # today (00:20 UTC)
    even = _trade("0", NOW - timedelta(minutes=5), fees="0.2")  # today, neither a win nor a loss
    before_midnight = _trade("-2", NOW - timedelta(minutes=40), fees="0.25", symbol="ETHUSDT")  # yesterday 23:50
    _trade("1.5", NOW - timedelta(days=3), fees="0.1")
    oldest = _trade("-10", NOW - timedelta(days=8), fees="1")
    _trade("1000", NOW - timedelta(minutes=1), run_id="run-x")  # an integration run's: never the product's
    body = _get(viewer, PNL, schema=schema).json()

    assert body["timestamp"] == "2026-03-10T00:30:00.000Z"
    today, week, ever = body["today"], body["last7Days"], body["allTime"]
    assert today["since"] == "2026-03-10T00:00:00.000Z" and week["since"] == "2026-03-03T00:30:00.000Z"
    assert ever["since"] is None
    assert {k: today[k] for k in ("realizedPnl", "fees", "trades", "wins", "losses", "winRate")} == {
        "realizedPnl": 5.0, "fees": 0.7, "trades": 2, "wins": 1, "losses": 0, "winRate": 0.5}
    assert today["bestTrade"]["id"] == best.id and today["worstTrade"]["id"] == even.id
    assert {k: week[k] for k in ("realizedPnl", "fees", "trades", "wins", "losses", "winRate")} == {
        "realizedPnl": 4.5, "fees": 1.05, "trades": 4, "wins": 2, "losses": 1, "winRate": 0.5}
    assert week["worstTrade"] == {"id": before_midnight.id, "symbol": "ETHUSDT", "side": "LONG", "realizedPnl": -2.0,
                                  "closedAt": "2026-03-09T23:50:00.000Z"}
    assert {k: ever[k] for k in ("realizedPnl", "fees", "trades", "wins", "losses", "winRate")} == {
        "realizedPnl": -5.5, "fees": 2.05, "trades": 5, "wins": 2, "losses": 2, "winRate": 0.4}
    assert ever["bestTrade"]["id"] == best.id and ever["worstTrade"]["id"] == oldest.id

    eth = _get(viewer, PNL, "symbol=ETHUSDT", schema).json()["allTime"]
    assert (eth["trades"], eth["realizedPnl"], eth["winRate"]) == (1, -2.0, 0.0)
    run = _get(viewer, PNL, "runId=run-x", schema).json()["today"]
    assert (run["trades"], run["realizedPnl"]) == (1, 1000.0)


def test_pnl_summary_without_trades_is_zero_with_no_win_rate(viewer, schema):
    ever = _get(viewer, PNL, schema=schema).json()["allTime"]
    assert ever == {"since": None, "realizedPnl": 0.0, "fees": 0.0, "trades": 0, "wins": 0, "losses": 0,
                    "winRate": None, "bestTrade": None, "worstTrade": None}


@pytest.mark.parametrize(("query", "field"), [("symbol=?", "symbol"), ("runId=", "runId"), ("runId=a/b", "runId")])
def test_bad_pnl_queries_are_a_400_naming_the_parameter(viewer, schema, query, field):
    assert _refused(_get(viewer, PNL, query, schema)) == field


# -- equity ---------------------------------------------------------------------------------------------------


def _samples(minutes: int, *, run_id: str = "", start: datetime = NOW) -> None:
    EquitySample.objects.bulk_create(
        EquitySample(run_id=run_id, at=start + timedelta(minutes=m), equity=Decimal(10_000 + m),
                     wallet_balance=Decimal(10_000), unrealized_pnl=Decimal(m), available=Decimal(9_000 + m))
        for m in range(minutes))


def test_equity_is_the_curve_oldest_first(viewer, schema):
    _samples(3)
    body = _get(viewer, EQUITY, schema=schema).json()
    assert body["step"] is None and body["truncated"] is False
    assert body["results"][0] == {"at": "2026-03-10T00:30:00.000Z", "equity": 10000.0, "walletBalance": 10000.0,
                                  "unrealizedPnl": 0.0, "available": 9000.0, "trigger": "TIMER"}
    assert [p["equity"] for p in body["results"]] == [10000.0, 10001.0, 10002.0]


def test_equity_limit_keeps_the_latest_points_and_says_older_ones_were_left_out(viewer, schema):
    _samples(10)
    body = _get(viewer, EQUITY, "limit=3", schema).json()
    assert [p["equity"] for p in body["results"]] == [10007.0, 10008.0, 10009.0] and body["truncated"] is True


def test_equity_step_keeps_the_last_sample_of_each_bucket(viewer, schema):
    _samples(12)  # 00:30 .. 00:41, one a minute
    body = _get(viewer, EQUITY, "step=300", schema).json()  # buckets 00:30-00:34, 00:35-00:39, 00:40-00:44
    assert body["step"] == 300 and body["truncated"] is False
    assert [p["at"] for p in body["results"]] == ["2026-03-10T00:34:00.000Z", "2026-03-10T00:39:00.000Z",
                                                  "2026-03-10T00:41:00.000Z"]
    latest_two = _get(viewer, EQUITY, "step=300&limit=2", schema).json()
    assert [p["equity"] for p in latest_two["results"]] == [10009.0, 10011.0] and latest_two["truncated"] is True


def test_equity_window_and_run_isolation(viewer, schema):
    _samples(10)
    _samples(10, run_id="run-x", start=NOW + timedelta(seconds=30))
    window = _get(viewer, EQUITY, "since=2026-03-10T00:32:00Z&until=2026-03-10T00:34:00Z", schema).json()
    assert [p["equity"] for p in window["results"]] == [10002.0, 10003.0, 10004.0]
    assert len(_get(viewer, EQUITY, schema=schema).json()["results"]) == 10
    run = _get(viewer, EQUITY, "runId=run-x", schema).json()["results"]
    assert len(run) == 10 and run[0]["at"] == "2026-03-10T00:30:30.000Z"


@pytest.mark.parametrize(
    ("query", "field"),
    [("step=0", "step"), ("step=2592001", "step"), ("step=1.5", "step"), ("limit=10001", "limit"),
     ("limit=", "limit"), ("since=now", "since"), ("until=2026-03-10", "until"), ("runId=%00", "runId")],
)
def test_bad_equity_queries_are_a_400_naming_the_parameter(viewer, schema, query, field):
    assert _refused(_get(viewer, EQUITY, query, schema)) == field


# -- symbols status -------------------------------------------------------------------------------------------


def _beat(*, age_ms: int = 300, **status: Any) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    entry = {"lastPrice": 91234.5, "spreadBps": 0.8, "featuresReady": True, "regime": "TREND_UP",
             "regimeSinceMs": now_ms - 60_000, "score": {"long": 0.62, "short": 0.0, "atMs": now_ms - 400},
             "state": "ARM", "stateSinceMs": now_ms - 2_000, "stateReason": "SIGNAL_ARM", "side": "BUY",
             "entryBlockedBy": ["SAFE_MODE_ACTIVE"], "marketDataAgeMs": 120,
             "leverage": {"wanted": 5.0, "applied": 5.0, "state": "APPLIED", "attempts": 0, "error": None}, **status}
    return {"pid": 4242, "phase": "RUNNING", "at": now_ms - age_ms, "mode": "SIM", "safeMode": True,
            "symbols": ["BTCUSDT", "ETHUSDT"], "symbolStatus": {"BTCUSDT": entry, "ETHUSDT": {**entry, "state": "IDLE",
                                                                                              "side": None}}}


def _hold(run_id: str = "", symbol: str = "BTCUSDT") -> None:
    now = datetime.now(UTC)
    Position.objects.create(run_id=run_id, symbol=symbol, side="LONG", qty=Decimal("0.01"),
                            entry_price=Decimal("91000"), pnl_unrealized=Decimal("2.3"), opened_at=now)
    for n, status in enumerate(["NEW", "PARTIALLY_FILLED", "FILLED"]):
        Order.objects.create(run_id=run_id, order_link_id=f"AISCLP-{run_id}-{n}", symbol=symbol, side="SELL",
                             qty=Decimal("0.01"), status=status, created_at=now, updated_at=now)


def test_symbols_status_from_a_live_trader_and_the_database(viewer, schema, monkeypatch):
    monkeypatch.setattr(selectors, "read_heartbeat", lambda run_id="", max_age_ms=5000: _beat() if not run_id else None)
    _hold()
    _hold(run_id="run-x", symbol="SOLUSDT")  # a run's position: not the product's
    body = _get(viewer, SYMBOLS, schema=schema).json()
    trader = body["trader"]
    assert trader["alive"] is True and 300 <= trader["heartbeatAgeMs"] < 5000 and trader["safeMode"] is True
    assert trader["phase"] == "RUNNING" and trader["mode"] == "SIM"
    btc, eth = body["symbols"]
    assert btc["symbol"] == "BTCUSDT" and btc["live"] is True and btc["lastPrice"] == 91234.5
    assert (btc["regime"], btc["state"], btc["side"], btc["stateReason"]) == ("TREND_UP", "ARM", "BUY", "SIGNAL_ARM")
    assert btc["score"]["long"] == 0.62 and btc["score"]["at"].endswith("Z")
    assert btc["entryBlockedBy"] == ["SAFE_MODE_ACTIVE"] and btc["marketDataAgeMs"] == 120
    assert btc["leverage"] == {"wanted": 5.0, "applied": 5.0, "state": "APPLIED", "attempts": 0, "error": None}
    assert btc["position"]["side"] == "LONG" and btc["position"]["entryPrice"] == 91000.0 and btc["openOrders"] == 2
    assert eth["symbol"] == "ETHUSDT" and eth["position"] is None and eth["openOrders"] == 0 and eth["state"] == "IDLE"


def test_without_a_live_trader_nothing_stale_is_served_as_current(viewer, schema, monkeypatch):
    _hold()
    body = _get(viewer, SYMBOLS, schema=schema).json()  # no heartbeat at all
    assert body["trader"]["alive"] is False and body["trader"]["heartbeatAgeMs"] is None
    assert "no trader" in body["trader"]["message"]
    (btc,) = body["symbols"]
    assert btc["live"] is False and btc["position"]["qty"] == 0.01 and btc["openOrders"] == 2
    assert all(btc[field] is None for field in ("lastPrice", "regime", "score", "state", "entryBlockedBy"))

    monkeypatch.setattr(selectors, "read_heartbeat", lambda run_id="", max_age_ms=5000: _beat(age_ms=8_000))
    body = _get(viewer, SYMBOLS, schema=schema).json()  # the last heartbeat, 8 s old: the trader stopped
    assert body["trader"]["alive"] is False and body["trader"]["heartbeatAgeMs"] >= 8_000
    assert "not alive" in body["trader"]["message"]
    assert [s["symbol"] for s in body["symbols"]] == ["BTCUSDT", "ETHUSDT"]
    assert all(s["live"] is False and s["lastPrice"] is None and s["state"] is None for s in body["symbols"])


def test_a_malformed_heartbeat_entry_is_unknown_not_an_error(viewer, schema, monkeypatch):
    beat = _beat(lastPrice="91k", regime="SIDEWAYS", score=[1], state=7, entryBlockedBy="SAFE_MODE_ACTIVE",
                 marketDataAgeMs=-5, stateSinceMs=10**20, leverage="5x")
    monkeypatch.setattr(selectors, "read_heartbeat", lambda run_id="", max_age_ms=5000: beat)
    btc = _get(viewer, SYMBOLS, schema=schema).json()["symbols"][0]
    assert btc["live"] is True and btc["spreadBps"] == 0.8
    assert all(btc[f] is None for f in ("lastPrice", "regime", "score", "state", "entryBlockedBy", "marketDataAgeMs",
                                        "stateSince", "leverage"))


def test_symbols_status_of_a_run_reads_that_runs_heartbeat_and_rows(viewer, schema, monkeypatch):
    asked: list[str] = []
    monkeypatch.setattr(selectors, "read_heartbeat",
                        lambda run_id="", max_age_ms=5000: asked.append(run_id))
    _hold()
    _hold(run_id="run-x", symbol="SOLUSDT")
    body = _get(viewer, SYMBOLS, "runId=run-x", schema).json()
    assert asked == ["run-x"] and [s["symbol"] for s in body["symbols"]] == ["SOLUSDT"]
    assert _refused(_get(viewer, SYMBOLS, "runId=", schema)) == "runId"


# -- the root, the schema and its pages -----------------------------------------------------------------------


def test_the_root_lists_every_endpoint_with_a_description(viewer, schema):
    body = _get(viewer, "/api/", schema=schema).json()
    listed = {e["path"]: e for e in body["endpoints"]}
    assert set(schema["paths"]) <= set(listed)  # every documented operation, and the pages beside them
    assert {"/api/schema/", "/api/schema/swagger-ui/", "/api/schema/redoc/"} <= set(listed)
    assert all(e["description"] and e["methods"] for e in body["endpoints"])
    assert listed["/api/trades"]["methods"] == ["GET"] and listed["/api/tests/integration/run"]["methods"] == ["POST"]
    assert "/api/tests/integration/runs/{run_id}" in listed
    assert body["schema"].endswith("/api/schema/") and body["swaggerUi"].endswith("/api/schema/swagger-ui/")
    assert body["redoc"].endswith("/api/schema/redoc/")


def test_the_schema_shows_in_a_browser_instead_of_downloading(viewer):
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,image/webp,*/*;q=0.8"
    response = viewer.get("/api/schema/", HTTP_ACCEPT=browser)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    assert response["Content-Disposition"].startswith("inline")
    assert response.content.startswith(b"openapi: 3")
    as_json = viewer.get("/api/schema/?format=json")
    assert as_json["Content-Type"].startswith("application/") and as_json.json()["openapi"].startswith("3")


@pytest.mark.parametrize(("path", "assets"), [
    ("/api/schema/swagger-ui/", ["drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js",
                                 "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui.css"]),
    ("/api/schema/redoc/", ["drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js"]),
])
def test_the_documentation_pages_come_from_this_site_after_a_login(client, viewer, path, assets):
    assert client.get(path)["Location"].startswith("/accounts/login/")
    page = viewer.get(path)
    html = page.content.decode()
    assert page.status_code == 200 and "/api/schema/" in html
    for asset in assets:
        assert f"/static/{asset}" in html and finders.find(asset), asset
    assert "http://" not in html and "https://" not in html  # no CDN, no web fonts
    assert "<script>" not in html and "<style>" not in html  # nothing inline for the CSP to refuse


def test_swagger_ui_fetches_its_start_script_from_its_own_url(viewer):
    script = viewer.get("/api/schema/swagger-ui/?script=")
    assert script.status_code == 200 and script["Content-Type"].startswith("application/javascript")
    assert b"SwaggerUIBundle" in script.content and b"/api/schema/" in script.content


def test_the_integration_endpoints_document_the_specs_shapes(schema):
    started = schema["components"]["schemas"]["IntegrationRunStarted"]
    assert {"runId", "scenarioId", "success"} <= set(started["required"])
    assert started["properties"]["success"]["nullable"] is True
    responses = schema["paths"]["/api/tests/integration/run"]["post"]["responses"]
    assert "queued" in responses["202"]["description"]
    runs = schema["paths"]["/api/tests/integration/runs"]["get"]["responses"]["200"]
    assert runs["content"]["application/json"]["schema"]["type"] == "array" and "Link" in runs["headers"]


# -- the admin ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["trade", "equitysample", "position", "order"])
def test_the_admin_lists_the_products_rows_unless_runs_are_chosen(client, page):
    client.force_login(get_user_model().objects.create_superuser("root", password="pw-123456-x"))
    for run_id in ("", "run-x"):
        _trade("1", NOW, run_id=run_id)
        _samples(1, run_id=run_id)
        _hold(run_id=run_id)

    def shown(query: str = "") -> list[str]:
        response = client.get(f"/admin/trading/{page}/{query}")
        assert response.status_code == 200
        return sorted({row.run_id for row in response.context["cl"].result_list})

    assert shown() == [""]
    assert shown("?environment=runs") == ["run-x"]
    assert shown("?environment=all") == ["", "run-x"]
