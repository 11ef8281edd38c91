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

from django.db.models import Max, Q

from failover.domain.clearing import (
    CLEARING_RULES,
    CONFIG_FALLBACK,
    OPERATOR_HOLD,
    RECOVERY_PLAN,
    clearing_rule,
    clears_in_s,
    countdown_message,
)
from failover.domain.clock import iso_ms, to_epoch_ms
from failover.domain.enums import FailureType, PlanStatus
from failover.domain.state_history import BlockedInterval, StateChange, blocked_intervals
from failover.domain.types import FailureEvent
from failover.models import FailoverStateChange, FailoverStateRecord, FailureEventRecord, RecoveryPlanRecord
from failover.recovery.records import (
    ManagedFailoverState,
    data_dir,
    environment_config,
    failure_from_record,
    state_domain,
)
from failover.recovery.records import now as records_now

__all__ = [
    "ManagedFailoverState", "failover_state_find", "failover_state_history", "failure_events_list",
    "recovery_plan_get", "recovery_plans_list", "safe_mode_conditions", "safe_mode_episodes", "safe_mode_intervals",
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
        "halted": change.halted,
        "haltReason": change.halt_reason or None,
    }


def failover_state_history(*, run_id: str = "", since: datetime | None = None, until: datetime | None = None,
                           limit: int = 1000) -> list[dict[str, Any]]:
    """Return the environment's state changes committed in ``[since, until]``, oldest first, at most ``limit``.

    Each is ``{version, at, safeMode, reason, planned, operatorHold, tradingEnabled, recoveryInProgress,
    activeFailures, currentPlanId, halted, haltReason}``; ``at`` is the commit's time (``2025-11-18T15:20:30.000Z``);
    ``halted`` says an operator's HALT was in force (``haltReason`` its reason, else None).
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
    """Return the intervals in ``[since, until]`` when entries were blocked: safe mode ON, trading disabled or HALT.

    Each is ``{start, end, reason, fromVersion, toVersion, halted, operatorHalt}``, oldest first; ``end`` is
    None while it is still on. The rules are ``failover.domain.state_history.blocked_intervals``'s: one
    already on at ``since`` starts at ``since``, from the version in force then.
    """
    return [interval.to_dict() for interval in _blocked(run_id, since, until)]


def _blocked(run_id: str, since: datetime | None, until: datetime | None) -> list[BlockedInterval]:
    fields = ("version", "at", "safe_mode", "trading_enabled", "reason", "halted")  # StateChange's, in its order
    changes = FailoverStateChange.objects.filter(run_id=run_id)
    if until is not None:
        changes = changes.filter(at__lte=until)
    in_force: list[tuple[Any, ...]] = []
    if since is not None:
        in_force = list(changes.filter(at__lt=since).order_by("-version").values_list(*fields)[:1])
        changes = changes.filter(at__gte=since)
    rows = in_force + list(changes.order_by("version").values_list(*fields))
    return blocked_intervals([StateChange(*row) for row in rows], since=since, until=until)


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


# -- what holds safe mode now, and the past episodes --------------------------

MAX_HEARTBEAT_DETECTORS = 32  # the heartbeat carries eight; more is not a trader's heartbeat


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else iso_ms(to_epoch_ms(moment))


def _plan_brief(plan: RecoveryPlanRecord) -> dict[str, Any]:
    steps = sorted(plan.steps.all(), key=lambda step: step.position)  # prefetched where many plans are read
    return {"planId": plan.plan_id, "failureType": plan.failure_type, "status": plan.status,
            "attempts": plan.attempts, "nextRetryAt": _iso(plan.next_retry_at),
            "steps": [{"type": step.type, "status": step.status} for step in steps]}


def _latest_failures(run_id: str, types: list[str]) -> dict[str, datetime]:
    found = (FailureEventRecord.objects.filter(run_id=run_id, type__in=types)
             .values("type").annotate(latest=Max("timestamp")).values_list("type", "latest"))
    return dict(found)


def _hold_since(row: FailoverStateRecord) -> datetime | None:
    """Return when the operator's current hold began: the first version of its unbroken run in the history."""
    changes = FailoverStateChange.objects.filter(run_id=row.run_id)
    released = changes.filter(operator_hold=False).order_by("-version").values_list("version", flat=True).first()
    held = changes.filter(operator_hold=True, version__gt=-1 if released is None else released)
    return held.order_by("version").values_list("at", flat=True).first() or row.since


def _holding(row: FailoverStateRecord, plan: RecoveryPlanRecord | None) -> list[tuple[str, datetime | None, str]]:
    """Return each condition that holds safe mode now: (condition, since, a note for its message)."""
    active = [str(kind) for kind in row.active_failures or []]
    latest = _latest_failures(row.run_id, [*active, FailureType.CONFIG_INVALID.value])
    held: list[tuple[str, datetime | None, str]] = [(kind, latest.get(kind), "") for kind in active]
    if row.config_fallback:
        held.append((CONFIG_FALLBACK, latest.get(FailureType.CONFIG_INVALID.value), ""))
    if row.operator_hold:
        held.append((OPERATOR_HOLD, _hold_since(row), ""))
    if plan is not None and plan.status != PlanStatus.DONE:
        retry = f", next retry at {_iso(plan.next_retry_at)}" if plan.next_retry_at is not None else ""
        held.append((RECOVERY_PLAN, plan.generated_at, f" (plan {plan.plan_id} is {plan.status}{retry})"))
    return held


def _quiet_windows(row: FailoverStateRecord) -> dict[str, float]:
    """Each quiet-window condition's window in seconds, from the environment's config file (else the default)."""
    detectors = environment_config(data_dir(row)).failover.detectors
    return {rule.condition: float(getattr(detectors, rule.quiet_window_field))
            for rule in CLEARING_RULES.values() if rule.quiet_window_field is not None}


def _heartbeat_incidents(heartbeat: dict[str, Any] | None) -> dict[str, int] | None:
    """Each failure type's last detector incident (epoch ms) in the heartbeat; None when it reports no detectors."""
    detectors = (heartbeat or {}).get("detectors")
    if not isinstance(detectors, dict):
        return None
    latest: dict[str, int] = {}
    for entry in list(detectors.values())[:MAX_HEARTBEAT_DETECTORS]:
        kind, at = (entry.get("type"), entry.get("lastIncidentMs")) if isinstance(entry, dict) else (None, None)
        if isinstance(kind, str) and isinstance(at, int) and not isinstance(at, bool):
            latest[kind] = max(at, latest.get(kind, at))
    return latest


def _condition(held: tuple[str, datetime | None, str], windows: dict[str, float],
               incidents: dict[str, int] | None, now_ms: int) -> dict[str, Any]:
    kind, since, note = held
    rule, window = clearing_rule(kind), windows.get(kind)
    body: dict[str, Any] = {"type": kind, "since": _iso(since), "clearedBy": rule.cleared_by, "quietWindowS": window,
                            "lastIncidentAt": None, "clearsInS": None,
                            "message": f"{kind} clears on {rule.cleared_by}{note}"}
    if window is None:
        return body
    last = None if incidents is None else incidents.get(kind)
    left = None if last is None else clears_in_s(last_incident_ms=last, quiet_window_s=window, now_ms=now_ms)
    body.update(lastIncidentAt=None if last is None else iso_ms(last), clearsInS=left,
                message=countdown_message(kind, quiet_window_s=window, left_s=left, reporting=incidents is not None))
    return body


def safe_mode_conditions(*, run_id: str = "", heartbeat: dict[str, Any] | None,
                         now: datetime | None = None) -> dict[str, Any]:
    """Return what holds safe mode now: ``{version, safeMode, conditions, plan}``.

    A condition is an active failure type, the config fallback, an operator's hold or the current plan while
    it is not DONE: ``{type, since, clearedBy, quietWindowS, lastIncidentAt, clearsInS, message}``. A type
    that clears after a quiet window counts down from the last incident its detectors report in the trader's
    ``heartbeat`` (None: no trader reporting). With no state row yet, version and safeMode are None.
    """
    row = FailoverStateRecord.objects.filter(run_id=run_id).select_related("current_plan").first()
    if row is None:
        return {"version": None, "safeMode": None, "conditions": [], "plan": None}
    plan = row.current_plan
    held = _holding(row, plan)
    windows = _quiet_windows(row) if any(clearing_rule(h[0]).quiet_window_field for h in held) else {}
    incidents, now_ms = _heartbeat_incidents(heartbeat), to_epoch_ms(now or records_now())
    return {"version": row.version, "safeMode": row.safe_mode,
            "conditions": [_condition(h, windows, incidents, now_ms) for h in held],
            "plan": None if plan is None else _plan_brief(plan)}


def _plans_by_version(run_id: str, chosen: list[BlockedInterval]) -> dict[int, int]:
    low, high = min(i.from_version for i in chosen), max(i.to_version for i in chosen)
    found = (FailoverStateChange.objects.filter(run_id=run_id, version__gte=low, version__lte=high,
                                                current_plan_id__isnull=False)
             .values_list("version", "current_plan_id"))
    return dict(found)


def _episode(interval: BlockedInterval, plans: list[RecoveryPlanRecord], plan_ids: set[int],
             now: datetime) -> dict[str, Any]:
    end = interval.end or now
    ran = [plan for plan in plans
           if plan.pk in plan_ids or interval.start <= plan.generated_at <= end]
    return {"start": _iso(interval.start), "end": _iso(interval.end),
            "durationMs": max(to_epoch_ms(end) - to_epoch_ms(interval.start), 0),
            "reason": interval.reason, "halted": interval.halted, "operatorHalt": interval.operator_halt,
            "plans": [_plan_brief(plan) for plan in ran]}


def safe_mode_episodes(*, run_id: str = "", since: datetime | None = None, until: datetime | None = None,
                       reason: str | None = None, limit: int = 100,
                       now: datetime | None = None) -> list[dict[str, Any]]:
    """Return the safe-mode episodes in ``[since, until]``, newest first, at most ``limit``, with their plans.

    An episode is a ``safe_mode_intervals`` interval (``reason`` keeps those whose first reason it is):
    ``{start, end, durationMs, reason, halted, operatorHalt, plans}``; ``durationMs`` runs to now while it is
    still on. An operator's HALT is an episode too (reason ``HALT`` when nothing else blocked entries).
    Its plans are those current at one of its versions or generated within it, oldest first.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    found = [i for i in _blocked(run_id, since, until) if reason is None or i.reason == reason]
    chosen = found[::-1][:limit]
    if not chosen:
        return []
    now = now or records_now()
    by_version = _plans_by_version(run_id, chosen)
    first = min(i.start for i in chosen)
    last = max((i.end or now) for i in chosen)
    plans = list(RecoveryPlanRecord.objects.filter(run_id=run_id)
                 .filter(Q(pk__in=set(by_version.values())) | Q(generated_at__gte=first, generated_at__lte=last))
                 .prefetch_related("steps").order_by("generated_at", "id"))
    return [_episode(i, plans, {by_version[v] for v in by_version if i.from_version <= v <= i.to_version}, now)
            for i in chosen]
