"""``risk.default_leverage`` takes effect: set on the exchange at start and on every reload that changes it.

Against the in-process simulator (real pybit, real REST): the trader's start
sets each symbol's leverage before any entry, a hot reload sets the new one,
110043 is a success, a failure is retried on the gateway a bounded number of
times and shown in the heartbeat, and entries are margined with the applied
leverage. The simulator's own set-leverage rules (bounds, 110043, margin) are
checked on its matching engine and over REST.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from decimal import Decimal as D
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pybit.exceptions import InvalidRequestError

from failover.domain.clock import ManualClock
from failover.domain.enums import OrderSide
from trading.domain import reasons
from trading.domain.config import ConfigApplied
from trading.domain.ids import OrderLinkIdFactory
from trading.domain.orders import OrderRequest
from trading.domain.risk import AccountState, PositionExposure, RiskEngine
from trading.engine import leverage as lev
from trading.engine.core import TradingCore
from trading.engine.eventlog import read_events
from trading.engine.execution import InlineDispatcher
from trading.engine.leverage import LeverageKeeper
from trading.engine.localstate import NoPersistence
from trading.engine.watchdog import Watchdog
from trading.exchange.connect import SIM, ExchangeTarget, rest_for
from trading.exchange.dryrun import DryRunExchange
from trading.exchange.port import OrderRejected, TemporaryExchangeError
from trading.exchange.pybit_rest import PybitRest
from trading.marketdata.instruments import DEFAULT_INSTRUMENTS
from trading.marketdata.normalise import parse_levels
from trading.simexchange import errors as E
from trading.simexchange.matching import MatchingEngine
from trading.simexchange.orders import OrderRequest as SimOrder
from trading.simexchange.pybit_target import sim_http
from trading.simexchange.server import SimServer
from trading.tests.domain.kit import T0, make_config
from trading.trader import startup
from trading.trader.blackbox import Blackbox
from trading.trader.commands import Commands
from trading.trader.context import Engine, TraderContext, TraderSettings, build_context
from trading.trader.gateway import GatewayDispatcher
from trading.trader.inbox import Inbox

SYMBOLS = ["BTCUSDT", "AI16ZUSDT"]  # AI16ZUSDT's leverage filter stops at 25


class Services:
    """The failover service API as the trader's link sees it; nothing is read back."""

    def environment_register(self, **kwargs: Any) -> None:
        return None

    def failover_gate(self, **kwargs: Any) -> Any:
        raise AssertionError("not read in these tests")

    def failure_report(self, **kwargs: Any) -> Any:
        return SimpleNamespace(version=1)

    def failure_cleared(self, **kwargs: Any) -> Any:
        return SimpleNamespace(version=2)


class Control:
    def write_heartbeat(self, beat: dict, *, run_id: str = "") -> None:
        raise AssertionError("no heartbeat in these tests")

    def write_ack(self, command_id: str, **kwargs: Any) -> None:
        raise AssertionError("no command in these tests")


@pytest.fixture
def sim() -> Iterator[SimServer]:
    server = SimServer().start()
    try:
        yield server
    finally:
        server.stop()


def _write_config(data_dir: Path, leverage: int) -> None:
    folder = data_dir / "config"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"risk": {"default_leverage": leverage}}))


def _sim_leverage(sim: SimServer, symbol: str) -> str:
    http = sim_http(sim.base_url, retry_codes={-1}, max_retries=1, timeout=5)
    return str(http.get_positions(category="linear", symbol=symbol)["result"]["list"][0]["leverage"])


class Trader:
    """A trader's parts over the simulator, built by the functions the process uses; exchange calls inline."""

    def __init__(self, sim: SimServer, data_dir: Path, *, dispatcher: Any = None) -> None:
        self.observed: list[tuple[str, bool, str]] = []
        settings = TraderSettings(mode="SIM", symbols=SYMBOLS, run_id="lev", data_dir=data_dir,
                                  target=ExchangeTarget(kind=SIM, base_url=sim.base_url))
        self.ctx: TraderContext = build_context(settings, services=Services(), control=Control(),
                                                post=lambda item: None)
        self.ctx.config_engine.load()
        config = self.ctx.config_engine.config
        rest = rest_for(settings.target, observer=lambda op, ok, ms, kind: self.observed.append((op, ok, kind)))
        instruments = rest.instruments(SYMBOLS)
        clock = ManualClock(T0)
        core = TradingCore(config=config, clock=clock, instruments=instruments, exchange=rest,
                           persistence=NoPersistence(), events=self.ctx.events, safe_mode=lambda: False,
                           on_crash=lambda module, exc, details: None, ids=OrderLinkIdFactory(clock, instance="lev"))
        dispatcher = dispatcher or InlineDispatcher()
        keeper = startup.leverage_keeper(self.ctx, core, rest, dispatcher, instruments)
        watchdog = Watchdog(config=config, symbols=SYMBOLS, clock=clock, ping_interval_s=20, pong_timeout_s=10)
        self.engine = Engine(core=core, watchdog=watchdog, rest=rest, dispatcher=dispatcher, leverage=keeper)
        self.blackbox = Blackbox(self.ctx, self.engine, leverage=keeper)
        self.inbox = Inbox(self.ctx, self.engine, self.blackbox, Commands(self.ctx, self.engine, self.blackbox))

    def reload(self) -> None:
        event = self.ctx.config_engine.load()
        assert isinstance(event, ConfigApplied)
        self.inbox.on_config_event(event)

    def status(self, symbol: str) -> dict[str, Any]:
        return self.blackbox.symbol_status()[symbol]["leverage"]


# -- the trader ------------------------------------------------------------------------------------


def test_start_sets_each_symbols_leverage_before_any_entry_capped_by_its_filter(sim, tmp_path):
    _write_config(tmp_path, 40)
    trader = Trader(sim, tmp_path)
    risk = trader.engine.core.risk
    assert risk.entry_block_reason("BTCUSDT") == reasons.LEVERAGE_NOT_APPLIED  # nothing confirmed yet

    startup.apply_leverage(trader.engine)

    assert (_sim_leverage(sim, "BTCUSDT"), _sim_leverage(sim, "AI16ZUSDT")) == ("40", "25")
    assert trader.status("BTCUSDT") == {"wanted": 40.0, "applied": 40.0, "state": "APPLIED", "attempts": 0,
                                        "error": None}
    assert trader.status("AI16ZUSDT")["applied"] == 25.0  # more than maxLeverage is never asked for
    assert risk.entry_block_reason("BTCUSDT") is None and risk.leverage_for("AI16ZUSDT") == D(25)
    assert [ok for op, ok, kind in trader.observed if op == "set_leverage"] == [True, True]
    written = [e for e in read_events(trader.ctx.events.path_for("BTCUSDT")) if e["event"] == "LEVERAGE_APPLIED"]
    assert [e["leverage"] for e in written] == ["40"]


def test_a_hot_reload_that_changes_the_leverage_sets_it_again_and_one_that_does_not_sends_nothing(sim, tmp_path):
    _write_config(tmp_path, 5)
    trader = Trader(sim, tmp_path)
    startup.apply_leverage(trader.engine)
    assert _sim_leverage(sim, "BTCUSDT") == "5"

    _write_config(tmp_path, 8)
    trader.reload()

    assert (_sim_leverage(sim, "BTCUSDT"), _sim_leverage(sim, "AI16ZUSDT")) == ("8", "8")
    assert trader.status("BTCUSDT")["applied"] == 8.0 and trader.engine.core.risk.leverage_for("BTCUSDT") == D(8)
    calls = len([op for op, *_ in trader.observed if op == "set_leverage"])
    trader.reload()  # the same leverage: nothing to do
    assert len([op for op, *_ in trader.observed if op == "set_leverage"]) == calls


def test_110043_already_that_leverage_is_a_success_for_the_trader_and_the_detectors(sim, tmp_path):
    _write_config(tmp_path, 7)
    startup.apply_leverage(Trader(sim, tmp_path).engine)
    restarted = Trader(sim, tmp_path)  # a restart asks again: the simulator answers 110043

    startup.apply_leverage(restarted.engine)

    assert restarted.status("BTCUSDT")["state"] == "APPLIED" and restarted.status("BTCUSDT")["applied"] == 7.0
    assert [(ok, kind) for op, ok, kind in restarted.observed if op == "set_leverage"] == [(True, "")] * 2
    assert restarted.engine.core.risk.entry_block_reason("BTCUSDT") is None


def test_pybit_adapter_takes_110043_as_success_and_raises_every_other_refusal():
    class Http:
        def __init__(self, code: int) -> None:
            self.code = code

        def set_leverage(self, **params: Any) -> dict:
            raise InvalidRequestError(request="", message="refused", status_code=self.code, time="", resp_headers={})

    seen: list[bool] = []
    PybitRest(Http(110043), observer=lambda op, ok, ms, kind: seen.append(ok)).set_leverage("BTCUSDT", D(5))
    with pytest.raises(OrderRejected) as refused:
        PybitRest(Http(10001), observer=lambda op, ok, ms, kind: seen.append(ok)).set_leverage("BTCUSDT", D(500))
    assert refused.value.ret_code == 10001 and seen == [True, False]


# -- failures: retried on the gateway, bounded, shown ----------------------------------------------


class Flaky:
    """An exchange whose set-leverage fails ``failures`` times, then succeeds; notes the thread of each call."""

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or TemporaryExchangeError("set_leverage: HTTP 503")
        self.calls: list[tuple[str, D, str]] = []

    def set_leverage(self, symbol: str, leverage: D) -> None:
        self.calls.append((symbol, leverage, threading.current_thread().name))
        if len(self.calls) <= self.failures:
            raise self.error


def _keeper(exchange: Any, clock: ManualClock, risk: RiskEngine, dispatcher: Any = None) -> LeverageKeeper:
    return LeverageKeeper(symbols=["BTCUSDT"], instruments=DEFAULT_INSTRUMENTS, exchange=exchange,
                          dispatcher=dispatcher or InlineDispatcher(), clock=clock, on_applied=risk.set_leverage)


def _risk(clock: ManualClock) -> RiskEngine:
    return RiskEngine(make_config().risk, clock, DEFAULT_INSTRUMENTS)


def test_a_failure_is_retried_with_backoff_a_bounded_number_of_times_then_shown_as_failed():
    clock = ManualClock(T0)
    risk = _risk(clock)
    exchange = Flaky(failures=100)
    keeper = _keeper(exchange, clock, risk)
    keeper.want(5)
    keeper.apply_now()
    assert keeper.status("BTCUSDT")["state"] == "RETRYING" and len(exchange.calls) == 1
    keeper.submit_due()
    assert len(exchange.calls) == 1  # not before the backoff
    for _ in range(10):
        clock.advance(lev.MAX_RETRY_MS)
        keeper.submit_due()

    status = keeper.status("BTCUSDT")
    assert len(exchange.calls) == lev.MAX_ATTEMPTS
    assert (status["state"], status["attempts"], status["applied"]) == ("FAILED", lev.MAX_ATTEMPTS, None)
    assert "503" in status["error"]
    assert risk.entry_block_reason("BTCUSDT") == reasons.LEVERAGE_NOT_APPLIED  # never sized on a guess

    exchange.failures = 0
    keeper.want(5)  # a config reload: a symbol that gave up tries again
    keeper.submit_due()
    assert keeper.status("BTCUSDT")["state"] == "APPLIED" and risk.leverage_for("BTCUSDT") == D(5)


def test_retries_run_on_the_gateway_thread_and_settle_on_the_pipeline_thread():
    clock = ManualClock(T0)
    risk = _risk(clock)
    items: queue.SimpleQueue[tuple] = queue.SimpleQueue()
    gateway = GatewayDispatcher(items.put)
    exchange = Flaky(failures=1, error=OrderRejected("Available balance not enough", ret_code=110012))
    keeper = _keeper(exchange, clock, risk, dispatcher=gateway)
    try:
        keeper.want(5)
        keeper.apply_now()  # at start, on this thread: refused
        clock.advance(lev.FIRST_RETRY_MS)
        keeper.submit_due()
        _, done, result, error = items.get(timeout=5)
        assert keeper.status("BTCUSDT")["state"] == "RETRYING"  # nothing settles until the pipeline runs `done`
        done(result, error)
    finally:
        gateway.stop()
    assert [thread for *_, thread in exchange.calls] == [threading.current_thread().name, "exchange-gateway"]
    assert keeper.status("BTCUSDT")["state"] == "APPLIED" and keeper.applied("BTCUSDT") == D(5)


def test_a_reload_while_a_call_is_out_sends_the_new_leverage_once_the_old_one_settled():
    clock = ManualClock(T0)
    risk = _risk(clock)
    held: list[tuple] = []
    dispatcher = SimpleNamespace(submit=lambda call, done: held.append((call, done)))
    exchange = Flaky(failures=0)
    keeper = _keeper(exchange, clock, risk, dispatcher=dispatcher)
    keeper.want(5)
    keeper.submit_due()
    keeper.want(9)
    keeper.submit_due()
    assert len(held) == 1  # one call per symbol at a time
    call, done = held.pop()
    done(call(), None)
    assert risk.leverage_for("BTCUSDT") == D(5) and keeper.status("BTCUSDT")["state"] == "PENDING"
    keeper.submit_due()
    call, done = held.pop()
    done(call(), None)
    assert [leverage for _, leverage, _ in exchange.calls] == [D(5), D(9)]
    assert keeper.status("BTCUSDT")["state"] == "APPLIED" and risk.leverage_for("BTCUSDT") == D(9)


def test_dry_run_sends_nothing_and_sizes_entries_with_the_wanted_leverage():
    clock = ManualClock(T0)
    risk = _risk(clock)
    real = Flaky(failures=0)
    keeper = _keeper(DryRunExchange(real), clock, risk)  # type: ignore[arg-type]
    keeper.want(6)
    keeper.apply_now()
    assert real.calls == [] and keeper.status("BTCUSDT")["state"] == "NOT_SENT"
    assert risk.entry_block_reason("BTCUSDT") is None and risk.leverage_for("BTCUSDT") == D(6)


# -- entries are margined with the applied leverage ----------------------------------------------


def _entry(symbol: str = "BTCUSDT", price: float = 50000.05, stop: float = 10.0) -> OrderRequest:
    return OrderRequest(symbol=symbol, side=OrderSide.BUY, reference_price=price, stop_distance=stop, reason="TEST",
                        score=0.7, ts=T0)


def test_an_entry_is_sized_so_its_margin_at_the_applied_leverage_fits_the_free_equity():
    risk = RiskEngine(make_config(risk={"max_heat_pct": 10_000}).risk, ManualClock(T0), DEFAULT_INSTRUMENTS)
    equity = AccountState(D("1000"))
    # 2.5 USDT of risk over a 10 USDT stop wants 0.25 BTC: 12,500 USDT of notional.
    risk.set_leverage("BTCUSDT", D(10))
    at_ten = risk.check_entry(_entry(), equity)
    risk.set_leverage("BTCUSDT", D(2))
    at_two = risk.check_entry(_entry(), equity)

    # What 1,000 USDT margins per BTC at 50,000: 50,000 x (1/leverage + the fee allowance).
    assert (at_ten.allowed, at_ten.leverage, str(at_ten.qty)) == (True, D(10), "0.196")  # 1000 / 5,100
    assert (at_two.allowed, at_two.leverage, str(at_two.qty)) == (True, D(2), "0.039")  # 1000 / 25,100
    assert at_two.qty * at_two.price / 2 <= D(1000)

    risk.on_positions([PositionExposure("ETHUSDT", OrderSide.BUY, D("3.3"), D("3000"))])  # 9,900 at 10x: 990 used
    risk.set_leverage("ETHUSDT", D(10))
    refused = risk.check_entry(_entry(), equity)
    assert (refused.allowed, refused.reason) == (False, reasons.INSUFFICIENT_MARGIN)


# -- the simulator's set-leverage --------------------------------------------------------------------


def _matching() -> MatchingEngine:
    clock = iter(range(1_000, 10_000_000))
    engine = MatchingEngine(DEFAULT_INSTRUMENTS, clock=lambda: next(clock))
    engine.books["BTCUSDT"].apply_snapshot(parse_levels([["50000.0", "5"]]), parse_levels([["50001.0", "5"]]), 1, 1)
    engine.last_price["BTCUSDT"] = D("50000.5")
    return engine


def _code(call: Any) -> int:
    with pytest.raises(E.ExchangeError) as info:
        call()
    return info.value.ret_code


@pytest.mark.parametrize(
    ("symbol", "buy", "sell"),
    [("BTCUSDT", "0.5", "0.5"), ("BTCUSDT", "100.01", "100.01"), ("AI16ZUSDT", "26", "26"),
     ("BTCUSDT", "5.005", "5.005"), ("BTCUSDT", "5", "6")],
)
def test_simulator_refuses_a_leverage_outside_the_filter_or_two_sided_with_10001(symbol, buy, sell):
    engine = _matching()
    assert _code(lambda: engine.set_leverage(symbol, D(buy), D(sell))) == E.PARAM_ERROR
    assert engine.position(symbol).leverage == D(10)  # a refusal changes nothing


def test_simulator_answers_110043_for_the_same_leverage_and_accepts_the_filters_edges():
    engine = _matching()
    engine.set_leverage("BTCUSDT", D("100"), D("100"))
    engine.set_leverage("BTCUSDT", D("1"), D("1"))
    engine.set_leverage("AI16ZUSDT", D("25"), D("25"))
    assert _code(lambda: engine.set_leverage("BTCUSDT", D("1"), D("1"))) == E.LEVERAGE_NOT_MODIFIED


def test_simulator_margins_positions_and_orders_with_the_leverage_and_refuses_what_the_balance_cannot_carry():
    engine = _matching()
    engine.place_order(SimOrder("BTCUSDT", "Buy", "Market", D("1")))  # 50,001 USDT at 10x: 5,000.1 margin
    pos = engine.positions["BTCUSDT"]
    assert engine.position_im(pos) == D("5000.1")
    engine.set_leverage("BTCUSDT", D(20), D(20))
    assert engine.position_im(pos) == D("2500.05")
    engine.place_order(SimOrder("BTCUSDT", "Buy", "Limit", D("1"), D("40000.0")))  # rests: 2,000 margin at 20x
    assert engine.order_im() == D(2000)
    available = engine.available()

    # 2x would need 25,000.5 + 20,000 of margin: far beyond the 10,000 USDT account.
    assert _code(lambda: engine.set_leverage("BTCUSDT", D(2), D(2))) == E.AVAILABLE_NOT_ENOUGH
    assert pos.leverage == D(20) and engine.available() == available
    engine.set_leverage("BTCUSDT", D(10), D(10))  # (50,001 + 40,000) / 20 more: within what is available
    assert engine.position_im(pos) == D("5000.1") and engine.order_im() == D(4000)


def test_simulator_rest_set_leverage_shows_on_the_position_and_answers_bybits_codes(sim):
    http = sim_http(sim.base_url, retry_codes={-1}, max_retries=1, timeout=5)

    def code(buy: str, sell: str) -> int:
        with pytest.raises(InvalidRequestError) as info:
            http.set_leverage(category="linear", symbol="AI16ZUSDT", buyLeverage=buy, sellLeverage=sell)
        return info.value.status_code

    http.set_leverage(category="linear", symbol="AI16ZUSDT", buyLeverage="12.5", sellLeverage="12.5")
    assert _sim_leverage(sim, "AI16ZUSDT") == "12.5"
    assert code("12.5", "12.5") == E.LEVERAGE_NOT_MODIFIED
    assert code("30", "30") == E.PARAM_ERROR and code("5", "6") == E.PARAM_ERROR
    assert _sim_leverage(sim, "AI16ZUSDT") == "12.5"


# -- a whole trader -----------------------------------------------------------------------------------


class GateServices(Services):
    """The FailoverManager, agreeing to everything: the gate is open."""

    def failover_gate(self, **kwargs: Any) -> Any:
        from trading.tests.trader.fakes import Gate

        return Gate()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_running_trader_sets_the_leverage_at_start_and_again_when_the_file_changes(sim, tmp_path, settings):
    from trading.tests.trader.fakes import Control as Beats
    from trading.trader.process import Trader as Process

    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # no bus: the listener retries in the background
    _write_config(tmp_path, 4)
    control = Beats()
    process = Process(TraderSettings(mode="SIM", symbols=["BTCUSDT"], run_id="lev-run", data_dir=tmp_path,
                                     target=ExchangeTarget(kind=SIM, base_url=sim.base_url), max_runtime_s=8.0),
                      services=GateServices(), control=control)
    seen: dict[str, Any] = {}

    def operator() -> None:
        deadline = time.monotonic() + 20
        while not control.beats and not process.ctx.stop.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        seen["atStart"] = _sim_leverage(sim, "BTCUSDT")  # the first heartbeat: the trader is running
        _write_config(tmp_path, 6)

    thread = threading.Thread(target=operator, daemon=True)
    thread.start()
    assert process.run() == 0
    thread.join(5)

    assert seen["atStart"] == "4" and _sim_leverage(sim, "BTCUSDT") == "6"
    first, last = control.beats[0]["symbolStatus"]["BTCUSDT"], control.beats[-1]["symbolStatus"]["BTCUSDT"]
    assert first["leverage"]["applied"] == 4.0
    assert last["leverage"] == {"wanted": 6.0, "applied": 6.0, "state": "APPLIED", "attempts": 0, "error": None}
