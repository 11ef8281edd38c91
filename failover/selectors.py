"""Reads of an environment's failover record: its state and its history, its stored failures, its recovery plans.

Read-only and side-effect free: unlike ``services.failover_state_get`` nothing
here creates a state row, so a reader can tell "no state yet" from "safe mode
ON". An environment is a ``run_id`` ("" for the product, an integration run's
id otherwise). Values come back as domain objects or plain dicts keyed by the
model's field names, never rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from failover.domain.clock import iso_ms, to_epoch_ms
from failover.domain.state_history import StateChange, blocked_intervals
from failover.domain.types import FailureEvent
from failover.models import FailoverStateChange, FailoverStateRecord, FailureEventRecord, RecoveryPlanRecord
from failover.recovery.records import ManagedFailoverState, failure_from_record, state_domain

__all__ = [
    "ManagedFailoverState", "failover_state_find", "failover_state_history", "failure_events_list",
    "recovery_plan_get", "recovery_plans_list", "safe_mode_intervals",
]


def failover_state_find(*, run_id: str = "") -> ManagedFailoverState | None:
    """Return the environment's state, or None when nothing has happened in it yet."""
    row = FailoverStateRecord.objects.filter(run_id=run_id).first()
    return None if row is None else state_domain(row)


def _change_dict(change: FailoverStateChange) -> dict[str, Any]:
    return {
        "version": change.version,
        "at": iso_ms(to_epoch_ms(change.at)),
        "safeMode": change.safe_mode,
        "reason": change.reason,
        "planned": change.planned,
        "operatorHold": change.operator_hold,
        "tradingEnabled": change.trading_enabled,
        "recoveryInProgress": change.recovery_in_progress,
        "activeFailures": list(change.active_failures or []),
        "currentPlanId": change.current_plan_id,
    }


def failover_state_history(*, run_id: str = "", since: datetime | None = None, until: datetime | None = None,
                           limit: int = 1000) -> list[dict[str, Any]]:
    """Return the environment's state changes committed in ``[since, until]``, oldest first, at most ``limit``.

    Each is ``{version, at, safeMode, reason, planned, operatorHold, tradingEnabled, recoveryInProgress,
    activeFailures, currentPlanId}``; ``at`` is the commit's time (``2025-11-18T15:20:30.000Z``).
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    changes = FailoverStateChange.objects.filter(run_id=run_id)
    if since is not None:
        changes = changes.filter(at__gte=since)
    if until is not None:
        changes = changes.filter(at__lte=until)
    return [_change_dict(change) for change in changes.order_by("version")[:limit]]


def safe_mode_intervals(*, run_id: str = "", since: datetime | None = None,
                        until: datetime | None = None) -> list[dict[str, Any]]:
    """Return the intervals in ``[since, until]`` when entries were blocked: safe mode ON or trading disabled.

    Each is ``{start, end, reason, fromVersion, toVersion, halted}``, oldest first; ``end`` is None while it
    is still on. The rules are ``failover.domain.state_history.blocked_intervals``'s: one already on at
    ``since`` starts at ``since``, from the version in force then.
    """
    fields = ("version", "at", "safe_mode", "trading_enabled", "reason")  # StateChange's fields, in its order
    changes = FailoverStateChange.objects.filter(run_id=run_id)
    if until is not None:
        changes = changes.filter(at__lte=until)
    in_force: list[tuple[Any, ...]] = []
    if since is not None:
        in_force = list(changes.filter(at__lt=since).order_by("-version").values_list(*fields)[:1])
        changes = changes.filter(at__gte=since)
    rows = in_force + list(changes.order_by("version").values_list(*fields))
    intervals = blocked_intervals([StateChange(*row) for row in rows], since=since, until=until)
    return [interval.to_dict() for interval in intervals]


def failure_events_list(*, run_id: str = "", failure_type: str | None = None) -> list[FailureEvent]:
    """Return the environment's stored failures (optionally of one type), in the order they were reported."""
    rows = FailureEventRecord.objects.filter(run_id=run_id)
    if failure_type is not None:
        rows = rows.filter(type=failure_type)
    return [failure_from_record(row) for row in rows.order_by("timestamp", "id")]


def _plan_dict(plan: RecoveryPlanRecord) -> dict[str, Any]:
    # The row's status, not the one derived from the steps: only the row knows SUPERSEDED or WAITING_OPERATOR.
    return {
        "plan_id": plan.plan_id,
        "failure_type": plan.failure_type,
        "merged_failure_types": list(plan.merged_failure_types or []),
        "status": plan.status,
        "attempts": plan.attempts,
        "generated_at": plan.generated_at,
        "steps": [{"type": step.type, "status": step.status} for step in plan.steps.order_by("position")],
    }


def recovery_plan_get(*, plan_id: str) -> dict[str, Any] | None:
    """Return one plan: plan_id, failure_type, merged_failure_types, status, attempts, generated_at, steps."""
    plan = RecoveryPlanRecord.objects.filter(plan_id=plan_id).first()
    return None if plan is None else _plan_dict(plan)


def recovery_plans_list(*, run_id: str = "", failure_type: str | None = None,
                        generated_since: datetime | None = None) -> list[dict[str, Any]]:
    """Return the environment's plans, newest first, as ``recovery_plan_get`` shapes them.

    ``failure_type`` keeps the plans that cover it: generated for it or extended by it.
    """
    plans = RecoveryPlanRecord.objects.filter(run_id=run_id)
    if generated_since is not None:
        plans = plans.filter(generated_at__gte=generated_since)
    return [_plan_dict(plan) for plan in plans.order_by("-generated_at", "-id")
            if failure_type is None or _covers(plan, failure_type)]


def _covers(plan: RecoveryPlanRecord, failure_type: str) -> bool:
    return plan.failure_type == failure_type or failure_type in (plan.merged_failure_types or [])
