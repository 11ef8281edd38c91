"""TEST_D: the spec's 3 a.m. night (section 11): the exchange goes wild, the WebSockets drop and a module throws.

All at once, on a trader that trades. Nothing new may be opened while any of it lasts;
safe mode must outlive the exchange coming back while the module still throws, and go
off only when everything has cleared, with local state equal to the exchange's.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from itests import probes
from itests.environment import IsolatedEnvironment, eager_config
from itests.scenario import IntegrationScenario
from trading.control import send_command

SYMBOLS = ("BTCUSDT", "ETHUSDT")


class NightStorm(IntegrationScenario):
    id = "TEST_D"
    name = "3 a.m. storm"
    description = ("REST 503, every WebSocket dropped and a FeatureEngine that throws, all at once: no new entry "
                   "until all of it has cleared, then safe mode OFF with local state equal to the exchange's.")
    prerequisite = "A SIM trader started with --allow-fault-hooks on a config that trades readily, safe mode OFF."
    action = ("http_error(503) + ws_drop(all) + arm_fault(feature_engine_error) together; clear the exchange "
              "faults first, disarm the module last.")
    expected_events = ("EXCHANGE_UNAVAILABLE", "MODULE_CRASH (one report)", "CRIT alert", "safe mode ON",
                       "no ORDER_REQUEST while safe mode is ON",
                       "safe mode still ON after the exchange is back while the module throws",
                       "safe mode OFF after the module runs clean", "local positions and orders equal the exchange's")
    pass_criteria = expected_events[1:]
    fault_hooks = True
    time_limit_s = 150.0

    def prepare(self, env: IsolatedEnvironment) -> None:
        eager_config(env.data, risk={"daily_loss_limit_pct": 50.0})

    def _requests_between(self, start_ms: int, end_ms: int) -> list[str | None]:
        return [e.get("orderLinkId") for s in SYMBOLS for e in self.trader_saw("ORDER_REQUEST", symbol=s,
                                                                              after_ms=start_ms)
                if e.get("tsMs", 0) < end_ms]

    def scenario(self, env: IsolatedEnvironment) -> None:
        run = self.run_id
        self.boot(env)
        version = probes.version(run)
        self.progress("let it trade for a few seconds")
        time.sleep(5.0)
        self.progress("the storm: REST 503, every WebSocket dropped, the FeatureEngine throwing")
        storm_ms = int(time.time() * 1000)
        env.control.inject("http_error", status=503)
        env.control.inject("ws_drop", stream="all", mode="abort")
        ack = send_command("arm_fault", run_id=run, args={"feature_engine_error": "itest TEST_D storm"}, wait_s=10)
        self.expect("the trader accepts the fault hook", True, ack.get("ok"))
        for kind in ("EXCHANGE_UNAVAILABLE", "MODULE_CRASH"):
            self.wait_for_failure(kind)
        self.wait_for_crit_alert("MODULE_CRASH")
        self.expect("safe mode is ON", True, probes.state(run).safe_mode)
        time.sleep(3.0)  # the storm goes on

        self.progress("the exchange comes back; the module still throws")
        self.metrics["faultsCleared"] = env.control.clear()
        self.wait_for("the streams are connected again", lambda: probes.streams_connected(self.beat()),
                      timeout=45, expected={"public": True, "private": True}, actual=lambda: self.beat())
        self.wait_for("EXCHANGE_UNAVAILABLE is no longer active",
                      lambda: "EXCHANGE_UNAVAILABLE" not in (probes.state(run).active_failures or []), timeout=45,
                      expected="no EXCHANGE_UNAVAILABLE", actual=lambda: probes.state_summary(run))
        time.sleep(2.0)
        state = probes.state(run)
        self.expect("safe mode stays ON while the module still throws", True, state.safe_mode)
        self.expect("MODULE_CRASH is still active", True, "MODULE_CRASH" in (state.active_failures or []))

        self.progress("disarm the module fault")
        disarmed = datetime.now(UTC)
        send_command("arm_fault", run_id=run, args={"feature_engine_error": None}, wait_s=10)
        self.wait_safe_mode_off("safe mode OFF once everything has cleared", after_version=version,
                                since=disarmed, timeout=60)
        # The window is the trader's own: from its first safe-mode-ON state after the storm to its safe-mode-OFF.
        safe_on = self.trader_saw("FAILOVER_STATE", after_ms=storm_ms, safeMode=True)
        on_ms = safe_on[0]["tsMs"] if safe_on else storm_ms
        safe_off = self.trader_saw("FAILOVER_STATE", after_ms=on_ms, safeMode=False)
        off_ms = safe_off[0]["tsMs"] if safe_off else int(time.time() * 1000)
        self.metrics["safeModeWindowMs"] = off_ms - on_ms
        self.metrics["failuresDuringStorm"] = probes.failures(run)[1:]
        self.metrics["safeModeOnAfterStormMs"] = on_ms - storm_ms
        self.metrics["entriesBeforeSafeMode"] = len(self._requests_between(storm_ms, on_ms))
        self.expect("no new entry was sent while safe mode was ON", [], self._requests_between(on_ms, off_ms))
        self.expect("one MODULE_CRASH report for the whole storm", 1, probes.failures(run).count("MODULE_CRASH"))
        plans = probes.plans_since(run, datetime.fromtimestamp(storm_ms / 1000, UTC))
        self.metrics["plansDuringStorm"] = len(plans)
        self.metrics["stepsDuringStorm"] = sum(len(p["steps"]) for p in plans)
        # The trader trades again by now: a fill reaches the exchange a few ms before the private stream
        # brings it here, so the two are compared until they agree (at most a few seconds), not once.
        def side_by_side() -> dict[str, Any]:
            exchange = env.exchange()
            return {"positions": (probes.exchange_positions(exchange), probes.open_positions(run)),
                    "orders": (probes.exchange_order_links(exchange), probes.open_order_links(run))}

        self.wait_for("local open positions and orders equal the exchange's",
                      lambda: all(a == b for a, b in side_by_side().values()), timeout=10,
                      expected="exchange == local", actual=side_by_side)
