"""Health rules for ``services.failoverManager`` and ``services.recoveryEngine`` (spec 10).

failoverManager: safe mode OFF is OK; ON for an operator's planned reason is
OK; ON for a failure is OK while it is young (the system is handling it) and
WARN once it has lasted ``safe_mode_warn_after_s``.

recoveryEngine: no plan or a DONE plan is OK; a FAILED plan is ERROR (it will
not finish by itself); a running plan is OK, then WARN after
``recovery_warn_after_s``, then ERROR after ``recovery_error_after_s``,
measured from the plan's first step.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from failover.domain._codec import format_ts, to_ms
from failover.domain.steps import current_step, plan_started_at
from failover.domain.types import FailoverState, PlanStatus, RecoveryPlan


class HealthStatus(StrEnum):
    OK = "OK"
    WARN = "WARN"
    ERROR = "ERROR"


@dataclass(frozen=True, slots=True)
class HealthThresholds:
    """How long safe mode and recovery may last before health complains (the lead maps these from config)."""

    safe_mode_warn_after_s: float = 300.0
    recovery_warn_after_s: float = 300.0  # the spec's "e.g. > 5 min"
    recovery_error_after_s: float = 900.0

    def __post_init__(self) -> None:
        if not 0 < self.recovery_warn_after_s <= self.recovery_error_after_s:
            raise ValueError("need 0 < recovery_warn_after_s <= recovery_error_after_s")
        if self.safe_mode_warn_after_s <= 0:
            raise ValueError("safe_mode_warn_after_s must be > 0")


@dataclass(frozen=True, slots=True)
class ServiceHealth:
    """One entry of ``HealthSnapshot.services``."""

    status: HealthStatus
    last_update_at: datetime
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status.value, "lastUpdateAt": format_ts(self.last_update_at), "message": self.message}


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def failover_manager_health(
    state: FailoverState, *, now: datetime, thresholds: HealthThresholds, last_update_at: datetime | None = None
) -> ServiceHealth:
    """Return the failoverManager health entry; ``last_update_at`` defaults to ``now``."""
    at = to_ms(last_update_at or now)
    if not state.safe_mode:
        return ServiceHealth(HealthStatus.OK, at, "Safe mode OFF")
    reason = state.reason or "unknown reason"
    if state.planned:
        return ServiceHealth(HealthStatus.OK, at, f"Safe mode ON (planned: {reason})")
    message = f"Safe mode ON due to {reason}"
    if state.since is None:
        return ServiceHealth(HealthStatus.WARN, at, f"{message}, start unknown")  # cannot prove it is young
    lasted = (now - state.since).total_seconds()
    if lasted > thresholds.safe_mode_warn_after_s:
        return ServiceHealth(HealthStatus.WARN, at, f"{message} for {_duration(lasted)}")
    return ServiceHealth(HealthStatus.OK, at, message)


def recovery_engine_health(
    plan: RecoveryPlan | None, *, now: datetime, thresholds: HealthThresholds, last_update_at: datetime | None = None
) -> ServiceHealth:
    """Return the recoveryEngine health entry for the current plan."""
    at = to_ms(last_update_at or now)
    if plan is None:
        return ServiceHealth(HealthStatus.OK, at, "No recovery plan")
    status, step = plan.status, current_step(plan)
    if status is PlanStatus.DONE or step is None:
        return ServiceHealth(HealthStatus.OK, at, "Recovery plan done")
    if status is PlanStatus.FAILED:
        return ServiceHealth(HealthStatus.ERROR, at,
                             f"Recovery plan FAILED, step={step.type.value}: {step.error_message}")
    started = plan_started_at(plan)
    lasted = 0.0 if started is None else (now - started).total_seconds()
    message = f"Recovery plan running, step={step.type.value}"
    if lasted > thresholds.recovery_error_after_s:
        return ServiceHealth(HealthStatus.ERROR, at, f"{message}, running for {_duration(lasted)}")
    if lasted > thresholds.recovery_warn_after_s:
        return ServiceHealth(HealthStatus.WARN, at, f"{message}, running for {_duration(lasted)}")
    return ServiceHealth(HealthStatus.OK, at, message)


def failover_health(
    state: FailoverState, *, now: datetime, thresholds: HealthThresholds
) -> dict[str, dict[str, Any]]:
    """Return both entries, keyed as ``HealthSnapshot.services`` names them."""
    return {
        "failoverManager": failover_manager_health(state, now=now, thresholds=thresholds).to_dict(),
        "recoveryEngine": recovery_engine_health(state.current_plan, now=now, thresholds=thresholds).to_dict(),
    }
