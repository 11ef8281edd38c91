"""The trader's parts alone, without an exchange: reports, startup verdicts, the wait at start, commands."""

from __future__ import annotations

import json
import threading
from types import SimpleNamespace

import pytest

from failover.domain.enums import FailureSource, FailureType
from scalper_site.testkit import wait_until
from trading.engine.eventlog import read_events
from trading.exchange.connect import ExchangeTarget
from trading.exchange.port import ExchangeError
from trading.tests.trader.fakes import AckingControl, Gate
from trading.trader import startup
from trading.trader.commands import Commands
from trading.trader.context import TraderSettings, build_context
from trading.trader.gateway import wait_for_exchange
from trading.trader.role import RoleSwitch


class Services:
    """Stands in for the failover service API; records what the trader asks of it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def environment_register(self, **kwargs) -> None:
        self.calls.append(("environment_register", kwargs))

    def failover_gate(self, **kwargs):
        raise AssertionError("not read in these tests")

    def failure_report(self, **kwargs):
        self.calls.append(("failure_report", kwargs))
        return SimpleNamespace(version=1)

    def failure_cleared(self, **kwargs):
        self.calls.append(("failure_cleared", kwargs))
        return SimpleNamespace(version=2)


def _context(tmp_path):
    settings = TraderSettings(mode="SIM", symbols=["BTCUSDT"], run_id="r1", data_dir=tmp_path, target=ExchangeTarget())
    return build_context(settings, services=Services(), control=AckingControl(), post=lambda item: None)


def _system_events(ctx) -> list[dict]:
    return list(read_events(ctx.events.path_for("_SYSTEM")))


def test_a_reported_failure_is_logged_latched_and_marks_the_black_box_once_it_exists(tmp_path):
    ctx = _context(tmp_path)
    marked: list[bool] = []
    ctx.report(FailureType.LATENCY_TOO_HIGH, FailureSource.EXECUTION_ENGINE, "slow", {"avgMs": 900})
    ctx.after_report = lambda: marked.append(True)
    ctx.report(FailureType.PACKET_LOSS, FailureSource.EXECUTION_ENGINE, "lossy", {})
    assert [e["type"] for e in _system_events(ctx) if e["event"] == "FAILURE"] == ["LATENCY_TOO_HIGH", "PACKET_LOSS"]
    assert ctx.link.is_safe_mode() and marked == [True]


def test_a_first_start_and_a_corrupt_state_each_ask_for_a_full_restart_plan(tmp_path):
    ctx = _context(tmp_path)
    [first] = startup.previous_run(ctx.store, now=ctx.clock.now())
    assert first.type is FailureType.PROCESS_RESTART and first.details == {"firstStart": True}
    ctx.store.path.parent.mkdir(parents=True, exist_ok=True)
    ctx.store.path.write_text("{not json")
    corrupt, restart = startup.previous_run(ctx.store, now=ctx.clock.now())
    assert corrupt.type is FailureType.DATA_CORRUPTION and restart.type is FailureType.PROCESS_RESTART
    assert restart.details["firstStart"] is False and not ctx.store.path.exists()


def test_the_wait_at_start_reports_the_exchange_once_and_clears_it_when_it_answers(tmp_path):
    ctx = _context(tmp_path)
    answers = iter([ExchangeError("down"), 42])

    def call() -> int:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert wait_for_exchange(ctx, call) == 42
    events = [(e["event"], e["type"]) for e in _system_events(ctx)]
    assert events == [("FAILURE", "EXCHANGE_UNAVAILABLE"), ("FAILURE_CLEARED", "EXCHANGE_UNAVAILABLE")]


def test_a_stop_while_waiting_for_the_exchange_ends_the_start(tmp_path):
    ctx = _context(tmp_path)
    ctx.stop.set()

    def call() -> None:
        raise ExchangeError("down")

    with pytest.raises(SystemExit):
        wait_for_exchange(ctx, call)


def test_a_command_is_recorded_and_acknowledged_and_a_refused_one_says_why(tmp_path):
    ctx = _context(tmp_path)
    commands = Commands(ctx, SimpleNamespace(core=None), blackbox=None)
    commands.run({"command": "arm_fault", "commandId": "c1", "args": {"feature_engine_error": "boom"}})
    commands.run({"command": "sell_everything", "commandId": "c2"})
    assert ctx.control.acks == [
        ("c1", {"ok": False, "result": {}, "error": "PermissionError: fault hooks are off (start the trader "
                "with --allow-fault-hooks)", "run_id": "r1"}),
        ("c2", {"ok": False, "result": {}, "error": "ValueError: unknown command 'sell_everything'", "run_id": "r1"}),
    ]
    assert [(e["command"], e["ok"]) for e in _system_events(ctx)] == [("arm_fault", False), ("sell_everything", False)]
    assert ctx.hooks.feature_engine_error is None
    json.dumps(ctx.control.acks)  # what the real control writes must serialise


def test_the_environment_is_registered_with_where_the_trader_runs(tmp_path):
    ctx = _context(tmp_path)
    startup.register_environment(ctx)
    [(name, kwargs)] = ctx.services.calls
    assert name == "environment_register" and kwargs["run_id"] == "r1"
    assert kwargs["context"]["symbols"] == ["BTCUSDT"] and kwargs["context"]["dataDir"] == str(tmp_path)
    assert kwargs["context"]["mode"] == "SIM" and isinstance(threading.get_ident(), int)


class GatedServices(Services):
    """The recording stand-in, with a gate to read: the link's threads run."""

    def failover_gate(self, **kwargs):
        return Gate(safe_mode=True, reason="CONFIG_INVALID")


def _leading_context(tmp_path, config: dict):
    services = GatedServices()
    settings = TraderSettings(mode="SIM", symbols=["BTCUSDT"], run_id="r1", data_dir=tmp_path, target=ExchangeTarget())
    ctx = build_context(settings, services=services, control=AckingControl(), post=lambda item: None)
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "config.json").write_text(json.dumps(config))
    ctx.config_engine.load()
    return ctx, services


def _config_calls(services: GatedServices) -> list[tuple[str, str]]:
    found = []
    for name, kwargs in services.calls:
        if name == "failure_cleared":
            found.append((name, kwargs["failure_type"]))
        elif name == "failure_report":
            found.append((name, kwargs["event"].type.value))
    return [call for call in found if call[1] == "CONFIG_INVALID"]


def test_a_new_leader_on_a_config_in_force_clears_a_config_invalid_an_earlier_leader_left(tmp_path):
    ctx, services = _leading_context(tmp_path, {"risk": {"max_open_positions": 2}})
    ctx.link.start()
    try:
        RoleSwitch(ctx, start_failures=[]).lead(None)
        wait_until(lambda: _config_calls(services) == [("failure_cleared", "CONFIG_INVALID")], timeout=10,
                   what="the clearance")
    finally:
        ctx.link.stop()
    [standing] = [e for e in _system_events(ctx) if e["event"] == "CONFIG_STANDING"]
    assert standing["source"] == "file"


def test_a_new_leader_on_a_refused_config_reports_it_and_clears_nothing(tmp_path):
    ctx, services = _leading_context(tmp_path, {"risk": {"max_open_positions": "three"}})
    ctx.link.start()
    try:
        RoleSwitch(ctx, start_failures=[]).lead(None)
        wait_until(lambda: _config_calls(services) != [], timeout=10, what="the report")
        ctx.link.drain(5.0)
    finally:
        ctx.link.stop()
    assert _config_calls(services) == [("failure_report", "CONFIG_INVALID")]
