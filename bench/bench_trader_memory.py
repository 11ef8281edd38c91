"""Memory of a real SIM trader process with 10 symbols over an accelerated run.

Run: .venv/bin/python bench/bench_trader_memory.py [--short | --seconds S] [--speed X] [--warmup S]

Starts the simulator (10 symbols, market accelerated), a Celery worker and a
trader on all 10 symbols, with a temporary SQLite database and the embedded
Redis; samples the trader's RSS every few seconds and prints the samples, the
peak and the growth after warm-up: the mean of the last three samples over the
mean of the first three once the warm-up is over (a leak shows as steady
growth). Targets: peak < 150 MB, growth < 5 %. The full form is 30 minutes at
10x market speed; ``--short`` is a 2-minute check (warm-up 30 s). Baseline in
the same run: the RSS of a bare Django process (`manage.py shell -c` that only
sleeps) with the same imports as the trader.
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


TARGET_PEAK_MB, TARGET_GROWTH_PCT = 150.0, 5.0


def mb(process: psutil.Process) -> float:
    return process.memory_info().rss / 2**20


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=1800, help="how long the trader runs once RUNNING")
    parser.add_argument("--speed", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=120, help="seconds before growth is counted")
    parser.add_argument("--short", action="store_true", help="a 2-minute check: --seconds 120 --warmup 30")
    args = parser.parse_args()
    if args.short:
        args.seconds, args.warmup = 120.0, 30.0
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
    samples: list[tuple[float, float]] = []
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
        started = time.monotonic()
        deadline = started + args.seconds
        while time.monotonic() < deadline:
            samples.append((time.monotonic() - started, mb(process)))
            time.sleep(max(1.0, args.seconds / 120))
        beat = read_heartbeat(run_id=run_id) or {}
    finally:
        if trader is not None:
            stop_process(trader)
        stop_process(worker)
        stop_process(sim)
        REDIS.stop()
    report(samples, args, beat, baseline_mb)
    return 0


def report(samples: list[tuple[float, float]], args: argparse.Namespace, beat: dict, baseline_mb: float) -> None:
    rss = [value for _, value in samples]
    warm = [value for at, value in samples if at >= args.warmup] or rss
    start, end = statistics.mean(warm[:3]), statistics.mean(warm[-3:])
    growth_pct = (end - start) / start * 100
    events = beat.get("counters", {}).get("marketEvents", 0)
    step = max(1, len(samples) // 30)
    print(f"trader, 10 symbols, {args.seconds:.0f} s at {args.speed:g}x market speed, {events:,} market events; "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print(f"RSS samples (MB, every {samples[step][0] - samples[0][0] if len(samples) > step else 0:.0f} s): "
          f"{', '.join(f'{value:.0f}' for _, value in samples[::step])}")
    print(f"peak {max(rss):.1f} MB (target < {TARGET_PEAK_MB:g} MB); after a {args.warmup:g} s warm-up "
          f"{start:.1f} -> {end:.1f} MB, growth {growth_pct:+.2f} % (target < {TARGET_GROWTH_PCT:g} %):",
          "MET" if max(rss) < TARGET_PEAK_MB and growth_pct < TARGET_GROWTH_PCT else "NOT MET")
    print(f"baseline: a bare process with the same imports: {baseline_mb:.0f} MB")


if __name__ == "__main__":
    sys.exit(main())
