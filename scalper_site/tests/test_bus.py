from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid

import pytest
import redis

from scalper_site.bus import BusListener, channel_name, publish, publish_counted
from scalper_site.testkit import BASE_DIR, wait_until

pytestmark = pytest.mark.services


@pytest.fixture
def run_id() -> str:
    return f"bus-{uuid.uuid4().hex[:8]}"


def test_a_message_published_by_another_process_reaches_the_listener(run_id):
    received: list[dict] = []
    got = threading.Event()

    def handler(message: dict) -> None:
        received.append(message)
        got.set()

    listener = BusListener(handler, run_id=run_id).start()
    try:
        assert listener.connected.wait(5)
        code = (
            "import django; django.setup(); from scalper_site.bus import publish; "
            f"assert publish('failover.changed', {{'version': 7}}, run_id={run_id!r})"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=BASE_DIR, env=os.environ, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        assert got.wait(5)
    finally:
        listener.stop()
    assert received[0]["kind"] == "failover.changed"
    assert received[0]["payload"] == {"version": 7}


def test_malformed_messages_are_ignored_and_the_listener_keeps_going(run_id):
    received: list[dict] = []
    listener = BusListener(received.append, run_id=run_id).start()
    try:
        assert listener.connected.wait(5)
        raw = redis.Redis.from_url(os.environ["REDIS_URL"])
        for junk in (b"not json", b"[1,2]", b'{"kind": 5}'):
            raw.publish(channel_name(run_id, url=os.environ["REDIS_URL"]), junk)
        publish("ok", run_id=run_id)
        wait_until(lambda: received, timeout=5, what="the good message")
    finally:
        listener.stop()
    assert [m["kind"] for m in received] == ["ok"]


def test_environments_do_not_hear_each_other(run_id):
    received: list[dict] = []
    listener = BusListener(received.append, run_id=run_id).start()
    try:
        assert listener.connected.wait(5)
        publish("other", run_id=run_id + "-x")
        publish("mine", run_id=run_id)
        wait_until(lambda: received, timeout=5, what="own message")
        time.sleep(0.2)
    finally:
        listener.stop()
    assert [m["kind"] for m in received] == ["mine"]


def test_publish_without_redis_reports_false_instead_of_raising():
    assert publish("x", url="redis://127.0.0.1:1/0") is False
    assert publish_counted("x", url="redis://127.0.0.1:1/0") is None


def test_publish_counted_says_how_many_listeners_redis_handed_it_to(run_id):
    assert publish_counted("nobody", run_id=run_id) == 0
    listeners = [BusListener(lambda message: None, run_id=run_id).start() for _ in range(2)]
    try:
        assert all(listener.connected.wait(5) for listener in listeners)
        assert publish_counted("both", run_id=run_id) == 2
    finally:
        for listener in listeners:
            listener.stop()


def _other_database(url: str) -> str:
    """The same Redis server, another database number."""
    db = redis.connection.parse_url(url).get("db", 0)
    base = url.rsplit("/", 1)[0] if url.count("/") > 2 else url
    return f"{base}/{(db + 1) % 16}"


def test_two_databases_on_one_redis_server_are_two_buses(run_id):
    """Pub/sub channels are the server's: without the database in the name, a test suite's command (or a second
    product's) on the same server reached this one's trader with the same run id."""
    mine, other = os.environ["REDIS_URL"], _other_database(os.environ["REDIS_URL"])
    assert channel_name(run_id, url=mine) != channel_name(run_id, url=other)
    received: list[dict] = []
    listener = BusListener(received.append, run_id=run_id, url=mine).start()
    try:
        assert listener.connected.wait(5)
        assert publish("trader.command", {"command": "panic_close"}, run_id=run_id, url=other)
        publish("mine", run_id=run_id, url=mine)
        wait_until(lambda: received, timeout=5, what="own message")
        time.sleep(0.2)
    finally:
        listener.stop()
    assert [m["kind"] for m in received] == ["mine"]
