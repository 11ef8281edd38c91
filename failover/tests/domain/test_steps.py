"""Step transitions: the legal ones move, every other one is refused; plan status and the safe-mode exit."""

from __future__ import annotations

import pytest

from failover.domain.plans import generate_plan
from failover.domain.steps import (
    IllegalTransition,
    current_step,
    fail_step,
    failed,
    finish_step,
    finished,
    plan_started_at,
    plan_status,
    retried,
    retry_step,
    runnable_step,
    safe_mode_exit_allowed,
    start_step,
    started,
)
from failover.domain.types import PlanStatus, RecoveryPlan, RecoveryStep, StepStatus
from failover.tests.domain.kit import T0, FakeClock, event


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def plan(clock) -> RecoveryPlan:
    return generate_plan(event("NON_SYNC_STATE"), clock=clock, symbols=["BTCUSDT"])


def test_step_runs_pending_running_done(plan, clock):
    plan = start_step(plan, "step-001", at=clock.advance(1))
    assert plan.pending_steps[0].status is StepStatus.RUNNING and plan.pending_steps[0].started_at == clock.now()
    plan = finish_step(plan, "step-001", at=clock.advance(2), details={"inSync": True})
    done = plan.completed_steps[0]
    assert (done.id, done.status, done.finished_at) == ("step-001", StepStatus.DONE, clock.now())
    assert done.details == {"symbols": ["BTCUSDT"], "inSync": True}
    assert current_step(plan).id == "step-002"
    assert RecoveryPlan.from_dict(plan.to_dict()) == plan


def test_running_every_step_makes_the_plan_done(plan, clock):
    for step in plan.pending_steps:
        plan = finish_step(start_step(plan, step.id, at=clock.now()), step.id, at=clock.now())
    assert plan_status(plan) is PlanStatus.DONE and current_step(plan) is None
    assert [s.id for s in plan.completed_steps] == ["step-001", "step-002", "step-003"]


def test_failed_step_keeps_the_plan_failed_until_retried(plan, clock):
    plan = start_step(plan, "step-001", at=clock.now())
    plan = fail_step(plan, "step-001", "positions endpoint 503", at=clock.advance(3))
    assert plan_status(plan) is PlanStatus.FAILED
    assert plan.pending_steps[0].error_message == "positions endpoint 503"
    assert runnable_step(plan) is None
    plan = retry_step(plan, "step-001")
    step = plan.pending_steps[0]
    assert step.status is StepStatus.PENDING and step.started_at is None and step.error_message is None
    assert step.details["previousAttempts"] == [{"startedAt": "2025-11-18T15:20:00.000Z",
                                                 "finishedAt": "2025-11-18T15:20:03.000Z",
                                                 "errorMessage": "positions endpoint 503"}]
    assert plan_status(plan) is PlanStatus.RUNNING and runnable_step(plan) == step


@pytest.mark.parametrize(
    ("prepare", "attempt"),
    [
        ("pending", "finish"),
        ("pending", "fail"),
        ("pending", "retry"),
        ("running", "start"),
        ("running", "retry"),
        ("failed", "start"),
        ("failed", "finish"),
        ("failed", "fail"),
    ],
)
def test_illegal_transitions_are_refused(plan, clock, prepare, attempt):
    if prepare in ("running", "failed"):
        plan = start_step(plan, "step-001", at=clock.now())
    if prepare == "failed":
        plan = fail_step(plan, "step-001", "boom", at=clock.now())
    actions = {
        "start": lambda: start_step(plan, "step-001", at=clock.now()),
        "finish": lambda: finish_step(plan, "step-001", at=clock.now()),
        "fail": lambda: fail_step(plan, "step-001", "again", at=clock.now()),
        "retry": lambda: retry_step(plan, "step-001"),
    }
    with pytest.raises(IllegalTransition, match="step-001: cannot go from"):
        actions[attempt]()


def test_done_step_cannot_move_again(plan, clock):
    plan = finish_step(start_step(plan, "step-001", at=clock.now()), "step-001", at=clock.now())
    with pytest.raises(IllegalTransition, match="DONE"):
        start_step(plan, "step-001", at=clock.now())
    with pytest.raises(IllegalTransition):
        finished(plan.completed_steps[0], at=clock.now())


def test_steps_start_only_in_order(plan, clock):
    with pytest.raises(IllegalTransition, match="steps run in order; the plan is at step-001"):
        start_step(plan, "step-002", at=clock.now())
    with pytest.raises(KeyError):
        start_step(plan, "step-999", at=clock.now())


def test_failing_needs_an_error_message(plan, clock):
    plan = start_step(plan, "step-001", at=clock.now())
    with pytest.raises(ValueError, match="error message"):
        fail_step(plan, "step-001", "  ", at=clock.now())


def test_step_level_transitions_for_single_rows():
    step = RecoveryStep(id="step-001", type="RESYNC_ORDERS", status="PENDING", created_at=T0)
    running = started(step, at=T0)
    assert failed(running, "x", at=T0).status is StepStatus.FAILED
    assert retried(failed(running, "x", at=T0)).status is StepStatus.PENDING
    assert finished(running, at=T0, details={"n": 1}).details == {"n": 1}
    assert step.status is StepStatus.PENDING  # values are immutable


def test_plan_started_at_is_the_first_step_creation(plan, clock):
    assert plan_started_at(plan) == T0
    assert plan_started_at(RecoveryPlan(last_generated_at=T0)) is None


def test_safe_mode_exit_needs_a_done_plan_and_a_cleared_condition(plan, clock):
    assert not safe_mode_exit_allowed(plan, conditions_cleared=True)  # still running
    done = plan
    for step in plan.pending_steps:
        done = finish_step(start_step(done, step.id, at=clock.now()), step.id, at=clock.now())
    assert safe_mode_exit_allowed(done, conditions_cleared=True)
    assert not safe_mode_exit_allowed(done, conditions_cleared=False)  # e.g. latency still high
    failed_plan = fail_step(start_step(plan, "step-001", at=clock.now()), "step-001", "boom", at=clock.now())
    assert not safe_mode_exit_allowed(failed_plan, conditions_cleared=True)
    assert safe_mode_exit_allowed(None, conditions_cleared=True)
