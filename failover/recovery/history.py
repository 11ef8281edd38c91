"""The failover state's history: a copy of every committed version, and its retention.

``state_change_record`` runs inside the transaction that wrote a version (its
callers: ``records.state_commit``, ``records.gate_close`` and the row's creation
in ``records.state_row``), so a version is in ``FailoverStateChange`` exactly
when it was in the state. It copies the row with one ``INSERT ... SELECT``:
the history holds what was written, whichever path wrote it, and the gate's
plain-SQL path stays one statement longer, not an ORM round trip.

``state_history_prune`` bounds it: changes older than the retention are deleted,
except, for each environment, the newest of them (the state in force at the
cutoff, so a window starting there still knows whether safe mode was on). An
integration run whose history is all older than the cutoff is deleted whole,
and so is the history of an environment whose state row is gone.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import connection, transaction

from failover.models import FailoverStateChange, FailoverStateRecord

# Same column names in both tables; ``at`` is the state row's ``updated_at``.
_COPIED = ("run_id", "version", "safe_mode", "reason", "planned", "operator_hold", "trading_enabled",
           "recovery_in_progress", "active_failures", "current_plan_id", "halted", "halt_reason")


def state_change_record(run_id: str, *, first: bool = False) -> None:
    """Copy the environment's state row, as this transaction wrote it, into its history.

    ``first``: the row was just created (version 0), so any history left under
    this ``run_id`` belongs to a state row that no longer exists and goes first.
    """
    if first:
        FailoverStateChange.objects.filter(run_id=run_id).delete()
    q = connection.ops.quote_name
    columns = ", ".join(q(name) for name in _COPIED)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {q(FailoverStateChange._meta.db_table)} ({columns}, {q('at')}) "
            f"SELECT {columns}, {q('updated_at')} FROM {q(FailoverStateRecord._meta.db_table)} "
            f"WHERE {q('run_id')} = %s",
            [run_id],
        )


def state_history_prune(*, days: int, now: datetime) -> dict[str, int]:
    """Delete history older than ``days`` as described above; return how many changes went, by kind."""
    if days < 1:
        raise ValueError(f"the failover history is kept at least one day, got {days}")
    cutoff = now - timedelta(days=days)
    with transaction.atomic():
        orphans = FailoverStateChange.objects.exclude(run_id__in=FailoverStateRecord.objects.values("run_id"))
        pruned = {"orphaned": orphans.delete()[0], "expired": 0, "finishedRuns": 0}
        old = FailoverStateChange.objects.filter(at__lt=cutoff)
        for run_id in sorted(set(old.values_list("run_id", flat=True))):
            mine = FailoverStateChange.objects.filter(run_id=run_id)
            if run_id and not mine.filter(at__gte=cutoff).exists():
                pruned["finishedRuns"] += mine.delete()[0]
                continue
            in_force = old.filter(run_id=run_id).order_by("-version").values_list("version", flat=True)[0]
            pruned["expired"] += old.filter(run_id=run_id, version__lt=in_force).delete()[0]
    return pruned
