"""Every trading event raises its alert once, through the real AlertEngine, under the config's ``alerts`` section.

The trader's parts (context, core, commands, inbox) run on the in-process venue;
the alerts land in the database and in recording outside sinks, with a manual
clock, so the dedupe window, the rate per type, the level per sink, the muted
types and a hot reload of them are checked without waiting.
"""

from __future__ import annotations

import ast
import json
import os
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest

import trading
import trading.alerts
from failover.domain.enums import OrderSide
from trading.alerts import AlertEngine, AlertMessage, DatabaseSink, EnvironmentPolicies
from trading.domain import alert_types
from trading.domain.config import DEFAULT_CONFIG, AlertsConfig, ConfigApplied, ConfigInvalid
from trading.engine.alerting import config_changes
from trading.engine.eventlog import read_events
from trading.engine.execution import InlineDispatcher
from trading.engine.watchdog import Watchdog
from trading.exchange.connect import ExchangeTarget
from trading.exchange.lease import LEADER, STANDBY
from trading.models import Alert
from trading.tests.domain.kit import make_config
from trading.tests.kit import Rig, build_rig
from trading.tests.trader.fakes import AckingControl
from trading.trader.blackbox import Blackbox
from trading.trader.commands import Commands
from trading.trader.context import Engine, TraderContext, TraderSettings, build_context
from trading.trader.inbox import Inbox
from trading.trader.ports import TraderAlerts
from trading.trader.role import RoleSwitch

pytestmark = pytest.mark.django_db

SINKS = ("dashboard", "webhook", "telegram", "email")
SYMBOLS = ["BTCUSDT", "ETHUSDT"]
MINUTE_MS = 60_000


class Recorder:
    """An outside sink that keeps what it was sent."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent: list[tuple[AlertMessage, int]] = []

    def send(self, alert: AlertMessage, suppressed: int) -> None:
        self.sent.append((alert, suppressed))


class Alerting:
    """The real engine over the database and four recording sinks, on the rig's clock; fits ``TraderAlerts``."""

    def __init__(self, clock_ms) -> None:
        self.sinks = {name: Recorder(name) for name in SINKS}
        self.engine = AlertEngine(record=DatabaseSink(), outside=list(self.sinks.values()), clock_ms=clock_ms)

    def alert_raise(self, alert: AlertMessage) -> None:
        self.engine.emit(alert)

    def alerts_configure(self, *, run_id: str, config: AlertsConfig) -> None:
        self.engine.configure(run_id=run_id, config=config)

    def stored(self, type_: str | None = None) -> list[Alert]:
        rows = Alert.objects.order_by("id")
        return list(rows.filter(type=type_) if type_ else rows)

    def sent(self, sink: str) -> list[str]:
        assert self.engine.drain(5)
        return [alert.type for alert, _ in self.sinks[sink].sent]


class Services:
    """The failover service API as the trader's link sees it; this test reads none of it back."""

    def environment_register(self, **kwargs) -> None:
        return None

    def failover_gate(self, **kwargs):
        raise AssertionError("not read in these tests")

    def failure_report(self, **kwargs):
        return SimpleNamespace(version=1)

    def failure_cleared(self, **kwargs):
        return SimpleNamespace(version=2)


class Parts:
    """A trader's parts over the rig: the context raises alerts through ``alerting``, the core through the context."""

    def __init__(self, tmp_path: Path, rig: Rig, alerting: Alerting, run_id: str = "r-events") -> None:
        settings = TraderSettings(mode="SIM", symbols=SYMBOLS, run_id=run_id, data_dir=tmp_path,
                                  target=ExchangeTarget())
        self.ctx: TraderContext = build_context(settings, services=Services(), control=AckingControl(),
                                                post=lambda item: None, alerts=alerting)
        self.ctx.apply_alerts_config(rig.core.config.alerts)
        rig.core.alerts = self.ctx.alert
        watchdog = Watchdog(config=rig.core.config, symbols=settings.symbols, clock=rig.clock, ping_interval_s=20,
                            pong_timeout_s=10)
        engine = Engine(core=rig.core, watchdog=watchdog, rest=rig.venue, dispatcher=InlineDispatcher())
        blackbox = Blackbox(self.ctx, engine)
        self.commands = Commands(self.ctx, engine, blackbox)
        self.inbox = Inbox(self.ctx, engine, blackbox, self.commands)


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    # A short slippage window, so a blocked symbol recovers within the alerts' dedupe window.
    config = make_config(quality={"slippage_window_s": 10.0})
    return build_rig(SYMBOLS, tmp_path / "events", config=config)


@pytest.fixture
def alerting(rig: Rig):
    made = Alerting(rig.clock.now_ms)
    yield made
    made.engine.close(5)


@pytest.fixture
def trader(tmp_path: Path, rig: Rig, alerting: Alerting) -> Parts:
    return Parts(tmp_path, rig, alerting)


def _bad_fill(rig: Rig, symbol: str = "BTCUSDT") -> None:
    rig.core.quality.record_fill(symbol, OrderSide.BUY, 100.0, 101.0)  # 100 bps adverse: the score falls to 0


def _seconds(rig: Rig, seconds: float) -> None:
    rig.clock.advance(int(seconds * 1000))


# -- each event, once ---------------------------------------------------------------------------


def test_slippage_block_and_unblock_each_alert_once_then_again_after_the_dedupe_window(rig, alerting, trader):
    _bad_fill(rig)  # t=0: blocked
    _bad_fill(rig)  # still blocked: no change, no alert
    _seconds(rig, 11)
    assert rig.core.risk.entry_block_reason("BTCUSDT") is None  # the bad fill aged out: unblocked at the gate
    _seconds(rig, 1)
    _bad_fill(rig)  # t=12 s: blocked again, inside the 60 s window
    _seconds(rig, 11)
    assert rig.core.risk.entry_block_reason("BTCUSDT") is None  # t=23 s: unblocked again, inside the window
    _seconds(rig, 38)
    _bad_fill(rig)  # t=61 s: past the window

    blocks = alerting.stored(alert_types.SLIPPAGE_BLOCK)
    assert [(a.level, a.symbol, a.suppressed_count) for a in blocks] == [("WARN", "BTCUSDT", 0), ("WARN", "BTCUSDT", 1)]
    assert blocks[0].details == {"score": 0.0, "threshold": 50.0}
    assert "below 50" in blocks[0].message and blocks[0].run_id == "r-events"
    [unblock] = alerting.stored(alert_types.SLIPPAGE_UNBLOCK)
    assert (unblock.level, unblock.details) == ("INFO", {"score": 100.0, "threshold": 70.0})


def test_daily_loss_stop_alerts_crit_once_a_day(rig, alerting, trader):
    risk = rig.core.risk  # the rig's equity is 10,000 USDT; the default limit is 2 %: 200 USDT
    assert risk.on_trade_closed(Decimal("-150")) is False
    assert risk.on_trade_closed(Decimal("-60")) is True
    risk.on_trade_closed(Decimal("-30"))  # already stopped: nothing new
    [stop] = alerting.stored(alert_types.DAILY_LOSS_STOP)
    assert stop.level == "CRIT"
    assert stop.details == {"dailyPnl": "-210.00", "limit": "200.00", "limitPct": "2.0", "dayStartEquity": "10000.00"}
    assert "-210.00" in stop.message and "00:00 UTC" in stop.message

    _seconds(rig, 86_400)  # the next UTC day starts over
    rig.core.ledger.set_equity(Decimal("10000"))
    assert risk.on_trade_closed(Decimal("-250")) is True
    assert len(alerting.stored(alert_types.DAILY_LOSS_STOP)) == 2
    assert alerting.sent("email") == [alert_types.DAILY_LOSS_STOP] * 2  # CRIT reaches every sink


def test_panic_close_alerts_crit_with_who_asked_and_what_was_closed(rig, alerting, trader):
    rig.enter("BTCUSDT")
    rig.enter("ETHUSDT", OrderSide.SELL)
    trader.commands.run({"command": "panic_close", "commandId": "c1", "args": {"by": "alice"}})
    rig.pump()
    [(command_id, ack)] = trader.ctx.control.acks
    assert ack["ok"] is True and ack["result"]["success"] is True
    [alert] = alerting.stored(alert_types.PANIC_CLOSE)
    assert alert.level == "CRIT" and alert.run_id == "r-events"
    assert alert.details["by"] == "alice" and alert.details["success"] is True
    assert sorted(alert.details["closedPositions"]) == ["BTCUSDT", "ETHUSDT"]
    assert alert.message.startswith("Panic close by alice: closed ")

    trader.commands.run({"command": "panic_close", "args": {"by": "alice"}})  # within the CRIT window: counted
    _seconds(rig, 10)
    trader.commands.run({"command": "panic_close", "args": {}})  # past it: sent, carrying the count
    later = alerting.stored(alert_types.PANIC_CLOSE)
    assert [a.suppressed_count for a in later] == [0, 1]
    assert later[1].details["by"] == "" and "an unnamed sender" in later[1].message


def _write_config(trader: Parts, **sections) -> None:
    """Replace the config file (a new inode, so the next poll sees it even within one mtime tick)."""
    path = trader.ctx.config_engine.path
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(".tmp")
    temp.write_text(json.dumps(sections))
    os.replace(temp, path)


def _reload(trader: Parts):
    event = trader.ctx.config_engine.poll()
    assert event is not None
    trader.inbox.on_config_event(event)  # what the pipeline does with the queued ("config", event)
    return event


def test_a_config_reload_alerts_the_changed_fields_once_and_an_unchanged_one_not_at_all(rig, alerting, trader):
    _write_config(trader, risk={"max_open_positions": 3})  # the default: nothing changes
    trader.ctx.config_engine.load()  # the start's load is not a reload
    _write_config(trader, risk={"max_open_positions": 2}, scoring={"entry_threshold": 0.7})
    assert isinstance(_reload(trader), ConfigApplied)
    [reloaded] = alerting.stored(alert_types.CONFIG_RELOADED)
    assert reloaded.level == "INFO" and reloaded.details["source"] == "file"
    assert reloaded.details["changed"] == [
        {"field": "risk.max_open_positions", "from": 3, "to": 2},
        {"field": "scoring.entry_threshold", "from": 0.6, "to": 0.7},
    ]
    assert "risk.max_open_positions 3 -> 2" in reloaded.message
    assert rig.core.config.risk.max_open_positions == 2  # the reload itself went through

    _write_config(trader, scoring={"entry_threshold": 0.7}, risk={"max_open_positions": 2})  # same values, new bytes
    _reload(trader)
    assert len(alerting.stored(alert_types.CONFIG_RELOADED)) == 1


def test_an_invalid_config_is_reported_once_and_the_trader_raises_no_alert_of_its_own(rig, alerting, trader):
    # The FailoverManager's failure report raises CONFIG_INVALID (CRIT, with the errors): see
    # test_failovers_config_invalid_report_raises_one_crit_alert_with_the_errors below.
    _write_config(trader, risk={"max_open_positions": "three"})
    event = _reload(trader)
    assert isinstance(event, ConfigInvalid)
    assert trader.ctx.config_engine.poll() is None  # the same bad file is refused once, not at every poll
    failures = [e for e in read_events(trader.ctx.events.path_for("_SYSTEM")) if e["event"] == "FAILURE"]
    assert [f["type"] for f in failures] == ["CONFIG_INVALID"]
    assert failures[0]["details"]["errors"] == ["risk.max_open_positions: Input should be a valid integer"]
    assert alerting.stored() == []


def _system(trader: Parts, *names: str) -> list[dict]:
    path = trader.ctx.events.path_for("_SYSTEM")
    return [e for e in read_events(path) if e["event"] in names] if path.exists() else []


def test_a_standby_refusing_its_config_reports_it_only_once_it_leads(rig, alerting, trader):
    trader.ctx.role = STANDBY
    _write_config(trader, risk={"max_open_positions": "three"})
    _reload(trader)
    [unreported] = _system(trader, "FAILURE_NOT_REPORTED", "FAILURE")
    assert unreported["event"] == "FAILURE_NOT_REPORTED" and unreported["type"] == "CONFIG_INVALID"

    RoleSwitch(trader.ctx, start_failures=[]).lead(None)  # the lease was taken: the refusal is the leader's now

    reported = [e for e in _system(trader, "FAILURE") if e["type"] == "CONFIG_INVALID"]
    assert len(reported) == 1 and reported[0]["details"]["errors"] == [
        "risk.max_open_positions: Input should be a valid integer"]


def test_a_leader_whose_config_is_valid_reports_no_refusal_when_it_leads(rig, alerting, trader):
    trader.ctx.role = STANDBY
    _write_config(trader, risk={"max_open_positions": 2})
    _reload(trader)
    RoleSwitch(trader.ctx, start_failures=[]).lead(None)
    assert [e for e in _system(trader, "FAILURE") if e["type"] == "CONFIG_INVALID"] == []


def test_only_a_leaders_valid_reload_clears_config_invalid(rig, alerting, trader):
    trader.ctx.role = STANDBY
    _write_config(trader, risk={"max_open_positions": 2})
    _reload(trader)  # the standby's own file: the leader's refusal is not the standby's to clear
    assert _system(trader, "FAILURE_CLEARED") == []

    trader.ctx.role = LEADER
    _write_config(trader, risk={"max_open_positions": 1})
    _reload(trader)
    assert [e["type"] for e in _system(trader, "FAILURE_CLEARED")] == ["CONFIG_INVALID"]


@pytest.mark.django_db(transaction=True)
def test_failovers_config_invalid_report_raises_one_crit_alert_with_the_errors(monkeypatch):
    from failover import services
    from failover.domain.enums import FailureSource, FailureType, utc_now
    from failover.domain.types import FailureEvent
    from failover.recovery import runner

    monkeypatch.setattr(runner, "chain_enqueue", lambda plan, **kw: None)  # the plan's steps are not this test's
    trading.alerts.alert_engine_close()
    errors = ["risk.max_open_positions: Input should be a valid integer"]
    event = FailureEvent(timestamp=utc_now(), type=FailureType.CONFIG_INVALID, source=FailureSource.CONFIG_ENGINE,
                         message="Invalid config refused", details={"errors": errors})
    try:
        services.failure_report(event=event, run_id="r-config-invalid")
        services.failure_report(event=event, run_id="r-config-invalid")  # the next poll's report, deduplicated
    finally:
        trading.alerts.alert_engine_close()
    [alert] = Alert.objects.filter(run_id="r-config-invalid")
    assert (alert.level, alert.type) == ("CRIT", "CONFIG_INVALID")
    assert alert.details["failure"]["details"]["errors"] == errors


# -- the alerts section: rate, levels, muted types, hot reload ----------------------------------


def _alert(type_: str, level: str = "WARN", symbol: str = "", run_id: str = "") -> AlertMessage:
    return AlertMessage(level=level, type=type_, message=f"{type_} {symbol}".strip(), symbol=symbol, run_id=run_id)


def _configured(alerting: Alerting, run_id: str = "", **alerts) -> None:
    alerting.engine.configure(run_id=run_id, config=make_config(alerts=alerts).alerts)


def test_the_rate_limit_holds_one_type_to_its_count_a_minute_whatever_the_symbol(rig, alerting):
    _configured(alerting, max_per_type_per_minute=3)
    symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "ADAUSDT"]
    results = [alerting.engine.emit(_alert("SLIPPAGE_BLOCK", symbol=s)) for s in symbols]
    assert results == [True, True, True, False, False]
    assert alerting.engine.emit(_alert("PUBLIC_WS_DEGRADED"))  # another type has its own count
    _seconds(rig, 60)
    assert alerting.engine.emit(_alert("SLIPPAGE_BLOCK", symbol="XRPUSDT"))
    xrp = alerting.stored("SLIPPAGE_BLOCK")[-1]
    assert (xrp.symbol, xrp.suppressed_count) == ("XRPUSDT", 1)  # what the limit held back is counted
    assert len(alerting.stored("SLIPPAGE_BLOCK")) == 4


def test_each_sink_gets_only_the_levels_its_minimum_allows(alerting):
    _configured(alerting, min_level={"dashboard": "INFO", "webhook": "WARN", "telegram": "WARN", "email": "CRIT"})
    for level in ("INFO", "WARN", "CRIT"):
        alerting.engine.emit(_alert("PROCESS_RESTART", level=level, symbol=level))  # one key per level
    assert len(alerting.stored()) == 3  # the record keeps every level
    assert alerting.engine.drain(5)
    sent = {name: [a.level for a, _ in alerting.sinks[name].sent] for name in SINKS}
    assert sent == {"dashboard": ["INFO", "WARN", "CRIT"], "webhook": ["WARN", "CRIT"], "telegram": ["WARN", "CRIT"],
                    "email": ["CRIT"]}


def test_a_muted_type_is_stored_but_sent_nowhere(alerting):
    _configured(alerting, muted_types=["SLIPPAGE_BLOCK", "SLIPPAGE_UNBLOCK"])
    alerting.engine.emit(_alert("SLIPPAGE_BLOCK", symbol="BTCUSDT"))
    alerting.engine.emit(_alert("DAILY_LOSS_STOP", level="CRIT"))
    assert [a.type for a in alerting.stored()] == ["SLIPPAGE_BLOCK", "DAILY_LOSS_STOP"]
    for name in SINKS:
        assert alerting.sent(name) == ["DAILY_LOSS_STOP"]


def test_a_hot_reload_puts_new_windows_levels_and_mutes_in_force(rig, alerting, trader):
    _bad_fill(rig, "BTCUSDT")
    assert alerting.sent("webhook") == ["SLIPPAGE_BLOCK"]
    _write_config(trader, quality={"slippage_window_s": 10.0},
                  alerts={"muted_types": ["SLIPPAGE_BLOCK"], "min_level": {"webhook": "CRIT"}, "dedupe_window_s": 0})
    _reload(trader)
    _bad_fill(rig, "ETHUSDT")  # muted now: stored, not sent
    trader.ctx.alert(_alert("LATENCY_TOO_HIGH"))  # WARN: under the webhook's new minimum
    assert alerting.sent("webhook") == ["SLIPPAGE_BLOCK"]
    assert alerting.sent("dashboard") == ["SLIPPAGE_BLOCK", "CONFIG_RELOADED", "LATENCY_TOO_HIGH"]
    assert [a.symbol for a in alerting.stored("SLIPPAGE_BLOCK")] == ["BTCUSDT", "ETHUSDT"]
    trader.ctx.alert(_alert("LATENCY_TOO_HIGH"))  # a dedupe window of 0: the repeat goes out at once
    assert len(alerting.stored("LATENCY_TOO_HIGH")) == 2

    _seconds(rig, 61)
    _write_config(trader, quality={"slippage_window_s": 10.0})  # the alerts section back to its defaults
    _reload(trader)
    rig.core.risk.entry_block_reason("ETHUSDT")  # its bad fill aged out: unblocked
    _bad_fill(rig, "ETHUSDT")  # blocked again, and no longer muted
    trader.ctx.alert(_alert("LATENCY_TOO_HIGH"))
    trader.ctx.alert(_alert("LATENCY_TOO_HIGH"))  # the 60 s window is back: counted, not sent
    assert alerting.sent("webhook") == [
        "SLIPPAGE_BLOCK", "CONFIG_RELOADED", "SLIPPAGE_UNBLOCK", "SLIPPAGE_BLOCK", "LATENCY_TOO_HIGH",
    ]
    assert len(alerting.stored("LATENCY_TOO_HIGH")) == 3


def test_environments_keep_their_own_config_and_the_product_follows_its_file_where_no_trader_configured_it(tmp_path):
    path = tmp_path / "product" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"alerts": {"muted_types": ["PROCESS_RESTART"]}}))
    policies = EnvironmentPolicies(product_config=trading.alerts.ProductConfigFile(path))
    restart = _alert("PROCESS_RESTART")
    assert policies.should_emit(restart, 0) == (True, 0)
    assert not policies.delivers(restart, "webhook")  # the product's file mutes it
    run_restart = _alert("PROCESS_RESTART", run_id="r-other")
    assert policies.should_emit(run_restart, 0) == (True, 0)
    assert policies.delivers(run_restart, "webhook")  # an integration run keeps the defaults
    policies.configure(run_id="", config=DEFAULT_CONFIG.alerts)  # a trader in this process configured it
    assert policies.delivers(restart, "webhook")


def test_config_changes_name_nested_fields_and_lists():
    new = make_config(alerts={"muted_types": ["PANIC_CLOSE"], "min_level": {"email": "WARN"}})
    assert config_changes(DEFAULT_CONFIG, new) == [
        {"field": "alerts.min_level.email", "from": "CRIT", "to": "WARN"},
        {"field": "alerts.muted_types", "from": [], "to": ["PANIC_CLOSE"]},
    ]


def test_the_alerts_module_run_trader_injects_fits_the_trader_port():
    assert isinstance(trading.alerts, TraderAlerts)


def _raised_types(path: Path) -> set[str]:
    """The string constants passed as ``type=`` to ``AlertMessage`` or ``alert_on_commit`` in one source file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "id", getattr(node.func, "attr", ""))
        if name not in {"AlertMessage", "alert_on_commit"}:
            continue
        for keyword in node.keywords:
            if keyword.arg == "type":
                found |= {c.value for c in ast.walk(keyword.value) if isinstance(c, ast.Constant)}
    return found


def test_every_type_the_product_raises_is_one_the_config_may_mute():
    root = Path(trading.__file__).resolve().parents[1]
    sources = [p for folder in ("trading", "failover") for p in (root / folder).rglob("*.py") if "tests" not in p.parts]
    literal = set().union(*(_raised_types(p) for p in sources))
    assert {"RECOVERY_STEP_FAILED", "RECOVERY_STALLED", "CONFIG_INVALID"} <= literal  # the scan sees the raisers
    assert literal <= alert_types.ALERT_TYPES
