"""Health (spec 10): overall = worst, the snapshot's shape, and the failover manager's and recovery engine's entries."""

from __future__ import annotations

from datetime import timedelta

import pytest

from failover.domain.health import (
    HealthSnapshot,
    HealthStatus,
    HealthThresholds,
    ServiceHealth,
    failover_health,
    failover_manager_health,
    recovery_engine_health,
    worst,
)
from failover.domain.plans import fail_step, finish_step, generate_plan, start_step
from failover.domain.types import FailoverState
from failover.tests.domain.kit import T0, FakeClock, event

LIMITS = HealthThresholds(safe_mode_warn_after_s=600, recovery_warn_after_s=300, recovery_error_after_s=900)


def _at(seconds: float):
    return T0 + timedelta(seconds=seconds)


def test_safe_mode_off_is_ok():
    health = failover_manager_health(FailoverState(safe_mode=False), now=T0, thresholds=LIMITS)
    assert health.to_dict() == {"status": "OK", "lastUpdateAt": "2025-11-18T15:20:00.000Z", "message": "Safe mode OFF"}


def test_young_safe_mode_is_ok_and_names_the_reason():
    state = FailoverState(safe_mode=True, reason="EXCHANGE_UNAVAILABLE", since=T0)
    health = failover_manager_health(state, now=_at(600), thresholds=LIMITS)
    assert (health.status, health.message) == (HealthStatus.OK, "Safe mode ON due to EXCHANGE_UNAVAILABLE")


def test_long_safe_mode_warns():
    state = FailoverState(safe_mode=True, reason="EXCHANGE_UNAVAILABLE", since=T0)
    health = failover_manager_health(state, now=_at(601), thresholds=LIMITS)
    assert health.status is HealthStatus.WARN
    assert health.message == "Safe mode ON due to EXCHANGE_UNAVAILABLE for 10m"


def test_planned_safe_mode_stays_ok_however_long():
    state = FailoverState(safe_mode=True, reason="MAINTENANCE", since=T0, planned=True)
    health = failover_manager_health(state, now=_at(86_400), thresholds=LIMITS)
    assert (health.status, health.message) == (HealthStatus.OK, "Safe mode ON (planned: MAINTENANCE)")


def test_no_plan_is_ok():
    assert recovery_engine_health(None, now=T0, thresholds=LIMITS).status is HealthStatus.OK


@pytest.mark.parametrize(
    ("elapsed", "status", "suffix"),
    [(0, HealthStatus.OK, ""), (300, HealthStatus.OK, ""), (301, HealthStatus.WARN, ", running for 5m"),
     (901, HealthStatus.ERROR, ", running for 15m")],
)
def test_running_plan_goes_warn_then_error_with_time(elapsed, status, suffix):
    clock = FakeClock()
    plan = generate_plan(event("NON_SYNC_STATE"), clock=clock, symbols=["BTCUSDT"])
    plan = finish_step(start_step(plan, "step-001", at=T0), "step-001", at=T0)
    plan = start_step(plan, "step-002", at=T0)
    health = recovery_engine_health(plan, now=_at(elapsed), thresholds=LIMITS)
    assert health.status is status
    assert health.message == f"Recovery plan running, step=RESYNC_ORDERS{suffix}"


def test_failed_plan_is_error_with_the_step_and_the_reason():
    plan = generate_plan(event("PRIVATE_WS_DISCONNECTED"), clock=FakeClock(), symbols=["BTCUSDT"])
    plan = fail_step(start_step(plan, "step-001", at=T0), "step-001", "reconnect refused", at=T0)
    health = recovery_engine_health(plan, now=_at(1), thresholds=LIMITS)
    assert health.status is HealthStatus.ERROR
    assert health.message == "Recovery plan FAILED, step=RESYNC_EXCHANGE_CONNECTION: reconnect refused"


def test_done_plan_is_ok():
    plan = generate_plan(event("CONFIG_INVALID"), clock=FakeClock(), symbols=[])
    for step in plan.pending_steps:
        plan = finish_step(start_step(plan, step.id, at=T0), step.id, at=T0)
    health = recovery_engine_health(plan, now=_at(10_000), thresholds=LIMITS)
    assert (health.status, health.message) == (HealthStatus.OK, "Recovery plan done")


def test_both_entries_are_keyed_like_the_health_snapshot():
    plan = generate_plan(event("EXCHANGE_UNAVAILABLE"), clock=FakeClock(), symbols=["BTCUSDT"])
    state = FailoverState(safe_mode=True, reason="EXCHANGE_UNAVAILABLE", since=T0, recovery_in_progress=True,
                          current_plan=plan)
    services = failover_health(state, now=_at(1), thresholds=LIMITS)
    assert services["failoverManager"]["message"] == "Safe mode ON due to EXCHANGE_UNAVAILABLE"
    assert services["recoveryEngine"]["message"] == "Recovery plan running, step=RESYNC_EXCHANGE_CONNECTION"
    assert services["recoveryEngine"]["lastUpdateAt"] == "2025-11-18T15:20:01.000Z"


def test_thresholds_must_be_ordered():
    with pytest.raises(ValueError):
        HealthThresholds(recovery_warn_after_s=600, recovery_error_after_s=300)


def test_overall_is_the_worst_status_and_ok_when_there_is_none():
    assert worst([]) is HealthStatus.OK
    assert worst([HealthStatus.OK, HealthStatus.ERROR, HealthStatus.WARN]) is HealthStatus.ERROR
    assert worst([HealthStatus.WARN, HealthStatus.OK]) is HealthStatus.WARN


def test_snapshot_is_worst_of_its_services_sorted_and_camel_case():
    snapshot = HealthSnapshot.of({
        "recoveryEngine": ServiceHealth(HealthStatus.ERROR, _at(60), "Recovery plan running, step=RESYNC_POSITIONS"),
        "failoverManager": ServiceHealth(HealthStatus.OK, _at(60), "Safe mode OFF"),
        "traderProcess": ServiceHealth(HealthStatus.WARN, None, "no report yet"),
    }, at=_at(60))
    assert snapshot.status is HealthStatus.ERROR
    assert snapshot.to_dict() == {
        "timestamp": "2025-11-18T15:21:00.000Z",
        "status": "ERROR",
        "services": {
            "failoverManager": {"status": "OK", "lastUpdateAt": "2025-11-18T15:21:00.000Z", "message": "Safe mode OFF"},
            "recoveryEngine": {"status": "ERROR", "lastUpdateAt": "2025-11-18T15:21:00.000Z",
                               "message": "Recovery plan running, step=RESYNC_POSITIONS"},
            "traderProcess": {"status": "WARN", "lastUpdateAt": None, "message": "no report yet"},
        },
    }


def test_a_service_entry_reads_back_from_its_dict():
    for entry in (ServiceHealth(HealthStatus.WARN, _at(0.007), "slow"), ServiceHealth(HealthStatus.ERROR, None, "")):
        assert ServiceHealth.from_dict(entry.to_dict()) == entry
