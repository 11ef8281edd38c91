from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from failover.domain.clock import ManualClock
from trading.domain.config import (
    DEFAULT_CONFIG,
    SOURCE_DEFAULT,
    SOURCE_FALLBACK,
    SOURCE_FILE,
    ConfigApplied,
    ConfigEngine,
    ConfigError,
    ConfigEvent,
    ConfigInvalid,
    TradingConfig,
    default_config_json,
    parse_config,
)
from trading.tests.domain.kit import T0

_mtime = [1_700_000_000_000_000_000]


def _write(path: Path, text: str) -> None:
    """Write ``text`` and give the file a fresh mtime, so even a same-size rewrite is a change."""
    path.write_text(text, encoding="utf-8")
    _mtime[0] += 1_000_000_000
    os.utime(path, ns=(_mtime[0], _mtime[0]))


def _engine(tmp_path: Path) -> tuple[ConfigEngine, list[ConfigEvent]]:
    engine = ConfigEngine(tmp_path / "config.json", ManualClock(T0))
    events: list[ConfigEvent] = []
    engine.add_listener(events.append)
    return engine, events


def _refused_errors(tmp_path: Path, text: str) -> list[str]:
    """Load a valid file, then plant ``text``; check the refusal keeps the old config; return the errors."""
    engine, events = _engine(tmp_path)
    _write(engine.path, json.dumps({"risk": {"max_open_positions": 5}}))
    engine.load()
    good = engine.config
    _write(engine.path, text)
    event = engine.poll()
    assert isinstance(event, ConfigInvalid)
    assert event.path == str(engine.path)
    assert event.at == T0
    assert events[-1] is event
    assert engine.config is good
    assert engine.config.risk.max_open_positions == 5
    assert engine.last_errors == event.errors
    return event.errors


def test_config_missing_file_uses_default_and_writes_nothing(tmp_path: Path) -> None:
    engine, events = _engine(tmp_path)

    assert engine.load() is None

    assert engine.config is DEFAULT_CONFIG
    assert engine.source == SOURCE_DEFAULT
    assert "not found" in engine.message
    assert not engine.path.exists()
    assert list(tmp_path.iterdir()) == []
    assert events == []


def test_config_loads_partial_file_over_defaults(tmp_path: Path) -> None:
    engine, events = _engine(tmp_path)
    _write(engine.path, json.dumps({"risk": {"max_open_positions": 5, "risk_per_trade_pct": 0.5}}))

    event = engine.load()

    assert isinstance(event, ConfigApplied)
    assert event.source == SOURCE_FILE
    assert event.previous is DEFAULT_CONFIG
    assert engine.config.risk.max_open_positions == 5
    assert engine.config.risk.risk_per_trade_pct == 0.5
    assert engine.config.features == DEFAULT_CONFIG.features
    assert events == [event]


def test_config_hot_reloads_a_valid_change_and_notifies(tmp_path: Path) -> None:
    engine, events = _engine(tmp_path)
    _write(engine.path, json.dumps({"state_machine": {"cooldown_ms": 1000}}))
    engine.load()
    first = engine.config

    assert engine.poll() is None  # unchanged file: nothing to do

    _write(engine.path, json.dumps({"state_machine": {"cooldown_ms": 2000}}))
    event = engine.poll()

    assert isinstance(event, ConfigApplied)
    assert event.previous is first
    assert event.config is engine.config
    assert engine.config.state_machine.cooldown_ms == 2000
    assert [type(e) for e in events] == [ConfigApplied, ConfigApplied]
    assert engine.poll() is None


def test_config_refuses_invalid_json(tmp_path: Path) -> None:
    errors = _refused_errors(tmp_path, '{"risk": {"max_open_positions": 3,}}')

    assert errors == ["(root): invalid JSON: Expecting property name enclosed in double quotes (line 1, column 35)"]


def test_config_refuses_string_instead_of_number(tmp_path: Path) -> None:
    errors = _refused_errors(tmp_path, json.dumps({"risk": {"max_open_positions": "3"}}))

    assert errors == ["risk.max_open_positions: Input should be a valid integer"]


def test_config_refuses_out_of_range_value(tmp_path: Path) -> None:
    errors = _refused_errors(tmp_path, json.dumps({"risk": {"max_open_positions": 101}}))

    assert errors == ["risk.max_open_positions: Input should be less than or equal to 100"]


def test_config_refuses_cross_field_violation(tmp_path: Path) -> None:
    text = json.dumps({"failover": {"recovery_warn_after_s": 120, "recovery_error_after_s": 60}})

    errors = _refused_errors(tmp_path, text)

    assert errors == [
        "failover.recovery_error_after_s: Value error, must be greater than recovery_warn_after_s (120.0)"
    ]


def test_config_refuses_unknown_key(tmp_path: Path) -> None:
    errors = _refused_errors(tmp_path, json.dumps({"risk": {"max_open_position": 3}}))

    assert errors == ["risk.max_open_position: Extra inputs are not permitted"]


def test_config_refuses_non_finite_number(tmp_path: Path) -> None:
    errors = _refused_errors(tmp_path, '{"risk": {"max_heat_pct": NaN}}')

    assert errors == ["risk.max_heat_pct: Input should be a finite number"]


def test_config_refuses_all_zero_weights(tmp_path: Path) -> None:
    zero = {"momentum_fast": 0, "momentum_slow": 0, "order_flow": 0, "vwap": 0, "regime": 0}

    errors = _refused_errors(tmp_path, json.dumps({"scoring": {"weights": zero}}))

    assert errors == ["scoring.weights: Value error, at least one weight must be non-zero"]


def test_config_refuses_top_level_that_is_not_an_object(tmp_path: Path) -> None:
    errors = _refused_errors(tmp_path, "[1, 2]")

    assert errors == ["(root): Input should be a valid dictionary or instance of TradingConfig"]


def test_config_refuses_process_state_interval_outside_5_to_15(tmp_path: Path) -> None:
    errors = _refused_errors(tmp_path, json.dumps({"failover": {"process_state_interval_s": 4}}))

    assert errors == ["failover.process_state_interval_s: Input should be greater than or equal to 5"]


def test_config_reports_every_bad_field_at_once() -> None:
    text = json.dumps({"risk": {"max_open_positions": "3", "take_profit_multiple": 0}, "latency": {"warn_ms": -1}})

    with pytest.raises(ConfigError) as caught:
        parse_config(text)

    assert caught.value.errors == [
        "risk.max_open_positions: Input should be a valid integer",
        "risk.take_profit_multiple: Input should be greater than 0",
        "latency.warn_ms: Input should be greater than 0",
    ]


def test_config_does_not_report_the_same_invalid_file_twice(tmp_path: Path) -> None:
    engine, events = _engine(tmp_path)
    _write(engine.path, json.dumps({"risk": {"max_open_positions": "x"}}))

    assert isinstance(engine.load(), ConfigInvalid)
    assert engine.poll() is None
    assert len(events) == 1
    assert engine.config is DEFAULT_CONFIG


def test_config_use_fallback_switches_to_default_until_a_valid_change(tmp_path: Path) -> None:
    engine, events = _engine(tmp_path)
    _write(engine.path, json.dumps({"risk": {"max_open_positions": 5}}))
    engine.load()
    _write(engine.path, json.dumps({"risk": {"max_open_positions": "5"}}))
    engine.poll()

    applied = engine.use_fallback("CONFIG_INVALID")

    assert engine.on_fallback is True
    assert engine.config is DEFAULT_CONFIG
    assert engine.source == SOURCE_FALLBACK
    assert applied.source == SOURCE_FALLBACK
    assert events[-1] is applied
    assert engine.poll() is None  # still the same invalid file
    assert engine.on_fallback is True

    _write(engine.path, json.dumps({"risk": {"max_open_positions": 4}}))
    engine.poll()

    assert engine.on_fallback is False
    assert engine.config.risk.max_open_positions == 4


def test_config_keeps_running_config_when_file_disappears(tmp_path: Path) -> None:
    engine, _ = _engine(tmp_path)
    _write(engine.path, json.dumps({"risk": {"max_open_positions": 5}}))
    engine.load()

    engine.path.unlink()

    assert engine.poll() is None
    assert engine.config.risk.max_open_positions == 5
    assert "missing" in engine.message


def test_config_failing_listener_does_not_block_the_others(tmp_path: Path) -> None:
    engine = ConfigEngine(tmp_path / "config.json", ManualClock(T0))
    seen: list[ConfigEvent] = []

    def broken(event: ConfigEvent) -> None:
        raise RuntimeError("listener bug")

    engine.add_listener(broken)
    engine.add_listener(seen.append)
    _write(engine.path, json.dumps({"risk": {"max_open_positions": 2}}))

    event = engine.load()

    assert seen == [event]


def test_default_config_json_round_trips_to_default() -> None:
    text = default_config_json()

    assert parse_config(text) == DEFAULT_CONFIG
    assert set(json.loads(text)) == set(TradingConfig.model_fields)
    assert json.loads(text)["failover"]["detectors"]["rest_failures_unavailable"] == 3
