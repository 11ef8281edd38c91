"""Health snapshot: per-service status, overall = worst, stale services WARN.

Services report ``(status, message)`` whenever they know something; the
snapshot adds what nobody reported: a service silent for longer than its
staleness bound is shown as WARN, because a module that stopped reporting is
as suspicious as one that says it is unwell.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from failover.domain.clock import Clock, iso_ms


class HealthStatus(StrEnum):
    OK = "OK"
    WARN = "WARN"
    ERROR = "ERROR"


_RANK = {HealthStatus.OK: 0, HealthStatus.WARN: 1, HealthStatus.ERROR: 2}


def worst(statuses: list[HealthStatus]) -> HealthStatus:
    """Return the most severe status (OK when empty)."""
    result = HealthStatus.OK
    for status in statuses:
        if _RANK[status] > _RANK[result]:
            result = status
    return result


@dataclass(frozen=True, slots=True)
class ServiceHealth:
    status: HealthStatus
    last_update_at: int | None  # epoch ms; None if it never reported
    message: str

    def to_dict(self) -> dict[str, object]:
        """Return the contract's camelCase shape."""
        return {
            "status": self.status.value,
            "lastUpdateAt": None if self.last_update_at is None else iso_ms(self.last_update_at),
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    timestamp: int  # epoch ms
    status: HealthStatus
    services: dict[str, ServiceHealth]

    def to_dict(self) -> dict[str, object]:
        """Return the contract's camelCase shape."""
        return {
            "timestamp": iso_ms(self.timestamp),
            "status": self.status.value,
            "services": {name: svc.to_dict() for name, svc in self.services.items()},
        }


class HealthBuilder:
    """Collect service reports and build ``HealthSnapshot`` values."""

    def __init__(self, clock: Clock, stale_after_ms: int = 30_000) -> None:
        self._clock = clock
        self._default_stale_ms = stale_after_ms
        self._stale_ms: dict[str, int] = {}
        self._reports: dict[str, tuple[HealthStatus, int, str]] = {}

    def register(self, service: str, stale_after_ms: int | None = None) -> None:
        """Expect reports from ``service``; until the first one it shows as WARN."""
        self._stale_ms[service] = stale_after_ms if stale_after_ms is not None else self._default_stale_ms

    def report(self, service: str, status: HealthStatus, message: str = "", at_ms: int | None = None) -> None:
        """Record a service's status (now, unless ``at_ms`` says when)."""
        if service not in self._stale_ms:
            self.register(service)
        at = self._clock.now_ms() if at_ms is None else at_ms
        self._reports[service] = (HealthStatus(status), at, message)

    def snapshot(self) -> HealthSnapshot:
        """Build the snapshot as of the clock's now."""
        now = self._clock.now_ms()
        services: dict[str, ServiceHealth] = {}
        for name in sorted(self._stale_ms):
            bound = self._stale_ms[name]
            report = self._reports.get(name)
            if report is None:
                services[name] = ServiceHealth(HealthStatus.WARN, None, "no report yet")
                continue
            status, at, message = report
            if now - at > bound:
                status = worst([status, HealthStatus.WARN])
                message = f"stale: no update for {(now - at) / 1000:g}s (bound {bound / 1000:g}s); last: {message}"
            services[name] = ServiceHealth(status, at, message)
        return HealthSnapshot(now, worst([s.status for s in services.values()]), services)
