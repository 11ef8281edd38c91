"""One handler per step type: idempotent, and each returns its evidence for the step's ``details``.

Each handler takes a ``StepContext`` and returns a dict, or raises
``StepFailed`` (both in ``kit.py``). Running a handler twice is harmless: each
one converges to the truth it reads and does nothing when already there. The
two resyncs live in ``resync.py``; ``handler_for`` names the handler of each
step type.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from django.db import transaction

from failover.domain.process_state import ProcessStateCorrupt, ProcessStateStore
from failover.recovery import records, resync
from failover.recovery.alerts import alert_on_commit
from failover.recovery.kit import StepContext, StepFailed, trader_command, trader_heartbeat
from trading.alerts import CRIT
from trading.domain.config import ConfigError, read_config_file
from trading.exchange.port import ExchangeError
from trading.models import Position, PositionStatus

STREAMS_WAIT_S = 20.0
_STREAM_OF = {"privateWs": "private", "publicWs": "public"}


def resync_exchange_connection(ctx: StepContext) -> dict[str, Any]:
    """Prove the exchange answers REST, then have the trader rebuild its streams and see them connected."""
    sent_at = time.time()
    try:
        server_ms = ctx.rest().server_time_ms()
    except ExchangeError as exc:
        raise StepFailed(f"exchange REST did not answer: {exc}", {"rest": {"ok": False, "error": str(exc)}}) from exc
    received_at = time.time()
    evidence: dict[str, Any] = {"rest": {
        "ok": True, "serverTimeMs": server_ms, "roundTripMs": round((received_at - sent_at) * 1000, 1),
        "clockSkewMs": server_ms - int((sent_at + received_at) * 500),
    }}
    if trader_heartbeat(ctx.run_id) is None:
        evidence["streams"] = {"note": "no trader running: no streams to rebuild"}
        return evidence
    wanted = sorted({_STREAM_OF[c] for c in ctx.details.get("connections", _STREAM_OF) if c in _STREAM_OF})
    evidence["command"] = trader_command(ctx.run_id, "rebuild_streams", required=True)
    deadline = time.monotonic() + STREAMS_WAIT_S
    seen: dict[str, Any] = {}
    while True:
        ctx.beat()
        beat = trader_heartbeat(ctx.run_id) or {}
        seen = {name: (beat.get("streams") or {}).get(name, {}) for name in wanted}
        if all(s.get("connected") for s in seen.values()):
            evidence["streams"] = seen
            return evidence
        if time.monotonic() > deadline:
            raise StepFailed(f"streams not connected within {STREAMS_WAIT_S:.0f}s: {seen}",
                             {**evidence, "streams": seen})
        time.sleep(0.1)


def disable_trading(ctx: StepContext) -> dict[str, Any]:
    """Block new entries for the environment (closing and reduce-only orders still go through)."""
    with transaction.atomic():
        row = records.state_lock(ctx.run_id)
        before = row.trading_enabled
        if before:
            row.trading_enabled = False
            records.state_commit(row)
    return {"tradingEnabled": False, "before": before,
            "note": "new entries blocked; reduce-only and closing orders allowed"}


def _config_state(ctx: StepContext, *, valid: bool) -> None:
    with transaction.atomic():
        row = records.state_lock(ctx.run_id)
        active = [t for t in row.active_failures if t != "CONFIG_INVALID"]
        if not valid:
            active.append("CONFIG_INVALID")
        row.active_failures = active
        row.config_fallback = not valid
        if valid:
            row.trading_enabled = True  # DISABLE_TRADING is only ever planned for an invalid config
        records.state_commit(row)


def resync_config(ctx: StepContext) -> dict[str, Any]:
    """Validate the config file: invalid puts the built-in default in force and keeps CONFIG_INVALID active."""
    path = records.config_path(ctx.folder)
    try:
        found = read_config_file(path)  # any bad file (a directory, a symlink loop, huge numbers) is a ConfigError
    except ConfigError as exc:
        _config_state(ctx, valid=False)
        with transaction.atomic():
            alert_on_commit(level=CRIT, type="CONFIG_INVALID", run_id=ctx.run_id,
                            message=f"config.json is invalid; built-in fallback in force: {exc.errors[0]}",
                            details={"errors": exc.errors, "file": str(path)})
        return {"file": str(path), "valid": False, "errors": exc.errors, "fallback": "built-in default",
                "note": "safe mode stays on until the trader reports the file valid",
                "trader": trader_command(ctx.run_id, "reload_config", {"fallback": True})}
    if found is None:
        _config_state(ctx, valid=True)
        return {"file": str(path), "valid": True, "source": "default",
                "note": "no config file: the built-in default is the config", "trader": trader_command(
                    ctx.run_id, "reload_config", {"fallback": False})}
    _config_state(ctx, valid=True)
    return {"file": str(path), "valid": True, "source": "file",
            "trader": trader_command(ctx.run_id, "reload_config", {"fallback": False})}


def read_process_state(ctx: StepContext) -> dict[str, Any]:
    """Record what the previous process believed; a corrupt file (moved aside) means: trust the exchange."""
    system = ctx.folder / "system"
    previous = system / "process_state.previous.json"
    # lexists: a previous copy that is a dangling link or a symlink loop is still there, and bad.
    path = previous if os.path.lexists(previous) else system / "process_state.json"
    try:
        state = ProcessStateStore(path, clock=records.CLOCK).load()
    except ProcessStateCorrupt as exc:
        return {"file": path.name, "found": False, "dataCorruption": {"error": exc.error, "movedTo": exc.moved_to.name},
                "note": "the previous state is unreadable: continuing from exchange truth"}
    if state is None:
        return {"file": path.name, "found": False, "note": "no previous process state: first start"}
    return {"file": path.name, "found": True, "previous": {
        "phase": state.phase.value, "pid": state.pid, "runMode": state.run_mode.value,
        "lastUpdate": state.to_dict()["lastUpdate"], "activeSymbols": list(state.active_symbols),
        "positions": [p.to_dict() for p in state.open_positions_snapshot],
        "orders": [o.to_dict() for o in state.open_orders_snapshot],
    }}


def clear_local_state(ctx: StepContext) -> dict[str, Any]:
    """Have the trader reset per-symbol contexts, keeping those of symbols that still hold a position."""
    keep = sorted(set(Position.objects.filter(run_id=ctx.run_id, status=PositionStatus.OPEN)
                      .values_list("symbol", flat=True)))
    if trader_heartbeat(ctx.run_id) is None:
        return {"keep": keep, "trader": None, "note": "no trader running: nothing was in memory"}
    return {"keep": keep, "trader": trader_command(ctx.run_id, "clear_local_state", {"keep": keep}, required=True)}


def handler_for(step_type: str) -> Callable[[StepContext], dict[str, Any]]:
    """Return the handler that carries out ``step_type``."""
    return {
        "RESYNC_EXCHANGE_CONNECTION": resync_exchange_connection,
        "RESYNC_POSITIONS": resync.resync_positions,
        "RESYNC_ORDERS": resync.resync_orders,
        "CLEAR_LOCAL_STATE": clear_local_state,
        "DISABLE_TRADING": disable_trading,
        "RESYNC_CONFIG": resync_config,
        "READ_PROCESS_STATE": read_process_state,
    }[step_type]
