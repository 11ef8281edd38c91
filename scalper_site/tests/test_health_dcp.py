"""``/api/health`` carries the leader's Bybit DCP (``dcp``) from its heartbeat, and a malformed one breaks nothing."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client

from scalper_site.api import selectors
from scalper_site.api.health import trader_dcp

pytestmark = pytest.mark.django_db

NO_DCP = {"armed": False, "windowS": 5, "supported": False,
          "reason": "ACCOUNT_HAS_NO_DCP: the account has no DCP; the product relies on the dead-man guardian "
                    "(deadman.after_s 60 s)"}


@pytest.fixture
def client() -> Client:
    cache.clear()  # a fresh throttle budget
    client = Client()
    client.force_login(get_user_model().objects.create_user("viewer", password="pw-123456-x"))
    return client


def _beat(**extra: Any) -> dict[str, Any]:
    return {"pid": 4242, "phase": "RUNNING", "at": int(time.time() * 1000), "mode": "SIM", "symbols": ["BTCUSDT"],
            "safeMode": False, "restFailuresInARow": 0, "config": {"valid": True, "source": "file"},
            "role": "LEADER", **extra}


def _health(client: Client, monkeypatch: pytest.MonkeyPatch, beat: dict[str, Any] | None) -> dict[str, Any]:
    monkeypatch.setattr(selectors, "read_heartbeat", lambda run_id="", max_age_ms=5000: beat)
    response = client.get("/api/health")
    assert response.status_code == 200
    return response.json()


def test_health_shows_the_dcp_the_leader_reports(client, monkeypatch):
    armed = {"armed": True, "windowS": 10, "supported": True, "reason": ""}
    assert _health(client, monkeypatch, _beat(dcp=armed))["dcp"] == armed
    assert _health(client, monkeypatch, _beat(dcp=NO_DCP))["dcp"] == NO_DCP


def test_health_without_a_trader_or_without_dcp_in_the_beat_says_null(client, monkeypatch):
    assert _health(client, monkeypatch, None)["dcp"] is None
    assert _health(client, monkeypatch, _beat())["dcp"] is None  # a trader of an older version


def test_a_malformed_dcp_in_the_heartbeat_gives_nulls_not_an_error(client, monkeypatch):
    body = _health(client, monkeypatch, _beat(dcp={"armed": "yes", "windowS": "ten", "supported": 1,
                                                   "reason": ["x"] * 3}))
    assert body["dcp"] == {"armed": None, "windowS": None, "supported": None, "reason": None}
    assert _health(client, monkeypatch, _beat(dcp=[1, 2]))["dcp"] is None
    assert trader_dcp({"dcp": {"windowS": True, "reason": "x" * 5000}})["dcp"]["windowS"] is None
    assert len(trader_dcp({"dcp": {"reason": "x" * 5000}})["dcp"]["reason"]) == 500
