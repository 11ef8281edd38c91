"""Proof that the plumbing is real: Celery on Redis, channels_redis across processes, the embedded stack."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid

import psutil
import pytest
import redis
import requests
from asgiref.sync import async_to_sync
from celery import Celery, chain
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client

from scalper_site.celery import app as celery_app
from scalper_site.embedded_redis import read_url_file
from scalper_site.testkit import (
    BASE_DIR,
    celery_worker_argv,
    env_on_test_database,
    free_port,
    start_process,
    stop_process,
    wait_until,
)
from trading.tasks import probe_chain

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def worker_queue(tmp_path_factory):
    """A real Celery worker process on the machine's Redis, on a queue of its own."""
    queue = f"test-{uuid.uuid4().hex[:8]}"
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    process = start_process(celery_worker_argv(name=queue, concurrency=2), env={"CELERY_QUEUE": queue}, log=log)
    previous = celery_app.conf.task_default_queue
    celery_app.conf.task_default_queue = queue
    try:
        wait_until(lambda: b"ready." in log.read_bytes(), timeout=60, what=f"celery worker ready (log {log})")
        yield queue, process
    finally:
        celery_app.conf.task_default_queue = previous
        stop_process(process)


def test_celery_chain_runs_on_a_real_worker_through_the_machine_redis(worker_queue):
    _, worker = worker_queue
    trail = probe_chain(token="machine", hops=4).apply_async().get(timeout=30)
    assert [hop["token"] for hop in trail] == ["machine"] * 4
    worker_pids = {worker.pid, *(child.pid for child in psutil.Process(worker.pid).children(recursive=True))}
    assert {hop["pid"] for hop in trail} <= worker_pids
    assert os.getpid() not in {hop["pid"] for hop in trail}


def _browser_session_cookie() -> str:
    user = get_user_model().objects.create_user(f"op-{uuid.uuid4().hex[:6]}", password="pw-123456-x")
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


@pytest.fixture
def _no_panels(settings) -> None:
    """The page's panels (read every few seconds, test_stream.py) are not the plumbing under test here."""
    settings.WS_PANELS_INTERVAL_S = 0


def _pushed(message: dict) -> dict:
    """A pushed message without its ``version`` (the newest failover version the socket knows, checked to be one)."""
    assert isinstance(message.pop("version"), int), message
    return message


async def _dashboard_socket(session: str) -> WebsocketCommunicator:
    """Connect to the dashboard's websocket as a logged-in browser and take the status it sends on connect."""
    from scalper_site.asgi import application

    communicator = WebsocketCommunicator(
        application,
        "/ws/failover/",
        headers=[(b"cookie", f"sessionid={session}".encode()), (b"origin", b"http://127.0.0.1")],
    )
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    assert (await communicator.receive_json_from(timeout=10))["type"] == "failover.status"  # sent on connect
    return communicator


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("_no_panels")
def test_an_idle_websocket_outlives_the_layers_blocking_receive_and_still_gets_the_next_push():
    """redis-py 8's default 5 s socket timeout against channels_redis's 5 s BZPOPMIN killed idle consumers."""

    session = _browser_session_cookie()
    sender = (
        "import django; django.setup(); from scalper_site.realtime import push_failover_message\n"
        "push_failover_message(kind='failover.status', payload={'safeMode': True, 'seq': 'after-idle'})"
    )

    async def scenario() -> dict:
        communicator = await _dashboard_socket(session)
        try:
            # Idle through more than one blocking receive plus the old socket timeout: nothing may arrive,
            # and the consumer must still be alive afterwards.
            assert await communicator.receive_nothing(timeout=12, interval=0.5)
            result = subprocess.run(
                [sys.executable, "-c", sender],
                cwd=BASE_DIR,
                env=env_on_test_database(connection),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert result.returncode == 0, result.stderr
            return await communicator.receive_json_from(timeout=10)
        finally:
            await communicator.disconnect()

    message = async_to_sync(scenario)()
    assert _pushed(message) == {"type": "failover.status", "data": {"safeMode": True, "seq": "after-idle"}}


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("_no_panels")
def test_websocket_consumer_receives_every_group_message_sent_from_another_process_in_order():

    session = _browser_session_cookie()
    # Fifty pushes, then the process exits at once: the sender thread must deliver all of them, in order.
    sender = (
        "import django; django.setup(); from scalper_site.realtime import push_failover_message\n"
        "for n in range(50):\n"
        "    push_failover_message(kind='failover.status', payload={'safeMode': True, 'seq': n})"
    )

    async def scenario() -> dict:
        communicator = await _dashboard_socket(session)
        try:
            result = subprocess.run(
                [sys.executable, "-c", sender],
                cwd=BASE_DIR,
                env=env_on_test_database(connection),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert result.returncode == 0, result.stderr
            return [await communicator.receive_json_from(timeout=10) for _ in range(50)]
        finally:
            await communicator.disconnect()

    messages = async_to_sync(scenario)()
    assert [_pushed(m) for m in messages] == [{"type": "failover.status", "data": {"safeMode": True, "seq": n}}
                                              for n in range(50)]


@pytest.mark.django_db(transaction=True)
def test_websocket_refuses_an_anonymous_client():
    from scalper_site.asgi import application

    async def scenario() -> bool:
        communicator = WebsocketCommunicator(application, "/ws/failover/", headers=[(b"origin", b"http://127.0.0.1")])
        connected, _ = await communicator.connect(timeout=10)
        await communicator.disconnect()
        return connected

    assert async_to_sync(scenario)() is False


def _probe_through(url: str, queue: str, token: str) -> list[dict]:
    app = Celery("probe", broker=url, backend=url)
    app.conf.task_default_queue = queue
    try:
        steps = [app.signature("trading.stack_probe", args=(None,), kwargs={"token": token})]
        steps += [app.signature("trading.stack_probe", kwargs={"token": token}) for _ in range(2)]
        return chain(*steps, app=app).apply_async().get(timeout=30)
    finally:
        app.close()


def test_run_stack_on_embedded_defaults_serves_runs_chains_reports_deaths_and_stops_cleanly(tmp_path):
    port, sim_port = free_port(), free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY", "CELERY_QUEUE"}
    }
    env.update(
        {
            "SCALPER_DATA_DIR": str(tmp_path),
            "DJANGO_SETTINGS_MODULE": "scalper_site.settings",
            "PYTHONUNBUFFERED": "1",
            "SCALPER_SWEEP_EVERY_S": "2",
        }
    )
    log = tmp_path / "stack.log"
    stack = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "run_stack",
            "--port",
            str(port),
            "--worker-concurrency",
            "1",
            "--sim-port",
            str(sim_port),
            "--no-trader",
        ],
        cwd=BASE_DIR,
        env=env,
        stdout=log.open("wb"),  # noqa: SIM115 (the child writes it until the end of the test)
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        text = lambda: log.read_text(errors="replace")  # noqa: E731

        def up() -> bool:
            assert stack.poll() is None, f"run_stack exited with {stack.returncode}: {text()[-2000:]}"
            return "ready." in text()

        wait_until(up, timeout=90, what=f"stack up (log {log})")
        assert "Created the admin user 'admin' with password" in text()
        url = read_url_file(tmp_path)
        assert url.startswith("redis://:")
        wait_until(
            lambda: requests.get(f"http://127.0.0.1:{port}/admin/login/", timeout=2).status_code == 200,
            timeout=30,
            what="web server",
        )

        sim_time = wait_until(
            lambda: requests.get(f"http://127.0.0.1:{sim_port}/v5/market/time", timeout=2).json(),
            timeout=30,
            what="exchange simulator",
        )
        assert sim_time["retCode"] == 0

        # The beat process schedules both sweepers, each through failover.scheduled (its lock per period);
        # the worker runs them.
        for task in ("failover.sweep_stuck_steps", "itests.sweep_runs"):
            ran = (rf"Task failover\.scheduled\[[^\]]+\] succeeded in [^:]+: "
                   rf"\{{'task': '{re.escape(task)}', 'acted': True")
            wait_until(lambda ran=ran: re.search(ran, text()), timeout=30, what=f"a scheduled {task}")
        trail = _probe_through(url, "scalper", "embedded")
        assert [hop["token"] for hop in trail] == ["embedded"] * 3

        worker_pid = int(re.search(r"started worker \(pid (\d+)\)", text()).group(1))
        os.kill(worker_pid, signal.SIGKILL)
        wait_until(lambda: f"PROCESS DIED: worker (pid {worker_pid})" in text(), timeout=15, what="death report")
        wait_until(lambda: len(re.findall(r"started worker \(pid \d+\)", text())) == 2, timeout=15, what="restart")
        wait_until(lambda: text().count("ready.") >= 2, timeout=60, what="restarted worker ready")
        assert _probe_through(url, "scalper", "after-restart")[-1]["token"] == "after-restart"

        children = psutil.Process(stack.pid).children(recursive=True)
        os.kill(stack.pid, signal.SIGINT)
        assert stack.wait(timeout=40) == 0, text()
        assert "all processes stopped" in text()
        assert read_url_file(tmp_path) == ""
        assert not any(child.is_running() and child.status() != psutil.STATUS_ZOMBIE for child in children)
        with pytest.raises(redis.ConnectionError):
            redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
    finally:
        stop_process(stack, sig=signal.SIGINT, timeout=30)
