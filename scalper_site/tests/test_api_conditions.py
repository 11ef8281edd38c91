"""``GET /api/failover/conditions`` and ``GET /api/failover/episodes``: what holds safe mode, and past episodes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client

from failover import services
from failover.domain.clearing import CLEARING_RULES, clearing_rule, clears_in_s
from failover.domain.clock import ManualClock, to_epoch_ms
from failover.domain.enums import FailureType
from failover.domain.types import FailureEvent
from failover.models import FailoverStateRecord, RecoveryPlanRecord
from failover.recovery import records, runner
from scalper_site.api import failover_views
from scalper_site.tests.test_api_hostile import assert_documented, refused_field
from trading.domain.config import DEFAULT_CONFIG
from trading.engine.watchdog import Watchdog

pytestmark = pytest.mark.django_db

CONDITIONS, EPISODES = "/api/failover/conditions", "/api/failover/episodes"
T0 = datetime(2025, 11, 18, 15, 20, 0, tzinfo=UTC)


def _ms(seconds: float) -> int:
    return to_epoch_ms(T0 + timedelta(seconds=seconds))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch, settings: Any, tmp_path: Path) -> ManualClock:
    """The service clock held at T0, chains held, the product's data folder a fresh one."""
    held = ManualClock(to_epoch_ms(T0))
    monkeypatch.setattr(records, "CLOCK", held)
    monkeypatch.setattr(runner, "_send_chain", lambda plan_pk, token, pks: None)
    settings.DATA_DIR = str(tmp_path)
    return held


@pytest.fixture
def heartbeat(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The trader's heartbeat as the view reads it; a test fills it (empty: no trader running)."""
    beat: dict[str, Any] = {}
    monkeypatch.setattr(failover_views, "read_heartbeat", lambda *, run_id="", max_age_ms=5000: beat or None)
    return beat


def _report(failure_type: str, run_id: str = "") -> None:
    services.failure_report(event=FailureEvent(timestamp=records.now(), type=failure_type,
                                               source="MARKET_DATA_SERVICE", message="test"), run_id=run_id)


def _config(settings: Any, **detectors: float) -> None:
    path = Path(settings.DATA_DIR) / "config" / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"failover": {"detectors": detectors}}))


def _by_type(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {condition["type"]: condition for condition in body["conditions"]}


# -- the rules as data (pure) --------------------------------------------------------------------------------


def test_every_failure_type_has_a_rule_and_the_quiet_windows_are_the_documented_three():
    assert {t.value for t in FailureType} <= set(CLEARING_RULES)
    windows = {rule.condition: rule.quiet_window_field for rule in CLEARING_RULES.values() if rule.quiet_window_field}
    assert windows == {"PACKET_LOSS": "packet_loss_window_s", "PUBLIC_WS_DEGRADED": "public_reconnects_window_s",
                       "MODULE_CRASH": "module_crash_quiet_s"}
    with pytest.raises(ValueError, match="NO_SUCH"):
        clearing_rule("NO_SUCH")


def test_the_countdown_runs_from_the_last_incident_and_stops_at_zero():
    assert clears_in_s(last_incident_ms=10_000, quiet_window_s=60, now_ms=47_000) == 23.0
    assert clears_in_s(last_incident_ms=10_000, quiet_window_s=60, now_ms=71_000) == 0.0


def test_the_watchdog_reports_each_detector_and_its_last_incident():
    wd_clock = ManualClock(_ms(10))
    watchdog = Watchdog(config=DEFAULT_CONFIG, symbols=["BTCUSDT"], clock=wd_clock, ping_interval_s=20,
                        pong_timeout_s=10)
    watchdog.on_rest(False, 0.0, "timeout")
    wd_clock.advance(2_000)
    watchdog.on_crash("features", "boom", {})
    status = watchdog.detector_status()
    assert len(status) == len(watchdog.detectors)
    assert status["packet_loss"] == {"type": "PACKET_LOSS", "active": False, "lastIncidentMs": _ms(10)}
    assert status["crash"] == {"type": "MODULE_CRASH", "active": True, "lastIncidentMs": _ms(12)}
    assert status["latency"]["lastIncidentMs"] is None


# -- GET /api/failover/conditions ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", [CONDITIONS, EPISODES])
def test_an_anonymous_client_is_refused(client, path):
    response = client.get(path)
    assert response.status_code in (401, 403) and response.json()["detail"]


def test_no_state_yet_holds_nothing(viewer, schema, heartbeat):
    body = assert_documented(schema, "GET", CONDITIONS, viewer.get(CONDITIONS))
    assert body == {"version": None, "safeMode": None, "conditions": [], "plan": None}


def test_a_quiet_window_counts_down_from_the_heartbeats_last_incident(viewer, schema, clock, heartbeat, settings):
    _config(settings, packet_loss_window_s=90)
    _report("PACKET_LOSS")
    watchdog = Watchdog(config=DEFAULT_CONFIG, symbols=["BTCUSDT"], clock=ManualClock(_ms(10)), ping_interval_s=20,
                        pong_timeout_s=10)
    watchdog.on_rest(False, 0.0, "timeout")  # the last incident, at T0 + 10 s
    heartbeat.update(at=_ms(77), detectors=watchdog.detector_status())
    clock.set(_ms(77))
    response = viewer.get(CONDITIONS)
    assert response.status_code == 200
    body = assert_documented(schema, "GET", CONDITIONS, response)
    assert body["safeMode"] is True and body["version"] >= 1
    loss = _by_type(body)["PACKET_LOSS"]
    assert loss == {"type": "PACKET_LOSS", "since": "2025-11-18T15:20:00.000Z",
                    "clearedBy": clearing_rule("PACKET_LOSS").cleared_by, "quietWindowS": 90.0,
                    "lastIncidentAt": "2025-11-18T15:20:10.000Z", "clearsInS": 23.0,
                    "message": "PACKET_LOSS clears after 90 s without incidents: 23 s left"}
    plan = RecoveryPlanRecord.objects.get()
    assert body["plan"]["planId"] == plan.plan_id and body["plan"]["status"] == "PENDING"
    assert body["plan"]["steps"] and all(step["status"] == "PENDING" for step in body["plan"]["steps"])
    held = _by_type(body)["RECOVERY_PLAN"]
    assert held["since"] == "2025-11-18T15:20:00.000Z" and plan.plan_id in held["message"]
    assert held["quietWindowS"] is None and held["clearsInS"] is None


def test_a_window_already_passed_counts_zero(viewer, clock, heartbeat):
    _report("MODULE_CRASH")
    heartbeat.update(at=_ms(30), detectors={"crash": {"type": "MODULE_CRASH", "active": True,
                                                      "lastIncidentMs": _ms(1)}})
    clock.set(_ms(30))
    crash = _by_type(viewer.get(CONDITIONS).json())["MODULE_CRASH"]
    assert crash["quietWindowS"] == 5.0 and crash["clearsInS"] == 0.0
    assert "the clear is due" in crash["message"]


def test_no_heartbeat_leaves_the_countdown_null_and_says_the_trader_is_not_reporting(viewer, schema, clock,
                                                                                       heartbeat):
    _report("PUBLIC_WS_DEGRADED")
    body = assert_documented(schema, "GET", CONDITIONS, viewer.get(CONDITIONS))
    degraded = _by_type(body)["PUBLIC_WS_DEGRADED"]
    assert degraded["quietWindowS"] == 60.0 and degraded["clearsInS"] is None and degraded["lastIncidentAt"] is None
    assert degraded["message"] == ("PUBLIC_WS_DEGRADED clears after 60 s without incidents: the trader is not "
                                   "reporting, so the time left is unknown")


def test_a_heartbeat_without_detectors_or_with_junk_in_them_counts_nothing(viewer, clock, heartbeat):
    _report("PACKET_LOSS")
    heartbeat.update(at=_ms(0), detectors={"packet_loss": {"type": "PACKET_LOSS", "lastIncidentMs": "soon"},
                                           "x": "junk"})
    loss = _by_type(viewer.get(CONDITIONS).json())["PACKET_LOSS"]
    assert loss["clearsInS"] is None and "no incident" in loss["message"]


def test_an_operator_hold_and_the_config_fallback_are_conditions(viewer, schema, clock, heartbeat):
    services.failover_state_get()
    services.safe_mode_exit(user="ops")
    clock.advance(5_000)
    services.safe_mode_enter(reason="MAINTENANCE", user="ops")
    clock.advance(5_000)
    _report("CONFIG_INVALID")
    FailoverStateRecord.objects.filter(run_id="").update(config_fallback=True)
    body = assert_documented(schema, "GET", CONDITIONS, viewer.get(CONDITIONS))
    held = _by_type(body)
    assert held["OPERATOR_HOLD"]["since"] == "2025-11-18T15:20:05.000Z"
    assert "exit-safe-mode" in held["OPERATOR_HOLD"]["clearedBy"]
    assert held["CONFIG_FALLBACK"]["since"] == held["CONFIG_INVALID"]["since"] == "2025-11-18T15:20:10.000Z"


def test_an_integration_run_is_read_by_its_id(viewer, clock, heartbeat):
    _report("LATENCY_TOO_HIGH", run_id="run-20251118-152000")
    assert viewer.get(CONDITIONS).json()["conditions"] == []
    body = viewer.get(f"{CONDITIONS}?runId=run-20251118-152000").json()
    assert "LATENCY_TOO_HIGH" in _by_type(body)


@pytest.mark.parametrize(("query", "field"), [({"runId": ""}, "runId"), ({"runId": "../etc"}, "runId")])
def test_bad_conditions_parameters_are_a_400_naming_them(viewer, schema, query, field):
    response = viewer.get(f"{CONDITIONS}?{urlencode(query)}")
    assert response.status_code == 400
    body = assert_documented(schema, "GET", CONDITIONS, response)
    assert refused_field(body) == field


# -- GET /api/failover/episodes ------------------------------------------------------------------------------


def _episodes(clock: ManualClock) -> str:
    """ON at T0 until +10 s; PACKET_LOSS at +20 s (a plan) cleared at +30 s, then a forced exit; MAINTENANCE
    +40..+50 s."""
    services.failover_state_get()
    clock.advance(10_000)
    services.safe_mode_exit(user="ops")
    clock.advance(10_000)
    _report("PACKET_LOSS")
    clock.advance(10_000)
    services.failure_cleared(failure_type="PACKET_LOSS")
    services.safe_mode_exit(user="ops", force=True)
    RecoveryPlanRecord.objects.update(status="DONE")  # the plan ended with the episode
    FailoverStateRecord.objects.update(current_plan=None)
    clock.advance(10_000)
    services.safe_mode_enter(reason="MAINTENANCE", user="ops")
    clock.advance(10_000)
    services.safe_mode_exit(user="ops")
    return RecoveryPlanRecord.objects.get().plan_id


def _get(client: Client, **query: Any) -> Any:
    return client.get(f"{EPISODES}?{urlencode(query)}" if query else EPISODES)


def test_episodes_newest_first_with_the_plans_that_ran_in_them(viewer, schema, clock):
    plan_id = _episodes(clock)
    response = _get(viewer)
    assert response.status_code == 200
    items = assert_documented(schema, "GET", EPISODES, response)["items"]
    assert [(i["start"], i["end"], i["durationMs"], i["reason"], i["halted"]) for i in items] == [
        ("2025-11-18T15:20:40.000Z", "2025-11-18T15:20:50.000Z", 10_000, "MAINTENANCE", False),
        ("2025-11-18T15:20:20.000Z", "2025-11-18T15:20:30.000Z", 10_000, "PACKET_LOSS", False),
        ("2025-11-18T15:20:00.000Z", "2025-11-18T15:20:10.000Z", 10_000, None, False)]
    assert [[p["planId"] for p in i["plans"]] for i in items] == [[], [plan_id], []]
    plan = items[1]["plans"][0]
    assert plan["failureType"] == "PACKET_LOSS" and plan["status"] == "DONE" and plan["steps"]


def test_an_episode_still_on_has_no_end_and_lasts_until_now(viewer, clock):
    services.failover_state_get()
    clock.advance(7_000)
    [item] = _get(viewer).json()["items"]
    assert item["end"] is None and item["durationMs"] == 7_000


@pytest.mark.parametrize(
    ("query", "starts"),
    [
        ({"reason": "MAINTENANCE"}, ["15:20:40"]),
        ({"reason": "PACKET_LOSS"}, ["15:20:20"]),
        ({"since": "2025-11-18T15:20:15Z"}, ["15:20:40", "15:20:20"]),
        ({"since": "2025-11-18T15:20:25Z"}, ["15:20:40", "15:20:25"]),  # on at since: starts there
        ({"until": "2025-11-18T15:20:15Z"}, ["15:20:00"]),
        ({"since": "2025-11-18T15:20:15Z", "until": "2025-11-18T16:20:35+01:00"}, ["15:20:20"]),
        ({"limit": 1}, ["15:20:40"]),
        ({"limit": 2, "reason": "NONE_SUCH"}, []),
    ],
)
def test_each_episode_filter(viewer, schema, clock, query, starts):
    _episodes(clock)
    items = assert_documented(schema, "GET", EPISODES, _get(viewer, **query))["items"]
    assert [i["start"][11:19] for i in items] == starts


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2025-11-18T15:20:00"}, "since"),
        ({"until": "2025-13-01T00:00:00Z"}, "until"),
        ({"reason": ""}, "reason"),
        ({"reason": "R" * 41}, "reason"),
        ({"runId": "../etc"}, "runId"),
    ],
)
def test_bad_episode_parameters_are_a_400_naming_them(viewer, schema, query, field):
    response = _get(viewer, **query)
    assert response.status_code == 400
    body = assert_documented(schema, "GET", EPISODES, response)
    assert refused_field(body) == field and body["detail"].startswith(f"{field}: ")
