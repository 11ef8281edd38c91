"""Plans on a real Celery worker process through the machine's Redis and PostgreSQL."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis
from django.db import connection

from failover import services
from failover.models import PlanStatus, RecoveryStepRecord
from failover.recovery import runner
from failover.tests.conftest import Env
from scalper_site.bus import BusListener
from scalper_site.celery import app as celery_app
from scalper_site.testkit import celery_worker_argv, env_on_test_database, start_process, stop_process, wait_until
from trading import control

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def worker(tmp_path: Path):
    """Start workers on a queue of their own; every one started is stopped at the end."""
    queue = f"fo-{uuid.uuid4().hex[:8]}"
    previous = celery_app.conf.task_default_queue
    celery_app.conf.task_default_queue = queue
    started = []

    def start(name: str):
        log = tmp_path / f"{name}.log"
        process = start_process(celery_worker_argv(name=f"{queue}-{name}", concurrency=1),
                                env=env_on_test_database(connection, CELERY_QUEUE=queue), log=log)
        started.append(process)
        wait_until(lambda: b"ready." in log.read_bytes(), timeout=60, what=f"celery worker ready (log {log})")
        return process

    try:
        yield start
    finally:
        celery_app.conf.task_default_queue = previous
        for process in started:
            stop_process(process)


def test_real_worker_runs_a_three_step_plan_and_the_bus_tells_a_listener(env: Env, worker):
    process = worker("a")
    heard: list[dict] = []
    done = threading.Event()

    def on_message(message: dict) -> None:
        heard.append(message)
        if message["kind"] == "failover.changed" and message["payload"]["safeMode"] is False:
            done.set()

    listener = BusListener(on_message, run_id=env.run_id).start()
    try:
        assert listener.connected.wait(5)
        env.report("PROCESS_RESTART")  # READ_PROCESS_STATE -> RESYNC_POSITIONS -> RESYNC_ORDERS
        wait_until(lambda: env.plan().status == PlanStatus.DONE, timeout=60, what="plan DONE on the worker")
        assert done.wait(10), heard
    finally:
        listener.stop()
    steps = env.steps()
    assert [s.type for s in steps] == ["READ_PROCESS_STATE", "RESYNC_POSITIONS", "RESYNC_ORDERS"]
    assert all(s.status == "DONE" for s in steps)
    assert all(s.claimed_by.split(":")[1] != str(os.getpid()) for s in steps)  # run by the worker, not here
    changes = [m["payload"] for m in heard if m["kind"] == "failover.changed"]
    assert changes[0] == {"safeMode": True, "reason": "PROCESS_RESTART", "pending": True}  # before any write
    versions = [c["version"] for c in changes[1:]]
    assert versions == sorted(versions) and len(versions) >= 7  # report, 3 claims, 3 finishes
    assert process.poll() is None


def test_sweeper_resets_a_step_left_running_by_a_killed_worker(env: Env, worker):
    # A fake trader that never acknowledges: RESYNC_EXCHANGE_CONNECTION waits for it while we kill the worker.
    control.write_heartbeat({"pid": 1, "at": time.time() * 1000, "streams": {}}, run_id=env.run_id)
    process = worker("doomed")
    env.report("PUBLIC_WS_DEGRADED")
    step = wait_until(lambda: RecoveryStepRecord.objects.filter(plan=env.plan(), status="RUNNING").first(),
                      timeout=30, what="a step RUNNING on the worker")
    stop_process(process, sig=signal.SIGKILL)
    redis.Redis.from_url(os.environ["REDIS_URL"]).delete(control.heartbeat_key(env.run_id))
    time.sleep(1.2)
    assert runner.sweep_stuck_steps(stale_after_s=60)["reset"] == []  # a recent heartbeat is not stuck
    report = runner.sweep_stuck_steps(stale_after_s=1.0)
    assert report["reset"] == [f"{env.plan().plan_id}/{step.step_id}"]
    step.refresh_from_db()
    assert step.status in ("PENDING", "RUNNING", "DONE") and step.details["swept"][0]["sweptFrom"]
    worker("rescuer")
    wait_until(lambda: env.plan().status == PlanStatus.DONE, timeout=60, what="plan DONE after the sweep")
    step.refresh_from_db()
    assert step.status == "DONE" and "doomed" not in step.claimed_by
    assert services.failover_state_get(run_id=env.run_id).active_failures == ("PUBLIC_WS_DEGRADED",)
