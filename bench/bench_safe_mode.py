"""How fast entries stop after a failure, and how long a restarted trader takes to trade again.

Run: .venv/bin/python bench/bench_safe_mode.py [--reports N] [--restarts N]  (--restarts 0: 1 and 2 only)

Self-contained: a temporary data folder with its own SQLite database, the
embedded Redis, and real simulator, Celery worker and trader processes.

1. Same process: a failure the trader detects -> its own entry gate refuses
   (FailoverLink.report flips the gate before the database is even told).
2. Another process: failure_report() in a separate process -> this process's
   FailoverLink (bus listener; safe mode ON is taken from the message) refuses
   entries. Floor: a Redis publish from that process to a listener here,
   measured in the same run. Each timed send (the floor's and the report's)
   follows a 20 ms pause once the bench's own previous change (safe mode off,
   made here) has been heard and re-read, so neither measures the bench's own
   traffic; the reporter's own work after its announcement stays in the figure.
3. Restart to RUNNING: a trader process started (after a graceful stop) ->
   heartbeat phase RUNNING with safe mode off, i.e. its startup plan (read
   process state, resync orders) carried out on the worker. Floor: the start of
   a bare Django management command (`manage.py check`).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import resource
import statistics
import subprocess
import sys
import time
import uuid
from functools import partial

from _bootstrap import ROOT as BASE
from _bootstrap import embedded

DATA, REDIS = embedded("safe-mode")

from django.core.management import call_command  # noqa: E402

from failover import services  # noqa: E402
from failover.domain.enums import FailureSource, FailureType, utc_now  # noqa: E402
from failover.domain.types import FailureEvent  # noqa: E402
from scalper_site.bus import BusListener  # noqa: E402
from scalper_site.testkit import celery_worker_argv, free_port, start_process, stop_process, wait_until  # noqa: E402
from trading.control import read_heartbeat  # noqa: E402
from trading.engine.failover_link import FailoverLink  # noqa: E402

SETTLE_S = 0.02  # a pause before each timed send, the same for the floor and the report
TARGET_P99_MS, TARGET_GAP_MS = 2.0, 1.0  # cross-process refusal: p99, and its p99 over the floor's

SENDER = """
import json, sys, time, django
django.setup()
from failover import services
from scalper_site.bus import publish
from failover.domain.enums import FailureType, utc_now
from failover.domain.types import FailureEvent
for line in sys.stdin:
    kind, run_id = line.split()
    sent = time.time()
    if kind == "publish":
        publish("bench.ping", {"sent": sent}, run_id=run_id)
    else:
        services.failure_report(run_id=run_id, event=FailureEvent(timestamp=utc_now(),
            type=FailureType.LATENCY_TOO_HIGH, source="BENCH", message="bench", details={}))
    print(json.dumps(sent), flush=True)
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def line(name: str, values: list[float], unit: str = "ms") -> str:
    return f"{name:<44} p50 {pct(values, 0.5):8.3f} {unit}   p99 {pct(values, 0.99):8.3f} {unit}   (n={len(values)})"


class _Discard(queue.Queue[FailureEvent | str | None]):
    """A job queue that drops what it is given."""

    def put(self, item: FailureEvent | str | None, block: bool = True, timeout: float | None = None) -> None:
        return None


def same_process(reports: int) -> list[float]:
    link = FailoverLink(run_id="bench-local", services=services, confirm_timeout_ms=10_000)
    link.refresh()
    link._jobs = _Discard()  # measure the gate only: the database report is not waited for
    samples = []
    for _ in range(reports):
        link._latched_reason = None
        event = FailureEvent(
            timestamp=utc_now(),
            type=FailureType.MODULE_CRASH,
            source=FailureSource.FEATURE_ENGINE,
            message="bench",
            details={},
        )
        started = time.perf_counter_ns()
        link.report(event)
        assert link.entries_blocked_reason() == "SAFE_MODE_ACTIVE"
        samples.append((time.perf_counter_ns() - started) / 1e6)
    return samples


class TimedLink(FailoverLink):
    """The trader's link, noting when entries are first refused: the moment the bus thread latches safe mode.

    Noted where it happens, as the floor's ping is, rather than by a thread polling
    ``is_safe_mode()`` (a busy poll competes for the 2 cores it is measuring).
    """

    refused_at: float | None = None
    seen_version = -1  # the newest version a bus message announced

    def on_bus_message(self, message: dict) -> None:
        version = (message.get("payload") or {}).get("version")
        if isinstance(version, int):
            self.seen_version = max(self.seen_version, version)
        super().on_bus_message(message)
        if self.refused_at is None and self.is_safe_mode():
            self.refused_at = time.time()


def _exit_heard(link: TimedLink, version: int) -> bool:
    return link.seen_version >= version and link.refresh() and not link.is_safe_mode()


def cross_process(reports: int) -> tuple[list[float], list[float]]:
    run_id = f"bench-{uuid.uuid4().hex[:6]}"
    services.environment_register(run_id=run_id, context={"dataDir": str(DATA), "symbols": []})
    link = TimedLink(run_id=run_id, services=services, confirm_timeout_ms=60_000)
    link.start()  # threads as in the trader
    pings: dict[str, float] = {}
    listener = BusListener(
        lambda m: pings.__setitem__("at", time.time()) if m.get("kind") == "bench.ping" else link.on_bus_message(m),
        run_id=run_id,
    ).start()
    assert listener.connected.wait(5)
    sender = subprocess.Popen(
        [sys.executable, "-c", SENDER],
        cwd=BASE,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ,
    )
    assert sender.stdin is not None and sender.stdout is not None  # both piped
    floors: list[float] = []
    flips: list[float] = []
    try:
        for _ in range(reports):
            time.sleep(SETTLE_S)  # the previous report's own messages and re-reads are over
            pings.clear()
            sender.stdin.write(f"publish {run_id}\n")
            sender.stdin.flush()
            sent = json.loads(sender.stdout.readline())
            wait_until(lambda: "at" in pings, timeout=5, interval=0.001, what="ping")
            floors.append((pings["at"] - sent) * 1000)

            exited = services.safe_mode_exit(run_id=run_id, user="bench", force=True).version
            wait_until(partial(_exit_heard, link, exited), timeout=10, what="safe mode off")
            time.sleep(SETTLE_S)  # the exit's own re-read (on the link's refresh thread) is over, as for the ping
            link.refused_at = None
            sender.stdin.write(f"report {run_id}\n")
            sender.stdin.flush()
            wait_until(lambda: link.refused_at is not None, timeout=10, interval=0.001, what="entries refused")
            flipped = link.refused_at
            assert flipped is not None
            sent = json.loads(sender.stdout.readline())
            flips.append((flipped - sent) * 1000)
    finally:
        sender.stdin.close()
        sender.wait(timeout=10)
        listener.stop()
        link.stop()
    return floors, flips


def _running(run_id: str, pid: int) -> bool:
    beat = read_heartbeat(run_id=run_id, max_age_ms=3000)
    return bool(beat and beat.get("pid") == pid and beat["phase"] == "RUNNING" and not beat["safeMode"])


def restarts(count: int) -> tuple[list[float], list[float]]:
    floors = []
    for _ in range(count):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "manage.py", "check"], cwd=BASE, env=os.environ, capture_output=True, check=True
        )
        floors.append((time.perf_counter() - started) * 1000)
    run_id = f"bench-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "CELERY_QUEUE": run_id}
    sim_port = free_port()
    sim = start_process(
        [
            sys.executable,
            "manage.py",
            "run_simexchange",
            "--port",
            str(sim_port),
            "--reset",
            "--state",
            str(DATA / "sim.json"),
        ],
        env=env,
        log=DATA / "sim.log",
    )
    worker = start_process(celery_worker_argv(name=run_id), env=env, log=DATA / "worker.log")
    times = []
    try:
        wait_until(lambda: "listening" in (DATA / "sim.log").read_text(), timeout=30, what="simulator")
        wait_until(lambda: "ready." in (DATA / "worker.log").read_text(), timeout=60, what="worker")
        for index in range(count + 1):
            started = time.perf_counter()
            trader = start_process(
                [
                    sys.executable,
                    "manage.py",
                    "run_trader",
                    "--mode",
                    "SIM",
                    "--symbols",
                    "BTCUSDT,ETHUSDT",
                    "--sim-url",
                    f"http://127.0.0.1:{sim_port}",
                    "--run-id",
                    run_id,
                ],
                env=env,
                log=DATA / f"trader-{index}.log",
            )

            wait_until(partial(_running, run_id, trader.pid), timeout=90, interval=0.01, what="trader RUNNING")
            if index:  # the first start also creates the environment: not a restart
                times.append((time.perf_counter() - started) * 1000)
            stop_process(trader)
    finally:
        stop_process(worker)
        stop_process(sim)
    return floors, times


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reports", type=int, default=100)
    parser.add_argument("--restarts", type=int, default=3, help="0: skip the restart measurement")
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    try:
        local = same_process(args.reports)
        floors, flips = cross_process(args.reports)
        boot, restart = restarts(args.restarts) if args.restarts else ([], [])
    finally:
        REDIS.stop()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print(line("same process: report -> entries refused", local))
    print(line("floor: Redis publish to another process", floors))
    print(line("another process: report -> entries refused", flips))
    print(f"{'ratio (cross-process p99 / floor p99)':<44} {pct(flips, 0.99) / pct(floors, 0.99):8.1f}x")
    gap = pct(flips, 0.99) - pct(floors, 0.99)
    met = pct(flips, 0.99) <= TARGET_P99_MS and gap <= TARGET_GAP_MS
    print(f"target: cross-process p99 <= {TARGET_P99_MS:g} ms and within {TARGET_GAP_MS:g} ms of the floor's p99 "
          f"(gap {gap:+.3f} ms):", "MET" if met else "NOT MET")
    if restart:
        print(line("floor: start of `manage.py check`", boot))
        print(line("restart -> RUNNING, safe mode off", restart))
        print(f"{'median restart / median floor':<44} {statistics.median(restart) / statistics.median(boot):8.1f}x")
    print(f"peak RSS of the benchmark process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
