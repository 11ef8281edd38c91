"""Run recovery plans as Celery chains: claim a step, carry it out, settle it, continue or stop.

One chain per plan. The plan row's ``chain_token`` names the chain that owns
it; ``chain_enqueue`` starts one only when no token is set, so a failure that
extends a running plan never starts a second chain: the running chain's last
task (``recovery_plan_continue``) finds the appended PENDING steps and chains
them under the same token. A chain whose token no longer matches (its plan was
superseded, failed, or swept) stops at its next task. Each task advances the
plan by its head step, claimed with a conditional UPDATE, so a duplicate
delivery (``acks_late``) or a stale chain never runs a step twice.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Max, Q

from failover.domain import steps as transitions
from failover.domain.enums import RESTART_TYPES
from failover.domain.steps import safe_mode_exit_allowed
from failover.domain.types import ProcessState
from failover.models import FailoverStateRecord, PlanStatus, RecoveryPlanRecord, RecoveryStepRecord, StepStatus
from failover.recovery import records
from failover.recovery.alerts import alert_on_commit
from failover.recovery.handlers import handler_for
from failover.recovery.kit import StepContext, StepFailed
from scalper_site.db_threads import tidy_connection
from scalper_site.metrics import instruments
from trading.alerts import CRIT
from trading.engine import crashpoints

logger = logging.getLogger(__name__)

# A failed plan is retried for as long as it fails, never left for an operator: nobody may be awake, and
# the cause (an exchange outage, a lost worker) usually passes. Backoff 5 s, 10 s, then every 20 s; past
# MAX_AUTO_RETRIES the alert says the recovery is stalled. A failure clearing retries a FAILED plan at once.
MAX_AUTO_RETRIES = 3
RETRY_BASE_S = 5.0
RETRY_MAX_S = 20.0
# A running step's heartbeat is kept by a pulse thread every PULSE_EVERY_S, whatever its handler waits on,
# so a step quiet for STALE_AFTER_S has lost its worker (killed, host gone, frozen) and the sweeper hands
# it to another. A frozen worker that wakes later finds its claim gone and its result discarded.
STALE_AFTER_S = 15.0
BEAT_EVERY_S = 1.0
PULSE_EVERY_S = 2.0
# Failure types no detector clears: their plan completing is their end. (MODULE_CRASH is held by the
# trader's crash detector until its modules run clean: a plan can finish while a module still throws.)
CLEARED_BY_PLAN = frozenset({"PROCESS_RESTART", "UNEXPECTED_SHUTDOWN", "DATA_CORRUPTION", "NON_SYNC_STATE"})

# A worker started with SCALPER_CRASH_AT=recovery_step:<STEP_TYPE> and SCALPER_ALLOW_FAULT_HOOKS=1 kills itself
# in the middle of such a step (chaos tests of a lost worker); without both, nothing is armed.
crashpoints.arm_from_environment(os.environ, points=crashpoints.WORKER_POINTS)


# -- safe mode rule ------------------------------------------------------------------


def safe_mode_settle(row: FailoverStateRecord) -> None:
    """Apply the exit rule: plan DONE, no active failure, no config fallback, no operator hold -> safe mode OFF."""
    plan = RecoveryPlanRecord.objects.filter(pk=row.current_plan_id).first() if row.current_plan_id else None
    row.recovery_in_progress = plan is not None and plan.status not in (PlanStatus.DONE, PlanStatus.SUPERSEDED)
    cleared = not row.active_failures and not row.config_fallback and not row.operator_hold
    domain_plan = None if plan is None else records.plan_from_record(plan)
    if row.safe_mode and safe_mode_exit_allowed(domain_plan, cleared):
        row.safe_mode, row.reason, row.since, row.planned = False, None, None, False


# -- enqueueing ------------------------------------------------------------------------


def _send_chain(plan_pk: int, token: str, step_pks: list[int]) -> None:
    from failover.tasks import recovery_chain

    recovery_chain(plan_pk=plan_pk, chain_token=token, step_pks=step_pks).apply_async()


def chain_enqueue(plan: RecoveryPlanRecord, *, replace: bool = False) -> bool:
    """Give the plan a chain unless one owns it (``replace``: the owner is presumed dead); call under the lock."""
    if plan.chain_token and not replace:
        return False
    pks = list(RecoveryStepRecord.objects.filter(plan=plan, status=StepStatus.PENDING).order_by("position")
               .values_list("pk", flat=True))
    if not pks:
        return False
    token = uuid.uuid4().hex
    plan.chain_token, plan.chain_started_at = token, records.now()
    plan.save(update_fields=["chain_token", "chain_started_at"])
    plan_pk = plan.pk
    transaction.on_commit(lambda: _send_chain(plan_pk, token, pks))
    return True


# -- one step ----------------------------------------------------------------------------


def _context(row: FailoverStateRecord, plan: RecoveryPlanRecord, rows: list[RecoveryStepRecord],
             step: RecoveryStepRecord) -> StepContext:
    folder = records.data_dir(row)
    previous = None
    for other in rows:
        found = (other.details or {}).get("previous") if other.type == "READ_PROCESS_STATE" else None
        if other.status == StepStatus.DONE and found:
            try:
                previous = ProcessState.from_dict({**found, "openPositionsSnapshot": found["positions"],
                                                   "openOrdersSnapshot": found["orders"]})
            except (KeyError, ValueError):
                previous = None
    covered = {plan.failure_type, *(plan.merged_failure_types or ())}
    return StepContext(
        run_id=row.run_id, step_type=step.type, details=dict(step.details or {}), context=dict(row.context or {}),
        folder=folder, config=records.environment_config(folder), previous_state=previous,
        restart_cutoff=plan.generated_at if covered & RESTART_TYPES else None,
    )


def _claim_name(worker: str) -> str:
    return f"{worker or socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class _Pulse:
    """Keep a running step's heartbeat fresh from a thread of its own while the handler works.

    A handler may wait on the exchange for a while between its own beats; the pulse says the worker is
    alive meanwhile, so only a worker that is gone (or frozen) lets its step go stale. It writes through
    its own database connection, closed when the step ends; a failed write is only logged (the next one
    may succeed, and a step that went stale is simply handed to another worker).
    """

    def __init__(self, step_pk: int, claim: str) -> None:
        self.step_pk, self.claim = step_pk, claim
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"step-pulse-{step_pk}", daemon=True)

    def __enter__(self) -> _Pulse:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=PULSE_EVERY_S * 2)

    def _run(self) -> None:
        try:
            while not self._stop.wait(PULSE_EVERY_S):
                try:
                    RecoveryStepRecord.objects.filter(pk=self.step_pk, claimed_by=self.claim,
                                                      status=StepStatus.RUNNING).update(heartbeat_at=records.now())
                except Exception as exc:  # noqa: BLE001 (a missed pulse is retried; it must not end the step)
                    logger.warning("heartbeat of step %s not written: %s", self.step_pk, exc)
                    tidy_connection()  # a connection the database dropped: the next pulse takes a fresh one
        finally:
            connection.close()


def recovery_step_run(*, step_pk: int, chain_token: str, worker: str = "") -> str:
    """Advance the plan of ``step_pk`` by its head step; return what happened (done, stale, busy, DONE, FAILED)."""
    claim = _claim_name(worker)
    with transaction.atomic():
        step = RecoveryStepRecord.objects.filter(pk=step_pk).select_related("plan").first()
        if step is None:
            return "missing"
        if step.status == StepStatus.DONE:
            return "done"  # a redelivered task: nothing left to do
        row = records.state_lock(step.plan.run_id)
        plan = RecoveryPlanRecord.objects.get(pk=step.plan_id)
        if plan.chain_token != chain_token or plan.status not in (PlanStatus.PENDING, PlanStatus.RUNNING):
            return "stale"
        rows = records.plan_rows(plan)
        head = records.plan_head(rows)
        if head is None or head.status != StepStatus.PENDING:
            return "busy"
        # The head, not necessarily step_pk: a merge may have put another waiting step first.
        at = records.now()
        if not RecoveryStepRecord.objects.filter(pk=head.pk, status=StepStatus.PENDING).update(
                status=StepStatus.RUNNING, claimed_by=claim, heartbeat_at=at, started_at=at):
            return "busy"
        if plan.status != PlanStatus.RUNNING:
            plan.status, plan.started_at = PlanStatus.RUNNING, plan.started_at or at
            plan.save(update_fields=["status", "started_at"])
        safe_mode_settle(row)
        records.state_commit(row)
        ctx = _context(row, plan, rows, head)
    last_beat = [time.monotonic()]
    crash_point = crashpoints.recovery_step(head.type)

    def beat() -> None:
        crashpoints.reached(crash_point)  # handlers beat after an exchange read
        if time.monotonic() - last_beat[0] >= BEAT_EVERY_S:
            last_beat[0] = time.monotonic()
            RecoveryStepRecord.objects.filter(pk=head.pk, claimed_by=claim).update(heartbeat_at=records.now())

    ctx.beat = beat
    with _Pulse(head.pk, claim):
        try:
            evidence, error = handler_for(head.type)(ctx), None
        except StepFailed as exc:
            evidence, error = exc.details, str(exc) or type(exc).__name__
        except Exception as exc:  # SoftTimeLimitExceeded included: the step fails, the plan decides what next
            logger.exception("recovery step %s crashed", head.type)
            evidence, error = {}, f"{type(exc).__name__}: {exc}"
    crashpoints.reached(crash_point)  # the step's work is done, its result not stored
    return step_settle(step_pk=head.pk, claim=claim, evidence=evidence, error=error)


def step_settle(*, step_pk: int, claim: str | None, evidence: dict[str, Any], error: str | None) -> str:
    """Record a step's outcome (unless it was swept or superseded meanwhile) and move the plan on."""
    with transaction.atomic():
        plan_run = RecoveryStepRecord.objects.filter(pk=step_pk).values_list("plan__run_id", flat=True).first()
        if plan_run is None:
            return "missing"
        row = records.state_lock(plan_run)
        step = RecoveryStepRecord.objects.get(pk=step_pk)
        if step.status != StepStatus.RUNNING or (claim is not None and step.claimed_by != claim):
            return "discarded"
        at = records.now()
        domain = records.step_from_row(step)
        if error is None:
            result = transitions.finished(domain, at=at, details=evidence)
        else:
            result = transitions.failed(domain, error, at=at, details=evidence)
        RecoveryStepRecord.objects.filter(pk=step_pk).update(
            status=result.status.value, finished_at=result.finished_at, details=result.details,
            error_message=result.error_message, heartbeat_at=at)
        if claim is not None:  # finished in its worker (a swept step's time includes its dead worker's)
            instruments.recovery_step_duration_observe(run_id=plan_run, step=step.type, started_at=step.started_at,
                                                       finished_at=at)
        plan = RecoveryPlanRecord.objects.get(pk=step.plan_id)
        if plan.status == PlanStatus.SUPERSEDED:
            records.state_commit(row)
            return result.status.value
        if error is not None:
            _plan_failed(row, plan, step, error, at)
        elif records.plan_head(records.plan_rows(plan)) is None:
            plan_done(row, plan, at)
        records.state_commit(row)
        return result.status.value


def _plan_failed(row: FailoverStateRecord, plan: RecoveryPlanRecord, step: RecoveryStepRecord, error: str,
                 at: datetime) -> None:
    plan.attempts += 1
    plan.chain_token = ""  # this chain is over; a retry starts a new one
    plan.finished_at = at
    delay = min(RETRY_BASE_S * 2 ** (plan.attempts - 1), RETRY_MAX_S)
    plan.status, plan.next_retry_at = PlanStatus.FAILED, at + timedelta(seconds=delay)
    plan.save()
    if not row.safe_mode:  # an operator forced safe mode off; a failed recovery fails closed again
        row.safe_mode, row.since, row.reason = True, at, plan.failure_type
    row.recovery_in_progress = True
    stalled = plan.attempts > MAX_AUTO_RETRIES
    alert_on_commit(level=CRIT, type="RECOVERY_STALLED" if stalled else "RECOVERY_STEP_FAILED", run_id=row.run_id,
                    message=(f"Recovery step {step.type} failed {plan.attempts} times, retrying every "
                             f"{RETRY_MAX_S:.0f} s: {error}" if stalled else
                             f"Recovery step {step.type} failed: {error}"),
                    details={"planId": plan.plan_id, "stepId": step.step_id, "attempts": plan.attempts,
                             "next": plan.status, "retryInS": delay})
    plan_pk = plan.pk
    transaction.on_commit(lambda: _schedule_retry(plan_pk, delay))


def _schedule_retry(plan_pk: int, delay: float) -> None:
    from failover.tasks import retry_recovery_plan

    try:
        retry_recovery_plan.apply_async(kwargs={"plan_pk": plan_pk}, countdown=delay)
    except Exception as exc:  # the sweeper retries due plans too
        logger.warning("retry of plan %s not scheduled: %s", plan_pk, exc)


def plan_done(row: FailoverStateRecord, plan: RecoveryPlanRecord, at: datetime) -> None:
    """Close a finished plan: DONE, lastRecoveryAt, clear the failures it ends, then the exit rule."""
    plan.status, plan.finished_at, plan.chain_token, plan.next_retry_at = PlanStatus.DONE, at, "", None
    plan.save()
    covered = {plan.failure_type, *(plan.merged_failure_types or ())}
    row.active_failures = [t for t in row.active_failures if not (t in CLEARED_BY_PLAN and t in covered)]
    row.last_recovery_at = at
    safe_mode_settle(row)


def plan_restart(row: FailoverStateRecord, plan: RecoveryPlanRecord) -> None:
    """Put a FAILED plan's failed step back to PENDING; the caller commits, then ``chain_enqueue``s it."""
    rows = records.plan_rows(plan)
    head = records.plan_head(rows)
    if head is not None and head.status == StepStatus.FAILED:
        again = transitions.retried(records.step_from_row(head))
        RecoveryStepRecord.objects.filter(pk=head.pk, status=StepStatus.FAILED).update(
            status=StepStatus.PENDING, started_at=None, finished_at=None, error_message=None, details=again.details,
            claimed_by="", heartbeat_at=None)
    plan.status, plan.next_retry_at, plan.finished_at, plan.chain_token = PlanStatus.RUNNING, None, None, ""
    plan.save()
    safe_mode_settle(row)


# -- chain tasks -------------------------------------------------------------------------


def recovery_plan_continue(*, plan_pk: int, chain_token: str) -> str:
    """The chain's last task: chain the PENDING steps appended meanwhile, or release the plan."""
    with transaction.atomic():
        run_id = RecoveryPlanRecord.objects.filter(pk=plan_pk).values_list("run_id", flat=True).first()
        if run_id is None:
            return "missing"
        row = records.state_lock(run_id)
        plan = RecoveryPlanRecord.objects.get(pk=plan_pk)
        if plan.chain_token != chain_token:
            return "stale"
        head = records.plan_head(records.plan_rows(plan))
        if head is not None and head.status == StepStatus.PENDING:
            plan_pk_, pks = plan.pk, list(RecoveryStepRecord.objects.filter(plan=plan, status=StepStatus.PENDING)
                                          .order_by("position").values_list("pk", flat=True))
            transaction.on_commit(lambda: _send_chain(plan_pk_, chain_token, pks))
            return "continued"
        plan.chain_token = ""
        plan.save(update_fields=["chain_token"])
        if head is None and plan.status != PlanStatus.DONE:
            plan_done(row, plan, records.now())
            records.state_commit(row)
        return "released"


def recovery_plan_retry_due(*, plan_pk: int, now: datetime | None = None) -> str:
    """Retry a FAILED plan whose backoff has passed (from its countdown task or the sweeper)."""
    at = now or records.now()
    with transaction.atomic():
        run_id = RecoveryPlanRecord.objects.filter(pk=plan_pk).values_list("run_id", flat=True).first()
        if run_id is None:
            return "missing"
        row = records.state_lock(run_id)
        plan = RecoveryPlanRecord.objects.get(pk=plan_pk)
        if plan.status != PlanStatus.FAILED:
            return "not-failed"
        # One second of slack: the countdown runs on another host's clock.
        if plan.next_retry_at is not None and at < plan.next_retry_at - timedelta(seconds=1):
            return "not-due"
        plan_restart(row, plan)
        records.state_commit(row)
        chain_enqueue(plan)  # after the status push is queued, so an eager chain's news comes after it
        return "retried"


def sweep_stuck_steps(*, now: datetime | None = None, stale_after_s: float = STALE_AFTER_S) -> dict[str, list[str]]:
    """Reset RUNNING steps whose worker went quiet, retry due FAILED plans, restart orphaned chains."""
    at = now or records.now()
    cutoff = at - timedelta(seconds=stale_after_s)
    report: dict[str, list[str]] = {"reset": [], "retried": [], "restarted": []}
    stuck = RecoveryStepRecord.objects.filter(status=StepStatus.RUNNING).filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff))
    for pk, run_id in stuck.values_list("pk", "plan__run_id"):
        with transaction.atomic():
            row = records.state_lock(run_id)
            step = RecoveryStepRecord.objects.select_related("plan").get(pk=pk)
            last_sign = step.heartbeat_at or step.started_at
            if step.status != StepStatus.RUNNING or (last_sign is not None and last_sign >= cutoff):
                continue
            note = {"sweptAt": at.isoformat(), "sweptFrom": step.claimed_by}
            if step.plan.status == PlanStatus.SUPERSEDED:
                step_settle(step_pk=pk, claim=None, evidence=note, error="worker lost; plan superseded")
                continue
            RecoveryStepRecord.objects.filter(pk=pk, status=StepStatus.RUNNING, claimed_by=step.claimed_by).update(
                status=StepStatus.PENDING, started_at=None, claimed_by="", heartbeat_at=None,
                details={**(step.details or {}), "swept": [*(step.details or {}).get("swept", []), note]})
            records.state_commit(row)
            chain_enqueue(step.plan, replace=True)  # the old chain is presumed dead; its token is retired
            report["reset"].append(f"{step.plan.plan_id}/{step.step_id}")
    for plan_pk, plan_id in RecoveryPlanRecord.objects.filter(status=PlanStatus.FAILED, next_retry_at__lte=at) \
            .values_list("pk", "plan_id"):
        if recovery_plan_retry_due(plan_pk=plan_pk, now=at) == "retried":
            report["retried"].append(plan_id)
    report["restarted"] = _restart_orphans(at, cutoff)
    return report


def _restart_orphans(at: datetime, cutoff: datetime) -> list[str]:
    """Give a new chain to live plans with a PENDING head and no progress since ``cutoff`` (a lost message)."""
    restarted = []
    candidates = RecoveryPlanRecord.objects.filter(status__in=(PlanStatus.PENDING, PlanStatus.RUNNING)).annotate(
        last_step=Max("steps__finished_at")).filter(Q(chain_started_at__lt=cutoff) | Q(chain_started_at__isnull=True))
    for plan in candidates:
        if plan.last_step is not None and plan.last_step >= cutoff:
            continue
        with transaction.atomic():
            row = records.state_lock(plan.run_id)
            fresh = RecoveryPlanRecord.objects.get(pk=plan.pk)
            head = records.plan_head(records.plan_rows(fresh))
            if fresh.status not in (PlanStatus.PENDING, PlanStatus.RUNNING) or head is None \
                    or head.status != StepStatus.PENDING:
                continue
            records.state_commit(row)
            chain_enqueue(fresh, replace=True)
            restarted.append(fresh.plan_id)
    return restarted
