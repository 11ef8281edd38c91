"""Health (spec 10): the status vocabulary, one service's entry, the snapshot, and the failover rules.

A snapshot's overall status is the worst of its services'. The web layer
turns the trader's heartbeat into services (``scalper_site.api.health``);
the rules for ``services.failoverManager`` and ``services.recoveryEngine``
are here:

failoverManager: safe mode OFF is OK; ON for an operator's planned reason is
OK; ON for a failure is OK while it is young (the system is handling it) and
WARN once it has lasted ``safe_mode_warn_after_s``.

recoveryEngine: no plan or a DONE plan is OK; a FAILED plan is ERROR (it will
not finish by itself); a running plan is OK, then WARN after
``recovery_warn_after_s``, then ERROR after ``recovery_error_after_s``,
measured from the plan's first step.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from failover.domain._codec import format_opt_ts, format_ts, parse_opt_ts, to_ms
from failover.domain.steps import current_step, plan_started_at
from failover.domain.types import FailoverState, PlanStatus, RecoveryPlan


class HealthStatus(StrEnum):
    OK = "OK"
    WARN = "WARN"
    ERROR = "ERROR"


_RANK = {HealthStatus.OK: 0, HealthStatus.WARN: 1, HealthStatus.ERROR: 2}


def worst(statuses: Iterable[HealthStatus]) -> HealthStatus:
    """Return the most severe status (OK when there is none)."""
    return max(statuses, key=_RANK.__getitem__, default=HealthStatus.OK)


@dataclass(frozen=True, slots=True)
class ServiceHealth:
    """One entry of ``HealthSnapshot.services``; ``last_update_at`` is None for a service never heard from."""

    status: HealthStatus
    last_update_at: datetime | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        """Return the contract's camelCase shape."""
        return {"status": self.status.value, "lastUpdateAt": format_opt_ts(self.last_update_at),
                "message": self.message}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServiceHealth:
        """Read an entry back from its ``to_dict`` shape."""
        return cls(HealthStatus(data["status"]), parse_opt_ts(data.get("lastUpdateAt"), "lastUpdateAt"),
                   data.get("message", ""))


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    """Every service's entry, by name, and the overall status: the worst of theirs."""

    timestamp: datetime
    status: HealthStatus
    services: dict[str, ServiceHealth]

    @classmethod
    def of(cls, services: Mapping[str, ServiceHealth], *, at: datetime) -> HealthSnapshot:
        """Return the snapshot of ``services`` (sorted by name) taken ``at``."""
        return cls(at, worst(s.status for s in services.values()), dict(sorted(services.items())))

    def to_dict(self) -> dict[str, Any]:
        """Return the contract's camelCase shape."""
        return {
            "timestamp": format_ts(self.timestamp),
            "status": self.status.value,
            "services": {name: service.to_dict() for name, service in self.services.items()},
        }


@dataclass(frozen=True, slots=True)
class HealthThresholds:
    """How long safe mode and recovery may last before health complains (mapped from the config)."""

    safe_mode_warn_after_s: float = 300.0
    recovery_warn_after_s: float = 300.0  # the spec's "e.g. > 5 min"
    recovery_error_after_s: float = 900.0

    def __post_init__(self) -> None:
        if not 0 < self.recovery_warn_after_s <= self.recovery_error_after_s:
            raise ValueError("need 0 < recovery_warn_after_s <= recovery_error_after_s")
        if self.safe_mode_warn_after_s <= 0:
            raise ValueError("safe_mode_warn_after_s must be > 0")


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
