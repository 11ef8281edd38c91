"""The ``/ws/failover/`` websocket against the real ASGI app: status on connect, pushes, refusals.

The fast group runs on the in-memory channel layer; the services test sends the
change from another process through channels_redis.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client

from failover import services
from failover.domain.types import FailureEvent
from failover.recovery import runner
from scalper_site.realtime import push_failover_message
from scalper_site.testkit import BASE_DIR, env_on_test_database

ORIGIN = (b"origin", b"http://127.0.0.1")


@pytest.fixture(autouse=True)
def _held_chains(monkeypatch: pytest.MonkeyPatch) -> None:
    """Recovery chains are not the subject here; eager mode would run them against no exchange."""
    monkeypatch.setattr(runner, "_send_chain", lambda plan_pk, token, pks: None)
    channel_layers.backends.clear()  # a fresh layer per test: nothing left over from another test's group


def _session_cookie() -> bytes:
    user = get_user_model().objects.create_user(f"op-{uuid.uuid4().hex[:6]}", password="pw-123456-x")
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


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
