"""Reads of the system's own state for one run: failover state, plans, alerts, trades, heartbeat, event logs.

Scenarios judge the product only through these (and the simulator's truth), so
every verdict in a report points at something an operator can look at too.
They go through the product's public reads (``failover.selectors``,
``trading.selectors``, ``failover.services.failover_health``,
``trading.control.read_heartbeat``), never its models.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from failover.domain.types import FailureEvent
from failover.selectors import (
    ManagedFailoverState,
    failover_state_find,
    failure_events_list,
    recovery_plan_get,
    recovery_plans_list,
)
from failover.services import failover_health
from trading.control import read_heartbeat
from trading.selectors import alerts_list, orders_open, positions_open, trades_count, trades_list

RESTING = ("NEW", "PARTIALLY_FILLED")  # order statuses the exchange holds open


def jsonable(value: Any) -> Any:
    """Return ``value`` as JSON data (Decimals as strings, tuples as lists, datetimes as ISO text)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [jsonable(v) for v in value]
        return sorted(items, key=json.dumps) if isinstance(value, (set, frozenset)) else items
    if isinstance(value, Decimal):
        return str(value.normalize()) if value == value.to_integral() else str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


# -- failover -------------------------------------------------------------------------


def state(run_id: str) -> ManagedFailoverState:
    """Return the run's failover state; raise LookupError before its trader's first report."""
    found = failover_state_find(run_id=run_id)
    if found is None:
        raise LookupError(f"run {run_id} has no failover state yet")
    return found


def version(run_id: str) -> int:
    found = failover_state_find(run_id=run_id)
    return -1 if found is None else found.version


def failures(run_id: str) -> list[str]:
    """Return the run's failure types in the order they were reported."""
    return [event.type.value for event in failure_events_list(run_id=run_id)]


def failure(run_id: str, failure_type: str) -> FailureEvent | None:
    """Return the first ``failure_type`` failure reported in the run."""
    found = failure_events_list(run_id=run_id, failure_type=failure_type)
    return found[0] if found else None


def plan_steps(plan: dict[str, Any] | None) -> list[tuple[str, str]]:
    return [] if plan is None else [(step["type"], step["status"]) for step in plan["steps"]]


def plan_for(run_id: str, failure_type: str) -> dict[str, Any] | None:
    """Return the newest plan that covers ``failure_type`` (generated for it or extended by it)."""
    plans = recovery_plans_list(run_id=run_id, failure_type=failure_type)
    return plans[0] if plans else None


def plans_since(run_id: str, since: datetime) -> list[dict[str, Any]]:
    """Return the run's plans generated at or after ``since``, newest first."""
    return recovery_plans_list(run_id=run_id, generated_since=since)


def state_summary(run_id: str) -> dict[str, Any]:
    found = failover_state_find(run_id=run_id)
    if found is None:
        return {"state": None}
    current = found.current_plan
    plan = None if current is None or current.plan_id is None else recovery_plan_get(
        plan_id=current.plan_id)
    return {
        "safeMode": found.safe_mode,
        "reason": found.reason,
        "version": found.version,
        "activeFailures": list(found.active_failures),
        "configFallback": found.config_fallback,
        "plan": None if plan is None else {"status": plan["status"], "failureType": plan["failure_type"],
                                           "steps": plan_steps(plan)},
        "failures": failures(run_id),
    }


def safe_mode_off_after(run_id: str, after_version: int) -> ManagedFailoverState | None:
    found = failover_state_find(run_id=run_id)
    return found if found is not None and found.version > after_version and not found.safe_mode else None


# -- health, heartbeat -------------------------------------------------------------------


def heartbeat(run_id: str) -> dict[str, Any] | None:
    return read_heartbeat(run_id=run_id)


def streams_connected(beat: dict[str, Any] | None) -> bool:
    streams = (beat or {}).get("streams") or {}
    return bool(streams) and all(s.get("connected") for s in streams.values())


def health_snapshot(run_id: str) -> dict[str, dict[str, Any]]:
    """Return the failover health entries plus one for the trader's streams (ERROR when not connected)."""
    snapshot = dict(failover_health(run_id=run_id))
    beat = heartbeat(run_id)
    if beat is None:
        snapshot["traderStreams"] = {"status": "ERROR", "message": "no trader heartbeat"}
    else:
        down = sorted(name for name, s in (beat.get("streams") or {}).items() if not s.get("connected"))
        snapshot["traderStreams"] = {"status": "ERROR" if down else "OK",
                                     "message": f"disconnected: {', '.join(down)}" if down else "all connected"}
    return snapshot


# -- trading rows -------------------------------------------------------------------------


def trades(run_id: str) -> int:
    return trades_count(run_id=run_id)


def closed_trades(run_id: str) -> list[dict[str, Any]]:
    """Return the run's trades, oldest first: symbol, side, qty, realized_pnl, closed_at."""
    return trades_list(run_id=run_id)


def alerts(run_id: str, level: str | None = None) -> list[tuple[str, str]]:
    return [(a["level"], a["type"]) for a in alerts_list(run_id=run_id, level=level)]


def open_positions(run_id: str) -> list[tuple[str, str, Decimal]]:
    rows = positions_open(run_id=run_id)
    return sorted((p["symbol"], p["side"], Decimal(p["qty"]).normalize()) for p in rows)


def exchange_positions(exchange: dict[str, Any]) -> list[tuple[str, str, Decimal]]:
    return sorted(
        (p["symbol"], "LONG" if p["side"] == "Buy" else "SHORT", Decimal(p["size"]).normalize())
        for p in exchange["positions"]
        if Decimal(p["size"]) > 0
    )


def open_order_links(run_id: str) -> set[str]:
    """Return the orderLinkIds of the run's orders resting on the exchange (NEW, PARTIALLY_FILLED)."""
    return {o["order_link_id"] for o in orders_open(run_id=run_id) if o["status"] in RESTING}


def open_order_ids(run_id: str) -> set[str]:
    """Return the exchange's order ids of the run's orders resting on the exchange."""
    return {o["exchange_order_id"] for o in orders_open(run_id=run_id) if o["status"] in RESTING}


def unfinished_orders(run_id: str) -> list[tuple[str, str]]:
    """Return (orderLinkId, status) of every run order not finished yet, intents included."""
    return [(o["order_link_id"], o["status"]) for o in orders_open(run_id=run_id)]


def exchange_order_links(exchange: dict[str, Any]) -> set[str]:
    return {o["orderLinkId"] for o in exchange["orders"]}


# -- event logs -----------------------------------------------------------------------------


def read_events(data_dir: Path, symbol: str = "_SYSTEM") -> list[dict[str, Any]]:
    """Return the run's logged events of ``symbol`` (``_SYSTEM``: failures, commands, failover changes)."""
    path = data_dir / "events" / f"{symbol}.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # the line being written right now
    return out


def time_in_safe_mode_ms(events: list[dict[str, Any]], *, now_ms: int | None = None) -> int:
    """Add up the time the traders spent in safe mode, from their FAILOVER_STATE and stop events."""
    total, since = 0, None
    for event in sorted(events, key=lambda e: e.get("tsMs", 0)):
        ts = int(event.get("tsMs", 0))
        kind = event.get("event")
        if kind == "FAILOVER_STATE":
            if event.get("safeMode") and since is None:
                since = ts
            elif not event.get("safeMode") and since is not None:
                total, since = total + ts - since, None
        elif kind == "TRADER_STOPPED" and since is not None:
            total, since = total + ts - since, None
    if since is not None:
        total += max(0, (now_ms if now_ms is not None else int(time.time() * 1000)) - since)
    return total


def run_metrics(run_id: str, data_dir: Path | None) -> dict[str, Any]:
    """Return the spec's metrics (trades, alerts) and the time spent in safe mode."""
    events = read_events(data_dir) if data_dir is not None else []
    return {
        "tradesExecuted": trades(run_id),
        "alertsCount": len(alerts(run_id)),
        "critAlerts": len(alerts(run_id, "CRIT")),
        "failures": failures(run_id),
        "timeInSafeModeMs": time_in_safe_mode_ms(events),
    }
