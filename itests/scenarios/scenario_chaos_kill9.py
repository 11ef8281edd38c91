"""CHAOS_KILL9: SIGKILL the trader again and again, at random and at its named crash points, while the exchange
changes behind its back; every restart converges with no duplicate and no zombie, checked from the exchange."""

from __future__ import annotations

import time

from itests.chaos.base import LIVENESS_S, ChaosScenario
from itests.chaos.driver import ChaosDriver
from itests.environment import IsolatedEnvironment

DEFAULT_KILLS = 10


class ChaosKill9(ChaosScenario):
    id = "CHAOS_KILL9"
    name = "Chaos: kill -9 at random"
    description = ("N cycles of: trade a little, SIGKILL the trader (at random or at a named crash point; some "
                   "cycles the worker too, or a worker dying mid recovery step), change the exchange behind its "
                   "back, restart, wait for RUNNING. Invariants checked over the exchange's record.")
    prerequisite = "A trading SIM trader started with --allow-fault-hooks, safe mode OFF; --kills N --seed S."
    action = ("Per cycle: a random wait, a kill (random moment, before_send, after_send, after_fill, "
              "mid_state_write, or a worker in RESYNC_*), 0-3 behind-the-back changes, restart.")
    expected_events = ("UNEXPECTED_SHUTDOWN after each kill", "RUNNING within the restart bound",
                       "safe mode OFF within the liveness bound", "local state equal to the exchange's")
    pass_criteria = ("no orderLinkId on two exchange orders", "no entry accepted while safe mode was on",
                     "no entry stacked on an open position", "local == exchange after each recovery and at the end",
                     "safe mode ends; the trader runs again and trades again")

    # A queued run (dashboard, API) takes the defaults: its task's time limit comes from this.
    time_limit_s = 240.0 + 45.0 * DEFAULT_KILLS

    def kills(self) -> int:
        return int(self.options.get("kills") or DEFAULT_KILLS)

    def time_limit(self) -> float:
        return 240.0 + 45.0 * self.kills()

    def scenario(self, env: IsolatedEnvironment) -> None:
        self.boot(env)
        driver = self.start_driver(env, kills=self.kills())
        rng = driver.rng
        for cycle in range(1, self.kills() + 1):
            self.progress(f"cycle {cycle}/{self.kills()}")
            time.sleep(rng.uniform(0.3, 4.0))
            self.trader_may_exit(True)
            self._cycle(driver, rng.random())
            self.trader_may_exit(False)
        self.settle(driver)
        self.judge(driver)

    def _cycle(self, driver: ChaosDriver, draw: float) -> None:
        rng = driver.rng
        worker_step = None
        if draw < 0.15:
            driver.kill_trader("random", with_worker=False)
            worker_step = driver.kill_worker_in_step()
        elif draw < 0.55:
            driver.kill_trader("crash_point", with_worker=rng.random() < 0.2)
        else:
            driver.kill_trader("random", with_worker=rng.random() < 0.25)
        for _ in range(rng.randint(0, 3)):
            driver.behind_the_back(allow_open=True)
        if worker_step is None:
            driver.ensure_worker()
        driver.restart_trader()
        if worker_step is not None:
            self._replace_crashing_worker(driver)
        if rng.random() < 0.8:  # else the next kill lands while it still recovers
            driver.wait_safe_mode_off(within_s=LIVENESS_S)
            driver.checkpoint("after_recovery")

    def _replace_crashing_worker(self, driver: ChaosDriver) -> None:
        """Let the worker armed to die mid step reach its step (bounded), then replace it with a healthy one.

        Under the prefork pool only the pool process dies there, and the worker forks another that is still
        armed: the whole worker goes, as a lost host would, and a healthy one takes over.
        """
        name = driver.worker_name
        process = driver.env.processes[name]
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline and process.poll() is None \
                and "crash point" not in driver.env.log_text(name):
            time.sleep(0.1)
        reached = "crash point" in driver.env.log_text(name)
        driver.recorder.event("worker_crash_point_reached" if reached else "worker_crash_point_not_reached",
                              worker=name)
        driver.env.kill_group(name)
        driver.ensure_worker()
