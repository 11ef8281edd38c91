"""Memory of a real SIM trader process with 10 symbols over an accelerated run.

Run: .venv/bin/python bench/bench_trader_memory.py [--seconds S] [--speed X]

Starts the simulator (10 symbols, market accelerated), a Celery worker and a
trader on all 10 symbols, with a temporary SQLite database and the embedded
Redis; samples the trader's RSS every few seconds and prints the samples, the
peak and the growth between the first and the last third of the run (a leak
shows as steady growth). Baseline in the same run: the RSS of a bare Django
process (`manage.py shell -c` that only sleeps) with the same imports as the trader.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid

import psutil
from _bootstrap import embedded

DATA, REDIS = embedded("trader-memory")

from django.core.management import call_command  # noqa: E402

from scalper_site.testkit import celery_worker_argv, free_port, start_process, stop_process, wait_until  # noqa: E402
from trading.control import read_heartbeat  # noqa: E402
from trading.marketdata.instruments import DEFAULT_INSTRUMENTS  # noqa: E402

IMPORTS = (
    "import trading.trader.process, trading.engine.core, failover.services, pybit.unified_trading; "
    "import time; time.sleep(5)"
)


def mb(process: psutil.Process) -> float:
    return process.memory_info().rss / 2**20


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--speed", type=float, default=10)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    symbols = ",".join(list(DEFAULT_INSTRUMENTS)[:10])
    run_id = f"mem-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "CELERY_QUEUE": run_id}
    baseline = start_process([sys.executable, "manage.py", "shell", "-c", IMPORTS], env=env)
    time.sleep(4)
    baseline_mb = mb(psutil.Process(baseline.pid))
    stop_process(baseline)
    port = free_port()
    sim = start_process(
        [
            sys.executable,
            "manage.py",
            "run_simexchange",
            "--port",
            str(port),
            "--reset",
            "--speed",
            str(args.speed),
            "--symbols",
            symbols,
            "--state",
            str(DATA / "sim.json"),
        ],
        env=env,
        log=DATA / "sim.log",
    )
    worker = start_process(celery_worker_argv(name=run_id), env=env, log=DATA / "worker.log")
    trader = None
    samples: list[float] = []
    try:
        wait_until(lambda: "listening" in (DATA / "sim.log").read_text(), timeout=30, what="simulator")
        wait_until(lambda: "ready." in (DATA / "worker.log").read_text(), timeout=60, what="worker")
        trader = start_process(
            [
                sys.executable,
                "manage.py",
                "run_trader",
                "--mode",
                "SIM",
                "--symbols",
                symbols,
                "--sim-url",
                f"http://127.0.0.1:{port}",
                "--run-id",
                run_id,
            ],
            env=env,
            log=DATA / "trader.log",
        )
        wait_until(
            lambda: (read_heartbeat(run_id=run_id) or {}).get("phase") == "RUNNING", timeout=90, what="trader running"
        )
        process = psutil.Process(trader.pid)
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline:
            samples.append(mb(process))
            time.sleep(max(1.0, args.seconds / 30))
        beat = read_heartbeat(run_id=run_id) or {}
    finally:
        if trader is not None:
            stop_process(trader)
        stop_process(worker)
        stop_process(sim)
        REDIS.stop()
    third = max(1, len(samples) // 3)
    growth = statistics.mean(samples[-third:]) - statistics.mean(samples[:third])
    events = beat.get("counters", {}).get("marketEvents", 0)
    print(f"trader, 10 symbols, {args.seconds:.0f} s at {args.speed:g}x market speed, {events:,} market events")
    print(f"RSS samples (MB): {', '.join(f'{s:.0f}' for s in samples)}")
    print(f"peak {max(samples):.0f} MB (target < 250 MB); growth last third vs first third {growth:+.1f} MB")
    print(f"baseline: a bare process with the same imports: {baseline_mb:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
