"""Operator actions that no other app's service audits yet: each one records who did it."""

from __future__ import annotations

from typing import Any

from failover.services import operator_action_record
from trading.control import TraderUnavailable, send_command

PANIC_CLOSE_WAIT_S = 15.0  # closing every position takes a few exchange round trips


def execution_panic_close(*, user: str) -> dict[str, Any]:
    """Ask the product's trader to close every position and cancel every order; audit the request and its outcome.

    Raises ``TraderUnavailable`` when no trader runs or it does not acknowledge in time.
    """
    try:
        ack = send_command("panic_close", args={"by": user}, wait_s=PANIC_CLOSE_WAIT_S)  # named in the alert
    except TraderUnavailable as exc:
        operator_action_record(user=user, action="PANIC_CLOSE", details={"ok": False, "error": str(exc)})
        raise
    operator_action_record(user=user, action="PANIC_CLOSE", details={"ok": ack.get("ok"), "result": ack.get("result"),
                                                                      "error": ack.get("error")})
    return ack


def integration_run_audit(*, user: str, scenario_id: str, run_id: str) -> None:
    """Record that ``user`` started an integration run."""
    operator_action_record(user=user, action="INTEGRATION_RUN", details={"scenarioId": scenario_id}, run_id=run_id)
