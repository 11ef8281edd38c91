"""What each trading event says as an alert: a stable type, a level, a sentence for people, JSON details.

The domain reports what happened (``QualityBlockChange``, ``DailyLossStop``, a
panic close report, ``ConfigApplied``); these functions word it once, so the
core, the commands and the inbox raise the same alert for the same event. The
details hold JSON values only (decimals as strings): they are stored and posted
as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from trading.domain import alert_types
from trading.domain.alerts import AlertLevel, AlertMessage
from trading.domain.config import SOURCE_FALLBACK, SOURCE_FILE, ConfigApplied, TradingConfig
from trading.domain.quality import QualityBlockChange
from trading.domain.risk import DailyLossStop

MAX_FIELDS_IN_MESSAGE = 5  # the details carry every changed field; the sentence names the first few


def slippage_alert(change: QualityBlockChange) -> AlertMessage:
    """SLIPPAGE_BLOCK (WARN) when a symbol's execution quality blocks its entries, SLIPPAGE_UNBLOCK (INFO) after."""
    details = {"score": round(change.score, 2), "threshold": change.threshold}
    if change.blocked:
        return AlertMessage(
            level=AlertLevel.WARN,
            type=alert_types.SLIPPAGE_BLOCK,
            symbol=change.symbol,
            message=(
                f"{change.symbol}: new entries blocked, execution quality {change.score:.1f} "
                f"is below {change.threshold:g}"
            ),
            details=details,
        )
    return AlertMessage(
        level=AlertLevel.INFO,
        type=alert_types.SLIPPAGE_UNBLOCK,
        symbol=change.symbol,
        message=f"{change.symbol}: new entries allowed again, execution quality {change.score:.1f}",
        details=details,
    )


def daily_loss_alert(stop: DailyLossStop) -> AlertMessage:
    """DAILY_LOSS_STOP (CRIT): no new entries until 00:00 UTC; exits go on."""
    return AlertMessage(
        level=AlertLevel.CRIT,
        type=alert_types.DAILY_LOSS_STOP,
        message=(
            f"Daily loss limit reached: realised PnL {_money(stop.daily_pnl)} USDT, limit -{_money(stop.limit)} USDT "
            f"({stop.limit_pct}% of {_money(stop.day_start_equity)}); no new entries until 00:00 UTC"
        ),
        details={
            "dailyPnl": _money(stop.daily_pnl),
            "limit": _money(stop.limit),
            "limitPct": str(stop.limit_pct),
            "dayStartEquity": _money(stop.day_start_equity),
        },
    )


def panic_close_alert(report: Mapping[str, Any], *, by: str) -> AlertMessage:
    """PANIC_CLOSE (CRIT): who asked, what was closed and cancelled, what is still open."""
    closed = [str(s) for s in report.get("closedPositions", [])]
    canceled = [str(o) for o in report.get("canceledOrders", [])]
    still_open = [str(s) for s in report.get("openPositions", [])]
    errors = [str(e) for e in report.get("errors", [])]
    who = by or "an unnamed sender"
    parts = [f"closed {', '.join(closed) if closed else 'no position'}", f"{len(canceled)} order(s) cancelled"]
    if still_open:
        parts.append(f"STILL OPEN: {', '.join(still_open)}")
    if errors:
        parts.append(f"{len(errors)} error(s): {errors[0]}")
    return AlertMessage(
        level=AlertLevel.CRIT,
        type=alert_types.PANIC_CLOSE,
        message=f"Panic close by {who}: " + "; ".join(parts),
        details={
            "by": by,
            "closedPositions": closed,
            "canceledOrders": canceled,
            "openPositions": still_open,
            "errors": errors,
            "success": bool(report.get("success")),
            "dailyPnl": str(report.get("dailyPnl", "")),
        },
    )


def config_changes(previous: TradingConfig, new: TradingConfig) -> list[dict[str, Any]]:
    """Return every field whose value differs, as ``{"field": "risk.max_open_positions", "from": 3, "to": 2}``."""
    before, after = _flatten(previous.model_dump()), _flatten(new.model_dump())
    return [
        {"field": name, "from": before.get(name), "to": after.get(name)}
        for name in sorted(before.keys() | after.keys())
        if before.get(name) != after.get(name)
    ]


def config_reloaded_alert(event: ConfigApplied) -> AlertMessage | None:
    """CONFIG_RELOADED (INFO) naming the fields that changed; None when the new config changes nothing."""
    changes = config_changes(event.previous, event.config)
    if not changes:
        return None
    named = ", ".join(f"{c['field']} {c['from']} -> {c['to']}" for c in changes[:MAX_FIELDS_IN_MESSAGE])
    more = len(changes) - MAX_FIELDS_IN_MESSAGE
    if more > 0:
        named += f" and {more} more"
    if event.source == SOURCE_FILE:
        what = "Config reloaded"
    elif event.source == SOURCE_FALLBACK:
        what = "Built-in fallback config in force"
    else:
        what = "No config file: built-in default in force"
    return AlertMessage(
        level=AlertLevel.INFO,
        type=alert_types.CONFIG_RELOADED,
        message=f"{what}: {named}",
        details={"source": event.source, "changed": changes},
    )


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = list(value) if isinstance(value, tuple) else value
    return flat


def _money(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.01")))
