"""The audit trail of operator actions (``OperatorAction``): who did what, when, with what outcome."""

from __future__ import annotations

from typing import Any

from failover.models import OperatorAction
from failover.recovery import records


def operator_action_record(*, run_id: str = "", user: str, action: str, details: dict[str, Any]) -> None:
    """Audit what an operator did (or was refused): who, which action, with what, in which environment."""
    OperatorAction.objects.create(run_id=run_id, at=records.now(), username=user, action=action, details=details)
