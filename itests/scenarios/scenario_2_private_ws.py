"""SCENARIO_2: the private WebSocket drops and reconnects are refused for a while; the trader recovers."""

from __future__ import annotations

import time

from itests import probes
from itests.environment import IsolatedEnvironment
from itests.scenario import IntegrationScenario

RESYNC = ("RESYNC_EXCHANGE_CONNECTION", "RESYNC_POSITIONS", "RESYNC_ORDERS")


class PrivateWsDisconnect(IntegrationScenario):
    id = "SCENARIO_2"
    name = "Private WS disconnect + recovery"
    description = "The private stream drops and cannot reconnect for a few seconds: safe mode, resync, back."
    prerequisite = "A running SIM trader with safe mode OFF."
    action = "Simulator faults: ws_refuse(stream=private) for 6 s, then ws_drop(stream=private) once."
    expected_events = ("PRIVATE_WS_DISCONNECTED", "safe mode ON", "plan RESYNC_EXCHANGE_CONNECTION, "
                       "RESYNC_POSITIONS, RESYNC_ORDERS", "private stream reconnected + RESYNC", "safe mode OFF")
    pass_criteria = ("the failure is detected and reported", "the trader enters safe mode",
                     "the plan resyncs connection, positions and orders, every step DONE",
                     "after reconnect and resync safe mode is OFF and the private stream is connected")

    def scenario(self, env: IsolatedEnvironment) -> None:
        run = self.run_id
        self.boot(env)
        version = probes.version(run)
        fault_ms = int(time.time() * 1000)
        self.progress("drop the private stream and refuse reconnects for 6 s")
        # Refuse first, so the drop's reconnects meet a closed door (refused, not flapping open and shut).
        env.control.inject("ws_refuse", stream="private", duration_s=6)
        env.control.inject("ws_drop", stream="private", mode="abort", count=1)
        failure = self.wait_for_failure("PRIVATE_WS_DISCONNECTED")
        self.wait_for("the trader enters safe mode for PRIVATE_WS_DISCONNECTED",
                      lambda: self.trader_saw("FAILOVER_STATE", after_ms=fault_ms, safeMode=True,
                                              reason="PRIVATE_WS_DISCONNECTED"),
                      timeout=10, expected={"safeMode": True, "reason": "PRIVATE_WS_DISCONNECTED"},
                      actual=lambda: self.trader_saw("FAILOVER_STATE", after_ms=fault_ms))
        plan = probes.plan_for(run, "PRIVATE_WS_DISCONNECTED")
        types = [t for t, _ in probes.plan_steps(plan)]
        self.expect("the recovery plan resyncs connection, positions and orders", list(RESYNC),
                    [t for t in types if t in RESYNC])
        self.progress("wait for reconnect, resync and safe mode OFF")
        self.wait_safe_mode_off("after reconnect and resync safe mode is OFF", after_version=version,
                                since=failure.timestamp, timeout=60)
        steps = probes.plan_steps(probes.plan_for(run, "PRIVATE_WS_DISCONNECTED"))
        self.expect("every step of the plan is DONE", [(t, "DONE") for t, _ in steps], steps)
        self.expect("the private stream reconnected and the trader resynced over REST", True,
                    bool(self.trader_saw("RESYNC", after_ms=fault_ms, why="private stream reconnected")))
        beat = self.beat() or {}
        self.expect("the private stream is connected", True,
                    (beat.get("streams") or {}).get("private", {}).get("connected"))
        self.expect("PRIVATE_WS_DISCONNECTED is no longer active", [], list(probes.state(run).active_failures))
