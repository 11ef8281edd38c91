"""SCENARIO_3: kill -9 with an open position and a resting order; the next process converges to the exchange."""

from __future__ import annotations

import json
import signal
from decimal import Decimal

from itests import probes
from itests.environment import IsolatedEnvironment
from itests.scenario import IntegrationScenario


class ProcessRestartRecovery(IntegrationScenario):
    id = "SCENARIO_3"
    name = "Process restart recovery"
    description = "SIGKILL with an open position and a resting order; the new process resyncs from the exchange."
    prerequisite = "A running SIM trader that tracks one open position and one resting order."
    action = "SIGKILL the trader process; start a new one on the same data folder and run id."
    expected_events = ("UNEXPECTED_SHUTDOWN", "plan READ_PROCESS_STATE, RESYNC_POSITIONS, RESYNC_ORDERS",
                       "RESYNC_POSITIONS DONE", "RESYNC_ORDERS DONE", "safe mode OFF")
    pass_criteria = ("no duplicate position", "no zombie order", "local positions and orders equal the exchange's")
    time_limit_s = 120.0

    def scenario(self, env: IsolatedEnvironment) -> None:
        run = self.run_id
        self.boot(env)
        version = probes.version(run)
        self.progress("open a position and rest an order on the exchange; let the trader adopt them")
        env.control.open_position("BTCUSDT", "Buy", "0.010")
        bid = env.best_bid("ETHUSDT")
        resting = env.control.place_order("ETHUSDT", "Buy", "0.10", order_type="Limit",
                                          price=str((bid * Decimal("0.97")).quantize(Decimal("0.01"))))
        self.wait_for("the trader tracks the open position and the resting order",
                      lambda: probes.open_positions(run) == [("BTCUSDT", "LONG", Decimal("0.01"))]
                      and resting["orderId"] in probes.open_order_ids(run)
                      and probes.safe_mode_off_after(run, version),
                      timeout=45, expected={"positions": [("BTCUSDT", "LONG", "0.01")], "order": resting["orderId"]},
                      actual=lambda: {"positions": probes.open_positions(run), "orders": probes.open_order_ids(run),
                                      "state": probes.state_summary(run)})
        self.progress("SIGKILL the trader")
        self.trader_may_exit(True)
        code = env.kill_trader(signal.SIGKILL)
        self.expect("the trader was killed by SIGKILL", -signal.SIGKILL, code)
        state_file = env.data / "system" / "process_state.json"
        self.expect("the dead trader's process state is not a clean stop", True,
                    json.loads(state_file.read_text())["phase"] != "STOPPING")
        crash_version = probes.version(run)
        self.progress("start a new trader")
        env.start_trader("trader-2")
        self.trader_may_exit(False)
        failure = self.wait_for_failure("UNEXPECTED_SHUTDOWN", expectation="the new trader reports UNEXPECTED_SHUTDOWN")
        self.wait_safe_mode_off("the restart plan completes and safe mode is OFF", after_version=crash_version,
                                since=failure.timestamp, timeout=60)
        steps = probes.plan_steps(probes.plan_for(run, "UNEXPECTED_SHUTDOWN"))
        for step in ("RESYNC_POSITIONS", "RESYNC_ORDERS"):
            self.expect(f"{step} ran and is DONE", True, (step, "DONE") in steps, fatal=False)
        exchange = env.exchange()
        self.expect("local open positions equal the exchange's", probes.exchange_positions(exchange),
                    probes.open_positions(run), fatal=False)
        self.expect("the exchange still holds the position (nothing closed or opened twice)",
                    [("BTCUSDT", "LONG", Decimal("0.01"))], probes.exchange_positions(exchange), fatal=False)
        duplicates = sum(1 for symbol, _, _ in probes.open_positions(run) if symbol == "BTCUSDT")
        self.expect("no duplicate position (one open BTCUSDT row)", 1, duplicates, fatal=False)
        exchange_ids = {o["orderId"] for o in exchange["orders"]}
        self.expect("no zombie order: local open orders equal the exchange's", exchange_ids,
                    probes.open_order_ids(run), fatal=False)
        self.expect("the resting order survived and was not sent again", {resting["orderId"]}, exchange_ids)
