"""The shared core of the FailoverManager: the state row, plan rows as domain plans, and committed changes.

Every change of an environment's failover state goes through ``state_lock``
(the state row, ``select_for_update``: the one lock of an environment, so the
web process, Celery workers and the trader's reporter never interleave) and
ends with ``state_commit``, which bumps ``version``, keeps a copy of the row in
its history (``history.py``), mirrors the current plan to
``<dataDir>/system/recovery_plan.json`` and, once the transaction commits,
publishes ``failover.changed`` on the bus and pushes ``failover.status`` to
the dashboard.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F

from failover.domain._codec import format_ts
from failover.domain.clock import Clock, SystemClock
from failover.domain.files import atomic_write_json_if_changed
from failover.domain.health import HealthThresholds
from failover.domain.process_state import BadProcessState, read_process_state
from failover.domain.types import FailoverState, FailureEvent, ProcessState, RecoveryPlan, RecoveryStep
from failover.models import (
    FailoverStateRecord,
    FailureEventRecord,
    PlanStatus,
    RecoveryPlanRecord,
    RecoveryStepRecord,
    StepStatus,
)
from failover.recovery import history
from scalper_site import bus
from scalper_site.realtime import flush_pushes, push_failover_message
from trading.domain.config import DEFAULT_CONFIG, ConfigError, TradingConfig, read_config_file

logger = logging.getLogger(__name__)

CLOCK: Clock = SystemClock()  # the FailoverManager's clock: every "now" of the service reads it
POSITION_OFFSET = 1_000_000  # moves step rows out of the way while a merge renumbers them
LIVE_PLAN_STATUSES = (PlanStatus.PENDING, PlanStatus.RUNNING, PlanStatus.FAILED, PlanStatus.WAITING_OPERATOR)


def now() -> datetime:
    """Return the service clock's time (aware UTC)."""
    return CLOCK.now()


@dataclass(frozen=True, slots=True)
class ManagedFailoverState(FailoverState):
    """A ``FailoverState`` plus what the service keeps beside the spec's fields.

    ``to_dict()`` is still exactly the spec's shape; the trader reads
    ``version`` (to drop stale reads) and ``trading_enabled`` (DISABLE_TRADING).
    """

    version: int = 0
    trading_enabled: bool = True
    active_failures: tuple[str, ...] = ()
    config_fallback: bool = False
    run_id: str = ""
    halted: bool = False
    halt: dict[str, Any] | None = None  # {"reason", "by", "at"} while halted

    def to_status_dict(self, now: datetime) -> dict[str, Any]:
        """The spec 9 body plus ``halted`` and ``halt`` (additive: a HALT outlives safe mode)."""
        return {**FailoverState.to_status_dict(self, now), "halted": self.halted, "halt": self.halt}


# -- environment context ----------------------------------------------------


def data_dir(row: FailoverStateRecord) -> Path:
    """Return the environment's data folder: the one its trader registered, else the product's default."""
    registered = (row.context or {}).get("dataDir")
    if registered:
        return Path(registered)
    return Path(settings.DATA_DIR) if not row.run_id else Path(settings.DATA_DIR) / "runs" / row.run_id


def config_path(folder: Path) -> Path:
    return folder / "config" / "config.json"


def environment_config(folder: Path) -> TradingConfig:
    """Return the environment's config file if valid, else the built-in default (what the trader falls back to)."""
    try:
        found = read_config_file(config_path(folder))
    except ConfigError:  # whatever is wrong with the file: the trader is on the default too
        return DEFAULT_CONFIG
    return DEFAULT_CONFIG if found is None else found


def health_thresholds(config: TradingConfig) -> HealthThresholds:
    f = config.failover
    return HealthThresholds(
        safe_mode_warn_after_s=f.safe_mode_warn_after_s,
        recovery_warn_after_s=f.recovery_warn_after_s,
        recovery_error_after_s=f.recovery_error_after_s,
    )


def previous_process_state(folder: Path) -> ProcessState | None:
    """Read what the previous process believed, without side effects (the READ_PROCESS_STATE step moves bad files)."""
    system = folder / "system"
    for name in ("process_state.previous.json", "process_state.json"):
        try:
            state = read_process_state(system / name)
        except BadProcessState:  # any bad file: what the previous process believed is unknown
            return None
        if state is not None:
            return state
    return None


# -- rows <-> domain ----------------------------------------------------------


def failure_from_record(record: FailureEventRecord) -> FailureEvent:
    return FailureEvent(timestamp=record.timestamp, type=record.type, source=record.source,
                        message=record.message, details=record.details or {})


def step_from_row(row: RecoveryStepRecord) -> RecoveryStep:
    return RecoveryStep(id=row.step_id, type=row.type, status=row.status, created_at=row.created_at,
                        started_at=row.started_at, finished_at=row.finished_at, details=row.details or {},
                        error_message=row.error_message)


def plan_rows(plan: RecoveryPlanRecord) -> list[RecoveryStepRecord]:
    return list(RecoveryStepRecord.objects.filter(plan=plan).order_by("position"))


def plan_from_record(plan: RecoveryPlanRecord, rows: list[RecoveryStepRecord] | None = None) -> RecoveryPlan:
    """Return the plan as the domain sees it: DONE steps completed, the rest pending, in run order."""
    rows = plan_rows(plan) if rows is None else rows
    return RecoveryPlan(
        last_generated_at=plan.last_generated_at or plan.generated_at,
        pending_steps=tuple(step_from_row(r) for r in rows if r.status != StepStatus.DONE),
        completed_steps=tuple(step_from_row(r) for r in rows if r.status == StepStatus.DONE),
        plan_id=plan.plan_id,
        failure_type=plan.failure_type,
        merged_failure_types=tuple(plan.merged_failure_types or ()),
        symbols=tuple(plan.symbols or ()),
        supersedes=plan.supersedes or None,
    )


def plan_save(plan: RecoveryPlan, *, run_id: str, failure: FailureEventRecord | None,
              record: RecoveryPlanRecord | None = None) -> RecoveryPlanRecord:
    """Persist a domain plan: create the plan row or update it, upsert its steps in the plan's order."""
    if record is None:
        if plan.failure_type is None:  # generate_plan always names it, and the row requires it
            raise ValueError(f"plan {plan.plan_id} names no failure type")
        record = RecoveryPlanRecord.objects.create(
            plan_id=plan.plan_id, run_id=run_id, failure=failure, failure_type=plan.failure_type.value,
            status=PlanStatus.PENDING, generated_at=plan.last_generated_at, last_generated_at=plan.last_generated_at,
            symbols=list(plan.symbols), merged_failure_types=[t.value for t in plan.merged_failure_types],
            supersedes=plan.supersedes or "",
        )
    else:
        record.last_generated_at = plan.last_generated_at
        record.symbols = list(plan.symbols)
        record.merged_failure_types = [t.value for t in plan.merged_failure_types]
        record.save(update_fields=["last_generated_at", "symbols", "merged_failure_types"])
    existing = {row.step_id: row for row in RecoveryStepRecord.objects.filter(plan=record)}
    if existing:
        # A merge may put waiting steps back in canonical order; free every position first
        # so the unique (plan, position) constraint holds row by row.
        RecoveryStepRecord.objects.filter(plan=record).update(position=F("position") + POSITION_OFFSET)
    for position, step in enumerate(plan.all_steps):
        row = existing.get(step.id)
        if row is None:
            RecoveryStepRecord.objects.create(
                plan=record, step_id=step.id, position=position, type=step.type.value, status=step.status.value,
                created_at=step.created_at, started_at=step.started_at, finished_at=step.finished_at,
                details=step.details, error_message=step.error_message,
            )
        elif row.status == StepStatus.PENDING:
            RecoveryStepRecord.objects.filter(pk=row.pk).update(position=position, details=step.details)
        else:  # a running or finished step's evidence belongs to whoever runs it
            RecoveryStepRecord.objects.filter(pk=row.pk).update(position=position)
    return record


def plan_head(rows: list[RecoveryStepRecord]) -> RecoveryStepRecord | None:
    """Return the step the plan is at: the first one not DONE."""
    return next((r for r in rows if r.status != StepStatus.DONE), None)


# -- the state row ----------------------------------------------------------------


def state_row(run_id: str) -> FailoverStateRecord:
    """Return the environment's state row; create it fail-closed (safe mode ON, version 0, in the history too)."""
    row = FailoverStateRecord.objects.filter(run_id=run_id).first()
    if row is not None:
        return row
    at = now()
    with transaction.atomic():  # the row and its version 0 in the history, or neither
        row, created = FailoverStateRecord.objects.get_or_create(run_id=run_id, defaults={
            "safe_mode": True, "since": at, "updated_at": at})
        if created:
            history.state_change_record(run_id, first=True)
    return row


def state_lock(run_id: str) -> FailoverStateRecord:
    """Return the environment's state row locked for this transaction; create it fail-closed (safe mode ON)."""
    locked = FailoverStateRecord.objects.select_for_update().filter(run_id=run_id).first()
    if locked is not None:
        return locked  # the row exists (always, after the first read): one query, not two
    state_row(run_id)
    return FailoverStateRecord.objects.select_for_update().get(run_id=run_id)


def state_domain(row: FailoverStateRecord) -> ManagedFailoverState:
    plan = RecoveryPlanRecord.objects.filter(pk=row.current_plan_id).first() if row.current_plan_id else None
    failure = FailureEventRecord.objects.filter(pk=row.last_failure_id).first() if row.last_failure_id else None
    return ManagedFailoverState(
        safe_mode=row.safe_mode,
        reason=row.reason,
        since=row.since if row.safe_mode else None,
        last_failure=None if failure is None else failure_from_record(failure),
        recovery_in_progress=row.recovery_in_progress,
        current_plan=None if plan is None else plan_from_record(plan),
        planned=row.planned,
        version=row.version,
        trading_enabled=row.trading_enabled,
        active_failures=tuple(row.active_failures or ()),
        config_fallback=row.config_fallback,
        run_id=row.run_id,
        halted=row.halted,
        halt=halt_dict(row),
    )


def halt_dict(row: FailoverStateRecord) -> dict[str, Any] | None:
    """The HALT in force as the API shows it, None when trading is not halted."""
    if not row.halted:
        return None
    at = None if row.halted_at is None else format_ts(row.halted_at)
    return {"reason": row.halt_reason, "by": row.halted_by, "at": at}


def plan_mirror(row: FailoverStateRecord, plan: RecoveryPlan | None) -> None:
    """Write the current plan to ``<dataDir>/system/recovery_plan.json``; a write error is logged, not raised.

    Written while the state row is locked, so two processes' writes land in
    the order of their transactions (an on-commit write could land out of order).
    """
    if plan is None:
        return
    try:
        # Most transitions leave the plan as it is (a safe-mode exit, a gate change): no rewrite, no fsync then.
        atomic_write_json_if_changed(data_dir(row) / "system" / "recovery_plan.json", plan.to_dict())
    except OSError as exc:
        logger.error("cannot mirror the recovery plan of %r: %s", row.run_id, exc)


def _announce(run_id: str, changed: dict[str, Any]) -> int:
    """Publish a change of the failover state; return how many listeners Redis handed it to (0 on failure)."""
    try:
        return bus.publish_counted("failover.changed", changed, run_id=run_id) or 0
    except Exception as exc:  # no Redis configured (unit tests): listeners re-read periodically anyway
        logger.warning("failover.changed not published: %s", exc)
        return 0


def gate_announce(run_id: str, *, reason: str) -> int:
    """Tell every listener a failure is being reported, before it is written (``pending``: no version yet).

    On SQLite the write below can wait for the lock while a worker commits a plan
    step; safe mode ON is the safe direction, so listeners act on this at once and
    hold it until the database moves past the version they knew (bench_safe_mode).
    Returns how many listeners Redis handed it to.
    """
    return _announce(run_id, {"safeMode": True, "reason": reason, "pending": True})


def gate_close(run_id: str, *, reason: str) -> int | None:
    """Turn safe mode on in one statement and announce it at once; return the new version (None: already on).

    This is the first thing a failure report does, before any slower work (the
    plan): one UPDATE guarded by ``safe_mode = false``, atomic on its own, and one
    read of the version, both plain SQL (then the history's copy of the row, in
    the caller's transaction). The ORM's row read and full save cost
    ~4 ms here, most of the time between a report and the trader refusing entries.
    A row that does not exist yet needs nothing: it is created with safe mode ON.
    """
    at = connection.ops.adapt_datetimefield_value(now())
    q = connection.ops.quote_name
    table = q(FailoverStateRecord._meta.db_table)
    with connection.cursor() as cursor:
        # Plain SQL: compiling the ORM's UPDATE alone costs a millisecond on this path.
        cursor.execute(
            f"UPDATE {table} SET {q('safe_mode')} = %s, {q('since')} = %s, {q('reason')} = %s, {q('planned')} = %s, "
            f"{q('version')} = {q('version')} + 1, {q('updated_at')} = %s "
            f"WHERE {q('run_id')} = %s AND {q('safe_mode')} = %s",
            [True, at, reason, False, at, run_id, False],
        )
        if cursor.rowcount != 1:
            return None
        cursor.execute(f"SELECT {q('version')} FROM {table} WHERE {q('run_id')} = %s", [run_id])
        version = int(cursor.fetchone()[0])
    # Announced before the commit: safe mode ON is the safe direction, so a listener may act on it at once
    # (the trader holds it until the database shows this version); a rolled-back report only keeps a
    # trader in safe mode until the reporter's retry commits it.
    _announce(run_id, {"version": version, "safeMode": True, "reason": reason})
    history.state_change_record(run_id)  # after the announcement, still before the caller's commit
    # The badge turns red at this commit, not at the end of the report (its plan is built after it).
    transaction.on_commit(lambda: _push_committed_state(run_id))
    return version


@dataclass(frozen=True)
class Gate:
    """What the trader's hot path needs from the failover state, read in one small query."""

    safe_mode: bool
    reason: str | None
    version: int
    trading_enabled: bool
    recovery_in_progress: bool
    halted: bool = False


def gate_read(run_id: str) -> Gate:
    row = (
        FailoverStateRecord.objects.filter(run_id=run_id)
        .values_list("safe_mode", "reason", "version", "trading_enabled", "recovery_in_progress", "halted")
        .first()
    )
    if row is None:
        return Gate(safe_mode=True, reason=None, version=0, trading_enabled=True, recovery_in_progress=False)
    return Gate(*row)


def state_commit(row: FailoverStateRecord) -> ManagedFailoverState:
    """Save a transition: bump ``version``, mirror the plan, notify the bus and the dashboard on commit."""
    row.version += 1
    row.updated_at = now()
    row.save()
    history.state_change_record(row.run_id)  # same transaction: the version is in the history iff it is in the state
    state = state_domain(row)
    plan_mirror(row, state.current_plan)
    changed = {"version": row.version, "safeMode": row.safe_mode, "reason": row.reason}
    run_id = row.run_id
    transaction.on_commit(lambda: _announce(run_id, changed))
    _push_state(run_id, state, row.version)
    return state


def _push_state(run_id: str, state: ManagedFailoverState, version: int) -> None:
    """Send ``state`` (of ``version``) to the dashboards once the current transaction commits."""
    if run_id:
        # The dashboard's badge is the product's; an integration run's status is tagged, never mixed in.
        push_failover_message(kind="failover.run_status", payload={"runId": run_id, **state.to_status_dict(now())})
    else:
        push_failover_message(kind="failover.status", payload=state.to_status_dict(now()), version=version)


BADGE_FLUSH_S = 0.05


def _push_committed_state(run_id: str) -> None:
    """Read the environment's state as committed and send it to the dashboards now (after a commit, outside one).

    Sent before the caller goes on (bounded by ``BADGE_FLUSH_S``): the report's plan, built next, would
    otherwise hold the interpreter lock while the push waits for it (p50 27 ms from submit to the socket
    then, against 4 ms when the process is idle).
    """
    try:
        row = FailoverStateRecord.objects.filter(run_id=run_id).first()
        if row is not None:
            _push_state(run_id, state_domain(row), row.version)
            flush_pushes(BADGE_FLUSH_S)
    except Exception as exc:  # news, not the record: the report goes on (its own commit pushes again)
        logger.warning("the gate's badge push of %r failed: %s", run_id, exc)


def live_plan(row: FailoverStateRecord) -> RecoveryPlanRecord | None:
    """Return the environment's current plan row unless it is finished or superseded."""
    if not row.current_plan_id:
        return None
    return RecoveryPlanRecord.objects.filter(pk=row.current_plan_id, status__in=LIVE_PLAN_STATUSES).first()
