"""The product's HealthSnapshot as the web process sees it (pure: no Django, no Redis).

The heartbeat (``trading.control``) is the only window the web process has on
the trader; a missing or stale heartbeat (older than the config's
``health.stale_after_s``) means the trader is not running, which is an ERROR,
and every service it would have vouched for is unknown (WARN). Redis drops a
heartbeat ``HEARTBEAT_TTL_S`` after its last write, so a bound above that acts
as that.
``failoverManager`` and ``recoveryEngine`` come from the FailoverManager
(``failover.services.failover_health``); the status vocabulary and the
"overall = worst" rule are ``failover.domain.health``'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from failover.domain.clock import from_epoch_ms
from failover.domain.health import HealthSnapshot, HealthStatus, ServiceHealth
from trading.domain.config import TradingConfig

TRADER_SERVICES = ("traderProcess", "exchangeRest", "publicStream", "privateStream", "latency", "config")

OK, WARN, ERROR = HealthStatus.OK, HealthStatus.WARN, HealthStatus.ERROR


def _stream(beat: dict[str, Any], name: str, *, quiet_after_ms: float) -> tuple[HealthStatus, str]:
    stream = (beat.get("streams") or {}).get(name)
    if not isinstance(stream, dict):
        return WARN, f"{name} stream not reported"
    rebuilds = stream.get("rebuilds", 0)
    if not stream.get("connected"):
        return ERROR, f"{name} stream disconnected (rebuilds: {rebuilds})"
    age = stream.get("lastMessageAgeMs")
    if age is not None and age > quiet_after_ms:
        return WARN, f"{name} stream silent for {age / 1000:.1f}s (rebuilds: {rebuilds})"
    return OK, f"{name} stream connected (rebuilds: {rebuilds})"


def _latency(beat: dict[str, Any], config: TradingConfig) -> tuple[HealthStatus, str]:
    averages = {k: v for k, v in (beat.get("latencyAvgMs") or {}).items() if isinstance(v, int | float)}
    if not averages:
        return OK, "no latency samples yet"
    text = ", ".join(f"{k} {v:.1f}ms" for k, v in sorted(averages.items()))
    worst = max(averages.values())
    if worst >= config.latency.error_ms:
        return ERROR, f"average latency too high: {text} (error at {config.latency.error_ms:g}ms)"
    if worst >= config.latency.warn_ms:
        return WARN, f"average latency high: {text} (warn at {config.latency.warn_ms:g}ms)"
    return OK, f"average latency {text}"


def _rest(beat: dict[str, Any], config: TradingConfig) -> tuple[HealthStatus, str]:
    failures = int(beat.get("restFailuresInARow") or 0)
    limit = config.failover.detectors.rest_failures_unavailable
    if failures >= limit:
        return ERROR, f"{failures} REST failures in a row (unavailable at {limit})"
    if failures:
        return WARN, f"{failures} REST failure(s) in a row"
    return OK, "REST requests succeed"


def _config(beat: dict[str, Any]) -> tuple[HealthStatus, str]:
    info = beat.get("config")
    info = info if isinstance(info, dict) else {}
    source = info.get("source", "unknown")
    if info.get("valid") is False:
        errors = [str(e) for e in info.get("errors") or [] if e] if isinstance(info.get("errors"), list) else []
        problem = f": {'; '.join(errors)}" if errors else ""
        return ERROR, f"config invalid, running on {source}{problem}"[:500]
    return OK, f"config valid ({source})"


def _process(beat: dict[str, Any]) -> tuple[HealthStatus, str]:
    phase = beat.get("phase", "?")
    symbols = ",".join(beat.get("symbols") or [])
    text = f"pid {beat.get('pid')}, phase {phase}, mode {beat.get('mode')}, symbols {symbols}"
    lease = trader_lease(beat)
    if lease["role"] is not None:
        text += f", {lease['role']}"
        if isinstance(lease["lease"], dict) and lease["lease"].get("token") is not None:
            text += f" (lease token {lease['lease']['token']})"
    return (OK if phase == "RUNNING" else WARN), text


LEASE_FIELDS = ("account", "holder", "token", "expiresAt", "held")


def trader_lease(beat: dict[str, Any] | None) -> dict[str, Any]:
    """The leader's ``role`` and account ``lease`` from its heartbeat (None for both when unknown or malformed)."""
    beat = beat if isinstance(beat, dict) else {}
    role = beat.get("role") if beat.get("role") in ("LEADER", "STANDBY") else None
    lease = beat.get("lease")
    view = {name: lease.get(name) for name in LEASE_FIELDS} if isinstance(lease, dict) else None
    return {"role": role, "lease": view}


def _typed(value: Any, kind: type) -> Any:
    """``value`` when it is a ``kind`` (a bool is no int here), else None: a heartbeat field never breaks health."""
    if kind is int and isinstance(value, bool):
        return None
    return value if isinstance(value, kind) else None


DCP_FIELDS = {"armed": bool, "windowS": int, "supported": bool, "reason": str}


def trader_dcp(beat: dict[str, Any] | None) -> dict[str, Any]:
    """The leader's Bybit DCP (``dcp``: armed, window, whether the account has it, why not) from its heartbeat;
    None when unknown, a field of the wrong type None."""
    dcp = beat.get("dcp") if isinstance(beat, dict) else None
    if not isinstance(dcp, dict):
        return {"dcp": None}
    view = {name: _typed(dcp.get(name), kind) for name, kind in DCP_FIELDS.items()}
    if isinstance(view["reason"], str):
        view["reason"] = view["reason"][:500]
    return {"dcp": view}


def _not_running(why: str, at: datetime | None = None) -> dict[str, ServiceHealth]:
    services = {name: ServiceHealth(WARN, at, f"unknown: {why}") for name in TRADER_SERVICES}
    services["traderProcess"] = ServiceHealth(ERROR, at, why)
    return services


def _beat_at(beat: dict[str, Any]) -> datetime | None:
    try:
        at_ms = int(float(beat.get("at") or 0))
        return from_epoch_ms(at_ms) if at_ms > 0 else None
    except (TypeError, ValueError, OverflowError, OSError):  # not a time at all: the beat vouches for nothing
        return None


def _staleness(at: datetime | None, now: datetime, stale_after_s: float) -> str | None:
    """Say why the heartbeat written ``at`` no longer vouches for the trader at ``now``; None while it does."""
    if at is None:
        return "heartbeat carries no time"
    age_s = (now - at).total_seconds()
    if age_s > stale_after_s:
        return f"no heartbeat for {age_s:.0f} s (stale after {stale_after_s:g} s)"
    return None


def trader_services(
    beat: dict[str, Any] | None, *, config: TradingConfig, now: datetime | None = None
) -> dict[str, ServiceHealth]:
    """Return the trader-side services of the snapshot, from a heartbeat (None: no trader runs).

    With ``now``, a heartbeat older than ``config.health.stale_after_s`` counts as none.
    """
    if beat is None:
        return _not_running("trader not running")
    at = _beat_at(beat)
    if now is not None:
        stale = _staleness(at, now, config.health.stale_after_s)
        if stale is not None:
            return _not_running(stale, at)
    detectors = config.failover.detectors
    checks = {
        "traderProcess": _process(beat),
        "exchangeRest": _rest(beat, config),
        "publicStream": _stream(beat, "public", quiet_after_ms=detectors.market_data_stale_s * 1000),
        "privateStream": _stream(beat, "private", quiet_after_ms=detectors.private_silence_s * 1000),
        "latency": _latency(beat, config),
        "config": _config(beat),
    }
    return {name: ServiceHealth(status, at, message) for name, (status, message) in checks.items()}


def health_snapshot_build(beat: dict[str, Any] | None, *, config: TradingConfig,
                          failover: Mapping[str, Mapping[str, Any]], now: datetime) -> HealthSnapshot:
    """Return the snapshot: the trader's services from ``beat``, plus the FailoverManager's ``failover`` entries."""
    services = trader_services(beat, config=config, now=now)
    services.update({name: ServiceHealth.from_dict(entry) for name, entry in failover.items()})
    return HealthSnapshot.of(services, at=now)
