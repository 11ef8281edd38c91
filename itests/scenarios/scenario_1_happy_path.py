"""SCENARIO_1: the full pipeline in SIM with no failure; trades happen and nothing turns red."""

from __future__ import annotations

import time
from typing import Any

import psutil

from itests import probes
from itests.environment import IsolatedEnvironment, eager_config
from itests.scenario import IntegrationScenario


def _rss_mb(process: Any) -> float:
    try:
        return round(psutil.Process(process.pid).memory_info().rss / 2**20, 1)
    except (psutil.Error, AttributeError):
        return 0.0


class HappyPath(IntegrationScenario):
    id = "SCENARIO_1"
    name = "Happy path – SIM mode"
    description = "Full pipeline, no failures, 10–15 min run."
    prerequisite = "A fresh simulator with accelerated market data; a config that trades readily."
    action = ("Run the SIM trader (market -> feature -> scoring -> state -> execution -> risk -> logging) "
              "for the duration.")
    expected_events = ("PROCESS_RESTART (first start)", "safe mode OFF", "ENTRY orders filled", "closed trades")
    pass_criteria = ("no ERROR in the health snapshot", "no CRIT alert", "at least minTrades SIM trades",
                     "no failure besides the first start")

    def time_limit(self) -> float:
        return float(self.options.get("duration_s") or 0) + 150.0

    def prepare(self, env: IsolatedEnvironment) -> None:
        eager_config(env.data)

    def scenario(self, env: IsolatedEnvironment) -> None:
        min_trades = int(self.options.get("min_trades") or 1)
        duration_s = float(self.options.get("duration_s") or 0)
        began = time.monotonic()
        self.boot(env)
        sampled = [0.0]

        rss_mb: list[float] = []

        def trades_done() -> bool:
            # A health snapshot every 2 s while trading: any ERROR in any of them fails the run.
            if time.monotonic() - sampled[0] >= 2.0:
                sampled[0] = time.monotonic()
                self.sample_health()
                rss_mb.append(_rss_mb(env.trader))
            return probes.trades(self.run_id) >= min_trades and time.monotonic() - began >= duration_s

        self.progress(f"trade until {min_trades} trade(s)" + (f" and {duration_s:.0f}s" if duration_s else ""))
        self.wait_for(f"at least {min_trades} SIM trade(s) executed", trades_done,
                      timeout=duration_s + 120, expected=f">= {min_trades}", actual=lambda: probes.trades(self.run_id))
        # The trader's memory over the run (a soak shows growth here): after warm-up, at the end, the peak.
        warm = rss_mb[len(rss_mb) // 10:] or rss_mb
        if warm:
            self.metrics["traderRssMb"] = {"afterWarmUp": warm[0], "end": warm[-1], "peak": max(warm)}
        snapshot = self.sample_health()
        self.expect("no ERROR in the health snapshot (all samples)", 0, self.health_errors)
        self.expect("the final health snapshot has no ERROR", [],
                    sorted(k for k, v in snapshot.items() if v.get("status") == "ERROR"))
        beat = self.beat() or {}
        streams = {name: s.get("connected") for name, s in (beat.get("streams") or {}).items()}
        self.expect("the trader's public and private streams are connected", {"public": True, "private": True},
                    streams)
        self.expect("no CRIT alert", [], probes.alerts(self.run_id, "CRIT"))
        self.expect("no failure besides the first start", ["PROCESS_RESTART"], probes.failures(self.run_id))
        self.expect("safe mode is OFF at the end", False, probes.state(self.run_id).safe_mode)
        self.expect("the trader sent entries", True, (beat.get("counters") or {}).get("entriesSent", 0) >= 1)
