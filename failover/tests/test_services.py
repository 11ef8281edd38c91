"""The FailoverManager service against SQLite, eager Celery and the real simulator."""

from __future__ import annotations

import json
from datetime import timedelta
from types import SimpleNamespace

import pytest

from failover import services
from failover.domain.plans import PLAN_TABLE
from failover.domain.types import RecoveryPlan
from failover.models import FailoverStateRecord, OperatorAction, PlanStatus, RecoveryPlanRecord
from failover.recovery import records, runner
from failover.tests.conftest import Env
from trading.models import Alert

pytestmark = pytest.mark.django_db(transaction=True)

DETECTED = {"EXCHANGE_UNAVAILABLE", "PRIVATE_WS_DISCONNECTED", "PUBLIC_WS_DEGRADED", "LATENCY_TOO_HIGH",
            "PACKET_LOSS", "MODULE_CRASH", "CONFIG_INVALID"}


def test_first_read_creates_the_state_fail_closed():
    state = services.failover_state_get(run_id="fresh")
    assert state.safe_mode is True and state.since is not None
    assert state.current_plan is None and state.version == 0
    body = services.failover_status(run_id="fresh")
    assert set(body) == {"timestamp", "safeMode", "reason", "since", "lastFailure", "recoveryInProgress",
                         "currentPlan", "halted", "halt"}
    assert (body["halted"], body["halt"]) == (False, None)


@pytest.mark.parametrize("failure_type", [t.value for t in PLAN_TABLE])
def test_each_failure_type_plan_runs_step_by_step_to_done(env: Env, failure_type: str):
    before = services.failover_state_get(run_id=env.run_id).version
    env.report(failure_type)
    plan = env.plan()
    assert plan.status == PlanStatus.DONE and plan.finished_at is not None and plan.chain_token == ""
    steps = env.steps()
    expected = [s.value for s in PLAN_TABLE[failure_type].steps]
    assert sorted(s.type for s in steps) == sorted(expected)
    for step in steps:
        assert step.status == "DONE", (step.type, step.error_message)
        assert step.started_at <= step.finished_at and step.error_message is None
        assert "symbols" in step.details  # the scope the plan gave it
        assert len(step.details) > 1, f"{step.type} left no evidence"
    state = services.failover_state_get(run_id=env.run_id)
    assert state.version > before + len(steps)  # every claim and every finish is a transition
    assert state.recovery_in_progress is False
    if failure_type in DETECTED and failure_type != "CONFIG_INVALID":  # no config file: RESYNC_CONFIG clears it
        assert state.safe_mode is True and state.active_failures == (failure_type,)
    else:
        assert state.safe_mode is False and state.reason is None and state.since is None


def test_safe_mode_is_left_only_when_the_plan_is_done_and_the_cause_cleared(env: Env, captured_chains):
    env.report("LATENCY_TOO_HIGH")
    assert services.failure_cleared(failure_type="LATENCY_TOO_HIGH", run_id=env.run_id).safe_mode is True
    (run,) = captured_chains
    run()  # the plan finishes after the condition cleared
    state = services.failover_state_get(run_id=env.run_id)
    assert env.plan().status == PlanStatus.DONE
    assert state.safe_mode is False and state.reason is None
    env.report("LATENCY_TOO_HIGH")
    captured_chains[1]()
    assert services.failover_state_get(run_id=env.run_id).safe_mode is True  # done, but latency still high
    state = services.failure_cleared(failure_type="LATENCY_TOO_HIGH", run_id=env.run_id)
    assert state.safe_mode is False and state.since is None and state.active_failures == ()


def test_failing_step_keeps_safe_mode_on_marks_it_failed_and_alerts_crit(env: Env, ctl):
    ctl.inject("http_error", path="*position*", status=503)
    env.report("NON_SYNC_STATE")
    step = env.step("RESYNC_POSITIONS")
    assert step.status == "FAILED" and "503" in step.error_message and step.finished_at is not None
    plan = env.plan()
    assert plan.status == PlanStatus.FAILED and plan.attempts == 1 and plan.next_retry_at is not None
    assert plan.chain_token == ""
    state = services.failover_state_get(run_id=env.run_id)
    assert state.safe_mode is True and state.recovery_in_progress is True
    crit = Alert.objects.filter(run_id=env.run_id, level="CRIT", type="RECOVERY_STEP_FAILED").get()
    assert "RESYNC_POSITIONS" in crit.message and crit.details["planId"] == plan.plan_id
    health = services.failover_health(run_id=env.run_id)
    assert health["recoveryEngine"]["status"] == "ERROR"
    # The backoff holds the retry until it is due; once the fault is gone the retry succeeds.
    assert runner.recovery_plan_retry_due(plan_pk=plan.pk) == "not-due"
    ctl.clear()
    report = runner.sweep_stuck_steps(now=plan.next_retry_at + timedelta(seconds=1))
    assert report["retried"] == [plan.plan_id]
    step.refresh_from_db()
    assert step.status == "DONE" and step.details["previousAttempts"][0]["errorMessage"]
    assert env.plan().status == PlanStatus.DONE
    assert services.failover_state_get(run_id=env.run_id).safe_mode is False


def test_a_failing_plan_is_retried_for_ever_with_capped_backoff_and_an_operator_retry_is_audited(env: Env, ctl):
    ctl.inject("http_error", path="*order*", status=502)
    env.report("NON_SYNC_STATE")
    plan = env.plan()
    delays = []
    for _ in range(runner.MAX_AUTO_RETRIES + 2):
        plan.refresh_from_db()
        assert plan.status == PlanStatus.FAILED  # never parked for an operator
        delays.append(round((plan.next_retry_at - plan.finished_at).total_seconds()))
        runner.sweep_stuck_steps(now=plan.next_retry_at + timedelta(seconds=1))
    plan.refresh_from_db()
    assert delays == [5, 10, 20, 20, 20] and plan.attempts == runner.MAX_AUTO_RETRIES + 3
    assert plan.status == PlanStatus.FAILED and plan.next_retry_at is not None
    alerts = list(Alert.objects.filter(run_id=env.run_id).values_list("type", flat=True))
    assert "RECOVERY_STALLED" in alerts and "RECOVERY_STEP_FAILED" in alerts
    ctl.clear()
    state = services.recovery_retry(run_id=env.run_id, user="alice")
    assert env.plan().status == PlanStatus.DONE and env.plan().pk == plan.pk
    action = OperatorAction.objects.get(run_id=env.run_id, action="RECOVERY_RETRY")
    assert action.username == "alice" and action.details["previousStatus"] == "FAILED"
    assert state.version < services.failover_state_get(run_id=env.run_id).version
    with pytest.raises(services.RecoveryNotRetryable):
        services.recovery_retry(run_id=env.run_id, user="alice")


def test_a_failure_clearing_retries_a_failed_plan_at_once_instead_of_waiting_out_its_backoff(env: Env, ctl):
    ctl.inject("http_error", status=503)
    env.report("EXCHANGE_UNAVAILABLE")
    plan = env.plan()
    assert plan.status == PlanStatus.FAILED and plan.next_retry_at is not None
    ctl.clear()
    services.failure_cleared(failure_type="EXCHANGE_UNAVAILABLE", run_id=env.run_id)
    assert env.plan().status == PlanStatus.DONE and env.plan().pk == plan.pk
    assert services.failover_state_get(run_id=env.run_id).safe_mode is False



def test_a_failure_during_recovery_extends_the_plan_instead_of_starting_a_second(env: Env, captured_chains):
    env.report("LATENCY_TOO_HIGH")  # RESYNC_POSITIONS, RESYNC_ORDERS
    first = env.plan()
    env.report("MODULE_CRASH")  # adds CLEAR_LOCAL_STATE; the waiting resyncs widen
    assert env.plan().pk == first.pk and RecoveryPlanRecord.objects.filter(run_id=env.run_id).count() == 1
    assert len(captured_chains) == 1  # one chain owns the plan
    assert [s.type for s in env.steps()] == ["RESYNC_POSITIONS", "RESYNC_ORDERS", "CLEAR_LOCAL_STATE"]
    captured_chains.pop()()
    assert len(captured_chains) == 1  # the chain's last task found the appended step and chained it
    captured_chains.pop()()
    plan = env.plan()
    assert plan.status == PlanStatus.DONE and plan.merged_failure_types == ["MODULE_CRASH"]
    assert all(s.status == "DONE" for s in env.steps())
    state = services.failover_state_get(run_id=env.run_id)
    # Both are held by the trader's detectors: a finished plan does not mean the module stopped throwing.
    assert state.active_failures == ("LATENCY_TOO_HIGH", "MODULE_CRASH") and state.safe_mode
    services.failure_cleared(failure_type="LATENCY_TOO_HIGH", run_id=env.run_id)
    assert services.failover_state_get(run_id=env.run_id).safe_mode
    state = services.failure_cleared(failure_type="MODULE_CRASH", run_id=env.run_id)
    assert state.safe_mode is False and state.active_failures == ()


def test_a_restart_forgets_the_conditions_the_dead_process_held(env: Env):
    env.report("EXCHANGE_UNAVAILABLE")
    env.report("MODULE_CRASH")
    assert services.failover_state_get(run_id=env.run_id).active_failures == ("EXCHANGE_UNAVAILABLE", "MODULE_CRASH")
    # The trader holding them was killed: nobody would ever clear them; the new process measures afresh
    # and reports again whatever still holds.
    env.report("UNEXPECTED_SHUTDOWN")
    state = services.failover_state_get(run_id=env.run_id)
    assert env.plan().status == PlanStatus.DONE
    assert state.active_failures == () and state.safe_mode is False


def test_a_restart_supersedes_the_running_plan(env: Env, captured_chains):
    env.report("PRIVATE_WS_DISCONNECTED")
    old = env.plan()
    env.report("UNEXPECTED_SHUTDOWN")
    old.refresh_from_db()
    new = env.plan()
    assert old.status == PlanStatus.SUPERSEDED and old.chain_token == "" and new.supersedes == old.plan_id
    assert len(captured_chains) == 2
    captured_chains[0]()  # the superseded plan's chain stops at once
    assert all(s.status == "PENDING" for s in old.steps.all())
    captured_chains[1]()
    assert env.plan().status == PlanStatus.DONE


def test_recovery_plan_json_equals_the_database_plan_in_spec_shape(env: Env, captured_chains):
    env.report("NON_SYNC_STATE")
    path = env.folder / "system" / "recovery_plan.json"
    pending = json.loads(path.read_text())
    assert [s["status"] for s in pending["pendingSteps"]] == ["PENDING"] * 3 and pending["completedSteps"] == []
    captured_chains.pop()()
    on_disk = json.loads(path.read_text())
    state = services.failover_state_get(run_id=env.run_id)
    assert on_disk == state.current_plan.to_dict()
    assert RecoveryPlan.from_dict(on_disk).to_dict() == on_disk
    assert set(on_disk) >= {"lastGeneratedAt", "pendingSteps", "completedSteps"}
    assert [s["id"] for s in on_disk["completedSteps"]] == ["step-001", "step-002", "step-003"]
    assert set(on_disk["completedSteps"][0]) == {"id", "type", "status", "createdAt", "startedAt", "finishedAt",
                                                "details", "errorMessage"}


def test_health_follows_the_thresholds_of_the_environment_config(env: Env, captured_chains):
    config = env.folder / "config" / "config.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"failover": {"safe_mode_warn_after_s": 60, "recovery_warn_after_s": 120,
                                               "recovery_error_after_s": 600}}))
    env.report("EXCHANGE_UNAVAILABLE")
    since = services.failover_state_get(run_id=env.run_id).since
    health = services.failover_health(run_id=env.run_id, now=since + timedelta(seconds=30))
    assert health["failoverManager"]["status"] == "OK" and health["recoveryEngine"]["status"] == "OK"
    health = services.failover_health(run_id=env.run_id, now=since + timedelta(seconds=121))
    assert health["failoverManager"]["status"] == "WARN" and health["recoveryEngine"]["status"] == "WARN"
    assert "EXCHANGE_UNAVAILABLE" in health["failoverManager"]["message"]
    health = services.failover_health(run_id=env.run_id, now=since + timedelta(seconds=601))
    assert health["recoveryEngine"]["status"] == "ERROR"
    services.safe_mode_enter(run_id=env.run_id, reason="maintenance", user="bob", planned=True)
    health = services.failover_health(run_id=env.run_id, now=since + timedelta(hours=5))
    assert health["failoverManager"]["status"] == "OK"


def test_operator_exit_is_refused_while_recovering_then_forced_and_audited(env: Env, captured_chains):
    env.report("PACKET_LOSS")
    with pytest.raises(services.SafeModeExitRefused) as refused:
        services.safe_mode_exit(run_id=env.run_id, user="carol")
    assert any("PACKET_LOSS" in b for b in refused.value.blockers)
    assert OperatorAction.objects.filter(run_id=env.run_id, action="SAFE_MODE_EXIT_REFUSED").count() == 1
    assert services.failover_state_get(run_id=env.run_id).safe_mode is True
    state = services.safe_mode_exit(run_id=env.run_id, user="carol", force=True)
    assert state.safe_mode is False
    action = OperatorAction.objects.get(run_id=env.run_id, action="SAFE_MODE_EXIT")
    assert action.username == "carol" and action.details["forced"] is True and action.details["overrode"]


def test_operator_safe_mode_survives_a_finished_plan(env: Env):
    services.safe_mode_enter(run_id=env.run_id, reason="exchange maintenance", user="dave")
    env.report("PROCESS_RESTART")
    assert env.plan().status == PlanStatus.DONE
    assert services.failover_state_get(run_id=env.run_id).safe_mode is True  # only an operator ends it
    assert services.safe_mode_exit(run_id=env.run_id, user="dave").safe_mode is False


def test_config_invalid_keeps_safe_mode_on_until_the_trader_reports_it_valid(env: Env):
    config = env.folder / "config" / "config.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"risk": {"max_positions": "three"}}))
    env.report("CONFIG_INVALID")
    assert [s.type for s in env.steps()] == ["DISABLE_TRADING", "RESYNC_CONFIG"]
    assert env.step("RESYNC_CONFIG").details["valid"] is False and env.step("RESYNC_CONFIG").details["errors"]
    row = FailoverStateRecord.objects.get(run_id=env.run_id)
    assert row.config_fallback is True and row.trading_enabled is False
    state = services.failover_state_get(run_id=env.run_id)
    assert env.plan().status == PlanStatus.DONE and state.safe_mode is True and state.trading_enabled is False
    assert Alert.objects.filter(run_id=env.run_id, level="CRIT", type="CONFIG_INVALID").exists()
    state = services.failure_cleared(failure_type="CONFIG_INVALID", run_id=env.run_id)
    assert state.safe_mode is False and state.trading_enabled is True and state.config_fallback is False


def test_warn_alert_for_an_outside_failure(env: Env, captured_chains):
    env.report("PUBLIC_WS_DEGRADED", symbols=["ETHUSDT"])
    alert = Alert.objects.get(run_id=env.run_id, type="PUBLIC_WS_DEGRADED")
    assert alert.level == "WARN"
    assert env.step("CLEAR_LOCAL_STATE").details["symbols"] == ["ETHUSDT"]


def test_a_report_is_announced_then_closes_the_gate_in_one_statement_before_the_plan(env: Env, monkeypatch):
    env.report("LATENCY_TOO_HIGH")
    services.failure_cleared(failure_type="LATENCY_TOO_HIGH", run_id=env.run_id)
    off = services.failover_state_get(run_id=env.run_id)
    assert off.safe_mode is False
    heard: list[tuple[dict, int]] = []
    monkeypatch.setattr(records, "_announce", lambda run_id, changed: heard.append(
        (changed, RecoveryPlanRecord.objects.filter(run_id=run_id).count())))
    env.report("PACKET_LOSS")
    (pending, plans_then), (first, plans_after_gate) = heard[:2]
    # First the report is announced before anything is written, then the gate at the next version; both
    # before the new plan existed.
    assert pending == {"safeMode": True, "reason": "PACKET_LOSS", "pending": True} and plans_then == 1
    assert first == {"version": off.version + 1, "safeMode": True, "reason": "PACKET_LOSS"} and plans_after_gate == 1
    assert services.failover_state_get(run_id=env.run_id).version > first["version"]
    assert records.gate_close(env.run_id, reason="MODULE_CRASH") is None  # already on: nothing to announce
    assert records.gate_close("no-such-environment", reason="MODULE_CRASH") is None


@pytest.mark.parametrize("listeners", [0, 2])
def test_a_report_gives_its_announcement_a_head_start_only_when_someone_listens(
        env: Env, monkeypatch: pytest.MonkeyPatch, listeners: int):
    order: list[str] = []
    announce = records.gate_announce
    close = records.gate_close

    def announced(run_id: str, *, reason: str) -> int:
        announce(run_id, reason=reason)
        order.append("announce")
        return listeners  # how many listeners Redis handed it to

    def closed(run_id: str, *, reason: str) -> int | None:
        order.append("close")
        return close(run_id, reason=reason)

    monkeypatch.setattr(records, "gate_announce", announced)
    monkeypatch.setattr(records, "gate_close", closed)
    monkeypatch.setattr(services, "time", SimpleNamespace(sleep=lambda s: order.append(f"pause {s}")))
    state = env.report("LATENCY_TOO_HIGH")
    assert state.safe_mode is True
    pause = [f"pause {services.ANNOUNCE_HEAD_START_S}"] if listeners else []
    assert order[:3] == ["announce", *pause, "close"]
