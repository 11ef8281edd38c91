"""The trader as a real process against the simulator, with a real Celery worker on Redis.

These are the tests a trader cares about most: it trades in SIM and the
database agrees with the exchange; and after ``kill -9`` with an open position,
a resting order and unconfirmed intents, the next process ends with no
duplicate position, no zombie order and local state equal to the exchange's.
"""

from __future__ import annotations

import io
import json
import os
import signal
import time
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from scalper_site.testkit import wait_until
from trading.models import Order, Position, Trade
from trading.simexchange.pybit_target import sim_http
from trading.tests.process_kit import eager_config

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _open_positions(run_id: str) -> list[tuple[str, str, Decimal]]:
    return sorted(Position.objects.filter(run_id=run_id, status="OPEN").values_list("symbol", "side", "qty"))


def _exchange_positions(state: dict) -> list[tuple[str, str, Decimal]]:
    return sorted(
        (p["symbol"], "LONG" if p["side"] == "Buy" else "SHORT", Decimal(p["size"]))
        for p in state["positions"]
        if Decimal(p["size"]) > 0
    )


def test_sim_trader_trades_and_the_database_agrees_with_the_simulator(environment):
    eager_config(environment.data)
    environment.start()
    environment.start_trader()
    environment.wait_safe_mode_off()
    wait_until(
        lambda: Trade.objects.filter(run_id=environment.run_id).count() >= 1, timeout=120, what="a closed SIM trade"
    )
    from trading.control import read_heartbeat

    beat = read_heartbeat(run_id=environment.run_id)
    assert beat["phase"] == "RUNNING" and beat["safeMode"] is False
    assert beat["streams"]["public"]["connected"] and beat["streams"]["private"]["connected"]
    # Every symbol has data, fresher than the staleness bound that would raise PUBLIC_WS_DEGRADED (10 s),
    # in every heartbeat: the REST probe and the other timers must not blank it between two beats.
    for _ in range(4):
        ages = read_heartbeat(run_id=environment.run_id)["marketData"]["lastMessageAgeMs"]
        assert set(ages) == {"BTCUSDT", "ETHUSDT"}, ages
        assert all(age is not None and age < 10_000 for age in ages.values()), ages
        time.sleep(0.7)
    assert beat["counters"]["entriesSent"] >= 1
    # The operator's command line reaches the trader over the bus; a refusal is an error with the reason.
    with pytest.raises(CommandError, match="refused close_position: ValueError: 'DOGEUSDT' is not a symbol"):
        call_command("trader_command", "close_position", "--arg", "symbol=DOGEUSDT", "--run-id", environment.run_id)
    out = io.StringIO()
    call_command("trader_command", "reload_state", "--run-id", environment.run_id, stdout=out)
    assert json.loads(out.getvalue())["ok"] is True
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
    wait_until(
        lambda: _open_positions(run_id) == [("BTCUSDT", "LONG", Decimal("0.010"))],
        timeout=30,
        what="the trader following the position",
    )

    environment.trader.send_signal(signal.SIGKILL)
    environment.trader.wait(timeout=10)
    assert json.loads((environment.data / "system" / "process_state.json").read_text())["phase"] != "STOPPING"
    # What the dead trader left: two intents recorded before their requests went out; one request
    # reached the exchange before the kill, the other never left the process.
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
    http.place_order(
        category="linear",
        symbol="ETHUSDT",
        side="Buy",
        orderType="Limit",
        qty="0.10",
        price=str(low - Decimal("1")),
        orderLinkId=received_link,
    )
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
