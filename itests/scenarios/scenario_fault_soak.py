"""FAULT_SOAK: storms of random overlapping simulator faults with quiet gaps, and behind-the-back changes,
against a trading SIM trader; safe mode must end after every storm and nothing unsafe may reach the exchange.

Some storms also kill -9 the trader in their middle and start it again at once, into the storm (a start while
the exchange fails), some turn the config file to garbage until their all-clear, and some drop the database
sessions of the run's processes (what a PostgreSQL restart does to them)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from failover.domain.files import atomic_write_bytes
from itests.chaos.base import LIVENESS_S, ChaosScenario
from itests.chaos.driver import ChaosDriver
from itests.environment import IsolatedEnvironment

DEFAULT_DURATION_S = 60.0
KILL_IN_STORM = 0.35  # share of storms in which the trader is killed with SIGKILL and started again at once
SPOIL_IN_STORM = 0.25  # share of storms in which config.json is garbage until the all-clear
DB_DROP_IN_STORM = 0.3  # share of storms in which the database drops the run's sessions (a PostgreSQL restart)
# What a config file can become: cut mid-write, emptied, not text, a value out of its range, not an object.
SPOILED_CONFIG = (b'{"risk": {"max_open_positions": ', b"", b"\x00\xff\xfe garbage",
                  b'{"risk": {"max_open_positions": -3}}', b"[1, 2, 3]")
STREAMS = ("public", "private", "all")
Fault = tuple[dict[str, Any], float | None, int | None]  # params, duration, count


def _http_error(rng: random.Random, s: float) -> Fault:
    return {"status": rng.choice((500, 502, 503, 504)), "fraction": round(rng.uniform(0.3, 1.0), 2)}, s, None


def _rate_limit(rng: random.Random, s: float) -> Fault:
    return {"fraction": round(rng.uniform(0.3, 1.0), 2)}, s, None


def _latency(rng: random.Random, s: float) -> Fault:
    return ({"target": rng.choice(("rest", "ws_public", "ws_private")), "fixed_ms": rng.randint(50, 1500),
             "jitter_ms": rng.randint(0, 300)}, s, None)


def _ws_drop(rng: random.Random, s: float) -> Fault:
    return {"stream": rng.choice(STREAMS), "mode": rng.choice(("close", "abort"))}, s, None


def _ws_stream(rng: random.Random, s: float) -> Fault:
    return {"stream": rng.choice(STREAMS)}, s, None


def _ws_malformed(rng: random.Random, s: float) -> Fault:
    return {"stream": rng.choice(STREAMS)}, None, 1


def _market_freeze(rng: random.Random, s: float) -> Fault:
    return {"symbol": rng.choice(("BTCUSDT", "ETHUSDT"))}, s, None


def _ambiguous(rng: random.Random, s: float) -> Fault:
    return {"mode": rng.choice(("drop", "hang")), "hold_s": round(rng.uniform(1.0, 5.0), 1)}, None, rng.randint(1, 3)


def _slippage(rng: random.Random, s: float) -> Fault:
    return {"symbol": rng.choice(("BTCUSDT", "ETHUSDT")), "bps": rng.randint(20, 100)}, s, None


# Every fault kind the simulator has, each with random parameters within what a storm may do.
FAULTS: dict[str, Callable[[random.Random, float], Fault]] = {
    "http_error": _http_error, "rate_limit": _rate_limit, "latency": _latency, "ws_drop": _ws_drop,
    "ws_refuse": _ws_stream, "ws_malformed": _ws_malformed, "ws_silent": _ws_stream,
    "market_freeze": _market_freeze, "ambiguous_submit": _ambiguous, "slippage": _slippage,
}


class FaultSoak(ChaosScenario):
    id = "FAULT_SOAK"
    name = "Chaos: fault storms"
    description = ("For --duration seconds: storms of 2-5 random overlapping simulator faults of every kind, "
                   "quiet gaps, behind-the-back changes, against a trading SIM trader. Invariants checked over "
                   "the exchange's record; safe mode must end within the bound after every storm.")
    prerequisite = "A trading SIM trader, safe mode OFF; --duration S --seed S."
    action = "Storms of overlapping faults (5xx, rate limits, latency, socket drops/refusals/silence/garbage, " \
             "frozen symbols, ambiguous submits, slippage), behind-the-back changes, in some a kill -9 of the " \
             "trader started again into the storm, in some a config file turned to garbage, in some the database " \
             "sessions dropped; then quiet."
    expected_events = ("safe mode ON during storms", f"safe mode OFF within {LIVENESS_S:.0f} s of each clear",
                       "local state equal to the exchange's at the end", "entries again after the last storm")
    pass_criteria = ("no orderLinkId on two exchange orders", "no entry accepted while safe mode was on",
                     "no entry stacked on an open position", "local == exchange at the end",
                     "safe mode ends after every storm; the trader trades again")

    # A queued run (dashboard, API) takes the defaults: its task's time limit comes from this.
    time_limit_s = DEFAULT_DURATION_S + 300.0

    def duration(self) -> float:
        return float(self.options.get("duration_s") or DEFAULT_DURATION_S)

    def time_limit(self) -> float:
        return self.duration() + 300.0

    def scenario(self, env: IsolatedEnvironment) -> None:
        self.boot(env)
        driver = self.start_driver(env, durationS=self.duration())
        rng = driver.rng
        end = time.monotonic() + self.duration()
        storms = 0
        while end - time.monotonic() > 10:
            time.sleep(min(rng.uniform(3.0, 10.0), max(0.0, end - time.monotonic() - 10)))
            storms += 1
            self.progress(f"storm {storms}")
            self._storm(driver, min(rng.uniform(5.0, 20.0), max(3.0, end - time.monotonic() - 5)))
            gap = rng.uniform(10.0, LIVENESS_S * 1.6)
            self._quiet(driver, min(gap, max(0.0, end - time.monotonic())))
        self.metrics["storms"] = storms
        self.settle(driver)
        self.judge(driver)

    def _storm(self, driver: ChaosDriver, seconds: float) -> None:
        rng = driver.rng
        driver.recorder.event("storm", durationS=round(seconds, 2))
        started = time.monotonic()
        kinds = rng.sample(sorted(FAULTS), rng.randint(2, 5))
        kill_after = rng.randrange(len(kinds)) if rng.random() < KILL_IN_STORM else None
        drop_after = rng.randrange(len(kinds)) if rng.random() < DB_DROP_IN_STORM else None
        config = driver.env.data / "config" / "config.json"
        kept = self._spoil(driver, config) if rng.random() < SPOIL_IN_STORM else None
        restarted = None
        for i, kind in enumerate(kinds):  # staggered: they overlap, each ending on its own
            self._check_trader()
            params, lasting, count = FAULTS[kind](rng, rng.uniform(1.0, seconds))
            driver.fault(kind, duration_s=None if lasting is None else round(lasting, 2), count=count, **params)
            if rng.random() < 0.4:
                driver.behind_the_back(allow_open=False)
            if i == drop_after:
                driver.drop_database_sessions()
            if i == kill_after:
                self.trader_may_exit(True)
                driver.kill_trader("random", with_worker=False)
                restarted = driver.start_trader()  # into the storm: it starts while the exchange fails
                self.trader_may_exit(False)
            time.sleep(rng.uniform(0.0, seconds / len(kinds)))
        time.sleep(max(0.0, seconds - (time.monotonic() - started)))
        driver.clear_faults()
        if kept is not None:
            self._restore(driver, config, kept)
        cleared = time.monotonic()
        driver.recorder.event("all_clear")
        if restarted is not None:
            driver.await_running(restarted, counted_from=cleared)

    def _spoil(self, driver: ChaosDriver, config: Path) -> bytes:
        """Write garbage over the config file (as a bad edit or a torn write would); return what it held."""
        kept = config.read_bytes()
        garbage = driver.rng.choice(SPOILED_CONFIG)
        config.write_bytes(garbage)
        driver.recorder.event("config_spoiled", garbage=garbage.decode("utf-8", "replace"))
        return kept

    def _restore(self, driver: ChaosDriver, config: Path, kept: bytes) -> None:
        """Put the config back whole, in one rename (the operator's fix)."""
        atomic_write_bytes(config, kept)
        driver.recorder.event("config_restored")

    def _quiet(self, driver: ChaosDriver, seconds: float) -> None:
        """Let the product recover: once safe mode is off within the gap, local state must equal the
        exchange's (a checkpoint); then trade on until the gap ends."""
        end = time.monotonic() + seconds
        if driver.wait_safe_mode_off(within_s=seconds) is not None and end - time.monotonic() > 15:
            driver.checkpoint("after_recovery")
        while time.monotonic() < end:
            self._check_trader()
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
