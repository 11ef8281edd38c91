"""How other processes see and steer the trader: a heartbeat and acknowledged commands.

Views, Celery tasks and the dashboard never reach into the trader's memory.
They read its heartbeat (a Redis key it refreshes every second, gone when it
stops refreshing) and send it commands over the bus; the trader carries a
command out on its pipeline thread and writes an acknowledgement.

Heartbeat (JSON at ``scalper:trader:<env>:heartbeat``, expires after 10 s; written by the account's LEADER
only: a STANDBY trader writes the same shape at ``scalper:trader:<env>:standby:<holder>`` and answers no
command)::

    {"pid": 123, "phase": "RUNNING", "at": 1763479195000, "mode": "SIM",
     "symbols": ["BTCUSDT"], "safeMode": true,
     "streams": {"public": {"connected": true, "lastMessageAgeMs": 40, "rebuilds": 0},
                 "private": {"connected": true, "lastMessageAgeMs": 900, "rebuilds": 1}},
     "restFailuresInARow": 0, "latencyAvgMs": {"rest": 2.1, "ws": 5.0},
     "config": {"valid": true, "source": "file", "errors": []},
     "symbolStatus": {"BTCUSDT": {"lastPrice": 91234.5, "regime": "RANGE", "score": {"long": 0.2, ...},
                                  "state": "WATCH", "entryBlockedBy": ["SAFE_MODE_ACTIVE"], ...}},
     "detectors": {"packet_loss": {"type": "PACKET_LOSS", "active": false, "lastIncidentMs": 1763479190000}, ...},
     "role": "LEADER",
     "lease": {"account": "9f2c...", "holder": "host:123:ab12cd34", "token": 7, "expiresAt": 1763479205.0,
               "held": true},
     "dcp": {"armed": true, "windowS": 10, "supported": true, "reason": ""}}

(``role``/``lease``: the account lease, ``trading.exchange.lease``; ``expiresAt`` in epoch seconds.
``dcp``: Bybit's DCP as the leader armed it, ``trading.trader.dcp.health_json``; ``reason`` code first.
``symbolStatus``: per traded symbol, 50 at most; its fields are ``trading.trader.blackbox.symbol_view_dict``'s.
``detectors``: ``Watchdog.detector_status()``, each detector's failure type, whether it holds, its last incident.)

Commands (bus kind ``trader.command``): the names in
``trading.trader.commands.COMMAND_NAMES`` (``reload_state``,
``clear_local_state``, ``rebuild_streams``, ``reload_config``, ``panic_close``,
``close_position``, ``arm_fault``).

``arm_fault`` (refused unless the trader runs with ``--allow-fault-hooks``)
changes only the faults its args name: ``feature_engine_error`` (a message: the
FeatureEngine throws it on every update; None disarms), ``crash_at`` (a crash
point: ``before_send``, ``after_send``, ``after_fill``, ``mid_state_write``; the
trader SIGKILLs itself there, see ``trading/trader/README.md``; None disarms)
with ``crash_after`` (die at the N-th reach from now, default 1). An unknown
name or point is refused and arms nothing; the result is what is armed now:
``{"featureEngineError": ..., "crashAt": ..., "crashAfter": ...}``.
The acknowledgement (JSON at ``scalper:trader:<env>:ack:<commandId>``, kept 5
minutes) is ``{"ok": bool, "result": {...}, "error": str | null}``.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import redis

from scalper_site import bus
from trading.trader.commands import COMMAND_NAMES

HEARTBEAT_TTL_S = 10
ACK_TTL_S = 300
COMMANDS = frozenset(COMMAND_NAMES)  # defined once, beside the trader's handlers


class TraderUnavailable(RuntimeError):
    """No trader answered: none is running for this environment, or it did not acknowledge in time."""


def _env(run_id: str) -> str:
    return run_id or "main"


def heartbeat_key(run_id: str = "") -> str:
    return f"scalper:trader:{_env(run_id)}:heartbeat"


def ack_key(run_id: str, command_id: str) -> str:
    return f"scalper:trader:{_env(run_id)}:ack:{command_id}"


def standby_heartbeat_key(run_id: str = "", holder: str = "") -> str:
    return f"scalper:trader:{_env(run_id)}:standby:{holder}"


def write_heartbeat(
    beat: dict[str, Any], *, run_id: str = "", standby: str = "", client: redis.Redis | None = None
) -> None:
    """Write the leader's heartbeat; with ``standby`` (its lease holder id), a standby's own, beside it."""
    key = standby_heartbeat_key(run_id, standby) if standby else heartbeat_key(run_id)
    (client or bus.client()).set(key, json.dumps(beat), ex=HEARTBEAT_TTL_S)


def read_standby_heartbeats(*, run_id: str = "", limit: int = 20) -> list[dict[str, Any]]:
    """The heartbeats of the environment's standby traders (each under its own key), at most ``limit``."""
    try:
        client = bus.client()
        keys = list(client.scan_iter(match=standby_heartbeat_key(run_id, "*"), count=100))[:limit]
        raws = client.mget(keys) if keys else []
    except (redis.RedisError, OSError, ValueError):
        return []
    beats = []
    for raw in raws:
        try:
            beat = json.loads(raw) if raw is not None else None
        except ValueError:
            continue
        if isinstance(beat, dict):
            beats.append(beat)
    return beats


def read_heartbeat(*, run_id: str = "", max_age_ms: int = 5000) -> dict[str, Any] | None:
    """The trader's last heartbeat, or None when it is missing, unreadable or older than ``max_age_ms``."""
    try:
        raw = bus.client().get(heartbeat_key(run_id))
    except (redis.RedisError, OSError, ValueError):  # ValueError: no Redis URL configured
        return None
    if raw is None:
        return None
    try:
        beat = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(beat, dict) or time.time() * 1000 - float(beat.get("at", 0)) > max_age_ms:
        return None
    return beat


def write_ack(
    command_id: str,
    *,
    ok: bool,
    result: dict[str, Any] | None = None,
    error: str | None = None,
    run_id: str = "",
    client: redis.Redis | None = None,
) -> None:
    body = json.dumps({"ok": ok, "result": result or {}, "error": error}, default=str)
    (client or bus.client()).set(ack_key(run_id, command_id), body, ex=ACK_TTL_S)


def send_command(
    command: str, *, run_id: str = "", args: dict[str, Any] | None = None, wait_s: float = 10.0
) -> dict[str, Any]:
    """Send ``command`` to the trader and wait for its acknowledgement.

    Raises ``TraderUnavailable`` when no trader heartbeat exists or no
    acknowledgement arrives within ``wait_s``.
    """
    if command not in COMMANDS:
        raise ValueError(f"unknown trader command {command!r}")
    if read_heartbeat(run_id=run_id) is None:
        raise TraderUnavailable(f"no trader is running for environment {_env(run_id)!r}")
    command_id = uuid.uuid4().hex
    bus.publish("trader.command", {"command": command, "commandId": command_id, "args": args or {}}, run_id=run_id)
    client = bus.client()
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        raw = client.get(ack_key(run_id, command_id))
        if raw is not None:
            return json.loads(raw)
        time.sleep(0.02)
    raise TraderUnavailable(f"the trader did not acknowledge {command!r} within {wait_s:.0f}s")
