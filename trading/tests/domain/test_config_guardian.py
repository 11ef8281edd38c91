"""The guardian's config sections: ``deadman`` and ``exchange.dcp_window_s``, validated and hot-reloaded."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from failover.domain.clock import ManualClock
from trading.domain.config import DEFAULT_CONFIG, ConfigApplied, ConfigEngine, ConfigError, ConfigInvalid, parse_config

T0 = 1_763_479_200_000


def test_defaults_are_cancel_entries_after_60_s_and_no_dcp():
    assert (DEFAULT_CONFIG.deadman.after_s, DEFAULT_CONFIG.deadman.action) == (60.0, "cancel_entries")
    assert DEFAULT_CONFIG.exchange.dcp_window_s is None


def test_the_shipped_config_file_is_valid_and_names_both_sections():
    shipped = Path(__file__).resolve().parents[3] / "data" / "config" / "config.json"
    data = json.loads(shipped.read_text())
    assert data["deadman"] == {"after_s": 60.0, "action": "cancel_entries"} and data["exchange"]["dcp_window_s"] is None
    assert parse_config(shipped.read_text()) == DEFAULT_CONFIG


@pytest.mark.parametrize(("text", "error"), [
    ('{"deadman": {"action": "panic"}}', "deadman.action: Input should be 'cancel_entries', 'flatten' or 'none'"),
    ('{"deadman": {"after_s": 0}}', "deadman.after_s: Input should be greater than 0"),
    ('{"deadman": {"after_s": "60"}}', "deadman.after_s: Input should be a valid number"),
    ('{"deadman": {"afters": 60}}', "deadman.afters: Extra inputs are not permitted"),
    ('{"exchange": {"dcp_window_s": 2}}', "exchange.dcp_window_s: Input should be greater than or equal to 3"),
    ('{"exchange": {"dcp_window_s": 301}}', "exchange.dcp_window_s: Input should be less than or equal to 300"),
    ('{"exchange": {"dcp_window_s": 10.5}}', "exchange.dcp_window_s: Input should be a valid integer"),
])
def test_bad_values_are_refused_naming_the_field(text, error):
    with pytest.raises(ConfigError) as refused:
        parse_config(text)
    assert refused.value.errors[0].startswith(error)


def test_a_changed_deadman_section_is_hot_reloaded(tmp_path):
    path = tmp_path / "config.json"
    engine = ConfigEngine(path, ManualClock(T0))
    path.write_text('{"deadman": {"after_s": 30, "action": "flatten"}, "exchange": {"dcp_window_s": 10}}')
    assert isinstance(engine.load(), ConfigApplied)
    assert (engine.config.deadman.after_s, engine.config.deadman.action) == (30.0, "flatten")
    assert engine.config.exchange.dcp_window_s == 10
    path.write_text('{"deadman": {"action": "none"}}')
    os.utime(path, ns=(T0 * 1_000_000, T0 * 1_000_000))
    assert isinstance(engine.poll(), ConfigApplied)
    assert (engine.config.deadman.after_s, engine.config.deadman.action) == (60.0, "none")
    path.write_text('{"deadman": {"action": "sell_all"}}')
    assert isinstance(engine.poll(), ConfigInvalid) and engine.config.deadman.action == "none"
