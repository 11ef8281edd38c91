"""Integration runs: the public service API (dashboard, CLI, tasks) and the run record's transitions.

A run is a row: QUEUED (waiting for the one run slot), RUNNING, DONE (with
``success`` and the report). Every transition is one transaction; progress is
pushed to the dashboard as ``integration.progress``. One run at a time: a
queued run is claimed only when no run is RUNNING and it is the oldest QUEUED.
A run's chain is sent by task name through the Celery app, so the tasks module
depends on this one and never the other way round.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from celery import chain, current_app
from celery.canvas import Signature
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from failover.services import environment_retire
from itests.environment import stop_recorded
from itests.models import IntegrationRunRecord, RunStatus
from itests.scenarios import SCENARIOS, UnknownScenario, scenario_class
from scalper_site.realtime import push_failover_message

logger = logging.getLogger(__name__)

__all__ = [
    "UnknownScenario", "integration_run_enqueue", "integration_run_get", "integration_run_report",
    "integration_run_summary", "integration_runs_list", "integration_runs_sweep", "reports_dir", "scenario_check",
    "scenarios_list",
]

STALE_AFTER_S = 60.0  # a RUNNING run whose heartbeat is older than this has lost its process
RUN_MARGIN_S = 60  # on top of the scenario's own time limit: setup, teardown, report

def _iso(at: datetime | None) -> str | None:
    if at is None:
        return None
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def reports_dir() -> Path:
    return Path(settings.DATA_DIR) / "tests" / "integration_reports"


# -- the public API -------------------------------------------------------------------------


def scenarios_list() -> list[dict[str, str]]:
    """Return the IntegrationScenarioMeta of every scenario, in the spec's order."""
    return [cls.meta() for cls in SCENARIOS]


def scenario_check(scenario_id: str) -> None:
    """Raise UnknownScenario when no scenario has ``scenario_id``."""
    scenario_class(scenario_id)


def integration_run_enqueue(*, scenario_id: str, user: str = "") -> IntegrationRunRecord:
    """Create a QUEUED run and, once committed, send its Celery chain (setup, run, teardown).

    A scenario is not queued twice: while one of its runs is QUEUED or RUNNING, that run is returned
    (a double click, a retried request) and nothing new is created or sent.
    """
    scenario_check(scenario_id)
    with transaction.atomic():
        _lock_enqueue(scenario_id)
        active = (IntegrationRunRecord.objects.filter(scenario_id=scenario_id,
                                                      status__in=[RunStatus.QUEUED, RunStatus.RUNNING])
                  .order_by("queued_at", "id").first())
        if active is not None:
            return active
        record = _record_create(scenario_id=scenario_id, user=user, status=RunStatus.QUEUED)
        _push(record, "queued")
        transaction.on_commit(lambda: _dispatch(record.run_id))
    return record


def _lock_enqueue(scenario_id: str) -> None:
    """Serialise enqueues of one scenario until the transaction ends, so the look for an active run holds.

    PostgreSQL takes a transaction-scoped advisory lock; SQLite needs none, as its transactions start
    IMMEDIATE (settings) and so already run one at a time.
    """
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"itests.enqueue:{scenario_id}"])


def integration_runs_list(*, limit: int = 20, offset: int = 0) -> list[IntegrationRunRecord]:
    """Return runs, latest first."""
    return list(IntegrationRunRecord.objects.order_by("-queued_at", "-id")[offset:offset + limit])


def integration_run_get(*, run_id: str) -> IntegrationRunRecord | None:
    return IntegrationRunRecord.objects.filter(run_id=run_id).first()


def integration_run_summary(record: IntegrationRunRecord) -> dict[str, Any]:
    """Return a run's row for the dashboard's table of recent runs."""
    return {
        "runId": record.run_id,
        "scenarioId": record.scenario_id,
        "status": record.status,
        "success": record.success,
        "startedAt": _iso(record.started_at),
        "finishedAt": _iso(record.finished_at),
        "errorsCount": record.errors_count,
    }


def integration_run_report(record: IntegrationRunRecord) -> dict[str, Any]:
    """Return the IntegrationRunReport; a run not DONE yet has a result without ``success`` decided."""
    if record.report:
        return record.report
    return {
        "runId": record.run_id,
        "scenarioId": record.scenario_id,
        "result": {"scenarioId": record.scenario_id, "startedAt": _iso(record.started_at), "finishedAt": None,
                   "success": None, "errors": [], "metrics": {}},
    }


# -- transitions ------------------------------------------------------------------------------


def _record_create(*, scenario_id: str, user: str, status: str) -> IntegrationRunRecord:
    """Create the row under a new run id ``run-YYYYMMDD-HHmmss``, suffixed ``-2``, ``-3``... within one second."""
    now = timezone.now()
    base = f"run-{now:%Y%m%d-%H%M%S}"
    folder = reports_dir()
    for n in range(1, 1000):
        run_id = base if n == 1 else f"{base}-{n}"
        if (folder / f"{run_id}.json").exists():
            continue  # a report from a database since reset: never overwrite it
        try:
            with transaction.atomic():
                return IntegrationRunRecord.objects.create(
                    run_id=run_id, scenario_id=scenario_id, status=status, queued_at=now, requested_by=user,
                    started_at=now if status == RunStatus.RUNNING else None,
                    heartbeat_at=now if status == RunStatus.RUNNING else None,
                )
        except IntegrityError:
            continue
    raise RuntimeError(f"no free run id left for {base}")


def run_record_start(*, scenario_id: str, user: str) -> IntegrationRunRecord:
    """Create a run that starts now in this process (the CLI, the tests): RUNNING at once."""
    scenario_check(scenario_id)
    record = _record_create(scenario_id=scenario_id, user=user, status=RunStatus.RUNNING)
    _push(record, "running")
    return record


def run_claim(*, run_id: str, token: str) -> bool:
    """Take the run slot for a QUEUED run: only when none is RUNNING and it is the oldest QUEUED."""
    with transaction.atomic():
        waiting = list(IntegrationRunRecord.objects.select_for_update()
                       .filter(status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).order_by("queued_at", "id"))
        me = next((r for r in waiting if r.run_id == run_id), None)
        if me is None or me.status != RunStatus.QUEUED or any(r.status == RunStatus.RUNNING for r in waiting):
            return False
        head = next(r for r in waiting if r.status == RunStatus.QUEUED)
        if head.run_id != run_id:
            # First in, first out: the oldest goes first (its chain may have been lost: send it again).
            transaction.on_commit(lambda: _dispatch(head.run_id))
            return False
        now = timezone.now()
        me.status, me.started_at, me.heartbeat_at = RunStatus.RUNNING, now, now
        me.environment = {"chain": token}
        me.save(update_fields=["status", "started_at", "heartbeat_at", "environment"])
        _push(me, "running")
    return True


def run_owned(*, run_id: str, token: str) -> IntegrationRunRecord | None:
    """Return the run if it is RUNNING under chain ``token`` (a duplicate chain owns nothing)."""
    record = integration_run_get(run_id=run_id)
    if record is None or record.status != RunStatus.RUNNING or (record.environment or {}).get("chain") != token:
        return None
    return record


def run_mark_attempted(*, run_id: str) -> bool:
    """Mark that the run's scenario started; False if it had started before (a redelivered task must not rerun)."""
    with transaction.atomic():
        record = IntegrationRunRecord.objects.select_for_update().get(run_id=run_id)
        environment = dict(record.environment or {})
        if environment.get("runAttempted"):
            return False
        environment["runAttempted"] = True
        record.environment = environment
        record.save(update_fields=["environment"])
    return True


def run_environment(*, run_id: str, description: dict[str, Any]) -> None:
    """Record what the run's environment started (pids, folders), keeping the chain token."""
    with transaction.atomic():
        record = IntegrationRunRecord.objects.select_for_update().get(run_id=run_id)
        record.environment = {**(record.environment or {}), **description}
        record.save(update_fields=["environment"])


def run_heartbeat(*, run_id: str) -> None:
    IntegrationRunRecord.objects.filter(run_id=run_id, status=RunStatus.RUNNING).update(heartbeat_at=timezone.now())


def run_progress(*, run_id: str, step: str) -> None:
    """Append a progress step (with its time) to the run and push it to the dashboard."""
    with transaction.atomic():
        record = IntegrationRunRecord.objects.select_for_update().get(run_id=run_id)
        now = timezone.now()
        record.progress = [*(record.progress or []), {"at": _iso(now), "step": step}]
        record.heartbeat_at = now
        record.save(update_fields=["progress", "heartbeat_at"])
        _push(record, step)


def run_finish(*, run_id: str, result: dict[str, Any]) -> dict[str, Any]:
    """Write the report file, mirror it on the row, mark the run DONE, then let the next queued run start."""
    report = {"runId": run_id, "scenarioId": result["scenarioId"], "result": result}
    path = _write_report(run_id, report)
    with transaction.atomic():
        record = IntegrationRunRecord.objects.select_for_update().get(run_id=run_id)
        if record.status == RunStatus.DONE:
            return record.report  # finished already (a teardown after the run task): keep the first word
        now = timezone.now()
        record.status, record.success, record.finished_at = RunStatus.DONE, bool(result["success"]), now
        record.errors_count, record.report, record.report_path = len(result["errors"]), report, str(path)
        record.progress = [*(record.progress or []), {"at": _iso(now), "step": "done"}]
        record.save(update_fields=["status", "success", "finished_at", "errors_count", "report", "report_path",
                                   "progress"])
        environment_retire(run_id=run_id)  # the run's trader is gone for good: not the dead-man guardian's to watch
        _push(record, "done")
        transaction.on_commit(dispatch_next)
    return report


def run_abandon(*, run_id: str, why: str) -> dict[str, Any] | None:
    """Stop what a run left running and finish it failed with ``why`` (teardown after a lost worker, the sweeper)."""
    record = integration_run_get(run_id=run_id)
    if record is None or record.status == RunStatus.DONE:
        return None
    stopped = stop_recorded(record.environment or {})
    started = record.started_at or record.queued_at
    error = {"expectation": "the run finishes in its worker", "expected": "a report from the run task",
             "actual": why, "message": f"{why} (stopped pids: {stopped})"}
    result = {"scenarioId": record.scenario_id, "startedAt": _iso(started), "finishedAt": _iso(timezone.now()),
              "success": False, "errors": [error], "metrics": {}, "checks": []}
    return run_finish(run_id=run_id, result=result)


def _write_report(run_id: str, report: dict[str, Any]) -> Path:
    folder = reports_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{run_id}.json"
    tmp = folder / f".{run_id}.{uuid.uuid4().hex[:6]}.tmp"
    tmp.write_text(json.dumps(report, indent=2, default=str))
    os.replace(tmp, path)
    return path


# -- the queue ----------------------------------------------------------------------------------


def integration_queue() -> str | None:
    """Return the queue of integration chains: ``ITESTS_QUEUE`` when set, else the default queue."""
    return getattr(settings, "ITESTS_QUEUE", "") or None


def _dispatch(run_id: str) -> None:
    """Send the run's chain ``itests.setup_run -> itests.run_scenario -> itests.teardown_run`` under a new token.

    The run task's time limits come from the scenario's own.
    """
    record = integration_run_get(run_id=run_id)
    limit = int(scenario_class(record.scenario_id).time_limit_s) + RUN_MARGIN_S if record else 600
    queue = integration_queue()
    ids = {"run_id": run_id, "token": uuid.uuid4().hex}

    def task(name: str) -> Signature:
        return current_app.signature(name, kwargs=dict(ids), immutable=True).set(queue=queue)

    chain(
        task("itests.setup_run"),
        task("itests.run_scenario").set(soft_time_limit=limit, time_limit=limit + 30),
        task("itests.teardown_run"),
    ).apply_async()


def dispatch_next() -> str | None:
    """Send the chain of the oldest QUEUED run when no run is RUNNING; return its run id."""
    if IntegrationRunRecord.objects.filter(status=RunStatus.RUNNING).exists():
        return None
    head = IntegrationRunRecord.objects.filter(status=RunStatus.QUEUED).order_by("queued_at", "id").first()
    if head is None:
        return None
    _dispatch(head.run_id)
    return head.run_id


def integration_runs_sweep(*, stale_after_s: float = STALE_AFTER_S) -> dict[str, list[str]]:
    """Finish RUNNING runs whose heartbeat went quiet (stopping what they started); restart the queue."""
    cutoff = timezone.now() - timedelta(seconds=stale_after_s)
    abandoned = []
    for record in IntegrationRunRecord.objects.filter(status=RunStatus.RUNNING, heartbeat_at__lt=cutoff):
        quiet = (timezone.now() - record.heartbeat_at).total_seconds()
        if run_abandon(run_id=record.run_id, why=f"abandoned: no heartbeat for {quiet:.0f}s") is not None:
            abandoned.append(record.run_id)
    dispatched = dispatch_next()
    return {"abandoned": abandoned, "dispatched": [dispatched] if dispatched else []}


def _push(record: IntegrationRunRecord, step: str) -> None:
    payload = {"runId": record.run_id, "scenarioId": record.scenario_id, "status": record.status, "step": step,
               "success": record.success}

    def send() -> None:
        try:
            # After our commit: the helper's own on_commit then sends at once, inside this try.
            push_failover_message(kind="integration.progress", payload=payload)
        except Exception as exc:  # the dashboard push is news, not the record: a run never fails on it
            logger.warning("integration progress not pushed: %s", exc)

    transaction.on_commit(send)
