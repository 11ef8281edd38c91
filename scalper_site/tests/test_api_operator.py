"""The dangerous actions need ``failover.operate_trader``, not merely staff; each call is audited."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client

from failover import services
from failover.models import OperatorAction
from failover.recovery import runner
from scalper_site.api import actions
from trading.control import TraderUnavailable

pytestmark = pytest.mark.django_db

DANGEROUS = [("/api/failover/enter-safe-mode", {"reason": "x"}), ("/api/failover/exit-safe-mode", {"force": True}),
             ("/api/trader/halt", {"reason": "x"}), ("/api/trader/resume", {}),
             ("/api/execution/panic-close", {})]


@pytest.fixture(autouse=True)
def _fresh_throttle_and_held_chains(monkeypatch: pytest.MonkeyPatch) -> None:
    cache.clear()
    monkeypatch.setattr(runner, "_send_chain", lambda plan_pk, token, pks: None)


def _client(name: str, *, operator: bool) -> Client:
    user = get_user_model().objects.create_user(name, password="pw-123456-x", is_staff=True)
    if operator:
        user.user_permissions.add(Permission.objects.get(codename="operate_trader", content_type__app_label="failover"))
    client = Client()
    client.force_login(user)
    return client


def _post(client: Client, path: str, body: Any = None):
    return client.post(path, data=body or {}, content_type="application/json")


@pytest.mark.parametrize(("path", "body"), DANGEROUS)
def test_staff_without_the_permission_is_refused_audited_and_changes_nothing(path, body, monkeypatch):
    monkeypatch.setattr(actions, "send_command", lambda *a, **k: pytest.fail("a refused call sent a command"))
    before = services.failover_status()
    response = _post(_client("staffer", operator=False), path, body)
    assert response.status_code == 403
    assert "failover.operate_trader" in response.json()["detail"]
    after = services.failover_status()
    assert (after["safeMode"], after["halted"]) == (before["safeMode"], before["halted"])
    (refusal,) = OperatorAction.objects.all()
    assert (refusal.action, refusal.username, refusal.details["path"]) == ("PERMISSION_DENIED", "staffer", path)


def test_an_operator_enters_safe_mode_halts_and_resumes_each_audited():
    client = _client("ops", operator=True)
    services.safe_mode_exit(user="setup", force=True)
    entered = _post(client, "/api/failover/enter-safe-mode", {"reason": "news at 14:00"})
    assert entered.status_code == 200 and entered.json()["safeMode"] is True
    assert entered.json()["reason"] == "news at 14:00"

    halted = _post(client, "/api/trader/halt", {"reason": "stop the strategy"}).json()
    assert halted["halted"] is True and halted["halt"]["reason"] == "stop the strategy"
    assert halted["halt"]["by"] == "ops" and halted["halt"]["at"].endswith("Z")
    status = client.get("/api/failover/status").json()
    assert status["halted"] is True and status["halt"] == halted["halt"]

    resumed = _post(client, "/api/trader/resume").json()
    assert resumed["halted"] is False and resumed["halt"] is None
    audit = [(a.action, a.username) for a in OperatorAction.objects.order_by("at", "id")]
    assert audit[1:] == [("SAFE_MODE_ENTER", "ops"), ("HALT", "ops"), ("RESUME", "ops")]


@pytest.mark.parametrize("body", [{}, {"reason": ""}, {"reason": "x" * 201}, {"reason": 5}])
def test_halt_and_enter_safe_mode_need_a_reason(body):
    client = _client("ops", operator=True)
    for path in ("/api/trader/halt", "/api/failover/enter-safe-mode"):
        response = _post(client, path, body)
        assert response.status_code == 400 and "reason" in response.json()["errors"]
    assert not services.failover_status()["halted"] and not OperatorAction.objects.exists()


def test_panic_close_ends_in_halt_even_when_no_trader_answers(monkeypatch):
    def unavailable(command: str, **kwargs: Any) -> dict:
        raise TraderUnavailable("no trader is running for environment 'main'")

    monkeypatch.setattr(actions, "send_command", unavailable)
    response = _post(_client("ops", operator=True), "/api/execution/panic-close")
    assert response.status_code == 503
    status = services.failover_status()
    assert status["halted"] is True and status["halt"]["reason"] == "PANIC_CLOSE" and status["halt"]["by"] == "ops"
    assert [a.action for a in OperatorAction.objects.order_by("at", "id")] == ["HALT", "PANIC_CLOSE"]


def test_the_admin_that_ensure_admin_creates_may_operate(monkeypatch):
    monkeypatch.setenv("SCALPER_ADMIN_USER", "root")
    monkeypatch.setenv("SCALPER_ADMIN_PASSWORD", "a-long-Admin-pass-7351")
    call_command("ensure_admin")
    client = Client()
    client.force_login(get_user_model().objects.get(username="root"))
    assert _post(client, "/api/trader/halt", {"reason": "drill"}).status_code == 200
