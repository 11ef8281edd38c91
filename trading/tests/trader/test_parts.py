"""The trader's parts alone, without an exchange: reports, startup verdicts, the wait at start, commands."""

from __future__ import annotations

import json
import threading
from types import SimpleNamespace

import pytest

from failover.domain.enums import FailureSource, FailureType
from trading.engine.eventlog import read_events
from trading.exchange.connect import ExchangeTarget
from trading.exchange.port import ExchangeError
from trading.tests.trader.fakes import AckingControl
from trading.trader import startup
from trading.trader.commands import Commands
from trading.trader.context import TraderSettings, build_context
from trading.trader.gateway import wait_for_exchange


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
