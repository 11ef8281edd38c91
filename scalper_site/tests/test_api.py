"""The dashboard API: shapes, authentication, staff-only actions, CSRF, throttle, audit, bad input."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client
from knox.models import AuthToken
from rest_framework.throttling import ScopedRateThrottle

from failover import services
from failover.domain.types import FailureEvent
from failover.models import FailoverStateRecord, OperatorAction
from failover.recovery import runner
from scalper_site.api import actions, selectors
from scalper_site.api.permissions import ACTION_THROTTLE_SCOPE
from trading.control import TraderUnavailable
from trading.models import Alert, Order, Position

pytestmark = pytest.mark.django_db

STATUS_KEYS = {"timestamp", "safeMode", "reason", "since", "lastFailure", "recoveryInProgress", "currentPlan",
               "halted", "halt"}
READS = ["/api/", "/api/ping", "/api/failover/status", "/api/health", "/api/alerts", "/api/positions", "/api/orders",
         "/api/schema/", "/api/tests/integration/scenarios", "/api/tests/integration/runs"]
ACTIONS = ["/api/failover/retry-recovery", "/api/failover/exit-safe-mode", "/api/execution/panic-close",
           "/api/tests/integration/run"]


@pytest.fixture(autouse=True)
def _fresh_throttle_and_held_chains(monkeypatch: pytest.MonkeyPatch) -> None:
    """A clean throttle budget per test; recovery chains held (eager mode would run them against no exchange)."""
    cache.clear()
    monkeypatch.setattr(runner, "_send_chain", lambda plan_pk, token, pks: None)


def _user(name: str, *, staff: bool, operator: bool = False) -> Any:
    user = get_user_model().objects.create_user(name, password="pw-123456-x", is_staff=staff)
    if operator:  # may carry out the dangerous actions (failover.operate_trader)
        user.user_permissions.add(Permission.objects.get(codename="operate_trader", content_type__app_label="failover"))
    return user


@pytest.fixture
def staff_client() -> Client:
    client = Client()
    client.force_login(_user("boss", staff=True, operator=True))
    return client


@pytest.fixture
def user_client() -> Client:
    client = Client()
    client.force_login(_user("viewer", staff=False))
    return client


def _post(client: Client, path: str, body: Any = None, **extra: Any):
    return client.post(path, data=body if isinstance(body, str) else ({} if body is None else body),
                       content_type="application/json", **extra)


def _refused(response: Any) -> str:
    """What a 400 names: its field (the API's ``errors``), or "detail" for a body that did not parse."""
    body = response.json()
    assert response.status_code == 400 and body["detail"], body
    errors = body.get("errors", {})
    return next(iter(errors)) if errors else "detail"


def _report(failure_type: str = "EXCHANGE_UNAVAILABLE") -> None:
    services.failure_report(event=FailureEvent(timestamp=datetime.now(UTC), type=failure_type,
                                               source="EXECUTION_ENGINE", message="REST 503"))


# -- authentication ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", READS)
def test_reads_refuse_an_anonymous_client(client, path):
    assert client.get(path).status_code in (401, 403)


@pytest.mark.parametrize("path", ACTIONS)
def test_actions_refuse_an_anonymous_client_and_record_nothing(client, path):
    assert _post(client, path, {"force": True}).status_code in (401, 403)
    assert not OperatorAction.objects.exists()


@pytest.mark.parametrize("path", READS)
def test_reads_answer_a_non_staff_user(user_client, path):
    assert user_client.get(path, HTTP_ACCEPT="application/json").status_code == 200


@pytest.mark.parametrize("path", ACTIONS)
def test_actions_refuse_a_non_staff_user_and_change_nothing(user_client, path):
    before = services.failover_status()["safeMode"]
    response = _post(user_client, path, {"force": True})
    assert response.status_code == 403
    assert response.json()["detail"] == "This action needs a staff user."
    assert services.failover_status()["safeMode"] == before
    assert not OperatorAction.objects.exists()


def test_a_token_reads_and_a_staff_token_acts_without_csrf():
    user = _user("script", staff=True, operator=True)
    _, key = AuthToken.objects.create(user=user)
    client = Client(enforce_csrf_checks=True)
    auth = {"HTTP_AUTHORIZATION": f"Token {key}"}
    assert client.get("/api/failover/status", **auth).status_code == 200
    response = _post(client, "/api/failover/exit-safe-mode", {"force": True}, **auth)
    assert response.status_code == 200 and response.json()["safeMode"] is False
    assert OperatorAction.objects.get(action="SAFE_MODE_EXIT").username == "script"


def test_a_bad_token_is_refused(client):
    response = client.get("/api/failover/status", HTTP_AUTHORIZATION="Token nope")
    assert response.status_code in (401, 403) and response.json()["detail"] == "Invalid token."


def test_session_posts_need_the_csrf_token():
    user = _user("browser", staff=True, operator=True)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    refused = _post(client, "/api/failover/exit-safe-mode", {"force": True})
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    assert not OperatorAction.objects.exists()
    assert services.failover_status()["safeMode"] is True

    client.get("/")  # the page sets the csrftoken cookie
    token = client.cookies["csrftoken"].value
    accepted = _post(client, "/api/failover/exit-safe-mode", {"force": True}, HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code == 200 and accepted.json()["safeMode"] is False


def test_actions_are_throttled_per_user(staff_client, monkeypatch):
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {ACTION_THROTTLE_SCOPE: "2/min"})
    codes = [_post(staff_client, "/api/failover/exit-safe-mode", {}).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    assert OperatorAction.objects.filter(action="SAFE_MODE_EXIT").count() == 2  # the refused call did nothing
    # Reads are not throttled.
    assert all(staff_client.get("/api/failover/status").status_code == 200 for _ in range(5))


# -- failover ----------------------------------------------------------------------------------


def test_status_has_the_spec_shape_and_follows_a_failure(user_client):
    body = user_client.get("/api/failover/status").json()
    assert set(body) == STATUS_KEYS
    assert body["safeMode"] is True and body["currentPlan"] is None  # fail closed on first read

    services.safe_mode_exit(user="setup", force=True)
    assert user_client.get("/api/failover/status").json()["safeMode"] is False

    _report("PRIVATE_WS_DISCONNECTED")
    body = user_client.get("/api/failover/status").json()
    assert body["safeMode"] is True and body["reason"] == "PRIVATE_WS_DISCONNECTED"
    assert body["lastFailure"]["type"] == "PRIVATE_WS_DISCONNECTED" and body["lastFailure"]["message"] == "REST 503"
    assert body["recoveryInProgress"] is True and body["since"].endswith("Z")
    plan = body["currentPlan"]
    assert plan["pendingSteps"] and {s["status"] for s in plan["pendingSteps"]} == {"PENDING"}
    assert {"id", "type", "status", "createdAt", "startedAt", "finishedAt", "details", "errorMessage"} == set(
        plan["pendingSteps"][0])
    assert plan["planId"].startswith("plan-") and plan["failureType"] == "PRIVATE_WS_DISCONNECTED"


def test_exit_safe_mode_refused_with_blockers_then_forced_and_audited(staff_client):
    _report()
    refused = _post(staff_client, "/api/failover/exit-safe-mode", {})
    assert refused.status_code == 409
    assert refused.json()["blockers"] and refused.json()["detail"].startswith("Safe mode stays on")
    assert services.failover_status()["safeMode"] is True

    forced = _post(staff_client, "/api/failover/exit-safe-mode", {"force": True})
    assert forced.status_code == 200 and set(forced.json()) >= STATUS_KEYS
    assert forced.json()["safeMode"] is False
    audit = {a.action: a for a in OperatorAction.objects.all()}
    assert audit["SAFE_MODE_EXIT_REFUSED"].username == "boss"
    assert audit["SAFE_MODE_EXIT"].username == "boss" and audit["SAFE_MODE_EXIT"].details["forced"] is True


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"force": tru', "detail"),  # malformed JSON
        ('{"force": "yes"}', "force"),  # a string is not a boolean
        ('{"force": 1}', "force"),
        ('[true]', "non_field_errors"),  # not an object
        ("null", "non_field_errors"),
    ],
)
def test_exit_safe_mode_rejects_bad_input_and_changes_nothing(staff_client, body, field):
    version = services.failover_state_get().version
    response = _post(staff_client, "/api/failover/exit-safe-mode", body)
    assert _refused(response) == field
    assert services.failover_state_get().version == version and services.failover_status()["safeMode"] is True
    assert not OperatorAction.objects.exists()


def test_retry_recovery_without_a_failed_plan_is_a_conflict(staff_client):
    response = _post(staff_client, "/api/failover/retry-recovery")
    assert response.status_code == 409 and "no failed recovery plan" in response.json()["detail"]


def test_retry_recovery_reruns_a_failed_plan_and_is_audited(staff_client):
    _report("NON_SYNC_STATE")
    # The plan's chain failed in a worker: the state the service leaves behind after the retry budget.
    row = FailoverStateRecord.objects.get(run_id="")
    row.current_plan.status = "FAILED"
    row.current_plan.chain_token = ""
    row.current_plan.save(update_fields=["status", "chain_token"])
    response = _post(staff_client, "/api/failover/retry-recovery")
    assert response.status_code == 200, response.json()
    assert response.json()["recoveryInProgress"] is True
    assert OperatorAction.objects.get(action="RECOVERY_RETRY").username == "boss"


# -- health --------------------------------------------------------------------------------------


def _beat(**overrides: Any) -> dict[str, Any]:
    beat = {"pid": 4242, "phase": "RUNNING", "at": int(time.time() * 1000), "mode": "SIM", "symbols": ["BTCUSDT"],
            "safeMode": False,
            "streams": {"public": {"connected": True, "lastMessageAgeMs": 40, "rebuilds": 0},
                        "private": {"connected": True, "lastMessageAgeMs": 900, "rebuilds": 1}},
            "restFailuresInARow": 0, "latencyAvgMs": {"rest": 2.0, "ws": 5.0},
            "config": {"valid": True, "source": "file"}}
    beat.update(overrides)
    return beat


def test_health_without_a_trader_is_an_error(user_client, monkeypatch):
    monkeypatch.setattr(selectors, "read_heartbeat", lambda run_id="", max_age_ms=5000: None)
    body = user_client.get("/api/health").json()
    assert body["status"] == "ERROR"
    assert body["services"]["traderProcess"] == {"status": "ERROR", "lastUpdateAt": None,
                                                 "message": "trader not running"}
    assert {"exchangeRest", "publicStream", "privateStream", "latency", "config", "failoverManager",
            "recoveryEngine"} <= set(body["services"])


def test_health_from_a_healthy_heartbeat_is_worst_of_its_services(user_client, monkeypatch):
    monkeypatch.setattr(selectors, "read_heartbeat", lambda run_id="", max_age_ms=5000: _beat())
    services.safe_mode_exit(user="setup", force=True)
    body = user_client.get("/api/health").json()
    assert {name: s["status"] for name, s in body["services"].items()} == dict.fromkeys(body["services"], "OK")
    assert body["status"] == "OK" and "pid 4242" in body["services"]["traderProcess"]["message"]

    beat = _beat(restFailuresInARow=5, latencyAvgMs={"rest": 300.0, "ws": 5.0},
                 streams={"public": {"connected": False, "rebuilds": 3}, "private": {"connected": True}})
    monkeypatch.setattr(selectors, "read_heartbeat", lambda run_id="", max_age_ms=5000: beat)
    services_ = user_client.get("/api/health").json()["services"]
    assert services_["exchangeRest"]["status"] == "ERROR"
    assert services_["latency"]["status"] == "WARN"
    assert services_["publicStream"]["status"] == "ERROR" and "disconnected" in services_["publicStream"]["message"]


def test_health_reports_safe_mode_through_the_failover_manager(user_client, monkeypatch):
    monkeypatch.setattr(selectors, "read_heartbeat", lambda run_id="", max_age_ms=5000: _beat())
    _report()
    services_ = user_client.get("/api/health").json()["services"]
    assert "EXCHANGE_UNAVAILABLE" in services_["failoverManager"]["message"]
    assert services_["recoveryEngine"]["lastUpdateAt"] is None or services_["recoveryEngine"]["lastUpdateAt"].endswith(
        "Z")


# -- alerts, positions, orders ------------------------------------------------------------------


def _alert(level: str, minutes_ago: int, *, run_id: str = "") -> Alert:
    return Alert.objects.create(run_id=run_id, level=level, type="T", message=f"{level} {minutes_ago}",
                                created_at=datetime.now(UTC) - timedelta(minutes=minutes_ago))


def test_alerts_latest_first_paginated_filtered_and_only_the_products(user_client):
    for minutes, level in enumerate(["CRIT", "INFO", "WARN", "CRIT", "INFO"]):
        _alert(level, minutes)
    _alert("CRIT", 0, run_id="run-x")
    page = user_client.get("/api/alerts?limit=2").json()
    assert page["count"] == 5 and [a["message"] for a in page["results"]] == ["CRIT 0", "INFO 1"]
    assert page["next"] and page["previous"] is None
    assert set(page["results"][0]) == {"id", "level", "type", "symbol", "message", "details", "suppressedCount",
                                       "createdAt"}
    second = user_client.get("/api/alerts?limit=2&offset=2").json()
    assert [a["message"] for a in second["results"]] == ["WARN 2", "CRIT 3"]
    crit = user_client.get("/api/alerts?level=CRIT").json()
    assert [a["message"] for a in crit["results"]] == ["CRIT 0", "CRIT 3"]


def test_alerts_reject_an_unknown_level(user_client):
    response = user_client.get("/api/alerts?level=PANIC")
    assert _refused(response) == "level" and response.json()["detail"].startswith("level: ")


def test_positions_and_orders_are_the_products_open_ones_in_camel_case(user_client):
    now = datetime.now(UTC)
    Position.objects.create(symbol="BTCUSDT", side="LONG", qty=Decimal("0.01"), entry_price=Decimal("91234.5"),
                            leverage=5, pnl_unrealized=Decimal("1.23"), opened_at=now)
    Position.objects.create(symbol="ETHUSDT", side="SHORT", qty=1, entry_price=3000, status="CLOSED", opened_at=now)
    Position.objects.create(run_id="run-x", symbol="BTCUSDT", side="LONG", qty=1, entry_price=1, opened_at=now)
    Order.objects.create(order_link_id="AISCLP-1", symbol="BTCUSDT", side="BUY", qty=Decimal("0.01"),
                         price=Decimal("91000"), status="NEW", created_at=now, updated_at=now)
    Order.objects.create(order_link_id="AISCLP-2", symbol="BTCUSDT", side="SELL", qty=1, status="FILLED",
                         created_at=now, updated_at=now)
    (position,) = user_client.get("/api/positions").json()
    assert position == {"symbol": "BTCUSDT", "side": "LONG", "entryPrice": 91234.5, "qty": 0.01, "leverage": 5.0,
                        "pnlUnrealized": 1.23, "exchangePositionId": None, "origin": "LOCAL",
                        "openedAt": position["openedAt"]}
    (order,) = user_client.get("/api/orders").json()
    assert order["clientOrderId"] == "AISCLP-1" and order["exchangeOrderId"] is None
    assert order["price"] == 91000.0 and order["status"] == "NEW" and order["orderType"] == "Market"


# -- panic close ------------------------------------------------------------------------------------


def test_panic_close_without_a_trader_is_503_and_audited(staff_client, monkeypatch):
    def unavailable(command: str, **kwargs: Any) -> dict:
        raise TraderUnavailable("no trader is running for environment 'main'")

    monkeypatch.setattr(actions, "send_command", unavailable)
    response = _post(staff_client, "/api/execution/panic-close")
    assert response.status_code == 503
    assert "no trader is running" in response.json()["detail"]
    audit = OperatorAction.objects.get(action="PANIC_CLOSE")
    assert audit.username == "boss" and audit.details["ok"] is False


def test_panic_close_sends_the_command_and_returns_the_acknowledgement(staff_client, monkeypatch):
    sent: list[str] = []

    def acknowledge(command: str, **kwargs: Any) -> dict:
        sent.append(command)
        return {"ok": True, "result": {"closed": 2}, "error": None}

    monkeypatch.setattr(actions, "send_command", acknowledge)
    response = _post(staff_client, "/api/execution/panic-close")
    assert response.status_code == 200 and response.json() == {"ok": True, "result": {"closed": 2}, "error": None}
    assert sent == ["panic_close"]
    assert OperatorAction.objects.get(action="PANIC_CLOSE").details["result"] == {"closed": 2}


# -- schema and pages -------------------------------------------------------------------------------


def test_openapi_schema_generates_and_validates_without_warnings(tmp_path):
    out = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    text = out.read_text()
    for path in ["/api/failover/status", "/api/health", "/api/alerts", "/api/execution/panic-close"]:
        assert f"{path}:" in text


def test_dashboard_page_needs_a_login_and_the_login_page_logs_in(client):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    login = client.get("/accounts/login/")
    assert login.status_code == 200 and b"csrfmiddlewaretoken" in login.content
    _user("alice", staff=False)
    wrong = client.post("/accounts/login/", {"username": "alice", "password": "nope"})
    assert wrong.status_code == 200 and b"Wrong username or password" in wrong.content
    right = client.post("/accounts/login/", {"username": "alice", "password": "pw-123456-x", "next": "/"})
    assert right.status_code == 302 and right["Location"] == "/"
    page = client.get("/")
    assert page.status_code == 200 and b'id="safe-mode-badge"' in page.content
    assert b'data-staff="0"' in page.content and "csrftoken" in client.cookies


# -- integration runs -------------------------------------------------------------------------------


@pytest.fixture
def dispatched(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Hold integration chains (eager Celery would run a whole scenario inside the request)."""
    from itests import services as itests_services

    held: list[str] = []
    monkeypatch.setattr(itests_services, "_dispatch", held.append)
    return held


def test_scenarios_are_listed_for_any_logged_in_user(user_client, client):
    scenarios = user_client.get("/api/tests/integration/scenarios").json()
    assert scenarios and set(scenarios[0]) == {"id", "name", "description"}
    assert "TEST_C" in {s["id"] for s in scenarios}
    assert client.get("/api/tests/integration/scenarios").status_code in (401, 403)


def test_starting_a_run_needs_staff(user_client, dispatched):
    from itests.models import IntegrationRunRecord

    assert _post(user_client, "/api/tests/integration/run", {"scenarioId": "TEST_C"}).status_code == 403
    assert not IntegrationRunRecord.objects.exists() and not OperatorAction.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_run_is_queued_audited_and_listed_latest_first(staff_client, dispatched):
    first = _post(staff_client, "/api/tests/integration/run", {"scenarioId": "TEST_C"})
    assert first.status_code == 202
    body = first.json()
    assert body["scenarioId"] == "TEST_C" and body["status"] == "QUEUED" and body["success"] is None
    assert dispatched == [body["runId"]]
    audit = OperatorAction.objects.get(action="INTEGRATION_RUN")
    assert audit.username == "boss" and audit.run_id == body["runId"] and audit.details == {"scenarioId": "TEST_C"}

    second = _post(staff_client, "/api/tests/integration/run", {"scenarioId": "SCENARIO_1"}).json()
    # The spec's list: a JSON array, the other pages in the Link header.
    latest = staff_client.get("/api/tests/integration/runs?limit=1")
    assert [r["runId"] for r in latest.json()] == [second["runId"]]
    assert latest["Link"] == '<http://testserver/api/tests/integration/runs?limit=1&offset=1>; rel="next"'
    assert set(latest.json()[0]) == {"runId", "scenarioId", "status", "success", "startedAt", "finishedAt",
                                     "errorsCount"}
    older = staff_client.get("/api/tests/integration/runs?limit=1&offset=1")
    assert [r["runId"] for r in older.json()] == [body["runId"]]
    assert older["Link"] == '<http://testserver/api/tests/integration/runs?limit=1&offset=0>; rel="prev"'
    assert "Link" not in staff_client.get("/api/tests/integration/runs")

    report = staff_client.get(f"/api/tests/integration/runs/{body['runId']}").json()
    assert report["runId"] == body["runId"] and report["result"]["success"] is None


@pytest.mark.django_db(transaction=True)
def test_a_second_run_request_for_a_queued_scenario_answers_the_queued_run(staff_client, dispatched):
    from itests.models import IntegrationRunRecord

    first = _post(staff_client, "/api/tests/integration/run", {"scenarioId": "TEST_C"})
    second = _post(staff_client, "/api/tests/integration/run", {"scenarioId": "TEST_C"})  # a double click
    assert (first.status_code, second.status_code) == (202, 202)
    assert second.json() == first.json() and second.json()["status"] == "QUEUED"
    assert dispatched == [first.json()["runId"]]  # one chain sent
    assert IntegrationRunRecord.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_wait_returns_the_result_of_a_run_that_finishes(staff_client, monkeypatch):
    from itests import services as itests_services

    def finish_at_once(run_id: str) -> None:  # a worker that runs the scenario instantly
        itests_services.run_finish(run_id=run_id, result={
            "scenarioId": "TEST_C", "startedAt": "2025-11-18T15:00:00.000Z", "finishedAt": "2025-11-18T15:00:01.000Z",
            "success": False, "errors": [{"message": "boom"}], "metrics": {}})

    monkeypatch.setattr(itests_services, "_dispatch", finish_at_once)
    response = _post(staff_client, "/api/tests/integration/run?wait=5", {"scenarioId": "TEST_C"})
    assert response.status_code == 200 and response.json()["success"] is False
    run = staff_client.get("/api/tests/integration/runs").json()[0]
    assert run["errorsCount"] == 1 and run["status"] == "DONE"
    report = staff_client.get(f"/api/tests/integration/runs/{run['runId']}").json()
    assert report["result"]["errors"] == [{"message": "boom"}]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/tests/integration/run", {"scenarioId": "NOPE"}, "scenarioId"),
        ("/api/tests/integration/run", {"scenarioId": ""}, "scenarioId"),  # blank: refused, as the schema's enum says
        ("/api/tests/integration/run", {"scenarioId": 1}, "scenarioId"),
        ("/api/tests/integration/run", {}, "scenarioId"),
        ("/api/tests/integration/run", '{"scenarioId": ', "detail"),
        ("/api/tests/integration/run?wait=soon", {"scenarioId": "TEST_C"}, "wait"),
        ("/api/tests/integration/run?wait=99999", {"scenarioId": "TEST_C"}, "wait"),
    ],
)
def test_bad_run_requests_are_400_and_start_nothing(staff_client, dispatched, path, body, field):
    from itests.models import IntegrationRunRecord

    response = _post(staff_client, path, body)
    assert _refused(response) == field
    assert not IntegrationRunRecord.objects.exists() and not dispatched and not OperatorAction.objects.exists()


def test_unknown_run_is_404_and_bad_paging_is_400(user_client):
    response = user_client.get("/api/tests/integration/runs/run-19990101-000000")
    assert response.status_code == 404 and "run-19990101-000000" in response.json()["detail"]
    assert user_client.get("/api/tests/integration/runs?limit=0").status_code == 400
    assert user_client.get("/api/tests/integration/runs?offset=-1").status_code == 400
