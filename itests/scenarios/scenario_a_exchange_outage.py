"""TEST_A: a soft exchange outage (REST 5xx and dropped WebSockets); reconnect attempts, then recovery."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from itests import probes
from itests.environment import IsolatedEnvironment
from itests.scenario import IntegrationScenario


class SoftExchangeOutage(IntegrationScenario):
    id = "TEST_A"
    name = "Soft exchange outage"
    description = "REST answers 503 and every WebSocket drops; safe mode, reconnect attempts, resync, back."
    prerequisite = "A running SIM trader with safe mode OFF."
    action = "Simulator faults http_error(503) and ws_drop(all) until cleared after the reconnect attempts."
    expected_events = ("EXCHANGE_UNAVAILABLE", "safe mode ON", "reconnect attempts one after another",
                       "faults cleared", "RESYNC_EXCHANGE_CONNECTION, RESYNC_POSITIONS, RESYNC_ORDERS DONE",
                       "safe mode OFF")
    pass_criteria = ("EXCHANGE_UNAVAILABLE reported", "safe mode ON during the outage",
                     "reconnect attempts step by step (the plan retries with backoff)",
                     "after success: resync, safe mode OFF")
    time_limit_s = 120.0

    def _attempts(self) -> dict[str, int]:
        """Reconnect attempts so far: the recovery plan's tries (backoff 5 s, 10 s, 20 s) and stream reopenings."""
        beat = self.beat() or {}
        plan = probes.plan_for(self.run_id, "EXCHANGE_UNAVAILABLE")
        return {"planAttempts": plan["attempts"] if plan is not None else 0,
                "streamRebuilds": sum(int(s.get("rebuilds", 0)) for s in (beat.get("streams") or {}).values()),
                "publicReconnects": int((beat.get("marketData") or {}).get("publicReconnects", 0))}

    def scenario(self, env: IsolatedEnvironment) -> None:
        run = self.run_id
        self.boot(env)
        version = probes.version(run)
        outage_ms = int(time.time() * 1000)
        self.progress("exchange outage: REST 503 and dropped WebSockets")
        env.control.inject("http_error", status=503)
        env.control.inject("ws_drop", stream="all", mode="abort")
        failure = self.wait_for_failure("EXCHANGE_UNAVAILABLE")
        self.wait_for("the trader enters safe mode for EXCHANGE_UNAVAILABLE",
                      lambda: self.trader_saw("FAILOVER_STATE", after_ms=outage_ms, safeMode=True),
                      timeout=10, expected={"safeMode": True},
                      actual=lambda: self.trader_saw("FAILOVER_STATE", after_ms=outage_ms))
        self.expect("safe mode is ON during the outage", True, probes.state(run).safe_mode)
        self.progress("watch the reconnect attempts")
        seen: list[dict[str, int]] = []

        def stepped() -> bool:
            now = self._attempts()
            if not seen or now["planAttempts"] > seen[-1]["planAttempts"]:
                seen.append(now)
            return now["planAttempts"] >= 2

        # Clear before the plan's retries run out (four tries, then it waits for an operator).
        self.wait_for("reconnect attempts happen one after another, with backoff", stepped, timeout=30,
                      expected="at least 2 failed RESYNC_EXCHANGE_CONNECTION attempts", actual=lambda: seen)
        self.metrics["reconnectAttemptsSeen"] = seen
        self.expect("safe mode stays ON while the exchange is down", True, probes.state(run).safe_mode)
        self.progress("clear the outage")
        self.metrics["faultsCleared"] = env.control.clear()
        cleared = datetime.now(UTC)  # recovery counts from the exchange being back, not from the outage start
        self.metrics["outageMs"] = int((cleared - failure.timestamp).total_seconds() * 1000)
        self.wait_safe_mode_off("after reconnect and resync safe mode is OFF", after_version=version,
                                since=cleared, timeout=75)
        steps = probes.plan_steps(probes.plan_for(run, "EXCHANGE_UNAVAILABLE"))
        for step in ("RESYNC_EXCHANGE_CONNECTION", "RESYNC_POSITIONS", "RESYNC_ORDERS"):
            self.expect(f"{step} is DONE", True, (step, "DONE") in steps, fatal=False)
        beat = self.beat() or {}
        self.expect("both streams are connected again", {"public": True, "private": True},
                    {n: s.get("connected") for n, s in (beat.get("streams") or {}).items()})
