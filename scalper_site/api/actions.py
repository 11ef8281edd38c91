"""Operator actions that no other app's service audits yet: each one records who did it."""

from __future__ import annotations

from typing import Any

from failover.services import operator_action_record, trading_halt
from trading.control import TraderUnavailable, send_command

PANIC_CLOSE_WAIT_S = 15.0  # closing every position takes a few exchange round trips
PANIC_CLOSE_HALT_REASON = "PANIC_CLOSE"  # a panic close ends in HALT, with this reason
ROW_ACTION_WAIT_S = 10.0  # one order or one cancel: a round trip or two


def execution_panic_close(*, user: str) -> dict[str, Any]:
    """HALT, then ask the product's trader to close every position and cancel every order; audit both.

    The HALT comes first, so the strategy cannot open a new position a second after the close; it stays
    until an operator resumes, even when no trader answered. Raises ``TraderUnavailable`` when no trader
    runs or it does not acknowledge in time.
    """
    trading_halt(reason=PANIC_CLOSE_HALT_REASON, user=user)
    try:
        ack = send_command("panic_close", args={"by": user}, wait_s=PANIC_CLOSE_WAIT_S)  # named in the alert
    except TraderUnavailable as exc:
        operator_action_record(user=user, action="PANIC_CLOSE", details={"ok": False, "error": str(exc)})
        raise
    operator_action_record(user=user, action="PANIC_CLOSE", details={"ok": ack.get("ok"), "result": ack.get("result"),
                                                                      "error": ack.get("error")})
    return ack


def _audited_command(*, user: str, action: str, command: str, args: dict[str, Any], wait_s: float) -> dict[str, Any]:
    """Send one trader command and audit the request with its outcome (a refusal or no answer included)."""
    try:
        ack = send_command(command, args=args, wait_s=wait_s)
    except TraderUnavailable as exc:
        operator_action_record(user=user, action=action, details={**args, "ok": False, "error": str(exc)})
        raise
    operator_action_record(user=user, action=action, details={**args, "ok": ack.get("ok"), "result": ack.get("result"),
                                                              "error": ack.get("error")})
    return ack


def position_close(*, user: str, symbol: str) -> dict[str, Any]:
    """Ask the trader to flatten ``symbol`` with a reduce-only market order; audited. Raises ``TraderUnavailable``."""
    return _audited_command(user=user, action="POSITION_CLOSE", command="close_position", args={"symbol": symbol},
                            wait_s=ROW_ACTION_WAIT_S)


def order_cancel(*, user: str, order_link_id: str) -> dict[str, Any]:
    """Ask the trader to cancel one open order by its orderLinkId; audited. Raises ``TraderUnavailable``."""
    return _audited_command(user=user, action="ORDER_CANCEL", command="cancel_order",
                            args={"order_link_id": order_link_id}, wait_s=ROW_ACTION_WAIT_S)


def integration_run_audit(*, user: str, scenario_id: str, run_id: str) -> None:
    """Record that ``user`` started an integration run."""
    operator_action_record(user=user, action="INTEGRATION_RUN", details={"scenarioId": scenario_id}, run_id=run_id)
