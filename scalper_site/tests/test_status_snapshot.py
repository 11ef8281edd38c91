"""``GET /api/failover/status`` from its snapshot (the uncached body, every change at once); token auth reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from knox.models import AuthToken

from failover import services
from failover.domain.clock import ManualClock
from failover.domain.types import FailureEvent
from failover.recovery import records, runner
from scalper_site.api.serializers import FailoverStatusSerializer

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Client:
    monkeypatch.setattr(runner, "_send_chain", lambda plan_pk, token, pks: None)  # the plan stays as reported
    client = Client()
    client.force_login(get_user_model().objects.create_user("viewer", password="pw-123456-x"))
    return client


def _uncached() -> dict[str, Any]:
    return dict(FailoverStatusSerializer(services.failover_status()).data)


def _same_state(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return {k: v for k, v in a.items() if k != "timestamp"} == {k: v for k, v in b.items() if k != "timestamp"}


def test_status_view_answers_each_change_at_once_with_the_uncached_body(client: Client):
    first = client.get("/api/failover/status").json()
    assert first["safeMode"] is True and _same_state(first, _uncached())

    services.safe_mode_exit(user="test", force=True)
    after_exit = client.get("/api/failover/status").json()
    assert after_exit["safeMode"] is False and _same_state(after_exit, _uncached())

    services.failure_report(event=FailureEvent(timestamp=datetime.now(UTC), type="EXCHANGE_UNAVAILABLE",
                                               source="EXECUTION_ENGINE", message="test"))
    after_failure = client.get("/api/failover/status").json()
    assert after_failure["safeMode"] is True and after_failure["reason"] == "EXCHANGE_UNAVAILABLE"
    assert after_failure["currentPlan"] is not None and after_failure["lastFailure"]["message"] == "test"
    assert _same_state(after_failure, _uncached())
    assert list(after_failure) == list(_uncached())  # the serializer's field order too


def test_status_view_timestamp_is_each_answers_own(client: Client, monkeypatch: pytest.MonkeyPatch):
    clock = ManualClock.at(datetime(2025, 11, 18, 15, 20, 30, tzinfo=UTC))
    monkeypatch.setattr(records, "CLOCK", clock)
    first = client.get("/api/failover/status").json()
    clock.set(clock.now_ms() + 1500)
    second = client.get("/api/failover/status").json()
    assert (first["timestamp"], second["timestamp"]) == ("2025-11-18T15:20:30.000Z", "2025-11-18T15:20:31.500Z")
    assert _same_state(first, second)


def test_token_auth_reads_the_presented_token_alone_and_still_refuses_an_expired_one(django_assert_num_queries):
    user = get_user_model().objects.create_user("script", password="pw-123456-x")
    _, valid = AuthToken.objects.create(user=user)
    expired_row, expired = AuthToken.objects.create(user=user)
    AuthToken.objects.filter(pk=expired_row.pk).update(expiry=timezone.now() - timedelta(seconds=1))
    client = Client()
    with django_assert_num_queries(1):  # the token with its user; not every other token of the user
        assert client.get("/api/ping", HTTP_AUTHORIZATION=f"Token {valid}").status_code == 200
    assert client.get("/api/ping", HTTP_AUTHORIZATION=f"Token {expired}").status_code in (401, 403)
    assert AuthToken.objects.filter(user=user).count() == 1  # the expired one is gone once presented
