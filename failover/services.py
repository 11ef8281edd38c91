"""The FailoverManager: every change of an environment's failover state, one transaction per call.

An environment is a ``run_id`` ("" for the product, an integration run's id
otherwise). Each call locks the environment's state row, changes it, bumps
``version``, mirrors the current plan to ``<dataDir>/system/recovery_plan.json``
and, on commit, publishes ``failover.changed`` on the bus and pushes
``failover.status`` to the dashboard (``records.state_commit``). Plans run as
Celery chains (``failover.recovery.runner``); the safe-mode exit rule is
``runner.safe_mode_settle``, described in ``failover/README.md``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import transaction

from failover.domain import health as domain_health
from failover.domain.clock import ManualClock
from failover.domain.enums import DETECTED_IN_PROCESS, RESTART_TYPES
from failover.domain.plans import merge_plan
from failover.domain.types import FailoverState, FailureEvent, FailureType
from failover.models import FailoverStateRecord, FailureEventRecord, PlanStatus
from failover.recovery import records, runner
from failover.recovery.alerts import alert_on_commit, failure_level
from failover.recovery.audit import operator_action_record
from failover.recovery.records import ManagedFailoverState
from trading.alerts import CRIT, INFO
from trading.domain.alert_types import HALT, RESUME

__all__ = [
    "ManagedFailoverState", "RecoveryNotRetryable", "SafeModeExitRefused", "environment_register",
    "environment_retire",
    "failover_gate", "failover_health", "failover_state_get", "failover_status", "failure_cleared", "failure_report",
    "operator_action_record", "recovery_retry", "safe_mode_enter", "safe_mode_exit", "trading_halt", "trading_resume",
]


class SafeModeExitRefused(Exception):
    """Safe mode cannot be left yet; ``blockers`` says why (force overrides)."""

    def __init__(self, blockers: list[str]) -> None:
        super().__init__("; ".join(blockers))
        self.blockers = blockers


class RecoveryNotRetryable(Exception):
    """There is no FAILED or WAITING_OPERATOR plan to retry."""


SAFE_MODE_REASON_MAX = 40  # the state's reason column
ANNOUNCE_HEAD_START_S = 0.003  # a failure report's pause after its announcement reached a listener


def environment_register(*, run_id: str = "", context: dict[str, Any]) -> None:
    """Record where the environment trades (exchange target, data folder, symbols, mode), for recovery workers."""
    with transaction.atomic():
        row = records.state_lock(run_id)
        row.context = dict(context)
        row.save(update_fields=["context"])


def environment_retire(*, run_id: str) -> None:
    """Forget where an ended run traded: its account leaves the dead-man guardian's watch.

    An integration run's trader is gone for good once the run is torn down, and so is
    its simulator; guarding that account would only cancel nothing and raise a CRIT
    alert for a run nobody trades in. The rest of the context stays for the run's report.
    """
    if not run_id:
        raise ValueError("the product's own environment is never retired")
    with transaction.atomic():
        row = FailoverStateRecord.objects.select_for_update().filter(run_id=run_id).first()
        if row is None:  # the run never started a trader: nothing was guarded
            return
        context = dict(row.context or {})
        context.pop("leaseAccount", None)
        context["retired"] = True
        row.context = context
        row.save(update_fields=["context"])


def failover_state_get(*, run_id: str = "") -> ManagedFailoverState:
    """Return the environment's state (a ``FailoverState``); the first read creates it with safe mode ON."""
    return records.state_domain(records.state_row(run_id))


def failover_gate(*, run_id: str = "") -> records.Gate:
    """Safe mode, reason, version and trading switch in one small read: the trader's refresh."""
    return records.gate_read(run_id)


def failover_status(*, run_id: str = "") -> dict[str, Any]:
    """Return the ``GET /api/failover/status`` body (spec 9)."""
    return failover_state_get(run_id=run_id).to_status_dict(records.now())


def _plan_id(at: datetime) -> str:
    # Time-ordered for people, with a random tail so two plans in one millisecond never collide.
    return f"plan-{at:%Y%m%d-%H%M%S}-{at.microsecond // 1000:03d}-{uuid.uuid4().hex[:6]}"


def failure_report(*, event: FailureEvent, run_id: str = "", symbols: Sequence[str] | None = None
                   ) -> ManagedFailoverState:
    """Store the failure, turn safe mode on, extend or replace the plan, and start its chain if none runs."""
    # Entries stop first: announced before anything is written, then a one-statement commit, announced again
    # with its version, before the plan is built.
    if records.gate_announce(run_id, reason=event.type.value):
        # Someone listens: the announcement gets a head start on the CPU. On the 2 cores the product is sized
        # for, the work below took one while the listener waited for the other, Redis using it: entries
        # stopped 0.5-1 ms later at the median than a bare publish, several ms at the 99th percentile.
        time.sleep(ANNOUNCE_HEAD_START_S)
    with transaction.atomic():
        records.gate_close(run_id, reason=event.type.value)
    with transaction.atomic():
        row = records.state_lock(run_id)
        at = records.now()
        failure = FailureEventRecord.objects.create(
            timestamp=event.timestamp, type=event.type.value, source=event.source, message=event.message,
            details=event.details, run_id=run_id)
        if not row.safe_mode:
            row.safe_mode, row.since = True, at
        row.reason, row.planned, row.last_failure = event.type.value, False, failure
        if event.type in RESTART_TYPES:
            # The process that held these conditions is gone; the new one reports again what still holds.
            row.active_failures = [t for t in row.active_failures if t not in DETECTED_IN_PROCESS]
        if event.type.value not in row.active_failures:
            row.active_failures = [*row.active_failures, event.type.value]
        folder = records.data_dir(row)
        previous = records.previous_process_state(folder) if event.type in RESTART_TYPES else None
        current = records.live_plan(row)
        merged = merge_plan(None if current is None else records.plan_from_record(current), event,
                            clock=ManualClock.at(at), symbols=list(symbols or (row.context or {}).get("symbols", [])),
                            previous_state=previous, plan_id=_plan_id(at))
        if current is not None and merged.plan_id == current.plan_id:
            plan = records.plan_save(merged, run_id=run_id, failure=None, record=current)
        else:
            if current is not None:
                current.status, current.chain_token, current.finished_at = PlanStatus.SUPERSEDED, "", at
                current.save(update_fields=["status", "chain_token", "finished_at"])
            plan = records.plan_save(merged, run_id=run_id, failure=failure)
        row.current_plan = plan
        row.recovery_in_progress = True
        state = records.state_commit(row)
        alert_on_commit(level=failure_level(event.type.value), type=event.type.value, run_id=run_id,
                        message=f"Safe mode ON due to {event.type.value}: {event.message}",
                        details={"failure": event.to_dict(), "planId": plan.plan_id})
        # Last, so this change is announced before anything the chain does (eager chains run at commit).
        runner.chain_enqueue(plan)
    return state


def failure_cleared(*, failure_type: str, run_id: str = "") -> ManagedFailoverState:
    """The detector says the condition ended: drop it from the active failures, then apply the exit rule."""
    kind = FailureType(failure_type).value
    with transaction.atomic():
        row = records.state_lock(run_id)
        if kind not in row.active_failures and not (kind == FailureType.CONFIG_INVALID and row.config_fallback):
            return records.state_domain(row)  # nothing to change: no version bump, no notification
        row.active_failures = [t for t in row.active_failures if t != kind]
        if kind == FailureType.CONFIG_INVALID:
            # The file is valid again and the trader runs on it: lift the fallback and the entry block.
            row.config_fallback, row.trading_enabled = False, True
        runner.safe_mode_settle(row)
        # A plan waiting out its backoff most likely failed on what just cleared: retry it now.
        plan = records.live_plan(row)
        retry = plan if plan is not None and plan.status == PlanStatus.FAILED else None
        if retry is not None:
            runner.plan_restart(row, retry)
        state = records.state_commit(row)
        if retry is not None:
            runner.chain_enqueue(retry)
        return state


def safe_mode_enter(*, run_id: str = "", reason: str, user: str, planned: bool = True) -> ManagedFailoverState:
    """Turn safe mode on by hand; only an operator's ``safe_mode_exit`` turns it off again.

    ``reason`` becomes the state's reason (a short code such as MAINTENANCE): 1 to 40 characters, else ValueError.
    """
    if not 1 <= len(reason) <= SAFE_MODE_REASON_MAX:
        raise ValueError(f"a safe-mode reason has 1 to {SAFE_MODE_REASON_MAX} characters, got {len(reason)}")
    with transaction.atomic():
        row = records.state_lock(run_id)
        if not row.safe_mode:
            row.safe_mode, row.since = True, records.now()
        row.reason, row.planned, row.operator_hold = reason, planned, True
        operator_action_record(run_id=run_id, user=user, action="SAFE_MODE_ENTER",
                               details={"reason": reason, "planned": planned})
        return records.state_commit(row)


def trading_halt(*, run_id: str = "", reason: str, user: str) -> ManagedFailoverState:
    """HALT: refuse every new entry until ``trading_resume``; stored with the state, so it outlives restarts.

    Safe mode and its recovery go on as before; a HALT is lifted only by an operator. Halting what is
    halted already changes nothing (the first HALT's reason stays) and is audited as such.
    """
    with transaction.atomic():
        row = records.state_lock(run_id)
        if row.halted:
            operator_action_record(run_id=run_id, user=user, action="HALT",
                                   details={"reason": reason, "outcome": "already halted",
                                            "halt": records.halt_dict(row)})
            return records.state_domain(row)
        row.halted, row.halt_reason, row.halted_by, row.halted_at = True, reason[:200], user, records.now()
        operator_action_record(run_id=run_id, user=user, action="HALT", details={"reason": reason, "outcome": "halted"})
        state = records.state_commit(row)
        alert_on_commit(level=CRIT, type=HALT, run_id=run_id, details={"reason": reason, "by": user},
                        message=f"Trading HALTED by {user}: {reason}. No new entries until an operator resumes.")
    return state


def trading_resume(*, run_id: str = "", user: str) -> ManagedFailoverState:
    """Lift a HALT; entries are allowed again once safe mode is off too. Resuming what runs changes nothing."""
    with transaction.atomic():
        row = records.state_lock(run_id)
        if not row.halted:
            operator_action_record(run_id=run_id, user=user, action="RESUME", details={"outcome": "not halted"})
            return records.state_domain(row)
        lifted = records.halt_dict(row)
        row.halted, row.halt_reason, row.halted_by, row.halted_at = False, "", "", None
        operator_action_record(run_id=run_id, user=user, action="RESUME", details={"outcome": "resumed",
                                                                                   "halt": lifted})
        state = records.state_commit(row)
        alert_on_commit(level=INFO, type=RESUME, run_id=run_id, details={"by": user, "halt": lifted},
                        message=f"Trading RESUMED by {user} (halted for: {(lifted or {}).get('reason')}).")
    return state


def _exit_blockers(row: FailoverStateRecord) -> list[str]:
    blockers = []
    plan = records.live_plan(row)
    if plan is not None:
        blockers.append(f"recovery plan {plan.plan_id} is {plan.status}")
    if row.active_failures:
        blockers.append(f"failures still active: {', '.join(row.active_failures)}")
    if row.config_fallback:
        blockers.append("the built-in fallback config is in force (CONFIG_INVALID)")
    return blockers


def safe_mode_exit(*, run_id: str = "", user: str, force: bool = False) -> ManagedFailoverState:
    """Turn safe mode off by hand; refused while recovery runs or failures are active, unless ``force``."""
    with transaction.atomic():
        row = records.state_lock(run_id)
        blockers = _exit_blockers(row)
        if not blockers or force:
            before = {"safeMode": row.safe_mode, "reason": row.reason}
            row.safe_mode, row.reason, row.since, row.planned, row.operator_hold = False, None, None, False, False
            operator_action_record(run_id=run_id, user=user, action="SAFE_MODE_EXIT",
                                   details={"forced": force, "overrode": blockers, "before": before})
            return records.state_commit(row)
    # The refusal is audited in its own transaction: the one above changed nothing.
    operator_action_record(run_id=run_id, user=user, action="SAFE_MODE_EXIT_REFUSED", details={"blockers": blockers})
    raise SafeModeExitRefused(blockers)


def recovery_retry(*, run_id: str = "", user: str) -> ManagedFailoverState:
    """Run a FAILED or WAITING_OPERATOR plan again from its failed step, with a fresh retry budget."""
    with transaction.atomic():
        row = records.state_lock(run_id)
        plan = records.live_plan(row)
        if plan is None or plan.status not in (PlanStatus.FAILED, PlanStatus.WAITING_OPERATOR):
            raise RecoveryNotRetryable("no failed recovery plan to retry")
        details = {"planId": plan.plan_id, "previousStatus": plan.status, "attempts": plan.attempts}
        operator_action_record(run_id=run_id, user=user, action="RECOVERY_RETRY", details=details)
        plan.attempts = 0
        runner.plan_restart(row, plan)
        state = records.state_commit(row)
        runner.chain_enqueue(plan)
    return state


def failover_health(*, run_id: str = "", now: datetime | None = None) -> dict[str, dict[str, Any]]:
    """Return the ``failoverManager`` and ``recoveryEngine`` health entries (spec 10) with the config's thresholds."""
    state: FailoverState = failover_state_get(run_id=run_id)
    row = FailoverStateRecord.objects.get(run_id=run_id)
    thresholds = records.health_thresholds(records.environment_config(records.data_dir(row)))
    return domain_health.failover_health(state, now=now or records.now(), thresholds=thresholds)
