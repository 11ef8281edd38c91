"""Legal step transitions, as pure functions over steps and plans.

PENDING -> RUNNING -> DONE | FAILED, and FAILED -> PENDING only through
``retry``. Every function returns a new value and raises ``IllegalTransition``
for anything else, so a runner (a Celery chain, a test) cannot skip a state.
The plan-level functions also enforce the order: only the first pending step
may start, which is what "one step at a time, in order" means on disk.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from failover.domain._codec import format_ts
from failover.domain.types import PlanStatus, RecoveryPlan, RecoveryStep, StepStatus


class IllegalTransition(ValueError):
    """A step was asked to move to a status its current status does not lead to."""

    def __init__(self, step_id: str, current: StepStatus | str, target: StepStatus | str, why: str = "") -> None:
        self.step_id = step_id
        self.current = current
        self.target = target
        text = f"{step_id}: cannot go from {current} to {target}"
        super().__init__(f"{text} ({why})" if why else text)


def _require(step: RecoveryStep, current: StepStatus, target: StepStatus) -> None:
    if step.status is not current:
        raise IllegalTransition(step.id, step.status, target, f"only a {current.value} step can become {target.value}")


def _merged(step: RecoveryStep, details: Mapping[str, Any] | None) -> dict[str, Any]:
    return {**step.details, **(details or {})}


def started(step: RecoveryStep, *, at: datetime) -> RecoveryStep:
    """Return ``step`` RUNNING from ``at``; it must be PENDING."""
    _require(step, StepStatus.PENDING, StepStatus.RUNNING)
    return replace(step, status=StepStatus.RUNNING, started_at=at)


def finished(step: RecoveryStep, *, at: datetime, details: Mapping[str, Any] | None = None) -> RecoveryStep:
    """Return ``step`` DONE at ``at`` with ``details`` (the step's evidence) merged in; it must be RUNNING."""
    _require(step, StepStatus.RUNNING, StepStatus.DONE)
    return replace(step, status=StepStatus.DONE, finished_at=at, details=_merged(step, details))


def failed(
    step: RecoveryStep, error: str, *, at: datetime, details: Mapping[str, Any] | None = None
) -> RecoveryStep:
    """Return ``step`` FAILED at ``at`` with ``error``; it must be RUNNING."""
    _require(step, StepStatus.RUNNING, StepStatus.FAILED)
    if not isinstance(error, str) or not error.strip():
        # An operator reading a FAILED step at 3 a.m. needs to know why.
        raise ValueError("a failed step needs a non-empty error message")
    return replace(step, status=StepStatus.FAILED, finished_at=at, error_message=error, details=_merged(step, details))


def retried(step: RecoveryStep) -> RecoveryStep:
    """Return a FAILED ``step`` PENDING again; the failed attempt is kept in ``details.previousAttempts``."""
    _require(step, StepStatus.FAILED, StepStatus.PENDING)
    attempt = {
        "startedAt": format_ts(step.started_at) if step.started_at else None,
        "finishedAt": format_ts(step.finished_at) if step.finished_at else None,
        "errorMessage": step.error_message,
    }
    details = {**step.details, "previousAttempts": [*step.details.get("previousAttempts", []), attempt]}
    return replace(step, status=StepStatus.PENDING, started_at=None, finished_at=None, error_message=None,
                   details=details)


def current_step(plan: RecoveryPlan) -> RecoveryStep | None:
    """Return the step the plan is at (running, failed or next to run), None when it is finished."""
    return plan.pending_steps[0] if plan.pending_steps else None


def runnable_step(plan: RecoveryPlan) -> RecoveryStep | None:
    """Return the step to start now: the head of the plan if it is PENDING, otherwise None."""
    step = current_step(plan)
    return step if step is not None and step.status is StepStatus.PENDING else None


def _head(plan: RecoveryPlan, step_id: str, target: StepStatus) -> RecoveryStep:
    head = current_step(plan)
    if head is None or head.id != step_id:
        known = {s.id: s for s in plan.all_steps}
        if step_id not in known:
            raise KeyError(f"no step {step_id!r} in plan {plan.plan_id or ''}".rstrip())
        step = known[step_id]
        why = "steps run in order" if head is not None else "the plan is finished"
        raise IllegalTransition(step_id, step.status, target, f"{why}; the plan is at {head.id if head else 'its end'}")
    return head


def start_step(plan: RecoveryPlan, step_id: str, *, at: datetime) -> RecoveryPlan:
    """Mark the plan's first pending step RUNNING."""
    step = started(_head(plan, step_id, StepStatus.RUNNING), at=at)
    return replace(plan, pending_steps=(step, *plan.pending_steps[1:]))


def finish_step(
    plan: RecoveryPlan, step_id: str, *, at: datetime, details: Mapping[str, Any] | None = None
) -> RecoveryPlan:
    """Mark the running step DONE and move it to ``completed_steps``."""
    step = finished(_head(plan, step_id, StepStatus.DONE), at=at, details=details)
    return replace(plan, pending_steps=plan.pending_steps[1:], completed_steps=(*plan.completed_steps, step))


def fail_step(
    plan: RecoveryPlan, step_id: str, error: str, *, at: datetime, details: Mapping[str, Any] | None = None
) -> RecoveryPlan:
    """Mark the running step FAILED; it stays at the head of ``pending_steps`` and blocks the plan."""
    step = failed(_head(plan, step_id, StepStatus.FAILED), error, at=at, details=details)
    return replace(plan, pending_steps=(step, *plan.pending_steps[1:]))


def retry_step(plan: RecoveryPlan, step_id: str) -> RecoveryPlan:
    """Put the failed step back to PENDING so the plan can run on."""
    step = retried(_head(plan, step_id, StepStatus.PENDING))
    return replace(plan, pending_steps=(step, *plan.pending_steps[1:]))


def plan_status(plan: RecoveryPlan) -> PlanStatus:
    """Return RUNNING, DONE or FAILED, derived from the steps (see ``RecoveryPlan.status``)."""
    return plan.status


def plan_started_at(plan: RecoveryPlan) -> datetime | None:
    """Return when recovery under this plan began: the earliest step creation."""
    steps = plan.all_steps
    return min(s.created_at for s in steps) if steps else None


def safe_mode_exit_allowed(plan: RecoveryPlan | None, conditions_cleared: bool) -> bool:
    """Return whether safe mode may go off: every step DONE and the failure's condition gone.

    Both are needed: a finished plan while latency is still high, or a config an
    admin has not fixed yet, keeps safe mode on; so does any FAILED step.
    """
    if not conditions_cleared:
        return False
    return plan is None or plan.status is PlanStatus.DONE
