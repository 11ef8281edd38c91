"""The ``/ws/failover/`` websocket against the real ASGI app: status on connect, pushes, refusals.

The fast group runs on the in-memory channel layer; the services test sends the
change from another process through channels_redis.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client

from failover import services
from failover.consumers import open_socket_count
from failover.domain.types import FailureEvent
from failover.recovery import runner
from scalper_site import realtime
from scalper_site.realtime import BADGE_KIND, push_failover_message
from scalper_site.status_fastpath import CHANGES
from scalper_site.testkit import BASE_DIR, env_on_test_database

ORIGIN = (b"origin", b"http://127.0.0.1")


@pytest.fixture(autouse=True)
def _held_chains(monkeypatch: pytest.MonkeyPatch, settings) -> None:
    """Recovery chains are not the subject here; eager mode would run them against no exchange.

    Nor are the panels (test_stream.py): without them each message here is a push of the group.
    """
    monkeypatch.setattr(runner, "_send_chain", lambda plan_pk, token, pks: None)
    settings.WS_PANELS_INTERVAL_S = 0
    channel_layers.backends.clear()  # a fresh layer per test: nothing left over from another test's group


def _login(user=None) -> tuple[Client, bytes]:
    """A logged-in test client and its session cookie, for a new user unless one is given."""
    user = user or get_user_model().objects.create_user(f"op-{uuid.uuid4().hex[:6]}", password="pw-123456-x")
    client = Client()
    client.force_login(user)
    return client, f"sessionid={client.cookies['sessionid'].value}".encode()


def _session_cookie() -> bytes:
    return _login()[1]


def _run(scenario: Callable[[WebsocketCommunicator], Awaitable[None]], headers: list[tuple[bytes, bytes]]) -> None:
    from scalper_site.asgi import application

    async def main() -> None:
        communicator = WebsocketCommunicator(application, "/ws/failover/", headers=headers)
        connected, _ = await communicator.connect(timeout=10)
        assert connected, "the websocket refused an authenticated session"
        try:
            await scenario(communicator)
        finally:
            if not communicator.future.done():  # else its outcome is the error already raised
                await communicator.disconnect()

    async_to_sync(main)()


def _failure(failure_type: str = "EXCHANGE_UNAVAILABLE") -> None:
    services.failure_report(event=FailureEvent(timestamp=datetime.now(UTC), type=failure_type,
                                               source="EXECUTION_ENGINE", message="from the test"))


@pytest.mark.django_db(transaction=True)
def test_connect_sends_the_current_status_then_every_change():
    cookie = _session_cookie()

    async def scenario(ws: WebsocketCommunicator) -> None:
        first = await ws.receive_json_from(timeout=10)
        assert first["type"] == "failover.status"
        assert first["data"]["safeMode"] is True and first["data"]["currentPlan"] is None

        await database_sync_to_async(services.safe_mode_exit)(user="op", force=True)
        off = await ws.receive_json_from(timeout=10)
        assert off["type"] == "failover.status" and off["data"]["safeMode"] is False

        await database_sync_to_async(_failure)("PRIVATE_WS_DISCONNECTED")
        on = None
        while on is None:  # alerts may come first: the alert engine delivers on a thread of its own
            message = await ws.receive_json_from(timeout=10)
            if message["type"] == "failover.status" and message["data"]["currentPlan"]:
                on = message["data"]
        assert on["safeMode"] is True and on["reason"] == "PRIVATE_WS_DISCONNECTED"
        assert on["currentPlan"]["pendingSteps"]

    _run(scenario, [(b"cookie", cookie), ORIGIN])


@pytest.mark.django_db(transaction=True)
def test_only_the_dashboards_kinds_are_forwarded():
    cookie = _session_cookie()

    async def scenario(ws: WebsocketCommunicator) -> None:
        await ws.receive_json_from(timeout=10)  # the status on connect

        def push() -> None:
            push_failover_message(kind="internal.debug", payload={"secret": 1})
            push_failover_message(kind="alert", payload={"level": "CRIT", "type": "MODULE_CRASH", "message": "x"})
            push_failover_message(kind="integration.progress", payload={"runId": "run-1", "status": "RUNNING"})
            push_failover_message(kind="failover.run_status", payload={"runId": "run-1", "safeMode": True})

        await database_sync_to_async(push)()
        received = [await ws.receive_json_from(timeout=10) for _ in range(3)]
        assert [m["type"] for m in received] == ["alert", "integration.progress", "failover.run_status"]
        assert received[0]["data"] == {"level": "CRIT", "type": "MODULE_CRASH", "message": "x"}
        assert await ws.receive_nothing(timeout=0.2)

    _run(scenario, [(b"cookie", cookie), ORIGIN])


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "headers",
    [
        pytest.param([ORIGIN], id="anonymous"),
        pytest.param([(b"cookie", b"sessionid=forged"), ORIGIN], id="forged-session"),
        pytest.param(None, id="foreign-origin"),
    ],
)
def test_the_websocket_refuses_anyone_but_a_logged_in_user_of_this_site(headers):
    from scalper_site.asgi import application

    if headers is None:
        headers = [(b"cookie", _session_cookie()), (b"origin", b"http://evil.example")]

    async def attempt() -> bool:
        communicator = WebsocketCommunicator(application, "/ws/failover/", headers=headers)
        connected, _ = await communicator.connect(timeout=10)
        await communicator.disconnect()
        return connected

    assert async_to_sync(attempt)() is False


# -- careless or hostile clients ---------------------------------------------------------------

CLIENT_FRAMES = {
    "binary": {"bytes": b"\x00\xff\xfe not text"},
    "not-json": {"text": "hello {"},
    "deep-json": {"text": "[" * 200_000 + "]" * 200_000},
    "huge-number": {"text": "9" * 5_000},
    "huge": {"text": "x" * (8 * 1024 * 1024)},
    "empty": {"text": ""},
    "valid-json": {"text": '{"type": "failover.status", "data": {"safeMode": false}}'},
    "neither-text-nor-bytes": {},
}
NOT_ACCEPTED = "CLIENT_MESSAGES_NOT_ACCEPTED"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("frame", list(CLIENT_FRAMES.values()), ids=list(CLIENT_FRAMES))
def test_a_client_frame_is_answered_once_with_an_error_and_the_socket_lives_on(frame):
    cookie = _session_cookie()
    alert = {"level": "WARN", "type": "PACKET_LOSS", "message": "after the frames"}

    async def scenario(ws: WebsocketCommunicator) -> None:
        status = await ws.receive_json_from(timeout=10)  # the status on connect
        await ws.send_input({"type": "websocket.receive", **frame})
        reply = await ws.receive_json_from(timeout=10)
        assert reply["type"] == "error" and reply["data"]["code"] == NOT_ACCEPTED
        # Later frames are dropped unanswered: nothing to amplify, and the pushes keep coming.
        for _ in range(3):
            await ws.send_input({"type": "websocket.receive", **frame})
        await database_sync_to_async(push_failover_message)(kind="alert", payload=alert)
        assert await ws.receive_json_from(timeout=10) == {"type": "alert", "version": status["version"], "data": alert}
        assert await ws.receive_nothing(timeout=0.2)

    _run(scenario, [(b"cookie", cookie), ORIGIN])


def _socket(cookie: bytes) -> WebsocketCommunicator:
    from scalper_site.asgi import application

    return WebsocketCommunicator(application, "/ws/failover/", headers=[(b"cookie", cookie), ORIGIN])


async def _open(cookie: bytes) -> WebsocketCommunicator:
    ws = _socket(cookie)
    connected, _ = await ws.connect(timeout=10)
    assert connected
    assert (await ws.receive_json_from(timeout=10))["type"] == "failover.status"
    return ws


@pytest.mark.django_db(transaction=True)
def test_a_user_gets_at_most_the_configured_number_of_sockets(settings):
    settings.WS_MAX_SOCKETS_PER_USER = 2
    user = get_user_model().objects.create_user("many-tabs", password="pw-123456-x")
    cookie, other_session = _login(user)[1], _login(user)[1]  # two logins of one user share the budget
    stranger = _session_cookie()

    async def main() -> None:
        first, second = await _open(cookie), await _open(other_session)
        assert open_socket_count(user.pk) == 2

        third = _socket(cookie)
        connected, _ = await third.connect(timeout=10)
        assert connected  # accepted only to be told why, then closed with a code of its own
        refusal = await third.receive_json_from(timeout=10)
        assert refusal["type"] == "error" and refusal["data"]["code"] == "TOO_MANY_SOCKETS"
        assert await third.receive_output(timeout=10) == {"type": "websocket.close", "code": 4429}
        await third.disconnect()
        assert open_socket_count(user.pk) == 2

        other_user = await _open(stranger)  # another user's budget is untouched
        await first.disconnect()  # a closed socket gives its place back
        fourth = await _open(cookie)
        for ws in (second, other_user, fourth):
            await ws.disconnect()
        assert open_socket_count(user.pk) == 0

    async_to_sync(main)()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("ending", ["logout", "expiry", "password-change", "deleted-user"])
def test_the_socket_closes_when_its_session_ends(settings, ending):
    settings.WS_SESSION_CHECK_S = 0.05
    user = get_user_model().objects.create_user(f"op-{ending}", password="pw-123456-x")
    client, cookie = _login(user)

    def end_session() -> None:
        if ending == "logout":
            assert client.post("/accounts/logout/").status_code == 302
        elif ending == "expiry":
            Session.objects.filter(session_key=client.session.session_key).update(
                expire_date=datetime.now(UTC) - timedelta(seconds=1))
        elif ending == "password-change":
            user.set_password("another-pw-987654")
            user.save()
        else:
            user.delete()

    async def scenario(ws: WebsocketCommunicator) -> None:
        await ws.receive_json_from(timeout=10)
        assert await ws.receive_nothing(timeout=0.3)  # several checks pass while the session lives
        await database_sync_to_async(end_session)()
        assert await ws.receive_output(timeout=10) == {"type": "websocket.close", "code": 4401}

    _run(scenario, [(b"cookie", cookie), ORIGIN])


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_failure_reported_in_another_process_reaches_the_socket_through_redis():
    cookie = _session_cookie()
    sender = (
        "import django; django.setup()\n"
        "from datetime import UTC, datetime\n"
        "from failover.domain.types import FailureEvent\n"
        "from failover.services import failure_report\n"
        "failure_report(event=FailureEvent(timestamp=datetime.now(UTC), type='MODULE_CRASH',\n"
        "    source='FEATURE_ENGINE', message='crash in another process'))\n"
    )

    async def scenario(ws: WebsocketCommunicator) -> None:
        first = await ws.receive_json_from(timeout=10)
        assert first["type"] == "failover.status"
        await database_sync_to_async(services.safe_mode_exit)(user="op", force=True)
        assert (await ws.receive_json_from(timeout=10))["data"]["safeMode"] is False

        env = env_on_test_database(connection, CELERY_QUEUE=f"nobody-{uuid.uuid4().hex[:6]}")
        result = await database_sync_to_async(subprocess.run)(
            [sys.executable, "-c", sender], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        for _ in range(5):
            message = await ws.receive_json_from(timeout=10)
            if message["type"] == "failover.status" and message["data"]["safeMode"]:
                assert message["data"]["reason"] == "MODULE_CRASH"
                return
        raise AssertionError("no failover.status with safe mode ON arrived")

    _run(scenario, [(b"cookie", cookie), ORIGIN])


# -- the badge's two lanes ------------------------------------------------------------------------


def _badge(version: int, safe_mode: bool) -> dict:
    return {"kind": BADGE_KIND, "payload": {"version": version, "data": {"safeMode": safe_mode, "lane": "bus"}}}


@pytest.mark.django_db(transaction=True)
def test_each_status_version_is_sent_once_whichever_lane_brings_it_first():
    cookie = _session_cookie()

    async def scenario(ws: WebsocketCommunicator) -> None:
        first = await ws.receive_json_from(timeout=10)
        version = first["version"]
        await CHANGES.hand_badge(_badge(version + 1, False))  # the bus lane first
        bus_copy = await ws.receive_json_from(timeout=10)
        assert (bus_copy["type"], bus_copy["version"], bus_copy["data"]["lane"]) == ("failover.status", version + 1,
                                                                                   "bus")

        def layer(v: int) -> None:
            push_failover_message(kind="failover.status", payload={"safeMode": False, "lane": "layer"}, version=v)

        await database_sync_to_async(layer)(version + 1)  # the same version by the layer: not sent again
        await database_sync_to_async(layer)(version)  # an older one: never sent
        await CHANGES.hand_badge(_badge(version + 1, False))
        assert await ws.receive_nothing(timeout=0.2)
        await database_sync_to_async(layer)(version + 2)  # the layer first this time
        layer_copy = await ws.receive_json_from(timeout=10)
        assert (layer_copy["version"], layer_copy["data"]["lane"]) == (version + 2, "layer")
        await CHANGES.hand_badge(_badge(version + 2, False))
        assert await ws.receive_nothing(timeout=0.2)

    _run(scenario, [(b"cookie", cookie), ORIGIN])


@pytest.mark.django_db(transaction=True)
def test_a_malformed_badge_on_the_bus_reaches_no_socket():
    cookie = _session_cookie()

    async def scenario(ws: WebsocketCommunicator) -> None:
        first = await ws.receive_json_from(timeout=10)
        for payload in ({"version": "7", "data": {}}, {"version": first["version"] + 1, "data": ["x"]},
                        {"version": True, "data": {}}, {}):
            await CHANGES.hand_badge({"kind": BADGE_KIND, "payload": payload})
        assert await ws.receive_nothing(timeout=0.2)

    _run(scenario, [(b"cookie", cookie), ORIGIN])


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_the_badge_reaches_the_socket_by_the_bus_alone_and_once_by_both_lanes(monkeypatch: pytest.MonkeyPatch):
    cookie = _session_cookie()

    async def scenario(ws: WebsocketCommunicator) -> None:
        await ws.receive_json_from(timeout=10)
        for _ in range(500):  # the socket started this process's bus subscription
            if CHANGES.heard.listening_since is not None:
                break
            await asyncio.sleep(0.01)
        assert CHANGES.heard.listening_since is not None
        with monkeypatch.context() as lane:
            lane.setattr(realtime._sender, "submit", lambda message: None)  # the channel layer's copy is lost
            await database_sync_to_async(services.safe_mode_exit)(user="op", force=True)
            off = await ws.receive_json_from(timeout=10)
        assert off["type"] == "failover.status" and off["data"]["safeMode"] is False
        await database_sync_to_async(_failure)("MODULE_CRASH")  # both lanes now: each version once
        seen: list[dict] = []
        while True:  # until the report's own version has come and half a second passes with nothing more
            try:
                message = await ws.receive_json_from(timeout=0.5 if any(m["data"].get("currentPlan")
                                                                        for m in seen) else 10)
            except TimeoutError:
                break
            if message["type"] == "failover.status":
                seen.append(message)
        versions = [m["version"] for m in seen]
        assert len(versions) >= 2 and versions == sorted(set(versions)), versions  # the gate's, the report's

    _run(scenario, [(b"cookie", cookie), ORIGIN])
