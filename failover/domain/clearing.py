"""What ends each condition that holds safe mode: the clearing rules as data, and the countdown they allow.

The rules are the ones ``failover/README.md`` states ("When a failure ends"
and "After a storm: why safe mode always ends"). Besides the failure types, a
condition is the built-in config fallback, an operator's hold or a recovery
plan that is not DONE. A type that clears after a quiet window names the
config field (under ``failover.detectors``) that sets the window; with the
time of its last incident the remaining seconds follow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from failover.domain.enums import FailureType

CONFIG_FALLBACK = "CONFIG_FALLBACK"
OPERATOR_HOLD = "OPERATOR_HOLD"
RECOVERY_PLAN = "RECOVERY_PLAN"


@dataclass(frozen=True, slots=True)
class ClearingRule:
    """What ends one condition; ``quiet_window_field`` names its ``failover.detectors`` window, if it has one."""

    condition: str
    cleared_by: str
    quiet_window_field: str | None = None


_PLAN_ENDS_IT = "its recovery plan completing (DONE)"
_RULES = (
    ClearingRule(FailureType.EXCHANGE_UNAVAILABLE.value,
                 "the trader's failure_cleared once REST answers again or a stream is back"),
    ClearingRule(FailureType.PRIVATE_WS_DISCONNECTED.value,
                 "the trader's failure_cleared once the private stream is connected and hearing messages "
                 "(a stream down is rebuilt with backoff capped at 8 s)"),
    ClearingRule(FailureType.PUBLIC_WS_DEGRADED.value,
                 "the trader's failure_cleared once no symbol is stale and reconnects stay under the limit "
                 "for the quiet window", "public_reconnects_window_s"),
    ClearingRule(FailureType.LATENCY_TOO_HIGH.value,
                 "the trader's failure_cleared once the average latency is back under the threshold"),
    ClearingRule(FailureType.PACKET_LOSS.value,
                 "the trader's failure_cleared once incidents fall below the minimum within the quiet window",
                 "packet_loss_window_s"),
    ClearingRule(FailureType.CONFIG_INVALID.value,
                 "the trader's failure_cleared once it loads a valid config file, or RESYNC_CONFIG finding the "
                 "file valid"),
    ClearingRule(FailureType.NON_SYNC_STATE.value, _PLAN_ENDS_IT + " (a failure_cleared is accepted too)"),
    ClearingRule(FailureType.MODULE_CRASH.value,
                 "the trader's failure_cleared once no module has crashed for the quiet window",
                 "module_crash_quiet_s"),
    ClearingRule(FailureType.DATA_CORRUPTION.value, _PLAN_ENDS_IT),
    ClearingRule(FailureType.PROCESS_RESTART.value, _PLAN_ENDS_IT),
    ClearingRule(FailureType.UNEXPECTED_SHUTDOWN.value, _PLAN_ENDS_IT),
    ClearingRule(CONFIG_FALLBACK,
                 "a valid config file: the trader loading it or RESYNC_CONFIG finding it valid lifts the fallback"),
    ClearingRule(OPERATOR_HOLD,
                 "an operator's exit from safe mode (POST /api/failover/exit-safe-mode); nothing else ends it"),
    ClearingRule(RECOVERY_PLAN,
                 "the plan reaching DONE; a failed step is retried for ever (5 s, 10 s, then every 20 s) and at "
                 "once when a failure clears"),
)
CLEARING_RULES: Mapping[str, ClearingRule] = MappingProxyType({rule.condition: rule for rule in _RULES})


def clearing_rule(condition: str) -> ClearingRule:
    """Return the rule that ends ``condition`` (a failure type or one of the three other conditions)."""
    try:
        return CLEARING_RULES[condition]
    except KeyError:
        raise ValueError(f"no clearing rule for {condition!r}") from None


def clears_in_s(*, last_incident_ms: int, quiet_window_s: float, now_ms: int) -> float:
    """Return the seconds left until ``quiet_window_s`` has passed without an incident (0 once it has)."""
    left_ms = last_incident_ms + quiet_window_s * 1000 - now_ms
    return round(max(left_ms, 0.0) / 1000, 1)


def countdown_message(condition: str, *, quiet_window_s: float, left_s: float | None, reporting: bool) -> str:
    """Say how a quiet-window condition ends and how long is left, or why that is not known."""
    head = f"{condition} clears after {quiet_window_s:g} s without incidents"
    if not reporting:
        return f"{head}: the trader is not reporting, so the time left is unknown"
    if left_s is None:
        return f"{head}: the trader's detectors report no incident for it"
    if left_s <= 0:
        return f"{head}: the window has passed, the clear is due from the trader"
    return f"{head}: {left_s:g} s left"
