"""Named crash points against real processes: the process dies there, the next start converges with the exchange.

Each test arms one point (``arm_fault`` for the trader, the environment for a
Celery worker), waits for the death the point announces on stderr, starts a new
process on the same data folder and run id, waits for safe mode OFF, and then
judges from the simulator's record: no ``orderLinkId`` on two exchange orders,
local open orders equal to the exchange's (no zombie, no intent left behind),
local open positions equal to the exchange's.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from failover.models import FailureEventRecord, RecoveryPlanRecord
from scalper_site.testkit import celery_worker_argv, start_process, stop_process, wait_until
from trading.control import TraderUnavailable, send_command
from trading.exchange.pybit_rest import pybit_http_kwargs
from trading.selectors import orders_open, positions_open
from trading.simexchange.pybit_target import sim_http
from trading.tests.process_kit import Environment, eager_config, write_config

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

DEATH_TIMEOUT_S = 120  # the eager strategy enters within seconds of market data at speed 20
QUIET = {"scoring": {"watch_threshold": 1.0, "entry_threshold": 1.0}}  # no score reaches 1: no entry


# -- driving the processes ----------------------------------------------------------------------


def _boot(env: Environment, *, eager: bool) -> None:
    """Start the simulator, the worker and a trader with fault hooks; wait for the first start to converge."""
    if eager:
        eager_config(env.data)
    else:
        write_config(env.data, **QUIET)
    env.start()
    env.start_trader("trader", "--allow-fault-hooks")
    env.wait_safe_mode_off(timeout=90)


def _hold_a_position_and_a_resting_order(env: Environment) -> str:
    """Open a position and rest an order behind the trader's back; wait until both are adopted and recovered."""
    version = env.state().version
    env.control.open_position("BTCUSDT", "Buy", "0.010")
    book = requests.get(f"{env.sim_url}/v5/market/orderbook", params={"category": "linear", "symbol": "ETHUSDT"},
                        timeout=5).json()
    price = (Decimal(book["result"]["b"][0][0]) * Decimal("0.97")).quantize(Decimal("0.01"))
    resting = env.control.place_order("ETHUSDT", "Buy", "0.10", order_type="Limit", price=str(price))["orderId"]
    _wait(lambda: [p["symbol"] for p in positions_open(run_id=env.run_id)] == ["BTCUSDT"]
          and resting in {o["exchange_order_id"] for o in orders_open(run_id=env.run_id)}, timeout=45,
          what="the trader to adopt the position and the resting order")
    env.wait_safe_mode_off(timeout=90, after_version=version)
    return resting


def _arm(env: Environment, point: str, after: int = 1, attempts: int = 3) -> None:
    """Arm ``point``; asked again when unanswered (arming twice arms the same point: the call is idempotent).

    Once in a CI run a trader fresh out of its startup recovery left the command unanswered for 10 s; the
    crash point, not the command's latency, is what these tests are about.
    """
    args = {"crash_at": point, "crash_after": after}
    for attempt in range(1, attempts + 1):
        try:
            ack = send_command("arm_fault", run_id=env.run_id, args=args, wait_s=10)
            break
        except TraderUnavailable:
            if attempt == attempts:
                raise
    assert ack["ok"] and ack["result"]["crashAt"] == point, ack


def _wait_death(env: Environment, point: str, timeout: float = DEATH_TIMEOUT_S) -> None:
    """Wait for the trader to kill itself at ``point`` (SIGKILL, announced on stderr)."""
    trader = env.trader
    wait_until(lambda: trader.poll() is not None, timeout=timeout,
               what=f"the trader to die at {point} (log {env.trader_log})")
    log = env.trader_log.read_text(errors="replace")
    assert trader.returncode == -signal.SIGKILL, log[-3000:]
    assert f"crash point {point} reached" in log, log[-3000:]


def _restart(env: Environment) -> None:
    """Start a new trader on the same folder and run id, holding still (no entry); wait for safe mode OFF."""
    version = env.state().version
    write_config(env.data, **QUIET)
    env.start_trader("trader-2")
    wait_until(lambda: _failures(env).count("UNEXPECTED_SHUTDOWN") == 1, timeout=60,
               what=f"UNEXPECTED_SHUTDOWN from the new trader (log {env.trader_log})")
    env.wait_safe_mode_off(timeout=120, after_version=version)


def _failures(env: Environment) -> list[str]:
    rows = FailureEventRecord.objects.filter(run_id=env.run_id).order_by("timestamp")
    return list(rows.values_list("type", flat=True))


# -- what the exchange and the trader hold --------------------------------------------------------


def _exchange_history(env: Environment) -> list[dict[str, Any]]:
    """Every order the simulator ever took, through its ``GET /v5/order/history``."""
    http = sim_http(env.sim_url, **pybit_http_kwargs(timeout_s=5.0))
    rows: list[dict[str, Any]] = []
    cursor = ""
    for _ in range(200):
        page = http.get_order_history(category="linear", limit=50, **({"cursor": cursor} if cursor else {}))
        rows += page["result"]["list"]
        cursor = page["result"]["nextPageCursor"]
        if not cursor:
            return rows
    raise AssertionError("the order history did not end within 10,000 orders")


def _picture(env: Environment) -> dict[str, Any]:
    """Local and exchange open orders (by exchange id; an intent by its link id) and open positions."""
    exchange = env.exchange()
    return {
        "localOrders": sorted(o["exchange_order_id"] or o["order_link_id"] for o in orders_open(run_id=env.run_id)),
        "exchangeOrders": sorted(o["orderId"] for o in exchange["orders"]),
        "localPositions": sorted((p["symbol"], p["side"], Decimal(p["qty"]).normalize())
                                 for p in positions_open(run_id=env.run_id)),
        "exchangePositions": sorted((p["symbol"], "LONG" if p["side"] == "Buy" else "SHORT",
                                     Decimal(p["size"]).normalize())
                                    for p in exchange["positions"] if Decimal(p["size"]) > 0),
    }


def _assert_converged(env: Environment) -> list[dict[str, Any]]:
    """No orderLinkId twice on the exchange; local open orders and positions equal the exchange's."""
    history = _exchange_history(env)
    links = Counter(o["orderLinkId"] for o in history if o["orderLinkId"])
    assert [link for link, n in links.items() if n > 1] == [], "an orderLinkId is on two exchange orders"
    seen: list[dict[str, Any]] = []

    def same() -> bool:
        picture = _picture(env)
        seen[:] = [picture]
        return (picture["localOrders"] == picture["exchangeOrders"]
                and picture["localPositions"] == picture["exchangePositions"])

    try:
        wait_until(same, timeout=30, interval=0.5, what="local state to equal the exchange's")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {json.dumps(seen, default=str)}") from None
    assert env.trader.poll() is None, env.trader_log.read_text()[-3000:]
    return history


def _requests(env: Environment) -> list[dict[str, Any]]:
    """The order requests the traders logged (entries and exits), oldest first."""
    found = []
    for path in sorted((env.data / "events").glob("*.jsonl")):
        for line in path.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue  # the line a killed writer left half written
            if event.get("event") in ("ORDER_REQUEST", "EXIT_REQUEST"):
                found.append(event)
    return sorted(found, key=lambda e: e.get("tsMs", 0))


def _on_exchange(history: list[dict[str, Any]], link: str) -> list[dict[str, Any]]:
    return [o for o in history if o["orderLinkId"] == link]


def _wait(predicate: Callable[[], Any], *, timeout: float, what: str) -> Any:
    return wait_until(predicate, timeout=timeout, interval=0.2, what=what)


# -- the trader's points ----------------------------------------------------------------------------


def test_before_send_the_intent_is_resolved_never_sent_and_the_restart_converges(environment):
    env = environment
    _boot(env, eager=True)
    _arm(env, "before_send")
    _wait_death(env, "before_send")
    in_flight = _requests(env)[-1]["orderLinkId"]  # the death is in its send, on the thread that logged it
    _restart(env)
    history = _assert_converged(env)
    assert _on_exchange(history, in_flight) == [], "an order stored as an intent was sent after the crash"
    assert in_flight not in {o["order_link_id"] for o in orders_open(run_id=env.run_id)}


def test_after_send_the_accepted_order_is_found_by_its_id_never_sent_twice_and_the_restart_converges(environment):
    env = environment
    _boot(env, eager=True)
    _arm(env, "after_send")
    _wait_death(env, "after_send")
    requested = [r["orderLinkId"] for r in _requests(env)]
    _restart(env)
    history = _assert_converged(env)
    accepted = [link for link in requested if _on_exchange(history, link)]
    assert accepted, "the order the exchange accepted is not in its history"
    assert len(_on_exchange(history, accepted[-1])) == 1  # found by its id after the restart, never sent again


def test_after_fill_the_unrecorded_fill_is_learned_from_the_exchange_and_the_restart_converges(environment):
    env = environment
    _boot(env, eager=True)
    _arm(env, "after_fill")
    _wait_death(env, "after_fill")
    requested = [r["orderLinkId"] for r in _requests(env)]
    _restart(env)
    history = _assert_converged(env)
    filled = [o for link in requested for o in _on_exchange(history, link) if Decimal(o["cumExecQty"]) > 0]
    assert filled, "no order of the trader's was filled on the exchange"


def test_mid_state_write_leaves_the_previous_state_whole_and_the_next_start_removes_the_torn_temp(environment):
    env = environment
    _boot(env, eager=False)
    resting = _hold_a_position_and_a_resting_order(env)  # exposure the black box must keep
    _arm(env, "mid_state_write")
    _wait_death(env, "mid_state_write", timeout=30)
    system = env.data / "system"
    state = json.loads((system / "process_state.json").read_text())  # whole: the rename never happened
    assert state["phase"] != "STOPPING"
    [torn] = _temp_files(system)
    with pytest.raises(ValueError):
        json.loads(torn.read_text())
    _restart(env)
    assert not torn.exists()  # removed at start (the new trader's own writes pass through temp files of their own)
    assert "DATA_CORRUPTION" not in _failures(env)
    _assert_converged(env)
    assert [p["symbol"] for p in positions_open(run_id=env.run_id)] == ["BTCUSDT"]
    assert [o["orderId"] for o in env.exchange()["orders"]] == [resting]  # neither cancelled nor doubled


def _temp_files(system: Path) -> list[Path]:
    return [p for p in system.iterdir() if p.name.startswith(".process_state.json.") and p.name.endswith(".tmp")]


# -- the worker's point ------------------------------------------------------------------------------


def _start_worker(env: Environment, name: str, **extra_env: str) -> Any:
    log = env.tmp / f"{name}.log"
    worker = start_process(celery_worker_argv(name=f"{env.run_id}-{name}"), env={**env.env, **extra_env}, log=log)
    env.processes.append(worker)
    wait_until(lambda: "ready." in log.read_text(), timeout=60, what=f"worker {name}")
    return worker


def _restart_plan(env: Environment) -> RecoveryPlanRecord | None:
    plans = RecoveryPlanRecord.objects.filter(run_id=env.run_id, failure_type="UNEXPECTED_SHUTDOWN")
    return plans.order_by("-generated_at").first()


def _steps(plan: RecoveryPlanRecord | None) -> list[tuple[str, str]]:
    return [] if plan is None else list(plan.steps.order_by("position").values_list("type", "status"))


def test_a_worker_killed_mid_step_leaves_the_step_to_the_sweeper_and_a_healthy_worker_completes_the_plan(
    environment,
):
    env = environment
    _boot(env, eager=False)
    resting = _hold_a_position_and_a_resting_order(env)

    env.trader.send_signal(signal.SIGKILL)
    env.trader.wait(timeout=30)
    stop_process(env.worker)
    crashing = _start_worker(env, "crashing", SCALPER_CRASH_AT="recovery_step:RESYNC_ORDERS",
                             SCALPER_ALLOW_FAULT_HOOKS="1")
    version = env.state().version
    env.start_trader("trader-2")
    log = env.tmp / "crashing.log"
    _wait(lambda: "crash point recovery_step:RESYNC_ORDERS reached" in log.read_text(), timeout=90,
          what=f"the worker to die in RESYNC_ORDERS (log {log})")
    _wait(lambda: ("RESYNC_ORDERS", "RUNNING") in _steps(_restart_plan(env)), timeout=10,
          what="the step the dead worker held")
    assert env.state().safe_mode

    stop_process(crashing)
    _start_worker(env, "healthy")
    time.sleep(1.5)  # the dead step's heartbeat is older than the sweep's threshold below
    swept = start_process([*_manage(), "failover_sweep", "--stale-after", "1"], env=env.env,
                          log=env.tmp / "sweep.log")
    assert swept.wait(timeout=60) == 0, (env.tmp / "sweep.log").read_text()
    report = json.loads((env.tmp / "sweep.log").read_text().strip().splitlines()[-1])
    assert len(report["reset"]) == 1, report
    env.wait_safe_mode_off(timeout=90, after_version=version)
    steps = _steps(_restart_plan(env))
    assert ("RESYNC_ORDERS", "DONE") in steps and all(status == "DONE" for _, status in steps), steps
    _assert_converged(env)
    assert [p["symbol"] for p in positions_open(run_id=env.run_id)] == ["BTCUSDT"]
    assert [o["orderId"] for o in env.exchange()["orders"]] == [resting]  # neither cancelled nor doubled


def _manage() -> list[str]:
    return [sys.executable, "manage.py"]
