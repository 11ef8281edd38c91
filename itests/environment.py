"""An isolated environment for one integration run: its own data folder, simulator, Celery worker and traders.

Nothing of a run is shared with the product or another run except the database,
and there every row carries the run's id: the simulator listens on a free
loopback port, the worker consumes only the queue named after the run id (so
the run's recovery chains run there), and the traders run with ``--run-id``
and ``SCALPER_DATA_DIR`` set to the run's folder. ``stop`` always stops what was
started, also after a failure or a timeout, and the pids are recorded through
``on_change`` so a teardown in another process (or the sweeper) can stop them.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import requests
from django.conf import settings
from django.db import connection

from scalper_site.testkit import celery_worker_argv, free_port, start_process, stop_process, wait_until
from trading.simexchange.control import SimControl, token_path_for

SYMBOLS = ("BTCUSDT", "ETHUSDT")
SHIPPED_CONFIG = Path(__file__).resolve().parent.parent / "data" / "config" / "config.json"


def runs_root() -> Path:
    """Return the folder that holds one data folder per integration run."""
    return Path(settings.DATA_DIR) / "tests" / "runs"


def child_database_env(conn: Any = connection) -> dict[str, str]:
    """Point a child process at the caller's database: PostgreSQL by URL, SQLite by file."""
    db = conn.settings_dict
    if conn.vendor == "postgresql":
        auth = db["USER"] or ""
        if db.get("PASSWORD"):
            auth += f":{db['PASSWORD']}"
        host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
        return {"DATABASE_URL": f"postgres://{auth}@{host}/{db['NAME']}"}
    if conn.vendor == "sqlite":
        name = str(db["NAME"])
        if name == ":memory:" or name.startswith("file:memorydb"):
            raise RuntimeError("an in-memory SQLite database cannot be shared with child processes")
        return {"SCALPER_SQLITE_PATH": name}
    raise RuntimeError(f"integration runs support PostgreSQL and SQLite, not {conn.vendor}")


def write_config(data_dir: Path, **sections: dict[str, Any]) -> Path:
    """Write the shipped config with ``sections`` merged in deeply; return the file."""
    config = json.loads(SHIPPED_CONFIG.read_text())

    def merge(into: dict[str, Any], changes: dict[str, Any]) -> None:
        for key, value in changes.items():
            if isinstance(value, dict):
                merge(into.setdefault(key, {}), value)
            else:
                into[key] = value

    merge(config, sections)
    path = data_dir / "config" / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    # Replace atomically: the trader polls this file and must never read half of it.
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(config, indent=2))
    os.replace(tmp, path)
    return path


def eager_config(data_dir: Path, **sections: dict[str, Any]) -> Path:
    """Write a config that trades often enough for a short run (the shipped one waits for strong signals)."""
    eager: dict[str, dict[str, Any]] = {"scoring": {"watch_threshold": 0.2, "entry_threshold": 0.3},
                                        "state_machine": {"cooldown_ms": 2000}}
    return write_config(data_dir, **{**eager, **sections})


class IsolatedEnvironment:
    """A simulator, a Celery worker and trader processes for one run id, under one data folder."""

    def __init__(
        self,
        *,
        run_id: str,
        root: Path | None = None,
        speed: float = 20.0,
        symbols: tuple[str, ...] = SYMBOLS,
        on_change: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.run_id = run_id
        self.root = root if root is not None else runs_root() / run_id
        self.data = self.root / "data"
        self.logs = self.root / "logs"
        self.data.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.speed = speed
        self.symbols = symbols
        self.sim_port = free_port()
        self.sim_url = f"http://127.0.0.1:{self.sim_port}"
        self.control = SimControl(self.sim_url, token_file=token_path_for(self.root / "exchange_state.json"))
        self._on_change = on_change
        self.env = {
            **os.environ,
            **child_database_env(),
            "PYTHONUNBUFFERED": "1",
            "SCALPER_DATA_DIR": str(self.data),
            "CELERY_QUEUE": run_id,
            "REDIS_URL": settings.REDIS_URL,
        }
        if "SCALPER_SQLITE_PATH" in self.env:
            self.env.pop("DATABASE_URL", None)
        self.processes: dict[str, subprocess.Popen] = {}
        self.trader: subprocess.Popen | None = None
        self.trader_name = ""

    # -- what was started -------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Return what a teardown elsewhere needs: folders, port and the pids still running."""
        return {
            "root": str(self.root),
            "dataDir": str(self.data),
            "simUrl": self.sim_url,
            "pids": {name: p.pid for name, p in self.processes.items() if p.poll() is None},
        }

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.describe())

    def _start(self, name: str, argv: list[str], *, env: dict[str, str] | None = None) -> subprocess.Popen:
        process = start_process(argv, env=env or self.env, log=self.logs / f"{name}.log")
        self.processes[name] = process
        self._changed()
        return process

    def log_text(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- start ------------------------------------------------------------------

    def start(self, *, timeout: float = 60.0) -> IsolatedEnvironment:
        """Start the simulator and the run's Celery worker; wait until both are ready."""
        self._start(
            "sim",
            [sys.executable, "manage.py", "run_simexchange", "--port", str(self.sim_port), "--reset",
             "--speed", str(self.speed), "--state", str(self.root / "exchange_state.json")],
        )
        self._start("worker", self._worker_argv("worker", self.run_id))
        for name, marker in (("sim", "listening"), ("worker", "ready.")):
            wait_until(functools.partial(self._ready, name, marker), timeout=timeout, interval=0.1,
                       what=f"the {name} to start (log {self.logs / (name + '.log')})")
        return self

    def start_worker(self, name: str = "worker", *, extra_env: dict[str, str] | None = None,
                     timeout: float = 60.0) -> subprocess.Popen:
        """Start (again) a Celery worker on the run's queue; ``extra_env`` arms a worker crash point."""
        env = {**self.env, **(extra_env or {})}
        process = start_process(self._worker_argv(name, f"{self.run_id}-{name}"), env=env,
                                log=self.logs / f"{name}.log")
        self.processes[name] = process
        self._changed()
        if timeout > 0:
            wait_until(functools.partial(self._ready, name, "ready."), timeout=timeout, interval=0.1,
                       what=f"the {name} to start (log {self.logs / (name + '.log')})")
        return process

    def kill_group(self, name: str, sig: int = signal.SIGKILL, *, timeout: float = 30.0) -> int | None:
        """Send ``sig`` to a started process's whole group (a worker and its pool, as a host loss would)."""
        process = self.processes.get(name)
        if process is None or process.poll() is not None:
            return None if process is None else process.returncode
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        code = process.wait(timeout=timeout)
        self._changed()
        return code

    def _worker_argv(self, name: str, node: str) -> list[str]:
        """A worker of the run's queue with its own beat: the sweepers (a step whose worker was lost, a plan
        whose retry is due) run for the run as `make run`'s beat does for the product. Two pool processes,
        as `make run` has: a recovery step waiting on a dead trader never holds the dead-man guardian back."""
        schedule = str(self.logs / f"{name}-beat-schedule")
        return [*celery_worker_argv(name=node, concurrency=2), "--beat", "--schedule", schedule]

    def _ready(self, name: str, marker: str) -> bool:
        process = self.processes[name]
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}: {self.log_text(name)[-2000:]}")
        return marker in self.log_text(name)

    def start_trader(self, name: str = "trader", *, fault_hooks: bool = False, data_dir: Path | None = None,
                     sim_url: str = "", extra_args: tuple[str, ...] = (), prefix: tuple[str, ...] = (),
                     extra_env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start a SIM trader for this run (``--allow-fault-hooks`` when a scenario arms faults).

        A second trader of the same account gets its own ``data_dir`` (its environment still names the run's
        folder, so a teardown elsewhere recognises it); ``prefix`` runs it elsewhere (``ip netns exec NS``).
        """
        argv = [*prefix, sys.executable, "manage.py", "run_trader", "--mode", "SIM", "--symbols",
                ",".join(self.symbols), "--sim-url", sim_url or self.sim_url, "--run-id", self.run_id,
                "--ping-interval", "5", "--ping-timeout", "3", *extra_args]
        if data_dir is not None:
            argv += ["--data-dir", str(data_dir)]
        if fault_hooks:
            argv.append("--allow-fault-hooks")
        self.trader = self._start(name, argv, env={**self.env, **extra_env} if extra_env else None)
        self.trader_name = name
        return self.trader

    def kill_trader(self, sig: int = signal.SIGKILL, *, timeout: float = 30.0) -> int:
        """Send ``sig`` to the trader process itself and wait for it to end; return its exit code."""
        assert self.trader is not None, "no trader was started"
        os.kill(self.trader.pid, sig)
        code = self.trader.wait(timeout=timeout)
        self._changed()
        return code

    # -- reads ------------------------------------------------------------------

    def exchange(self) -> dict[str, Any]:
        """Return the simulator's truth: open orders, positions, wallet, faults."""
        return self.control.state()

    def best_bid(self, symbol: str) -> Decimal:
        """Return the best bid of ``symbol``, read as any client reads it: the public V5 order book."""
        resp = requests.get(f"{self.sim_url}/v5/market/orderbook", params={"category": "linear", "symbol": symbol},
                            timeout=self.control.timeout)
        resp.raise_for_status()
        body = resp.json()
        if body.get("retCode") != 0:
            raise RuntimeError(f"order book of {symbol}: {body.get('retCode')} {body.get('retMsg')}")
        return Decimal(body["result"]["b"][0][0])

    # -- stop -------------------------------------------------------------------

    def stop(self) -> None:
        """Stop every process this environment started, newest first; safe to call twice."""
        for process in reversed(list(self.processes.values())):
            try:
                stop_process(process, timeout=10.0)
            except Exception:  # noqa: BLE001 (one stubborn child must not keep the others running)
                pass
        self._changed()


def stop_recorded(description: dict[str, Any], *, timeout: float = 10.0) -> list[int]:
    """Stop the process groups recorded by ``IsolatedEnvironment.describe`` (teardown after a lost worker)."""
    stopped = []
    for pid in (description.get("pids") or {}).values():
        if not _ours(int(pid), description.get("dataDir", "")):
            continue  # the pid was reused by a process that is not part of this run
        try:
            os.killpg(int(pid), signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            continue
        stopped.append(int(pid))
    deadline = time.monotonic() + timeout
    for pid in stopped:
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if _alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return stopped


def _ours(pid: int, data_dir: str) -> bool:
    """Tell whether ``pid`` still runs with the run's data folder (Linux; elsewhere trust the pid)."""
    environ = Path(f"/proc/{pid}/environ")
    if not Path("/proc/self/environ").exists():
        return True
    try:
        return f"SCALPER_DATA_DIR={data_dir}".encode() in environ.read_bytes().split(b"\0")
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of this process still answers; reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True
