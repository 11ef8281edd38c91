"""Celery tasks of the failover app: each is ids in, one service call out.

A plan runs as ``recovery_chain``: one ``run_recovery_step`` per PENDING step,
then ``continue_recovery_plan``. Every task is idempotent (a DONE step returns
at once; a claim is a conditional UPDATE; a chain whose token no longer owns
the plan stops), so ``acks_late`` redelivery after a lost worker is safe.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import chain, shared_task
from django.conf import settings

from failover import beat
from failover.recovery import deadman, history, records, runner

logger = logging.getLogger(__name__)

STEP_SOFT_LIMIT_S = 90
STEP_HARD_LIMIT_S = 120  # the step pulse keeps its heartbeat fresh until then; runner.STALE_AFTER_S spots a lost worker


def _step_failed(self: Any, exc: BaseException, task_id: str, args: tuple, kwargs: dict, einfo: Any) -> None:
    """Mark the step FAILED when the task itself died (the runner handles a failing handler)."""
    step_pk = kwargs.get("step_pk", args[0] if args else None)
    if step_pk is not None:
        runner.step_settle(step_pk=step_pk, claim=None, evidence={"taskId": task_id},
                           error=f"task failed: {type(exc).__name__}: {exc}")


@shared_task(name="failover.run_recovery_step", bind=True, acks_late=True, soft_time_limit=STEP_SOFT_LIMIT_S,
             time_limit=STEP_HARD_LIMIT_S, on_failure=_step_failed)
def run_recovery_step(self: Any, *, step_pk: int, chain_token: str) -> str:
    """Advance the plan of ``step_pk`` by one step."""
    return runner.recovery_step_run(step_pk=step_pk, chain_token=chain_token, worker=self.request.hostname or "")


@shared_task(name="failover.continue_recovery_plan", acks_late=True, soft_time_limit=20, time_limit=30)
def continue_recovery_plan(*, plan_pk: int, chain_token: str) -> str:
    """Chain the steps appended while the chain ran, or release the plan."""
    return runner.recovery_plan_continue(plan_pk=plan_pk, chain_token=chain_token)


@shared_task(name="failover.retry_recovery_plan", acks_late=True, soft_time_limit=20, time_limit=30)
def retry_recovery_plan(*, plan_pk: int) -> str:
    """Retry a FAILED plan once its backoff has passed."""
    return runner.recovery_plan_retry_due(plan_pk=plan_pk)


@shared_task(name="failover.sweep_stuck_steps", acks_late=True, soft_time_limit=60, time_limit=90)
def sweep_stuck_steps() -> dict[str, list[str]]:
    """Reset steps left RUNNING by a lost worker, retry due plans, restart orphaned chains."""
    return runner.sweep_stuck_steps()


@shared_task(name="failover.prune_state_history", acks_late=True, soft_time_limit=60, time_limit=90)
def prune_state_history() -> dict[str, int]:
    """Delete failover state history older than ``SCALPER_FAILOVER_HISTORY_DAYS`` (idempotent)."""
    return history.state_history_prune(days=settings.SCALPER_FAILOVER_HISTORY_DAYS, now=records.now())


@shared_task(name="failover.deadman_guard", acks_late=True, soft_time_limit=45, time_limit=60)
def deadman_guard() -> dict[str, Any]:
    """Protect every account no trader holds the lease of (``failover/recovery/deadman.py``); once per episode."""
    return deadman.deadman_sweep()


@shared_task(name="failover.scheduled", acks_late=True, soft_time_limit=60, time_limit=90)
def scheduled(*, task: str, period_s: float) -> dict[str, Any]:
    """Run the scheduled ``task`` here if no other beat's message ran it this period (a Redis lock per run)."""
    return beat.scheduled_run(task=task, period_s=period_s)


def recovery_chain(*, plan_pk: int, chain_token: str, step_pks: list[int]) -> Any:
    """Return the chain that runs ``step_pks`` of a plan and then looks for more."""
    tasks = [run_recovery_step.si(step_pk=pk, chain_token=chain_token) for pk in step_pks]
    return chain(*tasks, continue_recovery_plan.si(plan_pk=plan_pk, chain_token=chain_token))
