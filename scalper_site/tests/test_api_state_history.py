"""``GET /api/failover/state/history``: the state's changes in a window and the blocked intervals, as documented."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from knox.models import AuthToken

from failover import services
from failover.domain.clock import ManualClock, to_epoch_ms
from failover.domain.state_history import StateChange, blocked_intervals
from failover.recovery import records
from scalper_site.tests.test_api_hostile import assert_documented, refused_field

pytestmark = pytest.mark.django_db

HISTORY = "/api/failover/state/history"
T0 = datetime(2025, 11, 18, 15, 20, 0, tzinfo=UTC)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> ManualClock:
    held = ManualClock(to_epoch_ms(T0))
    monkeypatch.setattr(records, "CLOCK", held)
    return held


def _steps(clock: ManualClock, run_id: str = "") -> None:
    """v0 ON at T0, v1 OFF at +10 s, v2 ON (MAINTENANCE) at +20 s, v3 OFF at +30 s."""
    services.failover_state_get(run_id=run_id)
    clock.advance(10_000)
    services.safe_mode_exit(run_id=run_id, user="ops")
    clock.advance(10_000)
    services.safe_mode_enter(run_id=run_id, reason="MAINTENANCE", user="ops")
    clock.advance(10_000)
    services.safe_mode_exit(run_id=run_id, user="ops")


def _get(client: Client, **query: Any) -> Any:
    return client.get(f"{HISTORY}?{urlencode(query)}" if query else HISTORY)


def test_an_anonymous_client_is_refused(client):
    response = client.get(HISTORY)
    assert response.status_code in (401, 403) and response.json()["detail"]


def test_the_product_history_and_its_intervals_as_the_schema_documents_them(viewer, schema, clock):
    _steps(clock)
    response = _get(viewer)
    assert response.status_code == 200
    body = assert_documented(schema, "GET", HISTORY, response)
    assert [(i["version"], i["at"], i["safeMode"], i["reason"]) for i in body["items"]] == [
        (0, "2025-11-18T15:20:00.000Z", True, None), (1, "2025-11-18T15:20:10.000Z", False, None),
        (2, "2025-11-18T15:20:20.000Z", True, "MAINTENANCE"), (3, "2025-11-18T15:20:30.000Z", False, None)]
    assert body["intervals"] == [
        {"start": "2025-11-18T15:20:00.000Z", "end": "2025-11-18T15:20:10.000Z", "reason": None,
         "fromVersion": 0, "toVersion": 0, "halted": False, "operatorHalt": False},
        {"start": "2025-11-18T15:20:20.000Z", "end": "2025-11-18T15:20:30.000Z", "reason": "MAINTENANCE",
         "fromVersion": 2, "toVersion": 2, "halted": False, "operatorHalt": False}]


def test_a_window_and_a_limit(viewer, schema, clock):
    _steps(clock)
    response = _get(viewer, since="2025-11-18T15:20:15Z", until="2025-11-18T16:20:25+01:00", limit=1)
    body = assert_documented(schema, "GET", HISTORY, response)
    assert [i["version"] for i in body["items"]] == [2]
    # The intervals cover the whole window, whatever the limit: MAINTENANCE, still on at until.
    assert body["intervals"] == [{"start": "2025-11-18T15:20:20.000Z", "end": None, "reason": "MAINTENANCE",
                                  "fromVersion": 2, "toVersion": 2, "halted": False, "operatorHalt": False}]


def test_an_integration_run_is_read_by_its_id_never_mixed_with_the_product(viewer, clock):
    _steps(clock, run_id="run-20251118-152000")
    assert _get(viewer).json() == {"items": [], "intervals": []}
    body = _get(viewer, runId="run-20251118-152000").json()
    assert [i["version"] for i in body["items"]] == [0, 1, 2, 3]


def test_a_token_reads_it_too(clock):
    _steps(clock)
    _, key = AuthToken.objects.create(user=get_user_model().objects.create_user("script", password="pw-123456-x"))
    response = Client().get(HISTORY, HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 200 and len(response.json()["items"]) == 4


def test_an_offline_checker_computes_the_same_intervals_from_the_items(viewer, clock):
    _steps(clock)
    body = _get(viewer, since="2025-11-18T15:20:05Z").json()
    items = _get(viewer).json()["items"]
    changes = [StateChange.from_dict(item) for item in items]
    since = datetime(2025, 11, 18, 15, 20, 5, tzinfo=UTC)
    assert [i.to_dict() for i in blocked_intervals(changes, since=since)] == body["intervals"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 5001}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": ""}, "limit"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2025-11-18T15:20:00"}, "since"),  # no zone: refused, not read in the server's zone
        ({"until": "2025-13-01T00:00:00Z"}, "until"),
        ({"since": "0001-01-01T00:00:00+05:00"}, "since"),  # before year 1 in UTC
        ({"runId": ""}, "runId"),
        ({"runId": "../etc"}, "runId"),
        ({"runId": "r" * 65}, "runId"),
    ],
)
def test_bad_parameters_are_a_400_naming_them(viewer, schema, query, field):
    response = _get(viewer, **query)
    assert response.status_code == 400
    body = assert_documented(schema, "GET", HISTORY, response)
    assert refused_field(body) == field and body["detail"].startswith(f"{field}: ")


def test_since_after_until_is_an_empty_window(viewer, schema, clock):
    _steps(clock)
    response = _get(viewer, since="2025-11-18T15:20:25Z", until="2025-11-18T15:20:05Z")
    assert assert_documented(schema, "GET", HISTORY, response) == {"items": [], "intervals": []}


def test_the_largest_limit_is_accepted(viewer, schema, clock):
    _steps(clock)
    response = _get(viewer, limit=5000, since="0001-01-01T00:00:00Z", until="9999-12-31T23:59:59Z")
    assert response.status_code == 200 and len(assert_documented(schema, "GET", HISTORY, response)["items"]) == 4
