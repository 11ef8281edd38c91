"""Tick-to-order in SIM: a market message's arrival at the trader -> its order request leaving, beside the pybit floor.

Run: .venv/bin/python bench/bench_tick_to_order.py [--seconds S] [--speed X] [--floor N]

Self-contained: a temporary data folder with its own SQLite database, the
embedded Redis, and real simulator, Celery worker and SIM trader processes on
10 symbols. The trader's config is the default with the entry rules loosened
(low thresholds, no cooldown, one position per symbol), so it enters often
enough for a p99; the path an entry takes is the product's own.

The trader runs with timing hooks wrapped around five functions (nothing
in the product is changed; the hooks are installed in the trader's process by
this file, which the trader runs as ``--trader-child``), each stamping
``time.perf_counter_ns()``:

- arrival: ``MonitoredSocketMixin._on_message``, the first product code a frame
  reaches on pybit's WebSocket thread (before it is parsed);
- pipeline: ``TradingCore.on_public``, the message taken off the trader's queue;
- decision: ``ExecutionEngine._send``, the entry's intent stored, the request
  handed to the gateway thread;
- gateway: ``PybitRest.place_order`` called for that entry on the gateway
  thread (the gateway runs every exchange call of the trader, one at a time);
- leaving: ``requests.Session.send`` of that entry's ``place_order`` (pybit has
  built and signed the request); and the answer.

Printed: p50/p99 of arrival -> leaving and of each part, beside the floor
measured in the same run: a bare pybit round trip (``get_server_time``) from
this process against the same simulator, and the trader's own ``place_order``
round trips. The pipeline's share is arrival -> leaving over arrival -> answer.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

CHILD_FLAG = "--trader-child"
LOOSE_CONFIG = {  # only what differs from the default config
    "scoring": {"watch_threshold": 0.05, "entry_threshold": 0.1},
    "state_machine": {"cooldown_ms": 0, "arm_timeout_ms": 5000},
    "risk": {"max_open_positions": 10, "daily_loss_limit_pct": 100.0, "max_heat_pct": 10_000.0,
             "min_stop_bps": 1.0, "stop_vol_multiple": 0.5, "take_profit_multiple": 1.0},  # short trades
    "quality": {"quality_threshold": 0.0, "recovery_threshold": 1.0},
}


# -- the trader's side: hooks, then run_trader ----------------------------------------------------


class Hooks:
    """The timing wrappers (see the module's docstring) and what they stamped."""

    def __init__(self) -> None:
        import threading

        self.clock = time.perf_counter_ns
        self.local = threading.local()  # per thread: the frame's arrival (pybit's), the entry's link id (gateway)
        self.arrivals: dict[int, int] = {}  # id(parsed message) -> arrival, until the pipeline takes it
        self.current: tuple[int, int] | None = None  # (arrival, pipeline) of the message the pipeline runs
        self.decided: dict[str, tuple[int, int, int]] = {}  # orderLinkId -> (arrival, pipeline, decision)
        self.samples: list[tuple[int, ...]] = []  # arrival, pipeline, decision, called, leaving, answer

    def on_message(self, original: Any) -> Any:
        def hooked(socket: Any, message: str) -> None:
            self.local.arrival = self.clock()
            original(socket, message)
        return hooked

    def deliver(self, original: Any) -> Any:
        def hooked(stream: Any, message: dict) -> None:
            arrival = getattr(self.local, "arrival", None)
            if stream.name == "public" and arrival is not None:
                self.arrivals[id(message)] = arrival
            original(stream, message)
        return hooked

    def on_public(self, original: Any) -> Any:
        def hooked(core: Any, message: dict, received_ms: int | None = None) -> None:
            arrival = self.arrivals.pop(id(message), None)
            self.current = None if arrival is None else (arrival, self.clock())
            try:
                original(core, message, received_ms)
            finally:
                self.current = None
        return hooked

    def send(self, original: Any) -> Any:
        def hooked(engine: Any, order: Any) -> None:
            if self.current is not None:
                self.decided[order.order_link_id] = (*self.current, self.clock())
            original(engine, order)
        return hooked

    def place_order(self, original: Any) -> Any:
        def hooked(rest: Any, order: Any) -> Any:
            self.local.link_id, self.local.leaving, called = order.order_link_id, None, self.clock()
            try:
                return original(rest, order)
            finally:
                stamps = self.decided.pop(order.order_link_id, None)
                if stamps is not None and self.local.leaving is not None:
                    self.samples.append((*stamps, called, self.local.leaving, self.clock()))
                self.local.link_id = None
        return hooked

    def session_send(self, original: Any) -> Any:
        def hooked(session: Any, request: Any, **kwargs: Any) -> Any:
            if getattr(self.local, "link_id", None) and self.local.leaving is None:
                self.local.leaving = self.clock()
            return original(session, request, **kwargs)
        return hooked


def _install_hooks(out: Path) -> None:
    """Wrap the five functions; write the samples to ``out`` at exit."""
    import atexit

    import requests

    from trading.engine.core import TradingCore
    from trading.engine.execution import ExecutionEngine
    from trading.exchange.pybit_rest import PybitRest
    from trading.exchange.streams import ManagedStream, MonitoredSocketMixin

    hooks = Hooks()
    for cls, name, make in ((MonitoredSocketMixin, "_on_message", hooks.on_message),
                            (ManagedStream, "_deliver", hooks.deliver), (TradingCore, "on_public", hooks.on_public),
                            (ExecutionEngine, "_send", hooks.send), (PybitRest, "place_order", hooks.place_order),
                            (requests.Session, "send", hooks.session_send)):
        setattr(cls, name, make(getattr(cls, name)))
    atexit.register(lambda: out.write_text(json.dumps(hooks.samples)))


def child(argv: list[str]) -> int:
    """Run ``manage.py run_trader`` here with the hooks in; argv: OUT then run_trader's arguments."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import django

    django.setup()
    _install_hooks(Path(argv[0]))
    from django.core.management import call_command

    call_command("run_trader", *argv[1:])
    return 0


# -- the benchmark's side ----------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def line(name: str, values: list[float]) -> str:
    if not values:
        return f"{name:<46} no samples"
    return f"{name:<46} p50 {pct(values, 0.5):8.3f} ms   p99 {pct(values, 0.99):8.3f} ms   (n={len(values)})"


def write_config(data: Path) -> None:
    from trading.domain.config import DEFAULT_CONFIG

    config = DEFAULT_CONFIG.model_dump(mode="json")
    for section, values in LOOSE_CONFIG.items():
        config[section].update(values)
    (data / "config").mkdir(parents=True, exist_ok=True)
    (data / "config" / "config.json").write_text(json.dumps(config, indent=2))


def floor_round_trips(url: str, count: int) -> list[float]:
    """A bare pybit request (``get_server_time``) against the simulator, ``count`` times; ms each."""
    from trading.exchange.pybit_rest import pybit_http_kwargs
    from trading.simexchange.constants import DEFAULT_API_KEY, DEFAULT_API_SECRET
    from trading.simexchange.pybit_target import sim_http

    http = sim_http(url, DEFAULT_API_KEY, DEFAULT_API_SECRET, **pybit_http_kwargs(timeout_s=5.0))  # as the trader
    http.get_server_time()  # the connection opened outside the figure
    times = []
    for _ in range(count):
        started = time.perf_counter_ns()
        http.get_server_time()
        times.append((time.perf_counter_ns() - started) / 1e6)
    return times


def run(args: argparse.Namespace) -> tuple[list[list[int]], list[float], int]:
    from _bootstrap import embedded

    data, redis = embedded("tick-to-order")
    from django.core.management import call_command

    from scalper_site.testkit import celery_worker_argv, free_port, start_process, stop_process, wait_until
    from trading.control import read_heartbeat
    from trading.marketdata.instruments import DEFAULT_INSTRUMENTS

    call_command("migrate", verbosity=0)
    write_config(data)
    symbols = ",".join(list(DEFAULT_INSTRUMENTS)[:10])
    run_id, port, out = f"t2o-{uuid.uuid4().hex[:6]}", free_port(), data / "samples.json"
    env = {**os.environ, "CELERY_QUEUE": run_id}
    sim = start_process([sys.executable, "manage.py", "run_simexchange", "--port", str(port), "--reset", "--speed",
                         str(args.speed), "--symbols", symbols, "--state", str(data / "sim.json")],
                        env=env, log=data / "sim.log")
    worker = start_process(celery_worker_argv(name=run_id), env=env, log=data / "worker.log")
    trader = None
    try:
        wait_until(lambda: "listening" in (data / "sim.log").read_text(), timeout=30, what="simulator")
        wait_until(lambda: "ready." in (data / "worker.log").read_text(), timeout=60, what="worker")
        trader = start_process([sys.executable, __file__, CHILD_FLAG, str(out), "--mode", "SIM", "--symbols", symbols,
                                "--sim-url", f"http://127.0.0.1:{port}", "--run-id", run_id],
                               env=env, log=data / "trader.log")
        wait_until(lambda: (read_heartbeat(run_id=run_id) or {}).get("phase") == "RUNNING", timeout=90,
                   what=f"trader running (log {data / 'trader.log'})")
        time.sleep(args.seconds)
        floor = floor_round_trips(f"http://127.0.0.1:{port}", args.floor)  # the trader still runs: same load
        events = ((read_heartbeat(run_id=run_id) or {}).get("counters") or {}).get("marketEvents", 0)
    finally:
        if trader is not None:
            stop_process(trader)
        stop_process(worker)
        stop_process(sim)
        redis.stop()
    if not out.exists():
        raise SystemExit(f"the trader wrote no samples (log {data / 'trader.log'})")
    return json.loads(out.read_text()), floor, events


def report(samples: list[list[int]], floor: list[float], events: int, args: argparse.Namespace) -> None:
    def ms(a: int, b: int) -> float:
        return (b - a) / 1e6

    total = [ms(s[0], s[4]) for s in samples]
    answer = [ms(s[0], s[5]) for s in samples]
    print(f"SIM trader, 10 symbols, {args.seconds:.0f} s at {args.speed:g}x market speed, {events:,} market events, "
          f"{len(samples)} entries; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print(line("tick -> order request leaving", total))
    print(line("  arrival -> pipeline (queue)", [ms(s[0], s[1]) for s in samples]))
    print(line("  pipeline -> entry decided (all stages)", [ms(s[1], s[2]) for s in samples]))
    print(line("  decided -> gateway thread calls place_order", [ms(s[2], s[3]) for s in samples]))
    print(line("  place_order -> request leaving (pybit)", [ms(s[3], s[4]) for s in samples]))
    print(line("order request -> answer (trader's place_order)", [ms(s[4], s[5]) for s in samples]))
    print(line("floor: bare pybit round trip to the simulator", floor))
    if samples:
        share = pct(total, 0.5) / pct(answer, 0.5)
        print(f"pipeline's share of tick -> order answered: {share:.0%} at p50 "
              f"(tick -> leaving p50 {pct(total, 0.5):.3f} ms of {pct(answer, 0.5):.3f} ms); "
              f"tick -> leaving p50 is {pct(total, 0.5) / pct(floor, 0.5):.2f}x the floor's p50")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == CHILD_FLAG:
        return child(sys.argv[2:])
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=120, help="how long the trader trades")
    parser.add_argument("--speed", type=float, default=3, help="the simulator's market speed")
    parser.add_argument("--floor", type=int, default=500, help="bare pybit round trips for the floor")
    args = parser.parse_args()
    samples, floor, events = run(args)
    report(samples, floor, events, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
