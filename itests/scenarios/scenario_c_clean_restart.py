"""TEST_C: a graceful stop with nothing open and a new start: a minimal plan, safe mode off quickly."""

from __future__ import annotations

import json
import signal

from itests import probes
from itests.environment import IsolatedEnvironment, write_config
from itests.scenario import IntegrationScenario


class CleanRestart(IntegrationScenario):
    id = "TEST_C"
    name = "Restart with no positions"
    description = "Graceful stop with openPositionsSnapshot=[], then a start: minimal plan, safe mode OFF quickly."
    prerequisite = "A running SIM trader with no position and no order."
    action = "SIGTERM the trader (phase STOPPING), start a new one on the same data folder and run id."
    expected_events = ("process_state phase STOPPING, openPositionsSnapshot []", "PROCESS_RESTART",
                       "plan READ_PROCESS_STATE, RESYNC_ORDERS (no RESYNC_POSITIONS)", "safe mode OFF")
    pass_criteria = ("PROCESS_RESTART, not UNEXPECTED_SHUTDOWN", "the plan has no RESYNC_POSITIONS",
                     "safe mode goes OFF quickly")

    def prepare(self, env: IsolatedEnvironment) -> None:
        # Nothing may open while the scenario runs: a score is below 1 whenever the book has a spread
        # (spread_penalty > 0), so thresholds of 1.0 never enter, however loaded the machine is.
        write_config(env.data, scoring={"watch_threshold": 1.0, "entry_threshold": 1.0})

    def scenario(self, env: IsolatedEnvironment) -> None:
        run = self.run_id
        self.boot(env)
        self.expect("nothing is open on the exchange", ([], []),
                    (probes.exchange_positions(env.exchange()), env.exchange()["orders"]))
        self.progress("graceful stop (SIGTERM)")
        self.trader_may_exit(True)
        self.expect("the trader stops cleanly", 0, env.kill_trader(signal.SIGTERM))
        state = json.loads((env.data / "system" / "process_state.json").read_text())
        self.expect("the process state says STOPPING with no position and no order", ("STOPPING", [], []),
                    (state["phase"], state["openPositionsSnapshot"], state["openOrdersSnapshot"]))
        version = probes.version(run)
        restarts = probes.failures(run).count("PROCESS_RESTART")
        self.progress("start a new trader")
        env.start_trader("trader-2")
        self.trader_may_exit(False)
        self.wait_for("the new trader reports PROCESS_RESTART",
                      lambda: probes.failures(run).count("PROCESS_RESTART") > restarts, timeout=30,
                      expected=f"{restarts + 1} PROCESS_RESTART", actual=lambda: probes.failures(run))
        failure = probes.state(run).last_failure
        assert failure is not None, "a PROCESS_RESTART was reported but the state names no last failure"
        self.wait_safe_mode_off("safe mode goes OFF after the minimal plan", after_version=version,
                                since=failure.timestamp, timeout=30)
        plan = probes.plan_for(run, "PROCESS_RESTART")
        steps = probes.plan_steps(plan)
        self.expect("the plan is minimal: no RESYNC_POSITIONS", [("READ_PROCESS_STATE", "DONE"),
                                                                  ("RESYNC_ORDERS", "DONE")], steps)
        self.expect("no UNEXPECTED_SHUTDOWN was reported", False, "UNEXPECTED_SHUTDOWN" in probes.failures(run))
