"""Real processes for trader tests: a simulator, a Celery worker and traders, isolated per test."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from failover.models import FailoverStateRecord
from scalper_site.testkit import (
    celery_worker_argv,
    env_on_test_database,
    free_port,
    start_process,
    stop_process,
    wait_until,
)
from trading.simexchange.control import SimControl, token_path_for

SYMBOLS = "BTCUSDT,ETHUSDT"


def write_config(data_dir: Path, **sections: dict[str, Any]) -> None:
    """Write the shipped config with ``sections`` merged in (``failover={"detectors": {...}}`` merges deeply)."""
    config = json.loads((Path(__file__).resolve().parents[2] / "data" / "config" / "config.json").read_text())

    def merge(into: dict[str, Any], changes: dict[str, Any]) -> None:
        for key, value in changes.items():
            if isinstance(value, dict):
                merge(into[key], value)
            else:
                into[key] = value

    merge(config, sections)
    (data_dir / "config").mkdir(parents=True, exist_ok=True)
    (data_dir / "config" / "config.json").write_text(json.dumps(config))


def eager_config(data_dir: Path) -> None:
    """A config that trades often enough for a short test (the shipped one waits for strong signals)."""
    write_config(
        data_dir, scoring={"watch_threshold": 0.2, "entry_threshold": 0.3}, state_machine={"cooldown_ms": 2000}
    )


class Environment:
    """A simulator, a Celery worker and (on demand) trader processes, isolated by run id and data folder."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.data = tmp_path / "data"
        self.data.mkdir()
        self.run_id = f"t-{uuid.uuid4().hex[:8]}"
        self.sim_port = free_port()
        self.sim_url = f"http://127.0.0.1:{self.sim_port}"
        self.env = env_on_test_database(connection, SCALPER_DATA_DIR=str(self.data), CELERY_QUEUE=self.run_id)
        self.processes: list = []
        self.trader = None

    def start(self, *, speed: float = 20.0) -> Environment:
        self.sim = start_process(
            [
                sys.executable,
                "manage.py",
                "run_simexchange",
                "--port",
                str(self.sim_port),
                "--reset",
                "--speed",
                str(speed),
                "--state",
                str(self.tmp / "exchange_state.json"),
            ],
            env=self.env,
            log=self.tmp / "sim.log",
        )
        self.worker = start_process(celery_worker_argv(name=self.run_id), env=self.env, log=self.tmp / "worker.log")
        self.processes += [self.sim, self.worker]
        wait_until(lambda: "listening" in (self.tmp / "sim.log").read_text(), timeout=30, what="simulator")
        wait_until(lambda: "ready." in (self.tmp / "worker.log").read_text(), timeout=60, what="worker")
        self.control = SimControl(self.sim_url, token_file=token_path_for(self.tmp / "exchange_state.json"))
        return self

    def start_trader(self, name: str = "trader", *extra_args: str) -> None:
        self.trader_log = self.tmp / f"{name}.log"
        self.trader = start_process(
            [
                sys.executable,
                "manage.py",
                "run_trader",
                "--mode",
                "SIM",
                "--symbols",
                SYMBOLS,
                "--sim-url",
                self.sim_url,
                "--run-id",
                self.run_id,
                "--ping-interval",
                "5",
                "--ping-timeout",
                "3",
                *extra_args,
            ],
            env=self.env,
            log=self.trader_log,
        )
        self.processes.append(self.trader)

    def state(self) -> FailoverStateRecord | None:
        return FailoverStateRecord.objects.filter(run_id=self.run_id).first()

    def wait_safe_mode_off(self, timeout: float = 60, *, after_version: int = -1) -> None:
        """Wait for safe mode off in a state newer than ``after_version`` (a dead trader's state is old)."""

        def off() -> bool:
            assert self.trader is None or self.trader.poll() is None, self.trader_log.read_text()[-3000:]
            state = self.state()
            return state is not None and state.version > after_version and not state.safe_mode

        wait_until(off, timeout=timeout, what=f"safe mode off (trader log {self.trader_log})")

    def exchange(self) -> dict:
        return self.control.state()

    def stop(self) -> None:
        for process in reversed(self.processes):
            stop_process(process)


@pytest.fixture
def environment(tmp_path):
    env = Environment(tmp_path)
    try:
        yield env
    finally:
        env.stop()
