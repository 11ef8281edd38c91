"""Every scenario of the spec, run through the IntegrationRunner against real processes.

Each test starts the run's own simulator, Celery worker and trader(s) on the
pytest-django PostgreSQL test database, and passes only if the scenario's
report says every expectation held. A failure prints the expectations that
did not, with expected and actual values.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from itests.models import IntegrationRunRecord
from itests.runner import IntegrationRunner

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _run(scenario_id: str, **options) -> dict:
    report = IntegrationRunner(requested_by="pytest").run_scenario(scenario_id, options=options)
    record = IntegrationRunRecord.objects.get(run_id=report["runId"])
    assert record.status == "DONE" and Path(record.report_path).exists()
    assert json.loads(Path(record.report_path).read_text()) == report
    failed = "\n".join(e["message"] for e in report["result"]["errors"])
    assert report["result"]["success"], f"{scenario_id} failed:\n{failed}"
    return report


def test_scenario_1_happy_path_trades_with_no_error_and_no_crit_alert():
    metrics = _run("SCENARIO_1")["result"]["metrics"]
    assert metrics["tradesExecuted"] >= 1 and metrics["healthErrors"] == 0 and metrics["critAlerts"] == 0
    rss = metrics["traderRssMb"]  # what a soak watches for growth
    assert 0 < rss["afterWarmUp"] <= rss["peak"] < 250 and rss["end"] <= rss["peak"]


def test_scenario_2_private_ws_disconnect_enters_safe_mode_resyncs_and_leaves_it():
    assert _run("SCENARIO_2")["result"]["metrics"]["recoveryDurationMs"] is not None


def test_scenario_3_kill_9_recovery_leaves_no_duplicate_position_and_no_zombie_order():
    _run("SCENARIO_3")


def test_scenario_4_invalid_config_falls_back_and_holds_safe_mode_until_fixed():
    _run("SCENARIO_4")


def test_scenario_5_slippage_spike_blocks_only_the_affected_symbol():
    _run("SCENARIO_5")


def test_scenario_6_panic_close_closes_every_position_and_cancels_every_order():
    _run("SCENARIO_6")


def test_a_soft_exchange_outage_retries_then_resyncs_and_leaves_safe_mode():
    _run("TEST_A")


def test_b_feature_engine_crash_raises_module_crash_crit_alert_and_safe_mode():
    _run("TEST_B")


def test_c_graceful_restart_with_nothing_open_gets_a_minimal_plan():
    _run("TEST_C")


def test_d_the_3am_storm_blocks_entries_until_everything_has_cleared_and_ends_in_sync():
    _run("TEST_D")


def test_chaos_kill9_ten_kills_converge_every_time_with_no_violation_from_the_exchanges_record():
    metrics = _run("CHAOS_KILL9", kills=10, seed=20261202)["result"]["metrics"]
    assert metrics["kills"] == 10 and metrics["restarts"] >= 10
    assert sum(metrics["violations"].values()) == 0
    assert metrics["entries"] >= 1 and metrics["checkpoints"] >= 1
    assert metrics["restartToRunningMs"]["count"] >= 10


def test_fault_soak_a_minute_of_storms_ends_in_safe_mode_off_and_sync_with_no_violation():
    metrics = _run("FAULT_SOAK", duration_s=60, seed=20261202)["result"]["metrics"]
    assert metrics["storms"] >= 1 and metrics["faults"] >= 2
    assert sum(metrics["violations"].values()) == 0
    assert metrics["finalSafeModeOffMs"] is not None
