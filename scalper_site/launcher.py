"""Run every process of the product on one machine and watch them.

``make run`` ends here: the embedded Redis (unless ``REDIS_URL`` is set), a
Celery worker, the web server and, as the product grows, the simulator and the
trader. Output of each child is prefixed with its name. A child that dies is
reported and restarted with backoff; one that keeps dying stops the whole
product with a non-zero exit, because a half-running trading stack at 3 a.m. is
worse than a stopped one. Ctrl-C or SIGTERM stops everything cleanly.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger("scalper.launcher")


@dataclass(frozen=True)
class ProcessSpec:
    """How to start one child process."""

    name: str
    argv: Sequence[str]
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class _Child:
    spec: ProcessSpec
    process: subprocess.Popen | None = None
    restarts: deque[float] = field(default_factory=deque)
    next_start_at: float = 0.0
    backoff_s: float = 1.0


class Supervisor:
    """Start children, restart the ones that die, stop all of them on request."""

    def __init__(
        self,
        specs: Sequence[ProcessSpec],
        *,
        base_env: dict[str, str],
        cwd: Path,
        max_restarts: int = 5,
        restart_window_s: float = 300.0,
        stop_timeout_s: float = 10.0,
        out: Callable[[str], None] | None = None,
    ) -> None:
        self.children = [_Child(spec) for spec in specs]
        self.base_env = base_env
        self.cwd = cwd
        self.max_restarts = max_restarts
        self.restart_window_s = restart_window_s
        self.stop_timeout_s = stop_timeout_s
        self.out = out or (lambda line: print(line, flush=True))
        self._stop = threading.Event()
        self.exit_code = 0

    def request_stop(self, *_: object) -> None:
        self._stop.set()

    def run(self) -> int:
        """Run until asked to stop or until a child keeps failing; return the exit code."""
        for child in self.children:
            self._start(child)
        try:
            while not self._stop.wait(0.25):
                for child in self.children:
                    self._watch(child)
        finally:
            self.stop_all()
        return self.exit_code

    def _start(self, child: _Child) -> None:
        # Output is relayed line by line: a child must not sit on a full buffer.
        env = {"PYTHONUNBUFFERED": "1", **self.base_env, **child.spec.env}
        child.process = subprocess.Popen(
            list(child.spec.argv),
            cwd=self.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,  # its own process group: Ctrl-C reaches it through us only
        )
        self.out(f"[launcher] started {child.spec.name} (pid {child.process.pid})")
        threading.Thread(target=self._pump, args=(child.spec.name, child.process), daemon=True).start()

    def _pump(self, name: str, process: subprocess.Popen) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.out(f"[{name}] {line.rstrip()}")

    def _watch(self, child: _Child) -> None:
        process = child.process
        now = time.monotonic()
        if process is None:
            if now >= child.next_start_at:
                self._start(child)
            return
        code = process.poll()
        if code is None:
            if child.restarts and now - child.restarts[-1] > self.restart_window_s:
                child.backoff_s = 1.0
            return
        self.out(f"[launcher] PROCESS DIED: {child.spec.name} (pid {process.pid}) exited with code {code}")
        child.process = None
        while child.restarts and now - child.restarts[0] > self.restart_window_s:
            child.restarts.popleft()
        if len(child.restarts) >= self.max_restarts:
            self.out(
                f"[launcher] {child.spec.name} died {len(child.restarts) + 1} times within "
                f"{self.restart_window_s:.0f}s; stopping the product"
            )
            self.exit_code = 1
            self._stop.set()
            return
        child.restarts.append(now)
        child.next_start_at = now + child.backoff_s
        self.out(f"[launcher] restarting {child.spec.name} in {child.backoff_s:.0f}s")
        child.backoff_s = min(child.backoff_s * 2, 30.0)

    def stop_all(self) -> None:
        """Send SIGTERM to every child, then SIGKILL to the ones still alive after the timeout."""
        alive = [c.process for c in self.children if c.process is not None and c.process.poll() is None]
        for process in alive:
            self.out(f"[launcher] stopping pid {process.pid}")
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout_s
        for process in alive:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.out(f"[launcher] pid {process.pid} ignored SIGTERM; killing it")
                _signal_group(process, signal.SIGKILL)
                process.wait(timeout=5)


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def product_processes(
    *,
    python: str,
    web_host: str,
    web_port: int,
    worker_concurrency: int,
    sim_port: int | None = 8765,
    trader_symbols: str | None = "BTCUSDT,ETHUSDT",
    beat_schedule: Path | None = None,
) -> list[ProcessSpec]:
    """The processes of the product, in start order; no simulator or trader when their option is None."""
    specs = [
        ProcessSpec(
            "worker",
            [
                python,
                "-m",
                "celery",
                "-A",
                "scalper_site",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                str(worker_concurrency),
                "-n",
                "worker-%h-" + str(os.getpid()),
            ],
        ),
        ProcessSpec(
            "beat",
            [python, "-m", "celery", "-A", "scalper_site", "beat", "--loglevel", "INFO"]
            + ([] if beat_schedule is None else ["--schedule", str(beat_schedule)]),
        ),
        ProcessSpec(
            "web",
            [
                python,
                "-m",
                "uvicorn",
                "scalper_site.asgi:application",
                "--host",
                web_host,
                "--port",
                str(web_port),
                "--no-access-log",
                "--lifespan",
                "off",
            ],
        ),
    ]
    if sim_port is not None:
        specs.append(ProcessSpec("simexchange", [python, "manage.py", "run_simexchange", "--port", str(sim_port)]))
        if trader_symbols:
            specs.append(
                ProcessSpec(
                    "trader",
                    [
                        python,
                        "manage.py",
                        "run_trader",
                        "--mode",
                        "SIM",
                        "--symbols",
                        trader_symbols,
                        "--sim-url",
                        f"http://127.0.0.1:{sim_port}",
                    ],
                )
            )
    return specs


def child_env(*, redis_url: str, data_dir: Path) -> dict[str, str]:
    """The environment every child gets: the parent's, plus where Redis and the data live."""
    env = dict(os.environ)
    env["REDIS_URL"] = redis_url
    env["SCALPER_DATA_DIR"] = str(data_dir)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("DJANGO_SETTINGS_MODULE", "scalper_site.settings")
    return env


def python_executable() -> str:
    return sys.executable
