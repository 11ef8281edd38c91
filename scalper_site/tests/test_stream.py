"""The page's one stream: every websocket message carries the failover version its data was read at.

On the in-memory channel layer against the real ASGI app (the consumer's pushes through Redis are
test_consumer's services test). The rule the page relies on: a panel tagged with version ``v`` shows
the failover state of version ``v`` or later, never an older one.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.test import Client

from failover import services
from failover.models import OperatorAction
from failover.recovery import runner
from scalper_site.api import account_views, actions
from trading.control import TraderUnavailable
from trading.models import Order, Position

ORIGIN = (b"origin", b"http://127.0.0.1")
PANELS = {"health", "conditions", "positions", "orders", "symbols", "pnl"}


@pytest.fixture(autouse=True)
def _quick_panels(monkeypatch: pytest.MonkeyPatch, settings) -> None:
    monkeypatch.setattr(runner, "_send_chain", lambda plan_pk, token, pks: None)
    channel_layers.backends.clear()
    cache.clear()  # a fresh throttle budget
    settings.WS_PANELS_INTERVAL_S = 0.05


def _client(*, staff: bool = True, operator: bool = True) -> Client:
    """A logged-in user: staff with ``failover.operate_trader`` unless told otherwise."""
    user = get_user_model().objects.create_user(f"op-{uuid.uuid4().hex[:6]}", password="pw-123456-x", is_staff=staff)
    if staff and operator:
        user.user_permissions.add(Permission.objects.get(codename="operate_trader", content_type__app_label="failover"))
    client = Client()
    client.force_login(user)
    return client


def _position(symbol: str = "BTCUSDT") -> None:
    Position.objects.create(symbol=symbol, side="LONG", qty=Decimal("0.01"), entry_price=Decimal("91234.5"),
                            leverage=5, pnl_unrealized=Decimal("1.5"), opened_at=datetime.now(UTC))


async def _until(ws: WebsocketCommunicator, want, *, limit: int = 200) -> dict[str, Any]:
    """Receive until a message satisfies ``want``; every message on the way must carry an int version."""
    for _ in range(limit):
        message = await ws.receive_json_from(timeout=10)
        assert isinstance(message.get("version"), int), message
        if want(message):
            return message
    raise AssertionError("no such message")


def _stream(scenario) -> None:
    from scalper_site.asgi import application

    cookie = f"sessionid={_client().cookies['sessionid'].value}".encode()

    async def main() -> None:
        ws = WebsocketCommunicator(application, "/ws/failover/", headers=[(b"cookie", cookie), ORIGIN])
        connected, _ = await ws.connect(timeout=10)
        assert connected
        try:
            await scenario(ws)
        finally:
            await ws.disconnect()

    async_to_sync(main)()


@pytest.mark.django_db(transaction=True)
def test_the_socket_sends_the_status_then_every_panel_tagged_with_the_same_version():
    _position()

    async def scenario(ws: WebsocketCommunicator) -> None:
        status = await ws.receive_json_from(timeout=10)
        assert status["type"] == "failover.status" and status["data"]["safeMode"] is True
        first: dict[str, Any] = {}
        while set(first) != PANELS:
            message = await _until(ws, lambda m: m["type"] in PANELS)
            first[message["type"]] = message
        assert {m["version"] for m in first.values()} == {status["version"]}
        assert [p["symbol"] for p in first["positions"]["data"]] == ["BTCUSDT"]
        assert first["positions"]["data"][0]["pnlUnrealized"] == 1.5  # a JSON number, as the HTTP API sends it
        assert first["orders"]["data"] == []
        assert first["health"]["data"]["services"]["failoverManager"]["message"].startswith("Safe mode ON")
        assert first["conditions"]["data"]["version"] == status["version"]  # what holds it, at the badge's version
        assert first["pnl"]["data"]["allTime"]["trades"] == 0
        assert first["symbols"]["data"]["trader"]["alive"] is False

    _stream(scenario)


@pytest.mark.django_db(transaction=True)
def test_after_a_change_the_panels_carry_the_new_version_and_agree_with_the_badge():
    async def scenario(ws: WebsocketCommunicator) -> None:
        before = await ws.receive_json_from(timeout=10)
        await _until(ws, lambda m: m["type"] == "health")
        await database_sync_to_async(services.safe_mode_exit)(user="op", force=True)
        badge = await _until(ws, lambda m: m["type"] == "failover.status")
        assert badge["data"]["safeMode"] is False and badge["version"] > before["version"]
        # Every health message from now on is at least as new as the badge, and says what the badge says.
        health = await _until(ws, lambda m: m["type"] == "health" and m["version"] >= badge["version"])
        assert health["data"]["services"]["failoverManager"]["message"].startswith("Safe mode OFF")

    _stream(scenario)


@pytest.mark.django_db(transaction=True)
def test_only_changed_panels_are_sent_again_and_a_new_position_arrives_without_a_reload():
    async def scenario(ws: WebsocketCommunicator) -> None:
        await ws.receive_json_from(timeout=10)
        await _until(ws, lambda m: m["type"] == "pnl")  # the first round's last panel
        await database_sync_to_async(_position)("ETHUSDT")
        seen: list[str] = []
        message = await _until(ws, lambda m: seen.append(m["type"]) or (m["type"] == "positions"))
        assert [p["symbol"] for p in message["data"]] == ["ETHUSDT"]
        assert "orders" not in seen  # unchanged: not sent again, however many ticks passed

    _stream(scenario)


@pytest.mark.django_db(transaction=True)
def test_a_change_in_the_middle_of_a_read_makes_it_read_again_at_the_new_version(monkeypatch):
    readers = account_views._panel_readers()
    calls: list[int] = []

    def positions_with_a_change_in_between() -> Any:
        calls.append(1)
        if len(calls) == 1:
            services.safe_mode_exit(user="op", force=True)  # commits a new version mid-read
        return readers["positions"]()

    monkeypatch.setattr(account_views, "_panel_readers", lambda: {**readers,
                                                                 "positions": positions_with_a_change_in_between})
    version_before = services.failover_gate().version
    read = account_views.dashboard_panels(with_status=True)
    assert len(calls) == 2
    assert read["version"] == services.failover_gate().version > version_before
    assert read["status"]["safeMode"] is False  # the status shown is the version's
    assert read["health"]["services"]["failoverManager"]["message"].startswith("Safe mode OFF")


@pytest.mark.django_db
def test_the_panels_endpoint_gives_status_and_panels_at_one_version():
    _position()
    Order.objects.create(order_link_id="AISCLP-1", symbol="BTCUSDT", side="BUY", qty=Decimal("0.01"),
                         price=Decimal("90000"), status="NEW", created_at=datetime.now(UTC),
                         updated_at=datetime.now(UTC))
    body = _client(staff=False).get("/api/dashboard/panels").json()
    assert set(body) == {"version", "status", *PANELS}
    assert body["version"] == services.failover_gate().version
    assert body["status"]["safeMode"] is True
    assert [p["symbol"] for p in body["positions"]] == ["BTCUSDT"]
    assert [o["clientOrderId"] for o in body["orders"]] == ["AISCLP-1"]


# -- per-row actions ---------------------------------------------------------------------------------------


def _acknowledge(sent: list, ack: dict[str, Any]):
    def send(command: str, **kwargs: Any) -> dict:
        sent.append((command, kwargs["args"]))
        return ack

    return send


@pytest.mark.django_db
@pytest.mark.parametrize(("path", "command", "args", "action"), [
    ("/api/positions/btcusdt/close", "close_position", {"symbol": "BTCUSDT"}, "POSITION_CLOSE"),
    ("/api/orders/AISCLP-7_a/cancel", "cancel_order", {"order_link_id": "AISCLP-7_a"}, "ORDER_CANCEL"),
])
def test_a_row_action_sends_its_trader_command_and_is_audited(monkeypatch, path, command, args, action):
    sent: list = []
    monkeypatch.setattr(actions, "send_command", _acknowledge(sent, {"ok": True, "result": {"x": 1}, "error": None}))
    response = _client().post(path, content_type="application/json")
    assert response.status_code == 200 and response.json() == {"ok": True, "result": {"x": 1}, "error": None}
    assert sent == [(command, args)]
    audit = OperatorAction.objects.get(action=action)
    assert audit.details == {**args, "ok": True, "result": {"x": 1}, "error": None}


@pytest.mark.django_db
def test_a_row_action_the_trader_refuses_is_409_and_without_a_trader_503_both_audited(monkeypatch):
    client = _client()
    refusal = {"ok": False, "result": {}, "error": "ValueError: 'AISCLP-9' is not an open order of this trader"}
    monkeypatch.setattr(actions, "send_command", _acknowledge([], refusal))
    refused = client.post("/api/orders/AISCLP-9/cancel", content_type="application/json")
    assert refused.status_code == 409 and "is not an open order" in refused.json()["detail"]

    def unavailable(command: str, **kwargs: Any) -> dict:
        raise TraderUnavailable("no trader is running for environment 'main'")

    monkeypatch.setattr(actions, "send_command", unavailable)
    down = client.post("/api/positions/BTCUSDT/close", content_type="application/json")
    assert down.status_code == 503 and "no trader is running" in down.json()["detail"]
    assert [(a.action, a.details["ok"]) for a in OperatorAction.objects.order_by("id")] == [
        ("ORDER_CANCEL", False), ("POSITION_CLOSE", False)]


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/positions/BTC%20USDT/close", "/api/orders/a%3Bb/cancel"])
def test_a_row_action_with_a_malformed_name_is_400_and_sends_nothing(monkeypatch, path):
    sent: list = []
    monkeypatch.setattr(actions, "send_command", _acknowledge(sent, {"ok": True}))
    assert _client().post(path, content_type="application/json").status_code == 400
    assert sent == []


@pytest.mark.django_db
@pytest.mark.parametrize("who", [{"staff": False}, {"staff": True, "operator": False}], ids=["viewer", "staff-only"])
def test_a_row_action_needs_the_permission_to_operate_the_trader(monkeypatch, who):
    sent: list = []
    monkeypatch.setattr(actions, "send_command", _acknowledge(sent, {"ok": True}))
    for path in ("/api/positions/BTCUSDT/close", "/api/orders/AISCLP-1/cancel"):
        assert _client(**who).post(path, content_type="application/json").status_code == 403
    assert sent == []


@pytest.mark.django_db(transaction=True)
def test_the_sockets_of_one_process_share_their_panel_reads(settings, monkeypatch):
    from scalper_site.asgi import application

    settings.WS_PANELS_INTERVAL_S = 60  # a read is shared for 30 s: both sockets below fall within it
    reads: list[int] = []
    read = account_views.dashboard_panels
    monkeypatch.setattr(account_views, "dashboard_panels", lambda **kw: reads.append(1) or read(**kw))
    cookies = [f"sessionid={_client().cookies['sessionid'].value}".encode() for _ in range(2)]

    async def panels(ws: WebsocketCommunicator) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        while set(seen) != PANELS:
            message = await _until(ws, lambda m: m["type"] in PANELS)
            seen[message["type"]] = message["data"]
        return seen

    async def main() -> None:
        sockets = [WebsocketCommunicator(application, "/ws/failover/", headers=[(b"cookie", c), ORIGIN])
                   for c in cookies]
        try:
            for ws in sockets:
                assert (await ws.connect(timeout=10))[0]
            first, second = [await panels(ws) for ws in sockets]
            assert first == second
            assert len(reads) == 1  # one read for both sockets, not one each
        finally:
            for ws in sockets:
                await ws.disconnect()

    async_to_sync(main)()
