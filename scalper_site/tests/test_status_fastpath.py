"""The status endpoint's fast path: Django's answer, byte for byte, only while it is sure; Django otherwise."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.contrib.auth import get_user_model
from django.core.asgi import get_asgi_application
from django.utils import timezone
from knox.models import AuthToken

from failover import services
from failover.status_snapshot import StatusSnapshots
from scalper_site import bus, status_fastpath
from scalper_site.api.failover_views import FailoverStatusView
from scalper_site.status_fastpath import StatusChanges, StatusFastPath, VerifiedTokens
from scalper_site.testkit import free_port, wait_until

pytestmark = pytest.mark.django_db(transaction=True)  # Django answers on a thread of its own


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


Answer = tuple[int, dict[bytes, bytes], bytes]


async def _get(app: Any, headers: list[tuple[bytes, bytes]], *, path: str = "/api/failover/status",
               query: bytes = b"") -> Answer:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": query, "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), *headers], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }
    sent: list[dict[str, Any]] = []
    received = False

    async def receive() -> dict[str, Any]:
        nonlocal received
        if received:
            await asyncio.sleep(3600)
        received = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {name.lower(): value for name, value in start["headers"]}, body


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tokens(monkeypatch: pytest.MonkeyPatch, clock: Clock) -> VerifiedTokens:
    tokens = VerifiedTokens(clock=clock)
    monkeypatch.setattr(status_fastpath, "TOKENS", tokens)  # the view records into the same one
    return tokens


@pytest.fixture
def snapshots(monkeypatch: pytest.MonkeyPatch, clock: Clock) -> StatusSnapshots:
    fresh = StatusSnapshots(render=FailoverStatusView.snapshots._render, clock=clock)
    monkeypatch.setattr(FailoverStatusView, "snapshots", fresh)
    return fresh


@pytest.fixture
def changes(settings: Any, clock: Clock) -> StatusChanges:
    settings.REDIS_URL = ""  # no subscription task: the test tells it what the bus said
    heard = StatusChanges(clock=clock)
    heard.subscribed()
    return heard


@pytest.fixture
def app(snapshots: StatusSnapshots, tokens: VerifiedTokens, changes: StatusChanges, clock: Clock) -> StatusFastPath:
    return StatusFastPath(get_asgi_application(), snapshots=snapshots, tokens=tokens, changes=changes, clock=clock)


@pytest.fixture
def key() -> str:
    user = get_user_model().objects.create_user("script", password="pw-123456-x")
    return AuthToken.objects.create(user=user)[1]


def _auth(key: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Token {key}".encode())]


def _get_twice(app: StatusFastPath, headers: list[tuple[bytes, bytes]], **kw: Any) -> tuple[Answer, Answer]:
    return asyncio.run(_get(app, headers, **kw)), asyncio.run(_get(app, headers, **kw))


def _without(headers: dict[bytes, bytes], *names: bytes) -> dict[bytes, bytes]:
    return {n: v for n, v in headers.items() if n not in names}


def test_the_second_request_is_answered_here_with_djangos_headers_and_body(app: StatusFastPath, key: str):
    (status1, headers1, body1), (status2, headers2, body2) = _get_twice(app, _auth(key))
    assert (status1, status2) == (200, 200) and app.answered == 1
    # The same headers Django's middleware gave (CSP, nosniff, Vary, Allow ...), the length recomputed.
    assert b"content-security-policy" in headers2 and b"x-content-type-options" in headers2
    assert _without(headers1, b"content-length") == _without(headers2, b"content-length")
    assert int(headers2[b"content-length"]) == len(body2)
    first, second = json.loads(body1), json.loads(body2)
    assert list(first) == list(second)  # the serializer's key order
    assert {k: v for k, v in first.items() if k != "timestamp"} == {k: v for k, v in second.items() if k != "timestamp"}
    # Byte for byte the renderer's output, the timestamp aside.
    assert body1.replace(first["timestamp"].encode(), b"") == body2.replace(second["timestamp"].encode(), b"")


def test_each_answer_has_its_own_timestamp(app: StatusFastPath, key: str, monkeypatch: pytest.MonkeyPatch):
    from datetime import UTC, datetime

    from failover.domain.clock import ManualClock
    from failover.recovery import records

    service_clock = ManualClock.at(datetime(2025, 11, 18, 15, 20, 30, tzinfo=UTC))
    monkeypatch.setattr(records, "CLOCK", service_clock)
    asyncio.run(_get(app, _auth(key)))
    service_clock.set(service_clock.now_ms() + 1500)
    _, _, body = asyncio.run(_get(app, _auth(key)))
    assert app.answered == 1 and json.loads(body)["timestamp"] == "2025-11-18T15:20:31.500Z"


def test_a_change_announced_on_the_bus_sends_the_next_request_to_django(
        app: StatusFastPath, key: str, changes: StatusChanges):
    (_, _, before), _ = _get_twice(app, _auth(key))
    assert app.answered == 1 and json.loads(before)["safeMode"] is True
    state = services.safe_mode_exit(user="test", force=True)
    version = FailoverStatusView.snapshots.latest().key[1] + 1
    changes.on_message({"kind": "failover.changed", "payload": {"version": version, "safeMode": False}})
    _, _, after = asyncio.run(_get(app, _auth(key)))
    assert app.answered == 1 and json.loads(after)["safeMode"] is False and state.safe_mode is False
    asyncio.run(_get(app, _auth(key)))
    assert app.answered == 2  # the new snapshot is of the announced version: served here again


def test_a_failure_being_reported_holds_the_fast_path_until_its_version_or_the_hold_ends(
        app: StatusFastPath, key: str, changes: StatusChanges, clock: Clock):
    _get_twice(app, _auth(key))
    changes.on_message({"kind": "failover.changed", "payload": {"safeMode": True, "pending": True}})
    asyncio.run(_get(app, _auth(key)))
    assert app.answered == 1
    clock.now += status_fastpath.PENDING_HOLD_S + 0.1
    changes.heard.last_heard = clock.now  # the subscription is alive (its pings are answered)
    asyncio.run(_get(app, _auth(key)))  # the snapshot is too old by now: Django rebuilds it
    asyncio.run(_get(app, _auth(key)))
    assert app.answered == 2


def test_other_messages_on_the_bus_change_nothing(app: StatusFastPath, key: str, changes: StatusChanges):
    _get_twice(app, _auth(key))
    changes.on_message({"kind": "trader.command", "payload": {"version": 10**6}})
    changes.on_message({"kind": "failover.changed", "payload": {"version": True}})
    asyncio.run(_get(app, _auth(key)))
    assert app.answered == 2


def test_no_subscription_no_fast_answer(app: StatusFastPath, key: str, changes: StatusChanges, clock: Clock):
    changes.lost()
    _get_twice(app, _auth(key))
    assert app.answered == 0
    clock.now += 0.01
    changes.subscribed()  # the snapshot was read before the subscription: a change in between was not heard
    asyncio.run(_get(app, _auth(key)))
    assert app.answered == 0
    clock.now += FailoverStatusView.snapshots._max_age_s + 0.1  # Django rebuilds it, after the subscription
    changes.heard.last_heard = clock.now
    _get_twice(app, _auth(key))
    assert app.answered == 1


def test_a_silent_redis_counts_as_no_subscription(app: StatusFastPath, key: str, changes: StatusChanges,
                                                   clock: Clock):
    asyncio.run(_get(app, _auth(key)))
    clock.now += 0.5
    asyncio.run(_get(app, _auth(key)))
    assert app.answered == 1
    changes.heard.last_heard = clock.now - bus.SILENT_AFTER_S - 0.1
    asyncio.run(_get(app, _auth(key)))
    assert app.answered == 1


def test_a_snapshot_older_than_its_max_age_goes_to_django(app: StatusFastPath, key: str, clock: Clock,
                                                           changes: StatusChanges):
    _get_twice(app, _auth(key))
    clock.now += FailoverStatusView.snapshots._max_age_s + 0.1
    changes.heard.last_heard = clock.now
    asyncio.run(_get(app, _auth(key)))
    assert app.answered == 1


def test_past_half_its_age_the_snapshot_is_rebuilt_off_the_request_path(
        app: StatusFastPath, key: str, clock: Clock, changes: StatusChanges, snapshots: StatusSnapshots,
        tokens: VerifiedTokens):
    tokens._recheck_s = 60.0  # this test is about the snapshot's age, not the token's
    _get_twice(app, _auth(key))
    builds = snapshots.builds
    clock.now += snapshots._max_age_s * 0.6
    changes.heard.last_heard = clock.now
    asyncio.run(_get(app, _auth(key)))
    assert app.answered == 2 and app.refreshed(timeout=10)
    assert snapshots.builds == builds + 1 and snapshots.latest().built_at == clock.now
    clock.now += snapshots._max_age_s * 0.6  # past the old snapshot's age, within the new one's
    changes.heard.last_heard = clock.now
    asyncio.run(_get(app, _auth(key)))
    assert app.answered == 3


def test_a_rebuild_that_hangs_is_given_up_and_the_next_runs_on_a_new_thread(
        app: StatusFastPath, key: str, clock: Clock, changes: StatusChanges, snapshots: StatusSnapshots,
        tokens: VerifiedTokens, monkeypatch: pytest.MonkeyPatch):
    tokens._recheck_s = 600.0  # this test is about the snapshot's rebuild
    _get_twice(app, _auth(key))
    release, hung = threading.Event(), threading.Event()
    rebuild = snapshots.refresh

    def hang_once() -> Any:
        if not hung.is_set():
            hung.set()
            release.wait(30)  # a database call that does not come back
        return rebuild()

    monkeypatch.setattr(snapshots, "refresh", hang_once)
    half = snapshots._max_age_s * 0.6
    clock.now += half
    changes.heard.last_heard = clock.now
    asyncio.run(_get(app, _auth(key)))  # answered here; its rebuild starts and hangs
    assert app.answered == 2 and hung.wait(10)
    clock.now += half  # the snapshot is too old now: Django answers while the rebuild hangs
    changes.heard.last_heard = clock.now
    asyncio.run(_get(app, _auth(key)))
    assert app.answered == 2 and app.stuck_refreshes == 0
    try:
        clock.now += status_fastpath.REFRESH_STUCK_S
        changes.heard.last_heard = clock.now
        asyncio.run(_get(app, _auth(key)))  # Django again; its view built a fresh snapshot
        assert app.answered == 2
        clock.now += half
        changes.heard.last_heard = clock.now
        asyncio.run(_get(app, _auth(key)))  # answered here; the rebuild it asks for runs on a new thread
        assert app.answered == 3 and app.stuck_refreshes == 1
        assert app.refreshed(timeout=10) and snapshots.latest().built_at == clock.now
        asyncio.run(_get(app, _auth(key)))
        assert app.answered == 4 and app.stuck_refreshes == 1  # the hung thread is still stuck
    finally:
        release.set()
    wait_until(lambda: app.stuck_refreshes == 0, timeout=10, what="the given-up thread's end")


def test_threads_left_behind_by_hung_refreshes_are_bounded(app: StatusFastPath, clock: Clock,
                                                           monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(status_fastpath, "MAX_STUCK_REFRESHES", 2)
    release = threading.Event()
    started: list[threading.Event] = []

    def hang() -> None:
        started[-1].set()
        release.wait(30)

    try:
        for round_ in range(4):
            started.append(threading.Event())
            app._refresh_soon(f"subject {round_}", hang)
            assert started[-1].wait(10) if round_ < 3 else not started[-1].wait(0.3)
            assert app.stuck_refreshes == min(round_, 2)
            clock.now += status_fastpath.REFRESH_STUCK_S + 1
            app._give_up_a_stuck_refresh()
        assert app.stuck_refreshes == 2  # the third hung thread is waited for: no fourth thread started
    finally:
        release.set()
    wait_until(lambda: app.stuck_refreshes == 0, timeout=10, what="the given-up threads' end")
    assert app.refreshed(timeout=10)


def test_a_revoked_token_is_refused_by_django_once_the_recheck_window_ends(app: StatusFastPath, key: str,
                                                                          clock: Clock, changes: StatusChanges):
    _get_twice(app, _auth(key))
    AuthToken.objects.all().delete()
    clock.now += status_fastpath.TOKEN_RECHECK_S + 0.01
    changes.heard.last_heard = clock.now
    status, _, body = asyncio.run(_get(app, _auth(key)))
    assert status == 403 and json.loads(body)["detail"] == "Invalid token." and app.answered == 1


def test_past_half_the_recheck_window_knox_is_asked_again_off_the_request_path(
        app: StatusFastPath, key: str, clock: Clock, changes: StatusChanges, snapshots: StatusSnapshots):
    _get_twice(app, _auth(key))
    for _ in range(3):  # past the first acceptance's window, still answered here: each recheck renews it
        clock.now += status_fastpath.TOKEN_RECHECK_S * 0.4
        changes.heard.last_heard = clock.now
        asyncio.run(_get(app, _auth(key)))
        assert app.refreshed(timeout=10)
        asyncio.run(_get(app, _auth(key)))
        assert app.refreshed(timeout=10)
    assert app.answered == 7
    AuthToken.objects.all().delete()  # revoked: the next recheck forgets it, within the window
    clock.now += status_fastpath.TOKEN_RECHECK_S * 0.6
    changes.heard.last_heard = clock.now
    asyncio.run(_get(app, _auth(key)))  # answered here (within the window), and the recheck starts
    assert app.refreshed(timeout=10)
    status, _, _ = asyncio.run(_get(app, _auth(key)))
    assert status == 403 and app.answered == 8


def test_an_expired_token_is_never_answered_here(app: StatusFastPath, key: str):
    asyncio.run(_get(app, _auth(key)))
    AuthToken.objects.update(expiry=timezone.now() - timedelta(seconds=1))
    status_fastpath.TOKENS._accepted = {d: (at, timezone.now() - timedelta(seconds=1))
                                        for d, (at, _) in status_fastpath.TOKENS._accepted.items()}
    status, _, _ = asyncio.run(_get(app, _auth(key)))
    assert status == 403 and app.answered == 0


@pytest.mark.parametrize("headers, query", [
    ([(b"cookie", b"sessionid=x")], b""),  # a session: Django's session and CSRF handling decide
    ([(b"authorization", b"Token a")], b""),  # two authorization headers
    ([(b"accept", b"text/html")], b""),  # another shape: learnt only from Django's own JSON answer
    ([], b"format=json"),  # a query string
])
def test_other_requests_go_through_django(app: StatusFastPath, key: str, headers: list[tuple[bytes, bytes]],
                                          query: bytes):
    _get_twice(app, [*_auth(key), *headers], query=query)
    assert app.answered == 0


def test_a_wrong_or_malformed_token_is_refused_by_django(app: StatusFastPath, key: str):
    _get_twice(app, _auth(key))
    for value in (b"Token " + b"0" * 64, b"Token \xff\xfe", b"Token", b"Token a b", b"Bearer " + key.encode()):
        status, _, _ = asyncio.run(_get(app, [(b"authorization", value)]))
        assert status in (401, 403), value
    assert app.answered == 1


def test_other_paths_and_methods_are_djangos(app: StatusFastPath, key: str):
    asyncio.run(_get(app, _auth(key), path="/api/ping"))
    asyncio.run(_get(app, _auth(key), path="/api/ping"))
    assert app.answered == 0


def test_an_unreachable_redis_leaves_every_request_to_django(settings: Any, clock: Clock):
    changes = StatusChanges(url=f"redis://127.0.0.1:{free_port()}/0")

    async def listen_briefly() -> None:
        changes.ensure_running()
        await asyncio.sleep(0.3)

    asyncio.run(listen_briefly())
    assert changes.heard.listening_since is None


@pytest.mark.services
def test_the_subscription_hears_a_committed_change_from_another_connection(settings: Any):
    changes = StatusChanges()

    async def listen_until_heard() -> int:
        changes.ensure_running()
        for _ in range(200):
            if changes.heard.listening_since is not None:
                break
            await asyncio.sleep(0.01)
        assert changes.heard.listening_since is not None
        redis.Redis.from_url(settings.REDIS_URL).publish(bus.channel_name(), b"not a bus message")
        bus.publish("failover.changed", {"version": 4242, "safeMode": True, "reason": "x"})
        for _ in range(200):
            if changes.heard.version == 4242:
                break
            await asyncio.sleep(0.01)
        return changes.heard.version

    assert asyncio.run(listen_until_heard()) == 4242
