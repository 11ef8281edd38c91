"""One beat's worth of work however many beats run: the per-run Redis lock, against a real Redis."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from celery import current_app, shared_task
from django.conf import settings

from failover import beat

WAIT_S = 10


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    connection = beat.redis_client(settings.REDIS_URL)
    yield connection
    connection.close()


class Probe:
    """A scheduled task body that counts its runs and can be held mid-run or made to fail."""

    def __init__(self) -> None:
        self.runs = 0
        self.started = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.fail = False

    def __call__(self) -> str:
        self.runs += 1
        self.started.set()
        assert self.release.wait(WAIT_S)
        if self.fail:
            raise RuntimeError("the sweep failed")
        return "swept"


@pytest.fixture
def probe() -> Iterator[tuple[str, Probe]]:
    name = f"test.beat_probe_{uuid.uuid4().hex[:8]}"
    body = Probe()

    def run() -> str:
        return body()

    shared_task(name=name)(run)
    try:
        yield name, body
    finally:
        current_app.tasks.pop(name, None)


def test_every_beat_entry_goes_through_the_lock_and_names_a_known_task():
    current_app.loader.import_default_modules()  # what a worker does at start: every app's tasks module
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert entry["task"] == "failover.scheduled"
        assert entry["kwargs"]["task"] in current_app.tasks and entry["kwargs"]["period_s"] == entry["schedule"]
    assert "failover.deadman_guard" in {e["kwargs"]["task"] for e in settings.CELERY_BEAT_SCHEDULE.values()}


def test_the_lock_expires_before_the_next_period():
    assert beat.lock_ttl_ms(5.0) == 4000 and beat.lock_ttl_ms(3600.0) == 2_880_000


@pytest.mark.services
def test_two_beats_at_once_one_acts(client, probe):
    name, body = probe
    body.release.clear()  # the first run holds on until the second call has been made
    results: list[dict] = []
    first = threading.Thread(target=lambda: results.append(beat.scheduled_run(task=name, period_s=5, client=client)))
    first.start()
    assert body.started.wait(WAIT_S)
    second = beat.scheduled_run(task=name, period_s=5, client=client)
    body.release.set()
    first.join(WAIT_S)
    assert second == {"task": name, "acted": False, "skipped": "another scheduler ran it this period"}
    assert results == [{"task": name, "acted": True, "result": "swept"}] and body.runs == 1
    # Finished, it keeps the lock for the period: the other beat's tick a moment later does nothing either.
    assert beat.scheduled_run(task=name, period_s=5, client=client)["acted"] is False and body.runs == 1


@pytest.mark.services
def test_the_next_period_acts_once_the_lock_expired(client, probe):
    name, body = probe
    assert beat.scheduled_run(task=name, period_s=0.5, client=client)["acted"] is True
    time.sleep(0.45)  # the lock lives 80 % of the period: 0.4 s
    assert beat.scheduled_run(task=name, period_s=0.5, client=client)["acted"] is True and body.runs == 2


@pytest.mark.services
def test_a_failed_run_releases_the_lock_so_the_next_tick_retries(client, probe):
    name, body = probe
    body.fail = True
    with pytest.raises(RuntimeError, match="the sweep failed"):
        beat.scheduled_run(task=name, period_s=60, client=client)
    assert client.get(beat.lock_key(name)) is None
    body.fail = False
    assert beat.scheduled_run(task=name, period_s=60, client=client)["acted"] is True
    client.delete(beat.lock_key(name))


@pytest.mark.services
def test_release_deletes_only_its_own_lock(client):
    name = f"test.release_{uuid.uuid4().hex[:8]}"
    mine = beat.lock_acquire(client, name, period_s=60)
    assert mine is not None and beat.lock_acquire(client, name, period_s=60) is None
    assert beat.lock_release(client, name, "someone-else") is False and client.get(beat.lock_key(name))
    assert beat.lock_release(client, name, mine) is True and client.get(beat.lock_key(name)) is None


def test_an_unreachable_redis_skips_the_run(probe):
    name, body = probe
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5, socket_timeout=0.5)
    result = beat.scheduled_run(task=name, period_s=5, client=dead)
    assert result["acted"] is False and result["skipped"].startswith("lock unavailable") and body.runs == 0
