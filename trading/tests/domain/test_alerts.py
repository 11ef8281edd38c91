from __future__ import annotations

from dataclasses import dataclass

from trading.domain.alerts import AlertLevel, AlertPolicy
from trading.tests.domain.kit import make_config

CONFIG = make_config(alerts={"dedupe_window_s": 60, "crit_dedupe_window_s": 10}).alerts


@dataclass(frozen=True)
class Alert:
    """An edge's alert message, as the policy sees it."""

    level: str
    type: str
    symbol: str | None


def alert(level: AlertLevel = AlertLevel.WARN, type_: str = "SLIPPAGE_SPIKE", symbol: str | None = "BTCUSDT") -> Alert:
    return Alert(level=level, type=type_, symbol=symbol)


def test_alerts_dedupe_same_key_within_window_and_count() -> None:
    policy = AlertPolicy(CONFIG)

    assert policy.check(alert(), 0) == 0
    assert policy.check(alert(), 1_000) is None
    assert policy.check(alert(), 59_999) is None

    assert policy.check(alert(), 60_000) == 2  # sent again, carrying the count
    assert policy.suppressed_total == 2
    assert policy.check(alert(), 120_000) == 0  # the carried count started over


def test_alerts_other_symbol_or_type_is_another_key() -> None:
    policy = AlertPolicy(CONFIG)
    policy.check(alert(), 0)

    assert policy.check(alert(symbol="ETHUSDT"), 1) is not None
    assert policy.check(alert(type_="LATENCY_TOO_HIGH"), 2) is not None
    assert policy.check(alert(symbol=None), 3) is not None


def test_alerts_escalation_passes_and_crit_has_its_own_window() -> None:
    policy = AlertPolicy(CONFIG)
    policy.check(alert(AlertLevel.WARN), 0)

    assert policy.check(alert(AlertLevel.CRIT), 1_000) is not None
    assert policy.check(alert(AlertLevel.CRIT), 10_999) is None
    assert policy.check(alert(AlertLevel.CRIT), 11_000) is not None
    assert policy.check(alert(AlertLevel.WARN), 12_000) is None


def test_alerts_accept_any_alert_shaped_object_with_string_level() -> None:
    @dataclass(frozen=True)
    class EdgeAlert:
        level: str
        type: str
        symbol: str = ""

    policy = AlertPolicy(CONFIG)

    assert policy.check(EdgeAlert("WARN", "CONFIG_INVALID"), 0) == 0
    assert policy.check(EdgeAlert("WARN", "CONFIG_INVALID"), 1) is None
    assert policy.check(EdgeAlert("CRIT", "CONFIG_INVALID"), 2) == 1
    # The escalation reset the count: the next CRIT after the window carries none.
    assert policy.check(EdgeAlert("CRIT", "CONFIG_INVALID"), 10_002) == 0
