"""Celery tasks of a queued integration run: a chain of setup, run and teardown, plus the sweeper.

Each task takes ids only and calls services. The chain token makes them
idempotent: a task whose run is not RUNNING under its token does nothing, so a
duplicate chain or a redelivered message (``acks_late``) is harmless; ``run``
never starts a scenario twice. ``teardown`` runs after ``run`` in the chain,
and ``run``'s ``on_failure`` (time limit, lost worker) sends it too, so what a
run started is always stopped; the sweeper finishes runs whose worker is gone.
``services`` sends the chain by these task names; nothing imports this module
but Celery.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from itests import services
from itests.runner import execute


@shared_task(name="itests.setup_run", acks_late=True, soft_time_limit=30, time_limit=60)
def setup_run(*, run_id: str, token: str) -> bool:
    """Claim the run slot for ``run_id``; a run that cannot start now stays QUEUED."""
    claimed = services.run_claim(run_id=run_id, token=token)
    if claimed:
        services.run_progress(run_id=run_id, step="claimed")
    return claimed


def _run_failed(self: Any, exc: BaseException, task_id: str, args: tuple, kwargs: dict, einfo: Any) -> None:
    """The run task died (hard time limit, lost worker): make sure teardown still happens."""
    teardown_run.apply_async(kwargs={"run_id": kwargs["run_id"], "token": kwargs["token"],
                                     "why": f"run task failed: {type(exc).__name__}: {exc}"},
                             queue=services.integration_queue())


@shared_task(name="itests.run_scenario", bind=True, acks_late=True, on_failure=_run_failed,
             soft_time_limit=600, time_limit=660)
def run_scenario(self: Any, *, run_id: str, token: str) -> str:
    """Run the claimed scenario in this worker; its own teardown stops what it started."""
    record = services.run_owned(run_id=run_id, token=token)
    if record is None:
        return "not owned"
    if not services.run_mark_attempted(run_id=run_id):
        return "attempted before"  # redelivered after a lost worker: teardown finishes the run as failed
    report = execute(record)
    return "passed" if report["result"]["success"] else "failed"


@shared_task(name="itests.teardown_run", acks_late=True, soft_time_limit=60, time_limit=90)
def teardown_run(*, run_id: str, token: str, why: str = "") -> str:
    """Stop whatever the run left running and finish it; then the next queued run may start."""
    if services.run_owned(run_id=run_id, token=token) is None:
        services.dispatch_next()
        return "nothing to finish"
    services.run_abandon(run_id=run_id, why=why or "the run task ended without a report (its worker was lost)")
    return "finished"


@shared_task(name="itests.sweep_runs", acks_late=True, soft_time_limit=60, time_limit=90)
def sweep_runs(*, stale_after_s: float = services.STALE_AFTER_S) -> dict[str, list[str]]:
    """Finish runs left behind by a lost process and restart the queue."""
    return services.integration_runs_sweep(stale_after_s=stale_after_s)

