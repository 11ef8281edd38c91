"""Benchmark the dashboard: the status endpoint under load, and the badge's push latency.

Settings: DJANGO_SETTINGS_MODULE=scalper_site.settings. REDIS_URL and DATABASE_URL
come from the environment; unset, REDIS_URL defaults to the machine's Redis
(redis://127.0.0.1:6379/9) and the database is an embedded SQLite file in a temp
folder (SCALPER_DATA_DIR). A real uvicorn serves the ASGI app on a free loopback
port; no Celery worker runs (recovery chains wait on a queue of their own, deleted
at the end).

Prints, each beside a floor measured in the same run:
(a) ``GET /api/failover/status`` with token auth at a fixed 200 requests per second
    (open loop: latency counted from the scheduled send time) for 10 s, p50/p99,
    and the most it serves with 16 requests in flight for 5 s; beside ``GET /api/ping``
    (authenticated, constant body) under the same load;
(b) a state change (``failure_report`` / ``safe_mode_exit`` in another process) to
    the ``failover.status`` message at a websocket client, p50/p99 over 50 changes;
and the peak RSS of this process and of the web server. Targets: (a) p99 < 20 ms
at 200 rps; (b) p99 < 200 ms.

The load generator runs with its garbage collector off while it measures: with 2,000
requests pending, a full collection here stalled the sends for up to 100 ms, which
the open-loop count charged to the server. The server's own pauses stay in the figure.

Run: .venv/bin/python bench/bench_dashboard.py
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _bootstrap import ROOT, on_machine_services

on_machine_services("dashboard")

import aiohttp  # noqa: E402
import psutil  # noqa: E402
import redis  # noqa: E402
import requests  # noqa: E402
import websockets  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402
from knox.models import AuthToken  # noqa: E402

from scalper_site.testkit import free_port, start_process, stop_process, wait_until  # noqa: E402

RATE = 200  # requests per second, open loop
RATE_SECONDS = 10
MAX_INFLIGHT = 16
MAX_SECONDS = 5
CHANGES = 50
CHANGE_TIMEOUT_S = 5.0

# One long-lived helper process makes the changes, so Python start-up is not in the figure.
HELPER = r"""
import json, sys, time
import django
django.setup()
from datetime import UTC, datetime
from failover.domain.types import FailureEvent
from failover.services import failure_report, safe_mode_exit
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    t0 = time.time()
    if line.strip() == "on":
        failure_report(event=FailureEvent(timestamp=datetime.now(UTC), type="EXCHANGE_UNAVAILABLE",
                                          source="EXECUTION_ENGINE", message="bench"))
    else:
        safe_mode_exit(user="bench", force=True)
    print(json.dumps({"t0": t0, "t1": time.time()}), flush=True)
"""


@contextlib.contextmanager
def generator_gc_off():
    """Keep this process's collector out of the timed window (see the module's docstring)."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def fmt(values: list[float]) -> str:
    return f"p50 {pct(values, 0.5):6.2f} ms  p99 {pct(values, 0.99):6.2f} ms  max {max(values):6.2f} ms"


async def fixed_rate(url: str, headers: dict[str, str]) -> tuple[list[float], int]:
    """Send RATE requests a second for RATE_SECONDS; latency from the scheduled time; return (ms list, errors)."""
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def one(scheduled: float) -> None:
            nonlocal errors
            await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as response:
                    await response.read()
                    if response.status != 200:
                        errors += 1
                        return
            except (aiohttp.ClientError, TimeoutError):
                errors += 1
                return
            latencies.append((time.perf_counter() - scheduled) * 1000)

        start = time.perf_counter() + 0.2
        await asyncio.gather(*(one(start + i / RATE) for i in range(RATE * RATE_SECONDS)))
    return latencies, errors


async def saturate(url: str, headers: dict[str, str]) -> float:
    """Keep MAX_INFLIGHT requests in flight for MAX_SECONDS; return requests per second served."""
    done = 0
    deadline = time.perf_counter() + MAX_SECONDS
    async with aiohttp.ClientSession(headers=headers) as session:

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as response:
                    await response.read()
                    done += response.status == 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(MAX_INFLIGHT)))
    return done / (time.perf_counter() - started)


async def push_latency(ws_url: str, cookie: str, origin: str, helper: subprocess.Popen) -> list[float]:
    """Alternate safe mode on/off CHANGES times; return change-start -> websocket message, in ms."""
    latencies: list[float] = []
    assert helper.stdin is not None and helper.stdout is not None  # both piped
    async with websockets.connect(ws_url, additional_headers={"Cookie": cookie, "Origin": origin}) as socket:
        first = json.loads(await asyncio.wait_for(socket.recv(), timeout=10))
        assert first["type"] == "failover.status", first
        loop = asyncio.get_running_loop()
        for i in range(CHANGES):
            want_on = i % 2 == 0
            helper.stdin.write("on\n" if want_on else "off\n")
            helper.stdin.flush()
            deadline = time.monotonic() + CHANGE_TIMEOUT_S
            while True:
                raw = await asyncio.wait_for(socket.recv(), timeout=max(0.01, deadline - time.monotonic()))
                received = time.time()
                message = json.loads(raw)
                if message["type"] == "failover.status" and message["data"]["safeMode"] is want_on:
                    break
            timing = json.loads(await loop.run_in_executor(None, helper.stdout.readline))
            latencies.append((received - timing["t0"]) * 1000)
    return latencies


def main() -> int:
    call_command("migrate", interactive=False, verbosity=0)
    user, _ = get_user_model().objects.get_or_create(username=f"bench-{uuid.uuid4().hex[:6]}")
    _, token_key = AuthToken.objects.create(user=user)
    client = Client()
    client.force_login(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = Path(tempfile.mkdtemp(prefix="bench-dashboard-log-")) / "web.log"
    web = start_process([sys.executable, "-m", "uvicorn", "scalper_site.asgi:application", "--host", "127.0.0.1",
                         "--port", str(port), "--log-level", "warning", "--no-access-log"], log=log)
    helper = subprocess.Popen([sys.executable, "-c", HELPER], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert helper.stdin is not None and helper.stdout is not None  # both piped
    ok = True
    try:
        wait_until(lambda: requests.get(f"{base}/accounts/login/", timeout=2).status_code == 200, timeout=60,
                   what=f"uvicorn (log {log})")
        assert json.loads(helper.stdout.readline()).get("ready")
        headers = {"Authorization": f"Token {token_key}"}
        for path in ("/api/ping", "/api/failover/status"):  # warm both up: first requests open connections
            for _ in range(20):
                requests.get(base + path, headers=headers, timeout=5).raise_for_status()
        print(f"(a) {RATE} rps for {RATE_SECONDS}s, open loop, token auth, one uvicorn worker:")
        for path in ("/api/ping", "/api/failover/status"):
            with generator_gc_off():
                latencies, errors = asyncio.run(fixed_rate(base + path, headers))
            print(f"    {path:22s} {fmt(latencies)}  errors {errors}")
            if path == "/api/failover/status":
                ok &= pct(latencies, 0.99) < 20 and errors == 0
        for path in ("/api/ping", "/api/failover/status"):
            with generator_gc_off():
                rps = asyncio.run(saturate(base + path, headers))
            print(f"    max {path:18s} {rps:7.0f} requests/s with {MAX_INFLIGHT} in flight")
        print(f"(b) state change in another process -> websocket message, {CHANGES} changes:")
        pushes = asyncio.run(push_latency(f"ws://127.0.0.1:{port}/ws/failover/", cookie, base, helper))
        print(f"    {'failover.status':22s} {fmt(pushes)}")
        ok &= pct(pushes, 0.99) < 200
        web_rss = psutil.Process(web.pid).memory_info().rss / 2**20
        own_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS: this process {own_peak:.0f} MiB; web server now {web_rss:.0f} MiB")
        print("targets: status p99 < 20 ms at 200 rps; badge p99 < 200 ms:", "MET" if ok else "NOT MET")
    finally:
        helper.stdin.close()
        helper.wait(timeout=30)
        stop_process(web)
        redis.Redis.from_url(settings.REDIS_URL).delete(settings.CELERY_TASK_DEFAULT_QUEUE)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
