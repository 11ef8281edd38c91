"""What the chaos scenarios share: a seeded driver, a recorded history, and a verdict from the exchange's record."""

from __future__ import annotations

import random
import time
from typing import Any, ClassVar

from itests.chaos import invariants
from itests.chaos.driver import ChaosDriver
from itests.chaos.history import Recorder, now_ms
from itests.environment import IsolatedEnvironment, eager_config
from itests.scenario import IntegrationScenario

# The quiet windows a chaos run's config sets (failover.detectors): a failure type that waits for quiet
# clears this long after its last incident.
QUIET_WINDOW_S = 20.0
# Safe mode is off within the longest quiet window plus one recovery plan (retries included) of the last
# fault clearing; a restarted trader is RUNNING within RESTART_S.
PLAN_S = 25.0
LIVENESS_S = QUIET_WINDOW_S + PLAN_S
RESTART_S = 30.0
# An entry the exchange accepts this soon after safe mode went on was decided before the trader could know
# (plus any REST latency injected at that moment): counted apart, not a violation.
ENTRY_GRACE_MS = 250
TRADES_AGAIN_S = 90.0


class ChaosScenario(IntegrationScenario):
    """A scenario that drives random trouble from a seed and is judged by ``invariants.check``."""

    fault_hooks: ClassVar[bool] = True

    def seed(self) -> int:
        if "seed" not in self.__dict__:
            given = self.options.get("seed")
            self.__dict__["seed"] = int(given) if given not in (None, "") else int(time.time()) % 1_000_000
        return int(self.__dict__["seed"])

    def prepare(self, env: IsolatedEnvironment) -> None:
        eager_config(env.data, risk={"daily_loss_limit_pct": 50.0},
                     quality={"slippage_window_s": 60.0},
                     failover={"detectors": {"packet_loss_window_s": QUIET_WINDOW_S,
                                             "public_reconnects_window_s": QUIET_WINDOW_S}})

    def start_driver(self, env: IsolatedEnvironment, **meta: Any) -> ChaosDriver:
        seed = self.seed()
        self.recorder = Recorder(env.root / "history", run_id=self.run_id, meta={
            "scenario": self.id, "seed": seed, "symbols": list(env.symbols), **meta,
            "bounds": {"livenessS": LIVENESS_S, "restartS": RESTART_S, "entryGraceMs": ENTRY_GRACE_MS,
                       "quietWindowS": QUIET_WINDOW_S, "planS": PLAN_S}})
        self.metrics["seed"] = seed
        self.progress(f"seed {seed}: replay this run with --seed {seed}")
        return ChaosDriver(env, self.recorder, random.Random(seed), run_id=self.run_id,
                           check_alive=self._check_trader)

    def settle(self, driver: ChaosDriver) -> None:
        """The end of every run: all clear, safe mode off, local equal to the exchange, an entry again."""
        driver.clear_faults()
        driver.recorder.event("all_clear", final=True)
        waited = driver.wait_safe_mode_off(within_s=LIVENESS_S + 15)
        self.metrics["finalSafeModeOffMs"] = waited
        driver.checkpoint("end")
        driver.make_room()  # one entry per symbol: with every symbol held, no entry could come
        since, after = now_ms(), driver.env.control.history(after=0, limit=1)["lastSeq"]
        self.progress("wait for the trader to enter again")
        deadline = time.monotonic() + TRADES_AGAIN_S
        while time.monotonic() < deadline:
            self._check_trader()
            records = driver.env.control.history(after=after, limit=1000)["records"]
            if any(r.get("type") == "order" and r.get("origin") == "api" and not r.get("reduceOnly")
                   and int(r.get("ts", 0)) >= since for r in records):
                break
            after = records[-1]["seq"] if records else after
            time.sleep(1.0)
        driver.recorder.event("end")

    def judge(self, driver: ChaosDriver) -> invariants.Verdict:
        """Read the whole history back and record one expectation per invariant, with its evidence."""
        history = self.recorder.finish(driver.env.control)
        verdict = invariants.check(history)
        self.metrics.update(verdict.metrics)
        self.metrics["violationEvidence"] = verdict.to_dict()["evidence"]
        self.metrics["historyFolder"] = str(self.recorder.folder)
        for name, found in verdict.violations.items():
            self.expect(f"invariant {name} holds over the exchange's record", [], found[:5], fatal=False)
        return verdict
