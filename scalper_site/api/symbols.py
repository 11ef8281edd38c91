"""Per-symbol status as the web process sees it: the trader's heartbeat plus the database (pure: no Django, no Redis).

The heartbeat's ``symbolStatus`` (``trading.trader.blackbox``) carries what
only the running trader knows: last price, regime, scores, the state machine's
state and why entries are blocked. The database carries what outlives it: the
open position and the open orders. A heartbeat older than ``LIVE_WITHIN_MS``
(or none: the key expires 10 s after the last write) means no trader is alive;
then the live fields are null, never the last values passed off as current,
and ``trader`` says how old the last heartbeat is.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from failover.domain.clock import from_epoch_ms, to_epoch_ms
from trading.domain.regime import Regime
from trading.domain.statemachine import State

LIVE_WITHIN_MS = 5000  # the health snapshot's rule too: an older heartbeat is a trader that stopped
MAX_SYMBOLS = 200  # a status table, not an export (the trader reports at most 50)
_MAX_EPOCH_MS = 4_102_444_800_000  # 2100-01-01: a later (or negative) time in a heartbeat is not a time

REGIMES = [regime.value for regime in Regime]
STATES = [state.value for state in State]
LIVE_FIELDS = ("lastPrice", "spreadBps", "featuresReady", "regime", "regimeSince", "score", "state", "stateSince",
               "stateReason", "side", "entryBlockedBy", "marketDataAgeMs", "leverage")
LEVERAGE_STATES = ["PENDING", "APPLIED", "RETRYING", "FAILED", "NOT_SENT"]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if value == value and abs(value) != float("inf") else None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _text(value: Any, limit: int = 80) -> str | None:
    return value[:limit] if isinstance(value, str) else None


def _one_of(value: Any, allowed: list[str]) -> str | None:
    return value if isinstance(value, str) and value in allowed else None


def _moment(value: Any) -> datetime | None:
    ms = _count(value)
    return from_epoch_ms(ms) if ms is not None and 0 < ms < _MAX_EPOCH_MS else None


def _score(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, Mapping):
        return None
    return {"long": _number(value.get("long")), "short": _number(value.get("short")), "at": _moment(value.get("atMs"))}


def _reasons(value: Any) -> list[str] | None:
    return [reason[:60] for reason in value[:8] if isinstance(reason, str)] if isinstance(value, list) else None


def _leverage(value: Any) -> dict[str, Any] | None:
    """The configured leverage, what the exchange confirmed, and where that stands (``risk.default_leverage``)."""
    if not isinstance(value, Mapping):
        return None
    return {"wanted": _number(value.get("wanted")), "applied": _number(value.get("applied")),
            "state": _one_of(value.get("state"), LEVERAGE_STATES), "attempts": _count(value.get("attempts")),
            "error": _text(value.get("error"), 200)}


def live_fields(entry: Any) -> dict[str, Any]:
    """One symbol's live fields from its heartbeat entry; every field None when there is no entry."""
    if not isinstance(entry, Mapping):
        return dict.fromkeys(LIVE_FIELDS)
    ready = entry.get("featuresReady")
    return {
        "lastPrice": _number(entry.get("lastPrice")),
        "spreadBps": _number(entry.get("spreadBps")),
        "featuresReady": ready if isinstance(ready, bool) else None,
        "regime": _one_of(entry.get("regime"), REGIMES),
        "regimeSince": _moment(entry.get("regimeSinceMs")),
        "score": _score(entry.get("score")),
        "state": _one_of(entry.get("state"), STATES),
        "stateSince": _moment(entry.get("stateSinceMs")),
        "stateReason": _text(entry.get("stateReason")),
        "side": _text(entry.get("side"), 8),
        "entryBlockedBy": _reasons(entry.get("entryBlockedBy")),
        "marketDataAgeMs": _count(entry.get("marketDataAgeMs")),
        "leverage": _leverage(entry.get("leverage")),
    }


def trader_liveness(beat: Mapping[str, Any] | None, *, now: datetime) -> dict[str, Any]:
    """Whether a trader is alive, from its last heartbeat (None: none in Redis), and how old that heartbeat is."""
    at = _moment(beat.get("at")) if beat is not None else None
    if beat is None or at is None:
        return {"alive": False, "heartbeatAt": None, "heartbeatAgeMs": None, "phase": None, "mode": None,
                "safeMode": None, "message": "no trader heartbeat: no trader is running"}
    age_ms = max(0, to_epoch_ms(now) - to_epoch_ms(at))
    alive = age_ms <= LIVE_WITHIN_MS
    safe_mode = beat.get("safeMode")
    message = (f"trader alive (heartbeat {age_ms} ms old)" if alive else
               f"trader not alive: last heartbeat {age_ms / 1000:.1f} s old; live values are not shown")
    return {"alive": alive, "heartbeatAt": at, "heartbeatAgeMs": age_ms, "phase": _text(beat.get("phase"), 20),
            "mode": _text(beat.get("mode"), 20), "safeMode": safe_mode if isinstance(safe_mode, bool) else None,
            "message": message}


def symbols_status_build(beat: Mapping[str, Any] | None, book: Mapping[str, Mapping[str, Any]], *,
                         now: datetime) -> dict[str, Any]:
    """The symbols status: the trader's liveness, and per symbol (the heartbeat's and those the database holds
    a position or open orders of, by name) its live fields, open position and open orders count."""
    trader = trader_liveness(beat, now=now)
    reported = beat.get("symbolStatus") if beat is not None else None
    reported = reported if isinstance(reported, Mapping) else {}
    names = sorted({name[:32] for name in reported if isinstance(name, str)} | set(book))[:MAX_SYMBOLS]
    symbols = []
    for name in names:
        entry = reported.get(name) if trader["alive"] else None
        held = book.get(name) or {}
        symbols.append({"symbol": name, "live": isinstance(entry, Mapping), **live_fields(entry),
                        "position": held.get("position"), "openOrders": held.get("open_orders", 0)})
    return {"timestamp": now, "trader": trader, "symbols": symbols}
