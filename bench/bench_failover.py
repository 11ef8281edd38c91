"""Benchmark the FailoverManager: recovery plans on a real Celery worker, and cross-process notification.

Settings: DJANGO_SETTINGS_MODULE=scalper_site.settings. REDIS_URL and DATABASE_URL
come from the environment; unset, REDIS_URL defaults to the machine's Redis
(redis://127.0.0.1:6379/9) and the database is an embedded SQLite file in a temp
folder (SCALPER_DATA_DIR). The simulator runs in this process on a free loopback
port; one Celery worker runs on a queue of its own.

Prints, each beside a floor measured in the same run:
(a) a three-step plan (READ_PROCESS_STATE, RESYNC_POSITIONS, RESYNC_ORDERS) from
    ``failure_report`` to plan DONE, for 1, 10 and 50 "symbols" with 3 open orders
    each, vs an empty Celery chain of 4 tasks (3 steps + the continue task);
    the simulator lists 10 instruments, so 50 means 150 orders over those 10;
(b) a whole ``failure_report`` in this process (stored, plan extended, committed)
    -> its committed ``failover.changed`` seen by a listener in another process,
    p50/p99 over 200 reports, vs a bare Redis publish to the same listener;
and the peak RSS of this process.  Target: (a) 10 symbols / 30 orders < 300 ms.
(b) has none of its own: entries stop on the report's first announcement, sent
before anything is written; bench_safe_mode measures that (p99 < 5 ms).

Run: .venv/bin/python bench/bench_failover.py
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from _bootstrap import on_machine_services

on_machine_services("failover")

import logging  # noqa: E402

import django  # noqa: E402
from django.core.management import call_command  # noqa: E402

from failover import services  # noqa: E402
from failover.domain.types import FailureEvent, FailureType  # noqa: E402
from failover.models import PlanStatus, RecoveryPlanRecord  # noqa: E402
from scalper_site.bus import channel_name  # noqa: E402
from scalper_site.testkit import celery_worker_argv, start_process, stop_process, wait_until  # noqa: E402
from trading.marketdata.instruments import DEFAULT_INSTRUMENTS  # noqa: E402
from trading.models import Order  # noqa: E402
from trading.simexchange.control import SimControl  # noqa: E402
from trading.simexchange.server import SimServer  # noqa: E402
from trading.tasks import probe_chain  # noqa: E402

LISTENER = """
import json, sys, time, redis
r = redis.Redis.from_url(sys.argv[1]); p = r.pubsub(ignore_subscribe_messages=True)
p.subscribe(sys.argv[2], sys.argv[3]); print("ready", flush=True)
for m in p.listen():
    now = time.time()
    if m["channel"].decode() == sys.argv[2]:
        body = json.loads(m["data"])
        if body["kind"] == "failover.changed" and "version" in body["payload"]:  # not the pending announcement
            print("bus", body["payload"]["version"], now, flush=True)
    else:
        print("bare", m["data"].decode(), now, flush=True)
"""


def _event(kind: str) -> FailureEvent:
    return FailureEvent(timestamp=datetime.now(UTC), type=FailureType(kind), source="BENCH", message="bench")


def _wait_done(**match: str) -> None:
    """Poll (5 ms) until the matching plan is DONE.

    Not faster: the simulator serves the steps' REST calls from a thread of this
    process, and a 1 ms database poll here took it ~90 ms of CPU per plan.
    """
    wait_until(lambda: RecoveryPlanRecord.objects.filter(status=PlanStatus.DONE, **match).exists(),
               timeout=60, interval=0.005, what=f"plan DONE {match}")


def bench_plans(sim: SimServer, folder: Path) -> None:
    ctl = SimControl(sim.base_url, token=sim.token)
    instruments = list(DEFAULT_INSTRUMENTS)
    floors = []
    for _ in range(5):
        started = time.perf_counter()
        probe_chain(token="floor", hops=4).apply_async().get(timeout=30)
        floors.append(time.perf_counter() - started)
    print(f"(a) empty 4-task chain floor: median {statistics.median(floors) * 1000:7.1f} ms")
    for n in (1, 10, 50):
        ctl.reset()
        bids = {}
        for symbol in instruments:  # each market at its start price; resting bids 1% below, on the tick
            spec = DEFAULT_INSTRUMENTS[symbol]
            bids[symbol] = (spec.start_price * Decimal("0.99") // spec.tick_size) * spec.tick_size
            ctl.set_book(symbol, [(str(spec.start_price), "1000")], [(str(spec.start_price + spec.tick_size), "1000")])
            ctl.trade(symbol, str(spec.start_price), str(spec.min_qty))
        run_id = f"bench-{n}-{uuid.uuid4().hex[:6]}"
        data = folder / run_id
        services.environment_register(run_id=run_id, context={
            "mode": "SIM", "exchange": {"kind": "sim", "baseUrl": sim.base_url}, "dataDir": str(data),
            "symbols": [instruments[i % len(instruments)] for i in range(min(n, len(instruments)))]})
        at = datetime.now(UTC)
        for i in range(n * 3):
            symbol = instruments[i % len(instruments)]
            spec = DEFAULT_INSTRUMENTS[symbol]
            # Above the minimum notional (5 USDT) and on the lot step.
            qty = max(spec.min_qty, (Decimal(10) / bids[symbol] // spec.qty_step + 1) * spec.qty_step)
            placed = ctl.place_order(symbol, "Buy", str(qty), order_type="Limit", price=str(bids[symbol]),
                                     orderLinkId=f"b{n}-{i}")
            Order.objects.create(run_id=run_id, order_link_id=f"b{n}-{i}", exchange_order_id=placed["orderId"],
                                 symbol=symbol, side="BUY", order_type="Limit", qty=qty,
                                 price=bids[symbol], status="NEW", created_at=at, updated_at=at)
        services.failure_report(event=_event("PROCESS_RESTART"), run_id=run_id)  # warm: first plan of this run
        _wait_done(run_id=run_id)
        times = []
        for _ in range(5):
            started = time.perf_counter()
            state = services.failure_report(event=_event("PROCESS_RESTART"), run_id=run_id)
            assert state.current_plan is not None and state.current_plan.plan_id  # a report always has a plan
            plan_id = state.current_plan.plan_id
            _wait_done(plan_id=plan_id)
            times.append(time.perf_counter() - started)
        steps = RecoveryPlanRecord.objects.get(plan_id=plan_id).steps.count()
        print(f"(a) {steps}-step plan, {n:2d} symbols / {n * 3:3d} orders: "
              f"median {statistics.median(times) * 1000:7.1f} ms, max {max(times) * 1000:7.1f} ms")


def bench_notify(redis_url: str) -> None:
    run_id = f"bench-bus-{uuid.uuid4().hex[:6]}"
    bare_channel = f"bench-bare-{uuid.uuid4().hex[:6]}"
    channel = channel_name(run_id, url=redis_url)
    child = subprocess.Popen([sys.executable, "-c", LISTENER, redis_url, channel, bare_channel],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None  # piped
    assert child.stdout.readline().strip() == "ready"
    import redis

    client = redis.Redis.from_url(redis_url)
    sent: dict[str, float] = {}
    services.failure_report(event=_event("LATENCY_TOO_HIGH"), run_id=run_id)  # the plan exists; later ones extend
    for _ in range(200):
        t0 = time.time()
        state = services.failure_report(event=_event("LATENCY_TOO_HIGH"), run_id=run_id)
        sent[f"bus {state.version}"] = t0
    for i in range(200):
        sent[f"bare {i}"] = time.time()
        client.publish(bare_channel, str(i))
    delays: dict[str, list[float]] = {"bus": [], "bare": []}
    deadline = time.monotonic() + 30
    while sum(map(len, delays.values())) < len(sent) and time.monotonic() < deadline:
        kind, key, at = child.stdout.readline().split()
        if f"{kind} {key}" in sent:
            delays[kind].append((float(at) - sent[f"{kind} {key}"]) * 1000)
    child.kill()
    for kind, label in (("bus", "failure_report -> listener"), ("bare", "bare Redis publish -> listener")):
        values = sorted(delays[kind])
        p50, p99 = values[len(values) // 2], values[int(len(values) * 0.99) - 1]
        print(f"(b) {label:32s} n={len(values)} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms")


def main() -> None:
    logging.disable(logging.WARNING)
    call_command("migrate", verbosity=0)
    queue = os.environ["CELERY_QUEUE"]
    from scalper_site.celery import app

    app.conf.task_default_queue = queue
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "worker.log"
        worker = start_process(celery_worker_argv(name=queue, concurrency=1), log=log)
        sim = SimServer().start()
        try:
            wait_until(lambda: b"ready." in log.read_bytes(), timeout=60, what="celery worker")
            print(f"database: {django.db.connection.vendor}; redis: {os.environ['REDIS_URL']}")
            bench_plans(sim, Path(tmp))
            bench_notify(os.environ["REDIS_URL"])
        finally:
            sim.stop()
            stop_process(worker)
            app.control.purge()
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    print(json.dumps({"targets": {"plan_10_symbols_ms": 300}}))


if __name__ == "__main__":
    main()
