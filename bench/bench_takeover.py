"""How fast a hot standby takes over from a killed leader, and what the fencing check costs every order.

Run: .venv/bin/python bench/bench_takeover.py [--kills N] [--lease-ttl S] [--checks N]

Self-contained: a temporary data folder with its own SQLite database, the
embedded Redis, and real simulator, Celery worker and trader processes.

1. Takeover: two SIM traders for one account, each with its own data folder;
   the leader is killed with SIGKILL, and the clock runs until the standby's
   heartbeat says LEADER, RUNNING, safe mode off (its lease taken after the dead
   one's expired, its startup recovery carried out on the worker). A new standby
   is started for the next kill. The figure sits beside the configured lease
   TTL, which bounds the wait for the dead leader's lease to expire.
2. Fencing: the check made before every order (``AccountLease.ensure``: the local
   deadline, then the Lua fence check in Redis) beside a bare Redis round trip
   (PING and GET) on the same connection, interleaved in the same run.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from subprocess import Popen

from _bootstrap import embedded

DATA, REDIS = embedded("takeover")

from django.core.management import call_command  # noqa: E402

from scalper_site.testkit import celery_worker_argv, free_port, start_process, stop_process, wait_until  # noqa: E402
from trading.control import read_heartbeat  # noqa: E402
from trading.exchange.lease import AccountLease, account_key, fence_check, redis_client  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def line(name: str, values: list[float], unit: str = "ms") -> str:
    return f"{name:<44} p50 {pct(values, 0.5):8.3f} {unit}   p99 {pct(values, 0.99):8.3f} {unit}   (n={len(values)})"


# -- fencing ------------------------------------------------------------------------------------------


def _timed(call: Callable[[], object]) -> float:
    started = time.perf_counter_ns()
    call()
    return (time.perf_counter_ns() - started) / 1e6


def fencing(checks: int) -> dict[str, list[float]]:
    """Time the pre-send check, the bare fence script, PING and GET, interleaved on one connection."""
    client = redis_client(os.environ["REDIS_URL"])
    account = account_key(f"bench-{uuid.uuid4().hex[:6]}", "BENCHKEY")
    lease = AccountLease(client, account, ttl_s=60.0, run_id="bench")
    assert lease.try_acquire().held, "the bench could not take its own lease"
    token = lease.token
    assert token is not None
    calls: dict[str, Callable[[], object]] = {
        "ensure": lease.ensure,
        "fence": partial(fence_check, client, account, token, lease.holder),
        "ping": client.ping,
        "get": partial(client.get, "scalper:bench:absent"),
    }
    for call in calls.values():  # warm: the script is loaded once (EVALSHA afterwards), the connection open
        call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(checks):
        for name, call in calls.items():
            samples[name].append(_timed(call))
    lease.release()
    return samples


# -- takeover -------------------------------------------------------------------------------------------


class Stack:
    """A simulator, a Celery worker and the traders of one account; every trader has its own data folder."""

    def __init__(self, lease_ttl_s: float) -> None:
        self.run_id = f"bench-{uuid.uuid4().hex[:6]}"
        self.env = {**os.environ, "CELERY_QUEUE": self.run_id}
        self.sim_url = f"http://127.0.0.1:{free_port()}"
        self.lease_ttl_s = lease_ttl_s
        self.processes: list[Popen] = []
        self.count = 0

    def start(self) -> None:
        port = self.sim_url.rsplit(":", 1)[1]
        self._start("sim", [sys.executable, "manage.py", "run_simexchange", "--port", port, "--reset",
                            "--speed", "5", "--state", str(DATA / "sim.json")])
        self._start("worker", celery_worker_argv(name=self.run_id))
        wait_until(lambda: "listening" in (DATA / "sim.log").read_text(), timeout=30, what="simulator")
        wait_until(lambda: "ready." in (DATA / "worker.log").read_text(), timeout=60, what="worker")

    def _start(self, name: str, argv: list[str]) -> Popen:
        process = start_process(argv, env=self.env, log=DATA / f"{name}.log")
        self.processes.append(process)
        return process

    def trader(self) -> Popen:
        self.count += 1
        folder = DATA / f"trader-{self.count}"
        folder.mkdir()
        return self._start(f"trader-{self.count}", [
            sys.executable, "manage.py", "run_trader", "--mode", "SIM", "--symbols", "BTCUSDT,ETHUSDT",
            "--sim-url", self.sim_url, "--run-id", self.run_id, "--data-dir", str(folder),
            "--lease-ttl", str(self.lease_ttl_s)])

    def role(self, pid: int) -> str:
        """The role ``pid``'s heartbeat gives: ``LEADER_RUNNING`` once it trades with safe mode off."""
        beat = read_heartbeat(run_id=self.run_id, max_age_ms=3000) or {}
        if beat.get("pid") != pid:
            return ""
        if beat.get("role") == "LEADER" and beat.get("phase") == "RUNNING" and not beat.get("safeMode"):
            return "LEADER_RUNNING"
        return str(beat.get("role") or "")

    def stop(self) -> None:
        for process in reversed(self.processes):
            stop_process(process, timeout=10)


def _standby_seen(stack: Stack, standby: Popen, log: Path) -> bool:
    """Whether the standby says it waits: its heartbeat, or (while the leader owns the key) its log."""
    if standby.poll() is not None:
        raise RuntimeError(f"the standby exited: {log.read_text()[-1500:]}")
    return stack.role(standby.pid) == "STANDBY" or "STANDBY" in log.read_text(errors="replace")


def _leads(stack: Stack, pid: int) -> bool:
    return stack.role(pid) == "LEADER_RUNNING"


def takeovers(kills: int, lease_ttl_s: float) -> list[float]:
    """Kill the leader ``kills`` times; return leader killed -> standby LEADER, RUNNING, safe mode off (ms)."""
    stack = Stack(lease_ttl_s)
    times: list[float] = []
    try:
        stack.start()
        leader = stack.trader()
        wait_until(lambda: stack.role(leader.pid) == "LEADER_RUNNING", timeout=90, interval=0.05,
                   what="the first trader to lead")
        for _ in range(kills):
            standby = stack.trader()
            log = DATA / f"trader-{stack.count}.log"
            wait_until(partial(_standby_seen, stack, standby, log), timeout=90, interval=0.05,
                       what="the second trader to wait as standby")
            time.sleep(1.0)  # the standby's state loaded and its market data warm, as in production
            killed = time.perf_counter()
            os.kill(leader.pid, signal.SIGKILL)
            leader.wait(timeout=10)
            wait_until(partial(_leads, stack, standby.pid), timeout=lease_ttl_s + 90, interval=0.01,
                       what="the standby to take over")
            times.append((time.perf_counter() - killed) * 1000)
            leader = standby
    finally:
        stack.stop()
    return times


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--lease-ttl", type=float, default=5.0)
    parser.add_argument("--checks", type=int, default=2000)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    try:
        fenced = fencing(args.checks)
        taken = takeovers(args.kills, args.lease_ttl)
    finally:
        REDIS.stop()
    print(line("fencing: AccountLease.ensure before an order", fenced["ensure"]))
    print(line("fencing: the Lua fence check alone", fenced["fence"]))
    print(line("floor: Redis PING", fenced["ping"]))
    print(line("floor: Redis GET", fenced["get"]))
    ratio = statistics.median(fenced["ensure"]) / statistics.median(fenced["ping"])
    print(f"{'median pre-send check / median PING':<44} {ratio:8.1f}x")
    print(line("takeover: leader killed -> standby RUNNING", [t / 1000 for t in taken], unit="s"))
    print(f"{'configured lease TTL':<44} {args.lease_ttl:8.3f} s")
    print(f"{'median takeover - lease TTL':<44} {statistics.median(taken) / 1000 - args.lease_ttl:8.3f} s")
    print(f"peak RSS of the benchmark process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
