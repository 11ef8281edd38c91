from __future__ import annotations

from dataclasses import dataclass

from trading.domain.alerts import Alert, AlertLevel, AlertPolicy
from trading.tests.domain.kit import make_config

CONFIG = make_config(alerts={"dedupe_window_s": 60, "crit_dedupe_window_s": 10}).alerts


def alert(level: AlertLevel = AlertLevel.WARN, type_: str = "SLIPPAGE_SPIKE", symbol: str | None = "BTCUSDT") -> Alert:
    return Alert(level=level, type=type_, message="test", symbol=symbol)


def test_alerts_dedupe_same_key_within_window_and_count() -> None:
    policy = AlertPolicy(CONFIG)

    assert policy.check(alert(), 0) == 0
    assert policy.should_emit(alert(), 1_000) is False
    assert policy.should_emit(alert(), 59_999) is False
    assert policy.suppressed_count("SLIPPAGE_SPIKE", "BTCUSDT") == 2

    assert policy.check(alert(), 60_000) == 2  # sent again, carrying the count
    assert policy.suppressed_count("SLIPPAGE_SPIKE", "BTCUSDT") == 0
    assert policy.suppressed_total == 2


def test_alerts_other_symbol_or_type_is_another_key() -> None:
    policy = AlertPolicy(CONFIG)
    policy.should_emit(alert(), 0)

    assert policy.should_emit(alert(symbol="ETHUSDT"), 1) is True
    assert policy.should_emit(alert(type_="LATENCY_TOO_HIGH"), 2) is True
    assert policy.should_emit(alert(symbol=None), 3) is True


def test_alerts_escalation_passes_and_crit_has_its_own_window() -> None:
    policy = AlertPolicy(CONFIG)
    policy.should_emit(alert(AlertLevel.WARN), 0)

    assert policy.should_emit(alert(AlertLevel.CRIT), 1_000) is True
    assert policy.should_emit(alert(AlertLevel.CRIT), 10_999) is False
    assert policy.should_emit(alert(AlertLevel.CRIT), 11_000) is True
    assert policy.should_emit(alert(AlertLevel.WARN), 12_000) is False


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
    assert policy.suppressed_count("CONFIG_INVALID", "") == 0
