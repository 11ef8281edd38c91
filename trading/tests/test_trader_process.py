"""The trader as a real process against the simulator, with a real Celery worker on Redis.

These are the tests a trader cares about most: it trades in SIM and the
database agrees with the exchange; and after ``kill -9`` with an open position,
a resting order and unconfirmed intents, the next process ends with no
duplicate position, no zombie order and local state equal to the exchange's.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection

from failover.models import FailoverStateRecord
from scalper_site.testkit import (
    celery_worker_argv,
    env_on_test_database,
    free_port,
    start_process,
    stop_process,
    wait_until,
)
from trading.models import Order, Position, Trade
from trading.simexchange.control import SimControl
from trading.simexchange.pybit_target import sim_http

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SYMBOLS = "BTCUSDT,ETHUSDT"


def _eager_config(data_dir: Path) -> None:
    """A config that trades often enough for a short test (the shipped one waits for strong signals)."""
    shipped = json.loads((Path(__file__).resolve().parents[2] / "data" / "config" / "config.json").read_text())
    shipped["scoring"]["watch_threshold"] = 0.2
    shipped["scoring"]["entry_threshold"] = 0.3
    shipped["state_machine"]["cooldown_ms"] = 2000
    (data_dir / "config").mkdir(parents=True, exist_ok=True)
    (data_dir / "config" / "config.json").write_text(json.dumps(shipped))


class Environment:
    """A simulator, a Celery worker and (on demand) trader processes, isolated by run id and data folder."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.data = tmp_path / "data"
        self.data.mkdir()
        self.run_id = f"t-{uuid.uuid4().hex[:8]}"
        self.sim_port = free_port()
        self.sim_url = f"http://127.0.0.1:{self.sim_port}"
        self.env = env_on_test_database(connection, SCALPER_DATA_DIR=str(self.data), CELERY_QUEUE=self.run_id)
        self.processes: list = []
        self.trader = None

    def start(self, *, speed: float = 20.0) -> Environment:
        self.sim = start_process(
            [
                sys.executable,
                "manage.py",
                "run_simexchange",
                "--port",
                str(self.sim_port),
                "--reset",
                "--speed",
                str(speed),
                "--state",
                str(self.tmp / "exchange_state.json"),
            ],
            env=self.env,
            log=self.tmp / "sim.log",
        )
        self.worker = start_process(celery_worker_argv(name=self.run_id), env=self.env, log=self.tmp / "worker.log")
        self.processes += [self.sim, self.worker]
        wait_until(lambda: "listening" in (self.tmp / "sim.log").read_text(), timeout=30, what="simulator")
        wait_until(lambda: "ready." in (self.tmp / "worker.log").read_text(), timeout=60, what="worker")
        self.control = SimControl(self.sim_url)
        return self

    def start_trader(self, name: str = "trader") -> None:
        self.trader_log = self.tmp / f"{name}.log"
        self.trader = start_process(
            [
                sys.executable,
                "manage.py",
                "run_trader",
                "--mode",
                "SIM",
                "--symbols",
                SYMBOLS,
                "--sim-url",
                self.sim_url,
                "--run-id",
                self.run_id,
                "--ping-interval",
                "5",
                "--ping-timeout",
                "3",
            ],
            env=self.env,
            log=self.trader_log,
        )
        self.processes.append(self.trader)

    def state(self) -> FailoverStateRecord | None:
        return FailoverStateRecord.objects.filter(run_id=self.run_id).first()

    def wait_safe_mode_off(self, timeout: float = 60, *, after_version: int = -1) -> None:
        """Wait for safe mode off in a state newer than ``after_version`` (a dead trader's state is old)."""

        def off() -> bool:
            assert self.trader is None or self.trader.poll() is None, self.trader_log.read_text()[-3000:]
            state = self.state()
            return state is not None and state.version > after_version and not state.safe_mode

        wait_until(off, timeout=timeout, what=f"safe mode off (trader log {self.trader_log})")

    def exchange(self) -> dict:
        return self.control.state()

    def stop(self) -> None:
        for process in reversed(self.processes):
            stop_process(process)


@pytest.fixture
def environment(tmp_path):
    env = Environment(tmp_path)
    try:
        yield env
    finally:
        env.stop()


def _open_positions(run_id: str) -> list[tuple[str, str, Decimal]]:
    return sorted(Position.objects.filter(run_id=run_id, status="OPEN").values_list("symbol", "side", "qty"))


def _exchange_positions(state: dict) -> list[tuple[str, str, Decimal]]:
    return sorted(
        (p["symbol"], "LONG" if p["side"] == "Buy" else "SHORT", Decimal(p["size"]))
        for p in state["positions"]
        if Decimal(p["size"]) > 0
    )


def test_sim_trader_trades_and_the_database_agrees_with_the_simulator(environment):
    _eager_config(environment.data)
    environment.start()
    environment.start_trader()
    environment.wait_safe_mode_off()
    wait_until(
        lambda: Trade.objects.filter(run_id=environment.run_id).count() >= 1, timeout=120, what="a closed SIM trade"
    )
    os.kill(environment.trader.pid, signal.SIGTERM)
    assert environment.trader.wait(timeout=30) == 0
    exchange = environment.exchange()
    assert _open_positions(environment.run_id) == _exchange_positions(exchange)
    local_open = set(
        Order.objects.filter(run_id=environment.run_id, status__in=["NEW", "PARTIALLY_FILLED"]).values_list(
            "order_link_id", flat=True
        )
    )
    assert local_open == {o["orderLinkId"] for o in exchange["orders"]}
    state = json.loads((environment.data / "system" / "process_state.json").read_text())
    assert state["phase"] == "STOPPING" and state["runMode"] == "SIM"
    assert sorted((p["symbol"], p["side"]) for p in state["openPositionsSnapshot"]) == [
        (s, side) for s, side, _ in _exchange_positions(exchange)
    ]


def test_kill_9_with_position_resting_order_and_unconfirmed_intents_recovers_without_duplicates(environment):
    environment.start()
    environment.start_trader()
    environment.wait_safe_mode_off()
    run_id = environment.run_id

    # State at the moment of the crash: an open position, a resting order, and two intents the
    # exchange never confirmed to us: one it did receive, one it never saw.
    environment.control.open_position("BTCUSDT", "Buy", "0.010")
    http = sim_http(environment.sim_url)
    book = http.get_orderbook(category="linear", symbol="ETHUSDT")["result"]
    low = (Decimal(book["b"][0][0]) * Decimal("0.97")).quantize(Decimal("0.01"))
    resting = http.place_order(
        category="linear",
        symbol="ETHUSDT",
        side="Buy",
        orderType="Limit",
        qty="0.10",
        price=str(low),
        orderLinkId="AISCLP-resting-1",
    )["result"]
    received_link, lost_link = "AISCLP-intent-received", "AISCLP-intent-lost"
    http.place_order(
        category="linear",
        symbol="ETHUSDT",
        side="Buy",
        orderType="Limit",
        qty="0.10",
        price=str(low - Decimal("1")),
        orderLinkId=received_link,
    )
    wait_until(
        lambda: _open_positions(run_id) == [("BTCUSDT", "LONG", Decimal("0.010"))],
        timeout=30,
        what="the trader following the position",
    )
    from django.utils import timezone

    now = timezone.now()
    for link in (received_link, lost_link):
        Order.objects.create(
            run_id=run_id,
            order_link_id=link,
            symbol="ETHUSDT",
            side="BUY",
            order_type="Limit",
            qty=Decimal("0.10"),
            price=low - Decimal("1"),
            status="INTENT",
            created_at=now,
            updated_at=now,
        )

    environment.trader.send_signal(signal.SIGKILL)
    environment.trader.wait(timeout=10)
    assert json.loads((environment.data / "system" / "process_state.json").read_text())["phase"] != "STOPPING"
    orders_before = {o["orderLinkId"] for o in environment.exchange()["orders"]}
    version_at_crash = environment.state().version

    environment.start_trader("trader-2")
    wait_until(
        lambda: getattr(environment.state().last_failure, "type", "") == "UNEXPECTED_SHUTDOWN",
        timeout=30,
        what="the new trader reporting the crash",
    )
    environment.wait_safe_mode_off(timeout=90, after_version=version_at_crash)

    exchange = environment.exchange()
    assert _open_positions(run_id) == _exchange_positions(exchange) == [("BTCUSDT", "LONG", Decimal("0.010"))]
    assert Position.objects.filter(run_id=run_id, status="OPEN", symbol="BTCUSDT").count() == 1
    exchange_open = {o["orderLinkId"] for o in exchange["orders"]}
    assert exchange_open == orders_before == {"AISCLP-resting-1", received_link}  # nothing was sent again
    local = dict(Order.objects.filter(run_id=run_id).values_list("order_link_id", "status"))
    assert local[received_link] == "NEW"  # found on the exchange by its orderLinkId
    assert local[lost_link] == "CANCELED"  # never reached the exchange: not a zombie, not resent
    assert local["AISCLP-resting-1"] == "NEW"  # adopted from exchange truth
    assert Order.objects.get(run_id=run_id, order_link_id="AISCLP-resting-1").exchange_order_id == resting["orderId"]
    state = environment.state()
    assert state.last_failure.type == "UNEXPECTED_SHUTDOWN"
    steps = list(state.current_plan.steps.values_list("type", "status"))
    assert ("RESYNC_POSITIONS", "DONE") in steps and ("RESYNC_ORDERS", "DONE") in steps
