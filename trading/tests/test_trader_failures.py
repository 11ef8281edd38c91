"""Failure types raised from real causes in a real trader, recovered, and safe mode left when the cause is gone.

Each test injects a fault into the simulator (or corrupts a file, or acts behind
the trader's back), then checks that the trader's own detector raised the right
failure, the FailoverManager generated and carried out the right plan on a real
Celery worker, and safe mode went off only once the cause had cleared.
"""

from __future__ import annotations

import time

import pytest

from failover.models import FailureEventRecord
from scalper_site.testkit import wait_until
from trading.tests.process_kit import write_config

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _failures(env) -> list[str]:
    return list(
        FailureEventRecord.objects.filter(run_id=env.run_id).order_by("timestamp").values_list("type", flat=True)
    )


def _started(env, **config) -> None:
    if config:
        write_config(env.data, **config)
    env.start()
    env.start_trader()
    env.wait_safe_mode_off()


def _wait_failure(env, failure_type: str, timeout: float = 45) -> None:
    wait_until(
        lambda: failure_type in _failures(env),
        timeout=timeout,
        what=f"{failure_type} (failures so far: {_failures(env)}; trader log {env.trader_log})",
    )


def _plan_steps(env) -> list[tuple[str, str]]:
    state = env.state()
    return list(state.current_plan.steps.values_list("type", "status")) if state.current_plan else []


def test_frozen_market_data_raises_public_ws_degraded_until_data_flows_again(environment):
    env = environment
    _started(env, failover={"detectors": {"market_data_stale_s": 2.0}})
    version = env.state().version
    env.control.inject("market_freeze", symbol="BTCUSDT", duration_s=6)
    _wait_failure(env, "PUBLIC_WS_DEGRADED")
    event = FailureEventRecord.objects.get(run_id=env.run_id, type="PUBLIC_WS_DEGRADED")
    assert event.details["staleSymbols"] == ["BTCUSDT"]
    assert env.state().safe_mode
    env.wait_safe_mode_off(timeout=60, after_version=version)
    assert set(_plan_steps(env)) >= {("RESYNC_EXCHANGE_CONNECTION", "DONE"), ("CLEAR_LOCAL_STATE", "DONE")}
    assert "PUBLIC_WS_DEGRADED" not in env.state().active_failures


def test_slow_market_data_raises_latency_too_high_and_clears_when_it_is_fast_again(environment):
    env = environment
    _started(env, failover={"detectors": {"latency_avg_ms": 150.0, "latency_sustain_s": 1.0}})
    version = env.state().version
    fault = env.control.inject("latency", target="ws_public", fixed_ms=400)
    _wait_failure(env, "LATENCY_TOO_HIGH")
    event = FailureEventRecord.objects.get(run_id=env.run_id, type="LATENCY_TOO_HIGH")
    assert event.details["averageMs"] > 150
    assert env.state().safe_mode
    time.sleep(1.0)
    assert env.state().safe_mode, "safe mode must stay on while the latency lasts"
    env.control.clear(fault)
    env.wait_safe_mode_off(timeout=60, after_version=version)
    assert ("RESYNC_POSITIONS", "DONE") in _plan_steps(env)


def test_a_flapping_public_stream_raises_packet_loss(environment):
    env = environment
    _started(env, failover={"detectors": {"public_reconnects_max": 50}})
    for _ in range(4):
        env.control.inject("ws_drop", stream="public", mode="abort")
        time.sleep(1.5)
    _wait_failure(env, "PACKET_LOSS")
    event = FailureEventRecord.objects.get(run_id=env.run_id, type="PACKET_LOSS")
    assert event.details["reconnects"] >= 3


def test_an_order_placed_behind_the_traders_back_raises_non_sync_state_and_is_adopted(environment):
    env = environment
    _started(env)
    version = env.state().version
    from decimal import Decimal

    from trading.simexchange.pybit_target import sim_http

    bid = Decimal(sim_http(env.sim_url).get_orderbook(category="linear", symbol="ETHUSDT")["result"]["b"][0][0])
    price = (bid * Decimal("0.97")).quantize(Decimal("0.01"))
    placed = env.control.place_order("ETHUSDT", "Buy", "0.10", order_type="Limit", price=str(price))
    _wait_failure(env, "NON_SYNC_STATE")
    env.wait_safe_mode_off(timeout=60, after_version=version)
    from trading.models import Order

    adopted = Order.objects.get(run_id=env.run_id, exchange_order_id=placed["orderId"])
    assert adopted.origin == "EXTERNAL_ORDER_RECOVERED" and adopted.status == "NEW"
    assert Order.objects.filter(run_id=env.run_id, exchange_order_id=placed["orderId"]).count() == 1
    assert set(_plan_steps(env)) >= {("RESYNC_ORDERS", "DONE"), ("RESYNC_POSITIONS", "DONE")}


def test_a_corrupt_process_state_is_moved_aside_reported_and_recovered_from_the_exchange(environment):
    env = environment
    _started(env)
    env.control.open_position("BTCUSDT", "Sell", "0.005")
    env.trader.terminate()
    assert env.trader.wait(timeout=30) == 0
    state_file = env.data / "system" / "process_state.json"
    state_file.write_text('{"lastUpdate": "2025-11-18T15:20:30.000Z", "pid": "not a number"')
    version = env.state().version
    env.start_trader("trader-2")
    _wait_failure(env, "DATA_CORRUPTION")
    env.wait_safe_mode_off(timeout=60, after_version=version)
    moved = list(state_file.parent.glob("process_state.json.corrupt-*"))
    assert len(moved) == 1 and moved[0].read_text().startswith('{"lastUpdate"')
    from trading.models import Position

    assert list(Position.objects.filter(run_id=env.run_id, status="OPEN").values_list("symbol", "side")) == [
        ("BTCUSDT", "SHORT")
    ]


def test_rest_5xx_raises_exchange_unavailable_and_recovers_when_the_exchange_answers(environment):
    env = environment
    _started(env)
    version = env.state().version
    fault = env.control.inject("http_error", status=503)
    _wait_failure(env, "EXCHANGE_UNAVAILABLE")
    assert env.state().safe_mode
    env.control.clear(fault)
    env.wait_safe_mode_off(timeout=90, after_version=version)
    assert ("RESYNC_EXCHANGE_CONNECTION", "DONE") in _plan_steps(env)
    # A hard outage that ended is not a flaky line: no PACKET_LOSS holding safe mode for another window.
    assert "PACKET_LOSS" not in _failures(env)


def test_a_private_stream_that_stays_down_raises_private_ws_disconnected_until_it_is_back(environment):
    env = environment
    _started(env)
    version = env.state().version
    env.control.inject("ws_refuse", stream="private", duration_s=8)
    env.control.inject("ws_drop", stream="private", mode="abort")
    _wait_failure(env, "PRIVATE_WS_DISCONNECTED")
    assert env.state().safe_mode
    env.wait_safe_mode_off(timeout=90, after_version=version)
    assert set(_plan_steps(env)) >= {
        ("RESYNC_EXCHANGE_CONNECTION", "DONE"),
        ("RESYNC_POSITIONS", "DONE"),
        ("RESYNC_ORDERS", "DONE"),
    }


def test_an_invalid_config_keeps_safe_mode_on_with_the_fallback_until_the_file_is_fixed(environment):
    from trading.control import read_heartbeat
    from trading.models import Alert

    env = environment
    _started(env)
    version = env.state().version
    config_file = env.data / "config" / "config.json"
    write_config(env.data, risk={"max_open_positions": "three"})
    _wait_failure(env, "CONFIG_INVALID")
    event = FailureEventRecord.objects.get(run_id=env.run_id, type="CONFIG_INVALID")
    assert any(error.startswith("risk.max_open_positions") for error in event.details["errors"])
    wait_until(
        lambda: (read_heartbeat(run_id=env.run_id) or {}).get("config", {}).get("source") == "fallback",
        timeout=30,
        what="the fallback config in force",
    )
    assert Alert.objects.filter(run_id=env.run_id, level="CRIT", type="CONFIG_INVALID").exists()
    time.sleep(2.0)
    assert env.state().safe_mode, "safe mode must stay on while the file is invalid"
    assert '"three"' in config_file.read_text()
    write_config(env.data, risk={"max_open_positions": 2})
    env.wait_safe_mode_off(timeout=60, after_version=version)
    # The file's config was applied before the clearance went out; the heartbeat says so within its 1 s period.
    wait_until(
        lambda: (read_heartbeat(run_id=env.run_id) or {}).get("config", {}).get("source") == "file",
        timeout=5,
        what="the heartbeat showing the file's config",
    )


def test_an_exception_in_the_feature_engine_raises_module_crash_with_a_crit_alert(environment):
    from trading.control import send_command
    from trading.models import Alert

    env = environment
    env.start()
    env.start_trader("trader", "--allow-fault-hooks")
    env.wait_safe_mode_off()
    version = env.state().version
    ack = send_command("arm_fault", run_id=env.run_id, args={"feature_engine_error": "deliberate test fault"})
    assert ack["ok"], ack
    _wait_failure(env, "MODULE_CRASH")
    event = FailureEventRecord.objects.filter(run_id=env.run_id, type="MODULE_CRASH").first()
    assert event.details["module"] == "FEATURE_ENGINE" and "deliberate test fault" in event.details["error"]
    assert event.details["traceback"]
    assert env.state().safe_mode
    wait_until(
        lambda: Alert.objects.filter(run_id=env.run_id, level="CRIT", type="MODULE_CRASH").exists(),
        timeout=10,
        what="a CRIT alert",
    )
    # The module throws on every update: one report, one plan of three steps, and safe mode held after the
    # plan is done, because the module still does not run clean.
    wait_until(lambda: _plan_steps(env) and all(status == "DONE" for _, status in _plan_steps(env)), timeout=30,
               what="the MODULE_CRASH plan done")
    time.sleep(1.5)
    assert sorted(_plan_steps(env)) == [("CLEAR_LOCAL_STATE", "DONE"), ("RESYNC_ORDERS", "DONE"),
                                        ("RESYNC_POSITIONS", "DONE")]
    assert FailureEventRecord.objects.filter(run_id=env.run_id, type="MODULE_CRASH").count() == 1
    state = env.state()
    assert state.safe_mode and state.active_failures == ["MODULE_CRASH"]
    assert send_command("arm_fault", run_id=env.run_id, args={"feature_engine_error": None})["ok"]
    env.wait_safe_mode_off(timeout=60, after_version=version)
    assert "MODULE_CRASH" not in env.state().active_failures


def test_a_trader_started_before_the_exchange_waits_reports_and_clears_it_without_false_alarms(environment):
    env = environment
    env.start_trader()  # the simulator is not up yet: the trader must wait, not flap
    _wait_failure(env, "EXCHANGE_UNAVAILABLE")
    time.sleep(2.0)
    env.start()
    env.wait_safe_mode_off(timeout=90)
    assert "PACKET_LOSS" not in _failures(env) and "PUBLIC_WS_DEGRADED" not in _failures(env), _failures(env)
    assert env.state().active_failures == []
