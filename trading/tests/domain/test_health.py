from __future__ import annotations

from failover.domain.clock import ManualClock, iso_ms
from trading.domain.health import HealthBuilder, HealthStatus
from trading.tests.domain.kit import T0


def test_health_overall_is_worst_and_shape_is_camel_case() -> None:
    clock = ManualClock(T0)
    health = HealthBuilder(clock, stale_after_ms=30_000)
    health.report("failoverManager", HealthStatus.OK, "Safe mode OFF")
    health.report("recoveryEngine", HealthStatus.ERROR, "Recovery plan running, step=RESYNC_POSITIONS")

    snap = health.snapshot()

    assert snap.status is HealthStatus.ERROR
    assert snap.to_dict() == {
        "timestamp": "2025-11-18T15:21:00.000Z",
        "status": "ERROR",
        "services": {
            "failoverManager": {
                "status": "OK",
                "lastUpdateAt": "2025-11-18T15:21:00.000Z",
                "message": "Safe mode OFF",
            },
            "recoveryEngine": {
                "status": "ERROR",
                "lastUpdateAt": "2025-11-18T15:21:00.000Z",
                "message": "Recovery plan running, step=RESYNC_POSITIONS",
            },
        },
    }


def test_health_stale_service_turns_warn() -> None:
    clock = ManualClock(T0)
    health = HealthBuilder(clock)
    health.register("featureEngine", stale_after_ms=5_000)
    health.report("featureEngine", HealthStatus.OK, "ok")

    clock.advance(5_000)
    assert health.snapshot().services["featureEngine"].status is HealthStatus.OK
    clock.advance(1_500)
    service = health.snapshot().services["featureEngine"]

    assert service.status is HealthStatus.WARN
    assert service.message == "stale: no update for 6.5s (bound 5s); last: ok"
    assert health.snapshot().status is HealthStatus.WARN


def test_health_stale_error_stays_error() -> None:
    clock = ManualClock(T0)
    health = HealthBuilder(clock, stale_after_ms=1_000)
    health.report("exchange", HealthStatus.ERROR, "down")
    clock.advance(2_000)

    assert health.snapshot().services["exchange"].status is HealthStatus.ERROR


def test_health_registered_service_without_report_is_warn() -> None:
    health = HealthBuilder(ManualClock(T0))
    health.register("marketData")

    service = health.snapshot().services["marketData"]

    assert (service.status, service.last_update_at, service.message) == (HealthStatus.WARN, None, "no report yet")
    assert service.to_dict()["lastUpdateAt"] is None


def test_iso_ms_keeps_milliseconds() -> None:
    assert iso_ms(T0 + 7) == "2025-11-18T15:21:00.007Z"
